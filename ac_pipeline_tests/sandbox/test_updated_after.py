"""`filters[updated_after]` finds every contact whose list status, custom field values or tags changed, by any path.

An incremental read of a list (`GET /contacts?listid=X&filters[updated_after]=...&include=...`) relies on the
contact's udate moving with each of those (docs/sandbox.md, "A contact's udate"). One account is set up; then, in
a later second, every kind of change is made, each to its own contact `<kind>@example.com`; each test looks at one
kind. The filter compares whole seconds, so `before` is the second the setup ended in and `after` the second the
changes ended in: no sleeping beyond the one wait for the next second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api

INCLUDE = "contactLists,fieldValues,contactTags"
# Each kind of change, and the News status it leaves (None: not about News).
MOVED: dict[str, int | None] = {
    "api-subscribe": 1,  # POST /contactLists status 1, new to the list
    "api-resubscribe": 1,  # POST /contactLists status 1 after an unsubscribe
    "api-unsubscribe": 2,  # POST /contactLists status 2
    "bulk-subscribe": 1,  # bulk import `subscribe`
    "bulk-unsubscribe": 2,  # bulk import `unsubscribe`
    "link-unsubscribe": 2,  # the person, through a campaign email's link (admin unsubscribe)
    "automation-unsubscribe": 2,  # an automation's action (admin unsubscribe_by_automation)
    "user-unsubscribe": 2,  # a user by hand (admin remove_from_list)
    "user-add": 1,  # a user re-adds someone unsubscribed (admin add_to_list)
    "bounce": 3,  # a hard bounce (admin bounce)
    "field-post": None,  # POST /fieldValues
    "field-put": None,  # PUT /fieldValues/{id}
    "field-delete": None,  # DELETE /fieldValues/{id}
    "bulk-fields": None,  # bulk import `fields`
    "field-by-user": None,  # admin set_field_value
    "field-deleted": None,  # DELETE /fields/{id} takes the contact's value with it
    "tag-add": None,  # POST /contactTags
    "tag-remove": None,  # DELETE /contactTags/{id}
    "bulk-tags": None,  # bulk import `tags`
    "tag-deleted": None,  # DELETE /tags/{id} takes the tag off the contact
    "list-deleted": None,  # DELETE /lists/{id} takes the contact's membership with it
}
# Writes that change nothing, and a contact nobody touched: their udate stays.
UNMOVED = ("untouched", "tag-again", "unsubscribe-again")
ON_NEWS = ("api-unsubscribe", "bulk-unsubscribe", "link-unsubscribe", "automation-unsubscribe", "user-unsubscribe")
UNSUBSCRIBED_FROM_NEWS = ("api-resubscribe", "user-add", "unsubscribe-again")


def email(kind: str) -> str:
    return f"{kind}@example.com"


def moment(second: int) -> str:
    """The start of a whole second as a date-time with offset, as a client sends it."""
    return datetime.fromtimestamp(second).astimezone().isoformat()


@dataclass
class Changed:
    api: Api
    news: str
    before: str  # a moment before every change (and after the setup)
    after: str  # a moment after every change

    def found(self, kind: str, since: str) -> bool:
        """Whether the pipeline's kind of read, narrowed to the contact, finds it as updated after `since`."""
        params = {"email": email(kind), "filters[updated_after]": since, "include": INCLUDE}
        response = self.api.get("/contacts", params=params)
        assert response.status_code == 200, response.text
        return bool(response.json()["contacts"])


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def wait_for_next_second() -> int:
    """Sleep into the next whole second; the second that was current before."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.01)
    return int(now)


@pytest.fixture(scope="module")
def changed(sandbox_server: SandboxServer) -> Iterator[Changed]:
    sb = sandbox_server
    sb.admin.reset()
    with Api(sb) as api:
        news, gone_list = api.make_list("News"), api.make_list("Gone")
        plan, old_field = api.make_field("Plan"), api.make_field("Old")
        vip, gone_tag = (ok(api.post("/tags", json={"tag": {"tag": name}}))["tag"]["id"] for name in ("vip", "gone"))
        ids = {kind: api.make_contact(email(kind)) for kind in (*MOVED, *UNMOVED)}
        for kind in (*ON_NEWS, "bounce", "untouched", *UNSUBSCRIBED_FROM_NEWS):
            ok(api.subscribe(ids[kind], news))
        for kind in UNSUBSCRIBED_FROM_NEWS:
            ok(api.subscribe(ids[kind], news, status=2))
        ok(api.subscribe(ids["list-deleted"], gone_list))

        def set_value(kind: str, field: str, value: str) -> str:
            body = {"fieldValue": {"contact": ids[kind], "field": field, "value": value}}
            return str(ok(api.post("/fieldValues", json=body))["fieldValue"]["id"])

        def tag(kind: str, tag_id: str) -> httpx.Response:
            return api.post("/contactTags", json={"contactTag": {"contact": ids[kind], "tag": tag_id}})

        put_id, delete_id = set_value("field-put", plan, "silver"), set_value("field-delete", plan, "silver")
        set_value("field-deleted", old_field, "x")
        tag_id = ok(tag("tag-remove", vip))["contactTag"]["id"]
        ok(tag("tag-again", vip))
        ok(tag("tag-deleted", gone_tag))

        before = wait_for_next_second()

        for kind in ("api-subscribe", "api-resubscribe"):
            ok(api.subscribe(ids[kind], news))
        for kind in ("api-unsubscribe", "unsubscribe-again"):
            ok(api.subscribe(ids[kind], news, status=2))
        batch = ok(
            api.bulk(
                [
                    {"email": email("bulk-subscribe"), "subscribe": [{"listid": news}]},
                    {"email": email("bulk-unsubscribe"), "unsubscribe": [{"listid": news}]},
                    {"email": email("bulk-fields"), "fields": [{"id": int(plan), "value": "gold"}]},
                    {"email": email("bulk-tags"), "tags": ["vip"]},
                ]
            )
        )
        sb.admin.unsubscribe(email("link-unsubscribe"), news, reason="Too many emails")
        sb.admin.unsubscribe_by_automation(email("automation-unsubscribe"), news, 7)
        sb.admin.remove_from_list(email("user-unsubscribe"), news)
        sb.admin.add_to_list(email("user-add"), news)
        sb.admin.bounce(email("bounce"), news)
        set_value("field-post", plan, "gold")
        body = {"fieldValue": {"contact": ids["field-put"], "field": plan, "value": "gold"}}
        ok(api.put(f"/fieldValues/{put_id}", json=body))
        ok(api.delete(f"/fieldValues/{delete_id}"))
        sb.admin.set_field_value(email("field-by-user"), "Plan", "gold")
        ok(api.delete(f"/fields/{old_field}"))
        ok(tag("tag-add", vip))
        ok(tag("tag-again", vip))
        ok(api.delete(f"/contactTags/{tag_id}"))
        ok(api.delete(f"/tags/{gone_tag}"))
        ok(api.delete(f"/lists/{gone_list}"))
        assert api.wait_completed(batch["batchId"])["failure"] == []

        after = int(time.time())
        yield Changed(api, news, moment(before), moment(after))


@pytest.mark.parametrize("kind", list(MOVED))
def test_a_change_moves_the_contact_into_updated_after(changed: Changed, kind: str) -> None:
    assert changed.found(kind, changed.before)
    assert not changed.found(kind, changed.after)


@pytest.mark.parametrize("kind", UNMOVED)
def test_a_write_that_changes_nothing_leaves_the_contact_out(changed: Changed, kind: str) -> None:
    assert not changed.found(kind, changed.before)


def test_the_list_read_back_finds_each_status_change_with_its_new_status(changed: Changed) -> None:
    """The pipeline's read of a list: only the members whose status changed, each with the status and the udate
    of the change (the contact's udate is the membership's)."""
    params = {"listid": changed.news, "filters[updated_after]": changed.before, "include": INCLUDE, "limit": 100}
    body = ok(changed.api.get("/contacts", params=params))
    news_records = {m["contact"]: m for m in body["contactLists"] if m["list"] == changed.news}
    found = {c["email"]: (news_records[c["id"]], c["udate"]) for c in body["contacts"]}
    expected = {email(kind): status for kind, status in MOVED.items() if status is not None}
    assert {address: int(record["status"]) for address, (record, _) in found.items()} == expected
    assert all(record["udate"] == udate for record, udate in found.values())


def test_every_answer_carries_the_server_clock_in_date(sandbox_server: SandboxServer) -> None:
    """Right after a second starts, as the real service would: a cached Date would still show the last second."""
    base = sandbox_server.url
    key = {"Api-Token": sandbox_server.api_key}
    requests = [
        ("/api/3/lists", key, 200),
        ("/api/3/nowhere", key, 404),
        ("/api/3/lists", {"Api-Token": "wrong"}, 403),
        ("/_sandbox/health", {}, 200),
    ]
    with httpx.Client(base_url=base, timeout=10.0) as http:
        http.get("/_sandbox/health")  # connect first, so the timed requests are quick
        wait_for_next_second()
        for path, headers, status in requests:
            started = time.time()
            response = http.get(path, headers=headers)
            assert response.status_code == status
            assert len(response.headers.get_list("date")) == 1
            stamped = parsedate_to_datetime(response.headers["date"]).timestamp()
            assert int(started) <= stamped <= time.time()
