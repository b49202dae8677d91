"""Paging that is fast must still answer what a fresh query would: GET /contacts pages cut from the ids the store
keeps while the data is unchanged, and `meta.total` counts kept the same way (ac_pipeline/sandbox/readcache.py).

No timings here: every test compares a paged read with one unpaged request (every list here has fewer than 100
members, so one request holds it whole), before and after writes between pages."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.store import Store
from ac_pipeline_tests.sandbox.helpers import Api

INCLUDE = "contactLists,fieldValues,contactTags"
SIDELOADS = ("contactLists", "fieldValues", "contactTags")


@pytest.fixture
def account(sandbox_server: SandboxServer) -> Iterator[tuple[Api, list[str]]]:
    """90 contacts (some deleted, so ids have gaps) on three lists with every status, tags and a field value."""
    rng = random.Random(3)
    sandbox_server.admin.reset()
    with Api(sandbox_server) as api:
        lists = [api.make_list(name) for name in ("News", "Offers", "Events")]
        field = api.make_field()
        people = [
            {
                "email": f"p{n}@example.com",
                "first_name": rng.choice(["Ada", "Bob", "Cy"]),
                "tags": rng.sample(["vip", "new"], rng.randrange(0, 3)),
                "fields": [{"id": int(field), "value": str(n)}] if n % 3 else [],
                "subscribe": [{"listid": int(x)} for x in lists if rng.random() < 0.6],
            }
            for n in range(90)
        ]
        assert api.bulk(people).status_code == 200
        sandbox_server.admin.wait_for_imports()
        contacts = api.get("/contacts", params={"limit": 100}).json()["contacts"]
        for contact in rng.sample(contacts, 10):
            api.subscribe(contact["id"], rng.choice(lists), status=2)
        for contact in rng.sample(contacts, 6):
            assert api.delete(f"/contacts/{contact['id']}").status_code == 200
        yield api, lists


def whole(api: Api, **params: Any) -> dict[str, Any]:
    """One request for every match (fewer than 100 here)."""
    response = api.get("/contacts", params={**params, "include": INCLUDE, "limit": 100})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert len(body["contacts"]) == int(body["meta"]["total"]) < 100
    return body


def walk(api: Api, limit: int, descending: bool = False, **params: Any) -> Iterator[dict[str, Any]]:
    """The pages of a read walking the ids, as the pipeline's read-back does (`id_less` when descending)."""
    bound, order = ("id_less", "DESC") if descending else ("id_greater", "ASC")
    last = 10**9 if descending else 0
    while True:
        query = {**params, "include": INCLUDE, "orders[id]": order, bound: last, "limit": limit}
        response = api.get("/contacts", params=query)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        yield page
        if len(page["contacts"]) < limit:
            return
        last = int(page["contacts"][-1]["id"])


def beyond(body: dict[str, Any], last: int, descending: bool = False) -> list[dict[str, Any]]:
    return [c for c in body["contacts"] if (int(c["id"]) < last if descending else int(c["id"]) > last)]


FILTERS: list[dict[str, Any]] = [
    {},
    {"listid": 0},
    {"listid": 0, "status": 1},
    {"listid": 1, "status": 2},
    {"tagid": 1},
]


def filters(lists: list[str]) -> list[dict[str, Any]]:
    """FILTERS with list positions turned into the lists' ids."""
    return [{**f, "listid": lists[f["listid"]]} if "listid" in f else f for f in FILTERS]


@pytest.mark.parametrize("descending", [False, True])
def test_a_read_page_by_page_equals_one_unpaged_read(account: tuple[Api, list[str]], descending: bool) -> None:
    api, lists = account
    for params in filters(lists):
        expected = whole(api, **params, **({"orders[id]": "DESC"} if descending else {}))
        contacts: list[dict[str, Any]] = []
        loaded: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDELOADS}
        last = 10**9 if descending else 0
        for page in walk(api, 7, descending, **params):
            # Each page's total counts what lies beyond its bound, as a fresh count does.
            assert page["meta"]["total"] == str(len(beyond(expected, last, descending))), params
            contacts += page["contacts"]
            for name in SIDELOADS:
                loaded[name] += page[name]
            last = int(page["contacts"][-1]["id"]) if page["contacts"] else last
        assert contacts == expected["contacts"], params
        for name in SIDELOADS:
            assert sorted(loaded[name], key=lambda r: int(r["id"])) == expected[name], (params, name)


def test_offset_pages_in_both_orders_equal_one_unpaged_read(account: tuple[Api, list[str]]) -> None:
    api, lists = account
    for params in filters(lists):
        for order in ({}, {"orders[id]": "desc"}, {"orders[score]": "asc"}, {"orders[email]": "DESC"}):
            expected = whole(api, **params, **order)
            contacts = []
            for offset in range(0, 100, 9):
                page = api.get("/contacts", params={**params, **order, "limit": 9, "offset": offset}).json()
                assert page["meta"]["total"] == expected["meta"]["total"], (params, order)
                contacts += page["contacts"]
            assert [c["id"] for c in contacts] == [c["id"] for c in expected["contacts"]], (params, order)


def members_of(api: Api, listid: str, status: int | None = None) -> list[int]:
    """The list's members in id order, from its memberships (GET /contactLists): not through GET /contacts."""
    params = {"filters[list]": listid, "limit": 100, **({"filters[status]": status} if status else {})}
    response = api.get("/contactLists", params=params)
    assert response.status_code == 200, response.text
    return sorted(int(row["contact"]) for row in response.json()["contactLists"])


def test_meta_total_and_pages_follow_writes_between_pages(account: tuple[Api, list[str]]) -> None:
    """Every kind of write between two pages of a read: the next page answers as a fresh query would."""
    api, lists = account
    news = lists[0]
    members = whole(api, listid=news)["contacts"]
    later = [c["id"] for c in members[20:]]  # not read yet when the writes come
    outsider = api.make_contact("late@example.com")  # a higher id than any: read last
    writes = [
        lambda: api.subscribe(outsider, news),
        lambda: api.subscribe(later[0], news, status=2),
        lambda: api.delete(f"/contacts/{later[1]}"),
        lambda: api.post("/contactTags", json={"contactTag": {"contact": later[2], "tag": "1"}}),
        lambda: api.put(f"/contacts/{later[3]}", json={"contact": {"firstName": "Renamed"}}),
        lambda: api.subscribe(members[0]["id"], news, status=2),  # one already read
        lambda: api.post("/contacts", json={"contact": {"email": "later@example.com"}}),  # on no list: still a write
    ]
    for params in ({"listid": news}, {"listid": news, "status": 1}):
        last = 0
        for pages, page in enumerate(walk(api, 5, **params)):
            expected = [i for i in members_of(api, **params) if i > last]
            assert page["meta"]["total"] == str(len(expected)), (params, pages)
            assert [int(c["id"]) for c in page["contacts"]] == expected[:5], (params, pages)
            truth = whole(api, **params)  # the same ids, so compare what the records say
            assert page["contacts"] == beyond(truth, last)[:5], (params, pages)
            for name in SIDELOADS:
                ids = {c["id"] for c in page["contacts"]}
                assert page[name] == [r for r in truth[name] if r["contact"] in ids], (params, name)
            if pages < len(writes):
                response = writes[pages]()
                assert response.status_code in (200, 201), response.text
            last = int(page["contacts"][-1]["id"]) if page["contacts"] else last
        writes = writes[:1]  # the second read: a subscribe of one already there (a write that changes nothing)


def test_counts_are_not_kept_across_a_reset_a_rollback_or_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(str(path))
    everyone = "SELECT * FROM contacts ORDER BY id"
    for n in range(3):
        store.create_contact(f"p{n}@example.com", {})
    assert store.page(everyone, [], 2, 0)[1] == 3
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("DELETE FROM contacts")
        raise RuntimeError("rolled back")
    assert store.page(everyone, [], 2, 0)[1] == 3
    other = sqlite3.connect(path)
    other.execute("INSERT INTO contacts (email, cdate, udate) VALUES ('x@example.com', '', '')")
    other.commit()
    other.close()
    assert store.page(everyone, [], 2, 0)[1] == 4
    store.reset()
    assert store.page(everyone, [], 2, 0) == ([], 0)
    store.close()
