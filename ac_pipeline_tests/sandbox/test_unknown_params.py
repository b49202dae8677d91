"""A query parameter an endpoint does not document gets a 400 that names it and lists what is accepted: a test
double never silently widens a query. Every parameter the pipeline's own client sends is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from ac_pipeline_tests.sandbox.helpers import Api

COLLECTIONS = [
    "/contacts",
    "/lists",
    "/tags",
    "/fields",
    "/fieldValues",
    "/groups",
    "/listGroups",
    "/contactLists",
    "/contactTags",
    "/import/bulk_import",
]


@pytest.mark.parametrize("path", COLLECTIONS)
def test_an_unknown_parameter_is_named_and_nothing_is_listed(api: Api, path: str) -> None:
    paged = path != "/import/bulk_import"  # the import summary takes no parameter at all
    response = api.get(path, params={"filters[nope]": "x", **({"limit": 5} if paged else {})})
    assert response.status_code == 400
    body = response.json()
    assert body["unknown"] == ["filters[nope]"] and "'filters[nope]'" in body["message"]
    assert ("limit" in body["accepted"]) is paged
    assert all(name in body["message"] for name in body["accepted"])


def test_the_issues_examples_are_refused_where_undocumented_and_served_where_documented(api: Api) -> None:
    list_id = api.make_list()
    api.make_contact("a@example.com")
    refused: list[tuple[str, dict[str, Any]]] = [
        ("/lists", {"filters[stringid]": "news"}),
        ("/fields", {"search": "x"}),
        ("/tags", {"filters[tag]": "vip"}),
        ("/contacts", {"orders[phone]": "asc"}),
        ("/contacts", {"list": list_id}),
        ("/contacts/1", {"include": "contactLists"}),
        ("/lists/1", {"fields": "name"}),
        ("/", {"x": 1}),
    ]
    for path, params in refused:
        response = api.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["unknown"] == list(params), (path, params)
    served: list[tuple[str, dict[str, Any]]] = [
        ("/contacts", {"search": "a", "ids[]": "1", "tagid": 0, "filters[email]": "a@example.com"}),
        ("/contacts", {"filters[updated_after]": "2000-01-01", "orders[email]": "ASC", "orders[cdate]": "desc"}),
        ("/lists", {"orders[name]": "weight", "filters[name]": "News"}),
        ("/fields", {"filters[perstag]": "PLAN"}),
        ("/tags", {"search": "v", "orders[search]": "weight"}),
    ]
    for path, params in served:
        response = api.get(path, params=params)
        assert response.status_code == 200, (path, params, response.text)


def test_several_unknown_parameters_are_all_named(api: Api) -> None:
    response = api.get("/contacts", params={"color": "red", "email": "a@example.com", "size": "L"})
    assert response.status_code == 400 and response.json()["unknown"] == ["color", "size"]


def test_bad_values_of_known_parameters_are_400(api: Api) -> None:
    for params in (
        {"orders[id]": "up"},
        {"orders[email]": "sideways"},
        {"id_greater": "x"},
        {"ids[]": "a"},
        {"filters[created_after]": "yesterday"},
        {"in_group_lists": "maybe"},
        {"status": "active"},
    ):
        response = api.get("/contacts", params=params)
        assert response.status_code == 400, params
        assert next(iter(params)) in response.json()["message"], params
    assert api.get("/lists", params={"orders[name]": "random"}).status_code == 400


def test_the_pipelines_own_requests_are_accepted(api: Api) -> None:
    """What ac_pipeline/activecampaign/client.py sends (grep its params=): lists by name, contacts by email, the
    members page with its keyset paging and side-load, pages of any collection."""
    list_id = api.make_list()
    sent: list[tuple[str, dict[str, Any]]] = [
        ("/lists", {"filters[name]": "Newsletter", "limit": 100, "offset": 0}),
        ("/contacts", {"email": "a@example.com"}),
        ("/contacts", {"listid": list_id, "status": 1, "orders[id]": "ASC", "limit": 100, "id_greater": 0}),
        (
            "/contacts",
            {
                "listid": list_id,
                "status": 2,
                "orders[id]": "ASC",
                "limit": 100,
                "id_greater": 0,
                "include": "contactLists",
            },
        ),
        ("/groups", {"limit": 100, "offset": 0}),
        ("/fields", {"limit": 100, "offset": 0}),
        ("/tags", {"limit": 100, "offset": 0}),
    ]
    for path, params in sent:
        response = api.get(path, params=params)
        assert response.status_code == 200, (path, params, response.text)
