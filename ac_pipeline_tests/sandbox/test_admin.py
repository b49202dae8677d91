"""The admin surface: members, visibility, request log, exclusions, reset, faults; and what it stays out of."""

from __future__ import annotations

import httpx
import pytest

from ac_pipeline.sandbox import SandboxAdminError, SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox


def test_members_by_status_without_paging(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    batch = api.bulk([{"email": f"M{i}@Example.com", "subscribe": [{"listid": list_id}]} for i in range(130)])
    api.wait_completed(batch.json()["batchId"])
    members = sandbox.admin.members("newsletter")
    assert members == [f"m{i}@example.com" for i in range(130)]
    sandbox.admin.unsubscribe("m5@example.com", list_id)
    assert sandbox.admin.members(list_id, status=2) == ["m5@example.com"]
    raw = httpx.get(f"{sandbox.url}/_sandbox/lists/{list_id}/members").json()
    assert raw["list"] == {"id": list_id, "name": "Newsletter", "visible": False, "groups": []}
    assert raw["total"] == 129 and raw["status"] == 1


def test_request_log_counts_api_requests_by_template_and_status(sandbox: SandboxServer, api: Api) -> None:
    contact_id = api.make_contact("log@example.com")
    api.get(f"/contacts/{contact_id}")
    api.get("/contacts/999")
    httpx.get(f"{sandbox.url}/api/3/lists", headers={"Api-Token": "wrong"})
    sandbox.admin.exclusions()  # admin calls are not counted
    log = sandbox.admin.requests()
    assert log["by_path_status"] == {
        "POST /api/3/contacts": {"201": 1},
        "GET /api/3/contacts/{id}": {"200": 1, "404": 1},
        "GET /api/3/lists": {"403": 1},
    }
    assert log["total"] == 4
    assert log["by_status"] == {"201": 1, "200": 1, "404": 1, "403": 1}
    assert log["by_path"]["GET /api/3/contacts/{id}"] == 2


def test_admin_needs_no_key_and_is_not_rate_limited(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=1.0)
    statuses = [httpx.get(f"{sb.url}/_sandbox/health").status_code for _ in range(12)]
    assert statuses == [200] * 12
    assert "ratelimit-limit" not in httpx.get(f"{sb.url}/_sandbox/health").headers
    assert httpx.get(f"{sb.url}/_sandbox/nothing").status_code == 404


def test_exclusions_are_lower_case_and_deduplicated(sandbox: SandboxServer) -> None:
    assert sandbox.admin.exclude(["B@example.com", "a@example.com"]) == ["a@example.com", "b@example.com"]
    assert sandbox.admin.exclude(["b@EXAMPLE.com"]) == ["a@example.com", "b@example.com"]


def test_reset_empties_the_account_and_keeps_the_configuration(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults="/api/3/tags:503=1")
    with Api(sb) as api:
        api.make_list()
        api.make_contact("r@example.com")
        sb.admin.exclude(["x@example.com"])
        sb.admin.reset()
        assert api.get("/contacts").json()["meta"]["total"] == "0"
        assert api.get("/lists").json()["meta"]["total"] == "0"
        assert [g["title"] for g in api.get("/groups").json()["groups"]] == ["Admin"]
        assert sb.admin.exclusions() == []
        assert sb.admin.requests()["total"] == 3  # only the three calls since the reset
        assert api.make_list() == "1"  # ids start again
        assert api.get("/tags").status_code == 503  # faults kept
        assert sb.admin.config()["speed"] == 100.0


def test_config_never_shows_the_key(sandbox: SandboxServer) -> None:
    config = sandbox.admin.config()
    assert sandbox.api_key not in str(config)
    assert config["limits"]["requests"] == {"limit": 5, "window_seconds": 0.01}


def test_faults_can_be_read_and_replaced(sandbox: SandboxServer) -> None:
    spec = "/api/3/*:500=0.1,503=0.05,drop=0.05,slow=0.1@2;/api/3/import/*:429=0.2"
    shown = sandbox.admin.set_faults(spec, seed=7)
    assert shown["seed"] == 7 and shown["spec"] == spec
    assert shown["rules"][0] == {
        "pattern": "/api/3/*",
        "500": 0.1,
        "503": 0.05,
        "drop": 0.05,
        "slow": 0.1,
        "slow_seconds": 2.0,
    }
    as_json = sandbox.admin.set_faults({"rules": [{"pattern": "/api/3/lists", "503": 0.5}]})
    assert as_json["spec"] == "/api/3/lists:503=0.5"
    assert sandbox.admin.set_faults(None)["rules"] == []
    with pytest.raises(SandboxAdminError, match="add up to more than 1"):
        sandbox.admin.set_faults("/api/3/*:500=0.8,503=0.8")
