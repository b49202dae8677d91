"""Requests from many threads at once: nothing lost, nothing doubled."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox

THREADS = 8


def test_concurrent_creates_syncs_and_imports(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=200.0)
    with Api(sb) as api:
        list_id = api.make_list()

    def worker(n: int) -> list[str]:
        with Api(sb) as api:
            ids = [api.make_contact(f"t{n}-{i}@example.com") for i in range(15)]
            # Everyone syncs the same address: one contact in the end.
            assert api.post("/contact/sync", json={"contact": {"email": "same@example.com"}}).status_code in (200, 201)
            batch = [{"email": f"b{n}-{i}@example.com", "subscribe": [{"listid": list_id}]} for i in range(50)]
            assert api.bulk(batch).status_code == 200
            api.get("/contacts", params={"listid": list_id, "status": 1})
            return ids

    with ThreadPoolExecutor(THREADS) as pool:
        created = [contact_id for ids in pool.map(worker, range(THREADS)) for contact_id in ids]
    assert len(set(created)) == THREADS * 15
    sb.admin.wait_for_imports()
    assert len(sb.admin.members(list_id)) == THREADS * 50
    with Api(sb) as api:
        assert api.get("/contacts", params={"email": "same@example.com"}).json()["meta"]["total"] == "1"
        assert api.get("/contacts").json()["meta"]["total"] == str(THREADS * (15 + 50) + 1)
