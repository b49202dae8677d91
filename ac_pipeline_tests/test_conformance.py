"""The pipeline's requests conform to the published OpenAPI description, and so do the sandbox's answers to them.

Full syncs against a real sandbox on 127.0.0.1 cover every operation the push uses: a list, its user group grant
and a custom field created; bulk adds, updates and removals with their import/info polls; many re-adds (their
records read by `ids[]`, status 1 each, bulk import); a few re-adds and small change sets one by one
(contact/sync, contactLists, a new tag, contactTags); a person's own unsubscribe read back. Every
/api/3 exchange the pipeline's httpx client makes is recorded (the client's `send`, wrapped), then each request
body is validated against its operation's request schema and each answer against the schema declared for its
status, with openapi-schema-validator (OAS 3.1, JSON Schema 2020-12), a maintained validator rather than the
sandbox's own checks. Zero errors.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.request_checks import SPEC_PATH
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization, quoted
from ac_pipeline_tests.fixtures.sandbox import point_at

SPEC = json.loads(SPEC_PATH.read_text())
API = "/api/3"

AUDIENCES = """
source: {table: customers, id_column: customer_id, updated_column: updated_at}
audiences:
  - key: panel
    list: {name: Panel, create: true}
    condition: customer_id % 40 = 0 AND coalesce(city, '') <> 'Gone'
    fields:
      email: email
      first_name: first_name
      last_name: last_name
      phone: phone
      custom: {City: city, Country: country}
      create_missing: true
    tags: [panel]
  - key: tiny
    list: {name: Tiny, create: true}
    condition: customer_id % 4001 = 7
    fields:
      email: email
      first_name: first_name
      custom: {City: city}
      create_missing: true
    tags: [tiny, early]
"""

# What the syncs below must have sent, so that the test cannot pass by sending little.
EXPECTED_OPERATIONS = {
    "GET /lists",
    "POST /lists",
    "GET /groups",
    "POST /listGroups",
    "GET /fields",
    "POST /fields",
    "POST /import/bulk_import",
    "GET /import/info",
    "GET /contacts",
    "POST /contact/sync",
    "GET /contacts/{id}/contactLists",
    "POST /contactLists",
    "GET /tags",
    "POST /tags",
    "POST /contactTags",
}


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: str
    body: bytes
    status: int
    answer: bytes


def operations() -> list[tuple[str, re.Pattern[str], str, dict[str, Any]]]:
    found = []
    for path, methods in SPEC["paths"].items():
        parts = ("[^/]+" if part.startswith("{") else re.escape(part) for part in path.split("/"))
        pattern = re.compile("^" + re.escape(API) + "/".join(parts) + "$")
        for method, operation in methods.items():
            if isinstance(operation, dict) and "responses" in operation:
                found.append((method.upper(), pattern, path, operation))
    return found


def any_of(schema: Any) -> Any:
    """`schema` with each oneOf read as anyOf. The description lists alternative answers (GET /contacts with and
    without `scoreValues`) as oneOf branches that overlap: no member is required and others are allowed, so every
    body matching one branch matches the others too, and fails oneOf's "exactly one" whatever it holds."""
    if isinstance(schema, dict):
        return {("anyOf" if key == "oneOf" else key): any_of(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [any_of(value) for value in schema]
    return schema


def json_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
    media = (content or {}).get("application/json") or {}
    return any_of(media["schema"]) if "schema" in media else None


def problems_of(exchange: Exchange, described: list[tuple[str, re.Pattern[str], str, dict[str, Any]]]) -> list[str]:
    match = next(
        ((p, op) for m, pattern, p, op in described if m == exchange.method and pattern.match(exchange.path)), None
    )
    name = f"{exchange.method} {exchange.path}"
    if match is None:
        return [f"{name}: not an operation of the OpenAPI description"]
    template, operation = match
    problems: list[str] = []
    if exchange.body:
        schema = json_schema((operation.get("requestBody") or {}).get("content"))
        if schema is None:
            problems.append(f"{exchange.method} {template}: a body, where the description declares none")
        else:
            for error in OAS31Validator(schema).iter_errors(json.loads(exchange.body)):
                where = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{exchange.method} {template} request at /{where}: {error.message}")
    if exchange.status == 429:
        return problems  # the rate limit (API.md); the description declares no 429 answers
    declared = operation["responses"].get(str(exchange.status))
    if declared is None:
        return [*problems, f"{exchange.method} {template}: answered {exchange.status}, not a declared status"]
    schema = json_schema(declared.get("content"))
    if schema is not None:
        for error in OAS31Validator(schema).iter_errors(json.loads(exchange.answer)):
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{exchange.method} {template} {exchange.status} answer at /{where}: {error.message:.200}")
    return problems


def template_of(exchange: Exchange, described: list[tuple[str, re.Pattern[str], str, dict[str, Any]]]) -> str:
    return next(
        (f"{m} {p}" for m, pattern, p, _ in described if m == exchange.method and pattern.match(exchange.path)),
        f"{exchange.method} {exchange.path}",
    )


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every /api/3 exchange of any httpx client in this process (the pipeline's), in order."""
    exchanges: list[Exchange] = []
    send = httpx.Client.send

    def recording(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = send(self, request, **kwargs)
        if request.url.path.startswith(API + "/"):
            exchanges.append(
                Exchange(
                    request.method,
                    request.url.path,
                    request.url.query.decode(),
                    request.content,
                    response.status_code,
                    response.read(),
                )
            )
        return response

    monkeypatch.setattr(httpx.Client, "send", recording)
    return exchanges


def test_every_request_and_answer_of_full_syncs_conforms(
    home: Paths, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, recorded: list[Exchange]
) -> None:
    home.audiences.write_text(AUDIENCES)
    point_at(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())

    def sync(key: str) -> dict[str, Any]:
        result = pipeline.sync(key)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return materialization(result, "activecampaign_sync")

    # Adds in bulk: the list, its grant and the custom fields are created first.
    first = sync("panel")
    assert first["adds"] > 250 and first["batches"] >= 2
    # Adds one by one (a change set under 10), with tags that do not exist yet.
    assert sync("tiny")["adds"] >= 1
    members = sorted(pipeline.audience("panel"))
    # Updates and removals in bulk.
    leaving, renamed = members[:30], members[30:60]
    pipeline.execute(f"UPDATE customers SET first_name = 'Renamed' WHERE lower(trim(email)) IN ({quoted(renamed)})")
    pipeline.execute(f"UPDATE customers SET city = 'Gone' WHERE lower(trim(email)) IN ({quoted(leaving)})")
    second = sync("panel")
    assert second["updates"] >= 30 and second["removals"] == 30 and second["batches"] >= 1
    # A few re-adds, a removal and an update one by one, after a person left by themselves.
    sandbox.admin.unsubscribe(members[70], "Panel")
    pipeline.execute(f"UPDATE customers SET city = 'Back' WHERE lower(trim(email)) IN ({quoted(leaving[:3])})")
    pipeline.execute(f"UPDATE customers SET city = 'Gone' WHERE lower(trim(email)) IN ({quoted(members[80:82])})")
    pipeline.execute(f"UPDATE customers SET first_name = 'Again' WHERE lower(trim(email)) = '{members[90]}'")
    third = sync("panel")
    assert third["batches"] == 0 and third["removals"] == 2 and third["updates"] >= 1, third
    # Many re-adds: their records read in bulk (the list's unsubscribed, then by id), status 1 each, bulk import.
    pipeline.execute(f"UPDATE customers SET city = 'Back' WHERE lower(trim(email)) IN ({quoted(leaving[3:])})")
    fourth = sync("panel")
    assert fourth["readds"] == 27 and fourth["batches"] == 1, fourth

    described = operations()
    seen = Counter(template_of(exchange, described) for exchange in recorded)
    assert set(seen) >= EXPECTED_OPERATIONS, sorted(EXPECTED_OPERATIONS - set(seen))
    problems = [problem for exchange in recorded for problem in problems_of(exchange, described)]
    assert problems == [], f"{len(problems)} problems in {len(recorded)} exchanges:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/import/bulk_import", {"contacts": [{"email": "a@example.com", "fields": [{"id": "1", "value": "x"}]}]}),
        ("/contactLists", {"contactList": {"list": 2, "contact": 1, "status": 1}}),
        ("/contactTags", {"contactTag": {"contact": "1", "tag": "20"}}),
    ],
    ids=["bulk-field-id-as-string", "contactLists-integers", "contactTags-strings"],
)
def test_the_validator_refuses_what_the_pipeline_used_to_send(path: str, body: dict[str, Any]) -> None:
    exchange = Exchange("POST", API + path, "", json.dumps(body).encode(), 429, b"")
    problems = problems_of(exchange, operations())
    assert problems and all(" request at /" in problem for problem in problems), problems
