"""State in a file survives a restart, including bulk imports still waiting; without a file it does not."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox


def test_state_survives_a_restart(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    state = tmp_path / "account.sqlite"
    first = make_sandbox(state_path=state)
    with Api(first) as api:
        list_id = api.make_list()
        ada = api.make_contact("ada@example.com", firstName="Ada")
        api.subscribe(ada, list_id)
        api.post("/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": 1}})
        api.make_contact("bob@example.com")
        first.admin.unsubscribe("bob@example.com", list_id)
        first.admin.exclude(["no@example.com"])
    first.stop()

    second = make_sandbox(state_path=state)
    with Api(second) as api:
        assert api.get(f"/contacts/{ada}").json()["contact"]["firstName"] == "Ada"
        assert second.admin.members(list_id) == ["ada@example.com"]
        assert second.admin.membership("bob@example.com", list_id)["unsubscribed_by"] == "contact"
        assert second.admin.list_info(list_id)["visible"] is True
        assert second.admin.exclusions() == ["no@example.com"]
        assert int(api.make_contact("cy@example.com")) > int(ada)  # ids are never reused


def test_a_waiting_import_is_applied_after_a_restart(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    state = tmp_path / "account.sqlite"
    first = make_sandbox(state_path=state, import_delay=50.0)  # due 0.5 s after it is accepted
    with Api(first) as api:
        list_id = api.make_list()
        batch = api.bulk([{"email": f"w{i}@example.com", "subscribe": [{"listid": list_id}]} for i in range(20)])
    first.stop()
    time.sleep(0.5)

    second = make_sandbox(state_path=state)
    second.admin.wait_for_imports(timeout=10)
    assert len(second.admin.members(list_id)) == 20
    with Api(second) as api:
        assert api.get("/import/info", params={"batchId": batch.json()["batchId"]}).json()["status"] == "completed"


def test_without_a_state_file_a_restart_starts_empty(make_sandbox: MakeSandbox) -> None:
    first = make_sandbox()
    with Api(first) as api:
        api.make_list()
    first.stop()
    with Api(make_sandbox()) as api:
        assert api.get("/lists").json()["meta"]["total"] == "0"


def test_a_state_file_from_before_the_unsubscribe_fields_opens_with_them(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    state = tmp_path / "old.sqlite"
    with sqlite3.connect(state) as old:  # the memberships table as the first release wrote it
        old.executescript(
            "CREATE TABLE memberships (id INTEGER PRIMARY KEY AUTOINCREMENT, contact_id INTEGER NOT NULL,"
            " list_id INTEGER NOT NULL, status INTEGER NOT NULL, unsubscribed_by TEXT, sdate TEXT NOT NULL,"
            " udate TEXT NOT NULL, UNIQUE (contact_id, list_id));"
            "INSERT INTO memberships (contact_id, list_id, status, unsubscribed_by, sdate, udate)"
            " VALUES (1, 1, 2, 'api', '2024-01-02T03:04:05+00:00', '2024-01-02T03:04:05+00:00');"
        )
    old.close()
    sb = make_sandbox(state_path=state)
    with Api(sb) as api:
        list_id = api.make_list()
        contact_id = api.make_contact("old@example.com")
        [record] = api.get(f"/contacts/{contact_id}/contactLists").json()["contactLists"]
        assert (record["list"], record["status"], record["unsubreason"], record["ip4Unsub"]) == (list_id, "2", "", "0")
        assert (record["campaign"], record["unsubscribeAutomation"], record["sourceid"]) == (None, None, "0")
