"""Every documented filter and order, on a seeded account: each answer equals a Python computation over the same
data. Contacts come from two bulk imports a second apart (so creation dates differ), then some are updated a
second later (so update dates differ); memberships, tags and names are drawn from a seeded generator."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api

SEED = 8
FIRST = ["Ada", "Bob", "Cy", "Dee", "Eve", "Finn", "Gus"]
LAST = ["Lovelace", "Byron", "Twombly", "Smith", "Adams"]


@dataclass
class Seeded:
    api: Api
    lists: list[str]
    tags: dict[str, str]  # name -> id
    contacts: list[dict[str, Any]] = field(default_factory=list)  # as GET /contacts answers them, id order
    memberships: dict[tuple[str, str], int] = field(default_factory=dict)  # (contact id, list id) -> status
    tagged: set[tuple[str, str]] = field(default_factory=set)  # (contact id, tag id)

    def ids(self, rows: list[dict[str, Any]]) -> list[str]:
        return [row["id"] for row in rows]

    def all_pages(self, path: str, plural: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            response = self.api.get(path, params={**params, "limit": 100, "offset": len(rows)})
            assert response.status_code == 200, response.text
            page = response.json()[plural]
            rows += page
            if len(page) < 100:
                return rows

    def contact_ids(self, **params: Any) -> list[str]:
        return self.ids(self.all_pages("/contacts", "contacts", params))


def people(rng: random.Random, start: int, count: int, lists: list[str]) -> list[dict[str, Any]]:
    batch = []
    for n in range(start, start + count):
        person: dict[str, Any] = {
            "email": f"p{n:02d}.{rng.choice(['x', 'y'])}@{rng.choice(['a.com', 'b.org'])}",
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "phone": rng.choice(["+1555", "+4420", "+3361"]) + str(rng.randrange(1000, 9999)),
            "tags": rng.sample(["vip", "new", "churned"], rng.randrange(0, 3)),
            "subscribe": [{"listid": int(x)} for x in lists if rng.random() < 0.6],
        }
        person["unsubscribe"] = [
            {"listid": int(x)} for x in lists if rng.random() < 0.2 and {"listid": int(x)} not in person["subscribe"]
        ]
        batch.append(person)
    return batch


@pytest.fixture(scope="module")
def seeded(sandbox_server: SandboxServer) -> Iterator[Seeded]:
    rng = random.Random(SEED)
    sandbox_server.admin.reset()
    with Api(sandbox_server) as api:
        lists = [api.make_list(name) for name in ("News", "Offers", "Events")]
        first, second = people(rng, 0, 20, lists), people(rng, 20, 20, lists)
        api.bulk(first)
        sandbox_server.admin.wait_for_imports()
        time.sleep(1.1)  # the second batch is created a second later
        api.bulk(second)
        sandbox_server.admin.wait_for_imports()
        time.sleep(1.1)
        for person in rng.sample(first + second, 8):  # updated later still
            api.post("/contact/sync", json={"contact": {"email": person["email"], "lastName": "Updated"}})
        seeded = Seeded(api, lists, {})
        seeded.contacts = seeded.all_pages("/contacts", "contacts", {})
        by_email = {c["email"]: c["id"] for c in seeded.contacts}
        seeded.tags = {t["tag"]: t["id"] for t in seeded.all_pages("/tags", "tags", {})}
        for person in first + second:
            contact_id = by_email[person["email"]]
            for item in person["subscribe"]:
                seeded.memberships[(contact_id, str(item["listid"]))] = 1
            for item in person["unsubscribe"]:
                seeded.memberships[(contact_id, str(item["listid"]))] = 2
            seeded.tagged |= {(contact_id, seeded.tags[name]) for name in person["tags"]}
        yield seeded


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_seed_is_what_was_sent(seeded: Seeded) -> None:
    assert len(seeded.contacts) == 40
    memberships = seeded.all_pages("/contactLists", "contactLists", {})
    assert {(m["contact"], m["list"]): int(m["status"]) for m in memberships} == seeded.memberships
    tags = seeded.all_pages("/contactTags", "contactTags", {})
    assert {(t["contact"], t["tag"]) for t in tags} == seeded.tagged
    assert len({c["cdate"] for c in seeded.contacts}) >= 2 and len({c["udate"] for c in seeded.contacts}) >= 3


def test_contact_filters_equal_python_over_the_same_data(seeded: Seeded) -> None:
    contacts = seeded.contacts
    ids = [c["id"] for c in contacts]
    news, offers = seeded.lists[0], seeded.lists[1]
    vip = seeded.tags["vip"]
    some = ids[3]
    sample = contacts[7]
    cdates = sorted({when(c["cdate"]) for c in contacts})
    udates = sorted({when(c["udate"]) for c in contacts})
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"email": sample["email"].upper()}, [sample["id"]]),
        ({"filters[email]": sample["email"]}, [sample["id"]]),
        ({"email_like": ".y@"}, [c["id"] for c in contacts if ".y@" in c["email"]]),
        ({"listid": news}, [i for i in ids if (i, news) in seeded.memberships]),
        ({"listid": news, "status": 1}, [i for i in ids if seeded.memberships.get((i, news)) == 1]),
        ({"listid": offers, "status": 2}, [i for i in ids if seeded.memberships.get((i, offers)) == 2]),
        ({"status": 2}, [i for i in ids if any(seeded.memberships.get((i, x)) == 2 for x in seeded.lists)]),
        ({"status": -1}, ids),
        ({"tagid": vip}, [i for i in ids if (i, vip) in seeded.tagged]),
        ({"ids": f"{ids[1]},{ids[5]},{ids[9]}"}, [ids[1], ids[5], ids[9]]),
        ({"ids[]": [ids[2], ids[4]]}, [ids[2], ids[4]]),
        ({"id_greater": some}, [i for i in ids if int(i) > int(some)]),
        ({"id_less": some}, [i for i in ids if int(i) < int(some)]),
        ({"exclude": some}, [i for i in ids if i != some]),
        ({"phone": "+4420"}, [c["id"] for c in contacts if c["phone"].startswith("+4420")]),
        (
            {"search": "ada lovelace"},
            [c["id"] for c in contacts if "ada lovelace" in f"{c['firstName']} {c['lastName']}".lower()],
        ),
        ({"search": "B.ORG"}, [c["id"] for c in contacts if "b.org" in c["email"]]),
        (
            {"filters[created_after]": cdates[0].isoformat()},
            [c["id"] for c in contacts if when(c["cdate"]) > cdates[0]],
        ),
        (
            {"filters[created_before]": cdates[-1].isoformat()},
            [c["id"] for c in contacts if when(c["cdate"]) < cdates[-1]],
        ),
        (
            {"filters[updated_after]": udates[-2].isoformat()},
            [c["id"] for c in contacts if when(c["udate"]) > udates[-2]],
        ),
        (
            {"filters[updated_before]": udates[1].isoformat()},
            [c["id"] for c in contacts if when(c["udate"]) < udates[1]],
        ),
        ({"filters[created_after]": "2000-01-01", "filters[created_before]": "2999-01-01"}, ids),
        ({"formid": 0, "segmentid": 0, "seriesid": 0, "waitid": 0, "organization": 0}, ids),
        ({"formid": 3}, []),
        ({"seriesid": 1}, []),
        ({"in_group_lists": "true", "forceQuery": 1}, ids),
        (
            {"listid": news, "status": 1, "tagid": vip, "id_greater": ids[5]},
            [
                i
                for i in ids
                if seeded.memberships.get((i, news)) == 1 and (i, vip) in seeded.tagged and int(i) > int(ids[5])
            ],
        ),
    ]
    problems = []
    for params, expected in cases:
        got = seeded.contact_ids(**params)
        if got != expected:
            problems.append(f"{params}: got {got}, expected {expected}")
    assert problems == []
    assert any(expected for _, expected in cases[2:9]) and 0 < len(cases[17][1]) < 40


def test_contact_orders_equal_python_sorts(seeded: Seeded) -> None:
    contacts = seeded.contacts

    def by(key: Any, reverse: bool = False) -> list[str]:
        # A stable sort over id order: ties keep ascending ids, as the sandbox's tiebreak does.
        return (
            [c["id"] for c in sorted(contacts, key=key, reverse=False)]
            if not reverse
            else [c["id"] for c in sorted(sorted(contacts, key=lambda c: int(c["id"])), key=key, reverse=True)]
        )

    def name(c: dict[str, Any]) -> str:
        return f"{c['firstName']} {c['lastName']}".lower()

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"orders[id]": "DESC"}, by(lambda c: int(c["id"]), reverse=True)),
        ({"orders[id]": "asc"}, by(lambda c: int(c["id"]))),
        ({"orders[email]": "ASC"}, by(lambda c: c["email"])),
        ({"orders[email]": "desc"}, by(lambda c: c["email"], reverse=True)),
        ({"orders[cdate]": "desc"}, by(lambda c: when(c["cdate"]), reverse=True)),
        ({"orders[first_name]": "asc"}, by(lambda c: c["firstName"].lower())),
        ({"orders[last_name]": "desc"}, by(lambda c: c["lastName"].lower(), reverse=True)),
        ({"orders[name]": "asc"}, by(name)),
        ({"orders[score]": "desc", "sortId": 1}, by(lambda c: int(c["id"]))),
        (
            {"orders[last_name]": "asc", "orders[first_name]": "desc"},
            [
                c["id"]
                for c in sorted(
                    sorted(
                        sorted(contacts, key=lambda c: int(c["id"])), key=lambda c: c["firstName"].lower(), reverse=True
                    ),
                    key=lambda c: c["lastName"].lower(),
                )
            ],
        ),
    ]
    problems = [f"{p}: {seeded.contact_ids(**p)} != {e}" for p, e in cases if seeded.contact_ids(**p) != e]
    assert problems == []


def test_the_pipelines_paging_query_still_pages(seeded: Seeded) -> None:
    news = seeded.lists[0]
    expected = [i for i in (c["id"] for c in seeded.contacts) if seeded.memberships.get((i, news)) == 1]
    got: list[str] = []
    last = 0
    while True:
        params = {
            "listid": news,
            "status": 1,
            "orders[id]": "ASC",
            "limit": 5,
            "id_greater": last,
            "include": "contactLists",
        }
        page = seeded.api.get("/contacts", params=params).json()
        got += [c["id"] for c in page["contacts"]]
        if len(page["contacts"]) < 5:
            break
        last = int(page["contacts"][-1]["id"])
    assert got == expected


def test_sideloads_give_each_contact_its_ids(seeded: Seeded) -> None:
    body = seeded.api.get("/contacts", params={"include": "contactLists,contactTags,fieldValues", "limit": 10}).json()
    for contact in body["contacts"]:
        lists = {m["id"] for m in body["contactLists"] if m["contact"] == contact["id"]}
        tags = {(contact["id"], t["tag"]) for t in body["contactTags"] if t["contact"] == contact["id"]}
        assert set(contact["contactLists"]) == lists
        assert tags == {pair for pair in seeded.tagged if pair[0] == contact["id"]}
        assert contact["fieldValues"] == []
    bad = seeded.api.get("/contacts", params={"include": "deals"})
    assert bad.status_code == 400 and "deals" in bad.json()["message"]


def test_collection_filters_and_orders(seeded: Seeded) -> None:
    api = seeded.api
    lists = {name: api.make_list(name) for name in ("Newsletter", "news", "Old news", "Renewals")}
    every = seeded.all_pages("/lists", "lists", {})
    named = {row["id"]: row["name"] for row in every}

    def list_ids(**params: Any) -> list[str]:
        return seeded.ids(seeded.all_pages("/lists", "lists", params))

    assert list_ids(**{"filters[name]": "NEWS"}) == [i for i, n in named.items() if "news" in n.lower()]
    assert list_ids(**{"filters[name][eq]": "news"}) == [i for i, n in named.items() if n.lower() == "news"]
    assert list_ids(**{"filters[name][starts_with]": "new"}) == [
        i for i, n in named.items() if n.lower().startswith("new")
    ]
    assert list_ids(**{"filters[name][neq]": "news"}) == [i for i, n in named.items() if n.lower() != "news"]
    assert list_ids(**{"filters[name][gte]": "o"}) == [i for i, n in named.items() if n.lower() >= "o"]
    assert list_ids(**{"orders[name]": "desc"}) == [
        i
        for i, _ in sorted(sorted(named.items(), key=lambda kv: int(kv[0])), key=lambda kv: kv[1].lower(), reverse=True)
    ]
    weighted = list_ids(**{"filters[name]": "news", "orders[name]": "weight"})
    rank = {
        i: 0 if n.lower() == "news" else 1 if n.lower().startswith("news") else 2
        for i, n in named.items()
        if "news" in n.lower()
    }
    assert weighted == sorted(rank, key=lambda i: (rank[i], int(i)))
    assert weighted[0] in (seeded.lists[0], lists["news"])

    tags = {row["id"]: row["tag"] for row in seeded.all_pages("/tags", "tags", {})}

    def tag_ids(**params: Any) -> list[str]:
        return seeded.ids(seeded.all_pages("/tags", "tags", params))

    assert tag_ids(search="N") == [i for i, t in tags.items() if "n" in t.lower()]
    assert tag_ids(**{"filters[search][eq]": "VIP"}) == [i for i, t in tags.items() if t == "vip"]
    assert tag_ids(**{"orders[search]": "asc"}) == [i for i, _ in sorted(tags.items(), key=lambda kv: kv[1])]
    vip = seeded.tags["vip"]
    assert seeded.ids(seeded.all_pages("/contactTags", "contactTags", {"filters[tag]": vip})) == [
        t["id"] for t in seeded.all_pages("/contactTags", "contactTags", {}) if t["tag"] == vip
    ]
    first = seeded.contacts[0]["id"]
    memberships = seeded.all_pages("/contactLists", "contactLists", {"filters[contact]": first})
    assert {(m["contact"], m["list"]) for m in memberships} == {k for k in seeded.memberships if k[0] == first}
    news_out = seeded.all_pages(
        "/contactLists", "contactLists", {"filters[list]": seeded.lists[0], "filters[status]": 2}
    )
    assert {m["contact"] for m in news_out} == {
        c for (c, x), s in seeded.memberships.items() if x == seeded.lists[0] and s == 2
    }


def test_field_filters(seeded: Seeded) -> None:
    api = seeded.api
    plan = api.post("/fields", json={"field": {"title": "Plan", "type": "text", "perstag": "PLAN"}}).json()["field"][
        "id"
    ]
    tier = api.post("/fields", json={"field": {"title": "Tier", "type": "text"}}).json()["field"]["id"]
    got = api.get("/fields", params={"filters[perstag]": "plan"}).json()
    assert [f["id"] for f in got["fields"]] == [plan] and got["meta"]["total"] == "1"
    values = {}
    for n, contact in enumerate(seeded.contacts[:6]):
        field_id = plan if n % 2 else tier
        body = {
            "fieldValue": {"contact": int(contact["id"]), "field": int(field_id), "value": "gold" if n < 3 else "tin"}
        }
        values[api.post("/fieldValues", json=body).json()["fieldValue"]["id"]] = (field_id, body["fieldValue"]["value"])
    by_field = api.get("/fieldValues", params={"filters[fieldid]": plan, "limit": 100}).json()["fieldValues"]
    assert [v["id"] for v in by_field] == [i for i, (f, _) in values.items() if f == plan]
    gold = api.get("/fieldValues", params={"filters[val]": "gold", "filters[fieldid]": tier}).json()["fieldValues"]
    assert [v["id"] for v in gold] == [i for i, (f, v) in values.items() if f == tier and v == "gold"]
