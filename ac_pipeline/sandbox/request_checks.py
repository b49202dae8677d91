"""Request bodies held to the published OpenAPI description's request schemas, with the real API's types.

ASGI middleware between the gate (key, rate limit, faults) and the endpoints. For every POST and PUT that the
sandbox serves and the description gives a request schema, it reads the body (at most MAX_BODY_BYTES), and
checks the attributes' JSON types before the endpoint sees them:

- core endpoints: 422 `{"errors": [{"title", "detail", "code", "source": {"pointer"}}]}` naming the attribute
  (`/data/attributes/<name>`), the type it must have and what came; `code` is ActiveCampaign's `field_invalid`
  (a wrong type) or `field_missing` (a required attribute left out). contactTags adds its own `status`.
- bulk import: 400 `{"success": 0, "message": ..., "failureReasons": [{"contact": i, "failureReason"}]}`, one
  reason per contact at fault, as the endpoint answers its other validation failures.
- a body too big: 413 `{"message"}` (bulk import: its own 400 with a string reason).

The schemas are compiled once, when the app is built, from `openapi-v3-subset.json` beside this module (a copy of
`../shared/activecampaign/openapi-v3-subset.json`). Where the description disagrees with itself (a schema says
string and the same operation's documented example sends a number, or the reverse), the attribute is an id the
real API takes either way: an integer or a string of digits, and nothing else. A boolean whose example sends 0/1
takes those too. Where schema and example agree, the schema's type is the only one taken: bulk import's
`fields[].id` is an integer, never "1". docs/sandbox.md, "Request checks", says which attributes and why.

The envelope stays the endpoints' business: a body that is not JSON, not an object, or without its wrapper
object (`{"contact": {...}}`) passes through to the endpoint's own 400. Attributes the schema does not name are
ignored, as the real API ignores them. Lengths and values (an email's format, a status of 1 or 2, ids that
exist) are the endpoints' checks too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ac_pipeline.sandbox.bulk import EMAIL_FORMAT, VALIDATION_MESSAGE, body_too_big
from ac_pipeline.sandbox.gate import API_PREFIX, send_json
from ac_pipeline.sandbox.json_text import PARSED_BODY, loads

SPEC_PATH = Path(__file__).with_name("openapi-v3-subset.json")
# Every endpoint's body cap. Bulk import documents it: "under 400,000 bytes". No other endpoint documents one;
# the largest body a single-resource request can carry within the field limits (250 characters a name, 255 a
# custom field value) is far below it, so a body at or over the bulk cap is no real request to any endpoint.
MAX_BODY_BYTES = 400_000
BULK_IMPORT = "POST /import/bulk_import"
# Endpoints whose 422 carries a `status` member as well (the description's contactTags error).
STATUS_IN_ERRORS = {"POST /contactTags"}

# A problem: (path of keys and indexes to the value, what it must be, what came; None for a missing attribute).
Problem = tuple[tuple[str | int, ...], str, Any]
Check = Callable[[Any], Problem | None]

WHAT = {
    "string": "text (a JSON string)",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "id": "an id: an integer or a string of digits",
    "flag": "true or false (or 0 or 1)",
}
_MISSING = object()

# What the description leaves untyped but documents in words and examples: a contact's `fieldValues` items,
# "[{field id, value}]", e.g. {"field": "1", "value": "The Value for First Field"}.
FIELD_VALUE_ITEM = {
    "type": "object",
    "required": ["field", "value"],
    "properties": {"field": {"type": "integer"}, "value": {"type": "string"}},
}
UNTYPED_ITEMS: dict[tuple[str, ...], dict[str, Any]] = {("contact", "fieldValues"): FIELD_VALUE_ITEM}


# -- compiling a schema into a check -----------------------------------------------------------------------
#
# A schema becomes a tree of Nodes (its types widened by the examples), then one generated Python function per
# operation with every type test inlined: bulk import checks 250 contacts on each request, and a call per
# attribute would cost more than parsing the body does.


@dataclass(frozen=True)
class Node:
    kind: str  # a key of WHAT
    properties: tuple[tuple[str, Node], ...] = ()
    required: tuple[str, ...] = ()
    items: Node | None = None


# The test each leaf kind passes, as an expression of the value `{v}`.
LEAF_TESTS = {
    "string": "type({v}) is str",
    "integer": "type({v}) is int",
    "number": "type({v}) is int or type({v}) is float",
    "boolean": "type({v}) is bool",
    "id": "type({v}) is int or (type({v}) is str and {v}.isdigit() and {v}.isascii())",
    "flag": "type({v}) is bool or (type({v}) in (int, str) and {v} in (0, 1, '0', '1'))",
}


def _kind(schema: dict[str, Any], examples: list[Any]) -> str | None:
    """The JSON type an attribute takes: the schema's, widened where its documented examples send another."""
    declared = schema.get("type")
    sent = [example for example in examples if example is not None]
    if declared in ("string", "integer") and any(
        (type(example) is int) if declared == "string" else (type(example) is str) for example in sent
    ):
        return "id"
    if declared == "boolean" and any(type(example) is not bool for example in sent):
        return "flag"
    return declared if declared in LEAF_TESTS else None


def schema_node(schema: Any, examples: list[Any], where: tuple[str, ...] = ()) -> Node | None:
    """The Node for `schema` (the keywords the description uses: type, properties, required, items), given the
    values its documented examples put at the same place; None for a schema that says nothing."""
    if not isinstance(schema, dict):
        return None
    if "properties" in schema or schema.get("type") == "object":
        properties = []
        for name, sub in (schema.get("properties") or {}).items():
            values = [example.get(name) for example in examples if isinstance(example, dict)]
            node = schema_node(sub, values, (*where, name))
            if node is not None:
                properties.append((name, node))
        return Node("object", tuple(properties), tuple(schema.get("required") or ()))
    if schema.get("type") == "array":
        item_schema = schema.get("items") or UNTYPED_ITEMS.get(where[-2:])
        item_examples = [item for example in examples if isinstance(example, list) for item in example]
        return Node("array", items=schema_node(item_schema, item_examples, where))
    kind = _kind(schema, examples)
    return None if kind is None else Node(kind)


def _code(node: Node, var: str, path: list[str], lines: list[str], depth: int) -> None:
    """Lines that return a Problem when the value in `var` (at `path`, a list of Python expressions) fails.

    Arrays loop over their items without counting: an item's index is looked up (by identity) only on failure."""
    pad = "    " * (depth + 1)
    here = "(" + "".join(f"{part}, " for part in path) + ")"
    if node.kind == "object":
        lines.append(f"{pad}if type({var}) is not dict: return ({here}, {WHAT['object']!r}, {var})")
        for name in node.required:
            missing = "(" + "".join(f"{part}, " for part in [*path, repr(name)]) + ")"
            lines.append(f"{pad}if {name!r} not in {var}: return ({missing}, '', MISSING)")
        for name, sub in node.properties:
            child = f"v{depth}_{len(lines)}"
            lines.append(f"{pad}{child} = {var}.get({name!r}, MISSING)")
            if sub.kind in LEAF_TESTS:
                at = "(" + "".join(f"{part}, " for part in [*path, repr(name)]) + ")"
                test = LEAF_TESTS[sub.kind].format(v=child)
                lines.append(
                    f"{pad}if {child} is not MISSING and not ({test}): return ({at}, {WHAT[sub.kind]!r}, {child})"
                )
            else:
                lines.append(f"{pad}if {child} is not MISSING:")
                _code(sub, child, [*path, repr(name)], lines, depth + 1)
    elif node.kind == "array":
        lines.append(f"{pad}if type({var}) is not list: return ({here}, {WHAT['array']!r}, {var})")
        if node.items is not None:
            item = f"v{depth}_{len(lines)}"
            lines.append(f"{pad}for {item} in {var}:")
            _code(node.items, item, [*path, f"index({var}, {item})"], lines, depth + 1)
    else:
        lines.append(
            f"{pad}if not ({LEAF_TESTS[node.kind].format(v=var)}): return ({here}, {WHAT[node.kind]!r}, {var})"
        )


def _index(items: list[Any], item: Any) -> int:
    return next(index for index, candidate in enumerate(items) if candidate is item)


def compile_node(node: Node) -> Check:
    """One function checking a whole body against `node`: None, or the first Problem."""
    lines = ["def check(body):"]
    _code(node, "body", [], lines, 0)
    lines.append("    return None")
    namespace: dict[str, Any] = {"MISSING": _MISSING, "index": _index}
    exec(compile("\n".join(lines), "<request schema>", "exec"), namespace)
    check: Check = namespace["check"]
    return check


@dataclass(frozen=True)
class Operation:
    name: str  # "POST /contactLists"
    wrapper: str | None  # "contactList"; None for bulk import, whose attributes are top level
    check: Check  # the whole body


def _examples(content: dict[str, Any]) -> list[Any]:
    found = [example.get("value") for example in (content.get("examples") or {}).values()]
    if "example" in content:
        found.append(content["example"])
    return [json.loads(v) if isinstance(v, str) else v for v in found if v is not None]


def load_operations(spec: dict[str, Any]) -> dict[str, Operation]:
    """Each operation with a JSON request schema, by "METHOD /path template" (the description's paths)."""
    operations: dict[str, Operation] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            content = ((operation or {}).get("requestBody") or {}).get("content", {}).get("application/json")
            if not content or "schema" not in content:
                continue
            schema, examples = content["schema"], _examples(content)
            name = f"{method.upper()} {path}"
            # {"contact": {...}}: the wrapper object is the endpoint's business (its 400), its attributes ours.
            wrappers = [key for key, sub in (schema.get("properties") or {}).items() if "properties" in sub]
            wrapper = wrappers[0] if name != BULK_IMPORT and len(wrappers) == 1 else None
            node = schema_node({**schema, "required": []}, examples)
            check = compile_node(node) if node is not None else None
            if check is not None:
                operations[name] = Operation(name, wrapper, check)
    return operations


# -- answers ---------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = json.dumps(value) if value is not _MISSING else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def core_error(operation: Operation, problem: Problem) -> tuple[int, dict[str, Any]]:
    """The 422 for a core endpoint: field_missing or field_invalid, pointing at the attribute."""
    path, what, value = problem
    name = _dotted(path)
    attribute = path[1:] if operation.wrapper is not None and path[:1] == (operation.wrapper,) else path
    pointer = "/data/attributes/" + "/".join(str(part) for part in attribute)
    error: dict[str, Any]
    if value is _MISSING:
        # ActiveCampaign's own wording, e.g. "The field title was not provided."
        title = f"The {' '.join(str(part) for part in path)} was not provided."
        error = {"title": title, "detail": f"{name} is required", "code": "field_missing"}
    else:
        detail = f"{name} must be {what}; got {_shown(value)}"
        error = {"title": "Invalid attribute", "detail": detail, "code": "field_invalid"}
    error["source"] = {"pointer": pointer}
    if operation.name in STATUS_IN_ERRORS:
        error = {"status": 422, **error}
    return 422, {"errors": [error]}


def bulk_failures(operation: Operation, payload: dict[str, Any]) -> list[Any]:
    """Bulk import's failureReasons: one per contact at fault ({"contact": index, "failureReason"}), or a string
    for an attribute outside the contacts."""
    contacts = payload.get("contacts")
    failures: list[Any] = []
    if type(contacts) is list:
        for index, contact in enumerate(contacts):
            problem = operation.check({"contacts": [contact]})
            if problem is not None:
                failures.append({"contact": index, "failureReason": _bulk_reason(problem[0][2:], *problem[1:])})
        if failures:
            return failures
    problem = operation.check(payload)
    if problem is not None:
        failures.append(_bulk_reason(*problem))
    return failures


def _bulk_reason(path: tuple[str | int, ...], what: str, value: Any) -> str:
    # The real reasons read "Field' email' incorrect format"; these also say what the field must be.
    if path == ("email",):
        return EMAIL_FORMAT  # what bulk import says of a contact without an email or with a non-string one
    if value is _MISSING:
        return f"Field' {_dotted(path)}' is required"
    if len(path) == 1:
        return f"Field' {path[0]}' incorrect format"  # word for word, as for a contact's own attributes
    return f"Field' {_dotted(path)}' incorrect format: must be {what}; got {_shown(value)}"


# -- the middleware ----------------------------------------------------------------------------------------


class RequestChecks:
    """ASGI middleware: the body cap and the request-schema checks for the /api/3 routes the sandbox serves."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], spec_path: Path = SPEC_PATH) -> None:
        self.app = app
        self.routes = routes
        operations = load_operations(json.loads(spec_path.read_text()))
        self.exact: dict[tuple[str, str], Operation] = {}
        self.templated: list[tuple[str, re.Pattern[str], Operation]] = []
        for operation in operations.values():
            method, path = operation.name.split(" ", 1)
            if "{" in path:
                parts = ("[^/]+" if part.startswith("{") else re.escape(part) for part in path.split("/"))
                pattern = re.compile("^" + re.escape(API_PREFIX) + "/".join(parts) + "$")
                self.templated.append((method, pattern, operation))
            else:
                self.exact[(method, API_PREFIX + path)] = operation

    def operation(self, scope: Scope) -> Operation | None:
        method, path = scope["method"], scope["path"]
        found = self.exact.get((method, path))
        if found is None:
            found = next((op for m, pattern, op in self.templated if m == method and pattern.match(path)), None)
        if found is None or not any(route.matches(scope)[0] is Match.FULL for route in self.routes):
            return None  # no schema, or an operation the sandbox does not serve (its 404 answers)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        operation = self.operation(scope)
        bulk = operation is not None and operation.name == BULK_IMPORT
        declared = _content_length(scope)
        if declared is not None and declared >= MAX_BODY_BYTES:
            await self.too_big(send, declared, bulk)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                await self.too_big(send, size, bulk)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if operation is not None:
            try:
                payload = loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass  # the endpoint's own 400
            else:
                refusal = check_payload(operation, payload)
                if refusal is not None:
                    await send_json(send, *refusal)
                    return
                scope = {**scope, PARSED_BODY: payload}  # parsed once: the endpoint takes it from here
        await self.app(scope, _replay(body, receive), send)

    async def too_big(self, send: Send, size: int, bulk: bool) -> None:
        if bulk:
            await send_json(
                send, 400, {"success": 0, "message": VALIDATION_MESSAGE, "failureReasons": body_too_big(size)}
            )
        else:
            message = f"The request body is {size:,} bytes or more; it must be under {MAX_BODY_BYTES:,}."
            await send_json(send, 413, {"message": message})


def check_payload(operation: Operation, payload: Any) -> tuple[int, dict[str, Any]] | None:
    """The answer refusing a parsed body for `operation`, or None when it passes (or is the endpoint's to
    refuse: a body that is not JSON, not an object, or without its wrapper object)."""
    if type(payload) is not dict:
        return None
    if operation.wrapper is None:
        if operation.check(payload) is None:
            return None
        failures = bulk_failures(operation, payload)
        return 400, {"success": 0, "message": VALIDATION_MESSAGE, "failureReasons": failures}
    if type(payload.get(operation.wrapper)) is not dict:
        return None
    problem = operation.check(payload)
    return None if problem is None else core_error(operation, problem)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the endpoint the body already read, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
