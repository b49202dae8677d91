"""Injected faults: each kind, pattern matching, ordering after auth and rate limit, and seeded reproducibility."""

from __future__ import annotations

import time

import httpx
import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.faults import FaultPlan, FaultSpecError, parse_spec
from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox

NEW_CONTACT = {"contact": {"email": "f@example.com"}}


@pytest.mark.parametrize("kind", ["500", "503", "429"])
def test_error_faults_answer_and_change_nothing(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = make_sandbox(faults=f"/api/3/contacts:{kind}=1")
    with httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": sb.api_key}) as client:
        response = client.post("/contacts", json=NEW_CONTACT)
        assert response.status_code == int(kind)
        assert isinstance(response.json()["message"], str)
        assert response.headers["RateLimit-Limit"] == "5"
        if kind == "429":
            assert float(response.headers["Retry-After"]) > 0
    sb.admin.set_faults(None)
    with Api(sb) as api:
        assert api.get("/contacts").json()["meta"]["total"] == "0"


def test_drop_closes_the_connection_without_an_answer_and_changes_nothing(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults="/api/3/contacts:drop=1")
    with httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": sb.api_key}) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/contacts", json=NEW_CONTACT)
        # The same client goes on working on a new connection; other paths are untouched.
        assert client.get("/lists").status_code == 200
    assert sb.admin.requests()["by_path_status"]["POST /api/3/contacts"] == {"dropped": 1}
    sb.admin.set_faults(None)
    with Api(sb) as api:
        assert api.get("/contacts").json()["meta"]["total"] == "0"


def test_slow_answers_late_and_does_apply(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=10.0, faults="/api/3/contacts:slow=1@2.0")  # 0.2 s at speed 10
    with Api(sb) as api:
        started = time.monotonic()
        response = api.post("/contacts", json=NEW_CONTACT)
        assert time.monotonic() - started >= 0.2
        assert response.status_code == 201
        assert api.get("/lists").status_code == 200
    sb.admin.set_faults(None)
    with Api(sb) as api:
        assert api.get("/contacts").json()["meta"]["total"] == "1"


def test_patterns_select_paths(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults="/api/3/import/*:503=1")
    with Api(sb) as api:
        assert api.get("/import/bulk_import").status_code == 503
        assert api.get("/import/info", params={"batchId": "x"}).status_code == 503
        assert api.get("/lists").status_code == 200


def test_faults_come_after_auth_and_rate_limit(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=2.0, faults="/api/3/*:500=1")
    assert httpx.get(f"{sb.url}/api/3/lists", headers={"Api-Token": "wrong"}).status_code == 403
    with httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": sb.api_key}) as client:
        assert [client.get("/lists").status_code for _ in range(7)] == [500] * 5 + [429] * 2


def statuses(sb: SandboxServer, count: int = 40) -> list[int]:
    with Api(sb) as api:
        return [api.get("/lists").status_code for _ in range(count)]


def test_same_seed_and_requests_give_the_same_faults(make_sandbox: MakeSandbox) -> None:
    spec = "/api/3/*:500=0.3,503=0.2"
    first = statuses(make_sandbox(faults=spec, seed=42))
    assert {200, 500, 503} <= set(first)
    again = make_sandbox(faults=spec, seed=42)
    assert statuses(again) == first
    again.admin.reset()  # restarts the generator
    assert statuses(again) == first
    assert statuses(make_sandbox(faults=spec, seed=43)) != first


def test_plan_draws_one_number_per_matching_rule_in_order() -> None:
    plan = FaultPlan(parse_spec("/api/3/lists:500=1;/api/3/*:503=1"), seed=0)
    assert plan.decide("/api/3/lists").kind == "500"  # type: ignore[union-attr]
    assert plan.decide("/api/3/tags").kind == "503"  # type: ignore[union-attr]
    assert plan.decide("/_sandbox/health") is None
    slow = FaultPlan(parse_spec("/api/3/*:slow=1"), seed=0).decide("/api/3/x")
    assert slow is not None and (slow.kind, slow.seconds) == ("slow", 1.0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("/api/3/*", "needs PATTERN:KIND=P"),
        ("/api/3/*:404=0.1", "Unknown fault kind"),
        ("/api/3/*:500=2", "between 0 and 1"),
        ("/api/3/*:500=0.7,drop=0.7", "add up to more than 1"),
        ("api/3/*:500=0.1", "must be a path glob"),
        ("/api/3/*:500=lots", "is not a number"),
        ("/api/3/*:500", "needs KIND=P"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_spec(spec)


def test_a_bad_spec_stops_the_server_from_starting() -> None:
    with pytest.raises(FaultSpecError):
        SandboxServer(faults="/api/3/*:teapot=1").start()
