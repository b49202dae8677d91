"""How each kind of unsubscribe fills the contactLists record, as a real account does (docs/sandbox.md,
"Unsubscribe provenance"), that it survives a restart, and that re-subscribing clears it."""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import Any

import httpx

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")  # 2018-09-28T13:50:41-05:00
PROVENANCE = ("unsubreason", "campaign", "message", "ip4Unsub", "unsubscribeAutomation")
IP = "203.0.113.7"


def record(api: Api, contact_id: str, list_id: str) -> dict[str, Any]:
    """The contact's contactLists record for the list, as the API shows it (without the links, which name the
    port)."""
    rows = api.get(f"/contacts/{contact_id}/contactLists").json()["contactLists"]
    [row] = [row for row in rows if row["list"] == list_id]
    return {name: value for name, value in row.items() if name != "links"}


def provenance(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in PROVENANCE)


def unsubscribe_every_way(sb: SandboxServer, api: Api) -> tuple[str, dict[str, str]]:
    """One list, four members unsubscribed four ways; the list id and each kind's contact id."""
    list_id = api.make_list()
    ids = {kind: api.make_contact(f"{kind}@example.com") for kind in ("link", "api", "import", "automation")}
    for contact_id in ids.values():
        api.subscribe(contact_id, list_id)
    sb.admin.unsubscribe("link@example.com", list_id, campaign=12, message=34, reason="Too many emails", ip=IP)
    api.subscribe(ids["api"], list_id, status=2)
    api.wait_completed(
        api.bulk([{"email": "import@example.com", "unsubscribe": [{"listid": list_id}]}] * 2).json()["batchId"]
    )
    sb.admin.unsubscribe_by_automation("automation@example.com", list_id, automation=56)
    return list_id, ids


EXPECTED = {
    "link": ("Too many emails", "12", "34", str(int(ipaddress.IPv4Address(IP))), None),
    "api": ("", None, None, "0", None),
    "import": ("", None, None, "0", None),
    "automation": ("", None, None, "0", "56"),
}


def test_each_kind_of_unsubscribe_fills_the_record_and_survives_a_restart(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    state = tmp_path / "account.sqlite"
    first = make_sandbox(state_path=state)
    with Api(first) as api:
        list_id, ids = unsubscribe_every_way(first, api)
        before = {kind: record(api, contact_id, list_id) for kind, contact_id in ids.items()}
    for kind, row in before.items():
        assert row["status"] == "2" and DATE.match(row["udate"]), row
        assert provenance(row) == EXPECTED[kind], kind
        assert first.admin.membership(f"{kind}@example.com", list_id)["unsubscribed_by"] == (
            "contact" if kind == "link" else kind
        )
    first.stop()

    second = make_sandbox(state_path=state)
    with Api(second) as api:
        after = {kind: record(api, contact_id, list_id) for kind, contact_id in ids.items()}
    assert after == before
    shown = second.admin.membership("link@example.com", list_id)
    assert {name: shown[name] for name in PROVENANCE} == dict(zip(PROVENANCE, EXPECTED["link"], strict=True))


def test_resubscribing_clears_the_unsubscribe_fields(sandbox: SandboxServer, api: Api) -> None:
    list_id, ids = unsubscribe_every_way(sandbox, api)
    time.sleep(1.05)  # dates have second precision: let udate move on
    for kind, contact_id in ids.items():
        unsubscribed = record(api, contact_id, list_id)
        answer = api.post(
            "/contactLists", json={"contactList": {"list": list_id, "contact": contact_id, "status": 1, "sourceid": 4}}
        ).json()["contactList"]
        assert answer["status"] == 1 and answer["sourceid"] == "4", kind
        assert provenance(answer) == ("", None, None, "0", None), kind
        assert answer["udate"] > unsubscribed["udate"] and answer["sdate"] == unsubscribed["sdate"], kind
        assert sandbox.admin.membership(f"{kind}@example.com", list_id)["unsubscribed_by"] is None


def test_an_integration_repeating_an_unsubscribe_keeps_the_first_one(sandbox: SandboxServer, api: Api) -> None:
    list_id, ids = unsubscribe_every_way(sandbox, api)
    before = {kind: record(api, contact_id, list_id) for kind, contact_id in ids.items()}
    for contact_id in ids.values():
        api.subscribe(contact_id, list_id, status=2)
    rows = [{"email": f"{kind}@example.com", "unsubscribe": [{"listid": list_id}]} for kind in ids]
    api.wait_completed(api.bulk(rows).json()["batchId"])
    assert {kind: record(api, contact_id, list_id) for kind, contact_id in ids.items()} == before


def test_the_admin_campaign_link_defaults_and_checks(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    contact_id = api.make_contact("ann@example.com")
    api.subscribe(contact_id, list_id)
    shown = sandbox.admin.unsubscribe("ann@example.com", list_id)  # campaign 1, message 1, no reason, caller's ip
    assert (shown["campaign"], shown["message"], shown["unsubreason"]) == ("1", "1", None)
    assert shown["ip4Unsub"] == str(int(ipaddress.IPv4Address("127.0.0.1")))
    assert record(api, contact_id, list_id)["ip4Unsub"] == shown["ip4Unsub"]
    response = httpx_post(sandbox, "/unsubscribe", {"email": "ann@example.com", "list": list_id, "ip": "::1"})
    assert response.status_code == 400 and "IPv4" in response.text
    response = httpx_post(sandbox, "/automation_unsubscribe", {"email": "ann@example.com", "list": list_id})
    assert response.status_code == 400 and "automation" in response.text


def httpx_post(sandbox: SandboxServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{sandbox.url}/_sandbox{path}", json=body, timeout=10)
