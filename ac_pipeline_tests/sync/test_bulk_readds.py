"""Many returning contacts at once (sync.readds): their consent read in bulk, the sync's own unsubscribes
undone with one request each, everyone else's kept, fields and tags through bulk import.

About 110 panel members leave (removed by the sync), then, seeded, in groups:
- `ours`: nothing happens to them: re-subscribed, with the fields and tags the audience gives them;
- `link`, `automation`, `reason`, `ip`: they unsubscribe themselves through a campaign's link, an
  automation, a form giving a reason, from their own address (ip4Unsub only);
- `after_removal`: a user subscribes them by hand and unsubscribes them again, later than the sync's
  removal (a record with no mark of anyone, but not the sync's);
- `deleted`: the contact is deleted from the account meanwhile: created again, subscribed.
Then all come back. Run with the snapshot knowing the contact ids (a read-back ran before they left: the
records are read by id) and not knowing them (the records are read from the list's unsubscribed); and
killed at a seeded point of the bulk re-add, then retried. Besides: the contacts a bulk read cannot vouch
for go one at a time (the engine alone, on a real sandbox), and the dry run plans many re-adds in bulk.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline.state.schema import SNAPSHOT_COLUMNS
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.consent import parse_date
from ac_pipeline.sync.outcomes import PushResult, Recorder
from ac_pipeline.sync.plan import plan
from ac_pipeline.sync.readds import BulkReadds
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.sync.consent_world import KEY, LIST, PANEL_YAML, World
from ac_pipeline_tests.sync.reliability_helpers import run_crash_child

# ~110 of ~490 members leave at once: past the removal guard's default share, which is not what is tested.
RETURNING_YAML = PANEL_YAML.replace("tags: [panel]", "tags: [panel]\n    removal_guard: {max_share: 1.0}")
SIZES = {"ours": 60, "link": 8, "automation": 8, "reason": 8, "ip": 8, "after_removal": 8, "deleted": 8}
THEIRS = ("link", "automation", "reason", "ip", "after_removal")
# What the opt-out reason of each group names (sync.consent).
REASONS = {
    "link": "campaign 5",
    "automation": "automation 12",
    "reason": "moved abroad",
    "ip": "ip4Unsub",
    "after_removal": "after the sync removed them",
}


@pytest.fixture
def returning_world(home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    sandbox = make_sandbox(speed=100.0)
    home.audiences.write_text(RETURNING_YAML)
    point_at(monkeypatch, sandbox)
    return World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))


def read_back(world: World) -> None:
    job = world.pipeline.defs.resolve_job_def("list_reconcile")
    result = job.execute_in_process(partition_key=KEY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success


def unsubscribe_by_form(world: World, email: str, reason: str | None) -> None:
    """The person unsubscribes on a form rather than through a campaign's link: the record carries the reason
    they typed (`reason`), or else only the address they sent it from. The sandbox's admin surface models the
    link, so the record is made by it and then stripped of the campaign (and the address, given a reason)."""
    world.admin.unsubscribe(email, LIST, reason=reason, ip="198.51.100.7")
    store = world.pipeline.sandbox.state.store
    store.execute(
        "UPDATE memberships SET campaign_id = NULL, message_id = NULL, ip4_unsub = CASE WHEN ? THEN 0 ELSE ip4_unsub "
        "END WHERE contact_id = (SELECT id FROM contacts WHERE email = ?)",
        (reason is not None, email),
    )
    record = world.admin.membership(email, LIST)
    assert record["status"] in (2, "2") and record["campaign"] in (None, "", "0", 0), record


def leave_and_return(world: World, seed: int, ids_known: bool) -> dict[str, set[str]]:
    """Sync the panel, take the groups out (removed by the sync), let each group's event happen; the groups."""
    world.sync()
    if ids_known:
        read_back(world)  # the snapshot learns every member's contact id
    pool = sorted(world.pipeline.audience(KEY))
    random.Random(seed).shuffle(pool)
    groups, start = {}, 0
    for name, size in SIZES.items():
        groups[name] = set(pool[start : start + size])
        start += size
    returning = set().union(*groups.values())
    world.leave(returning)
    assert world.sync()["removals"] == len(returning)
    admin = world.admin
    for email in groups["link"]:
        admin.unsubscribe(email, LIST, campaign=5, message=6)
    for email in groups["automation"]:
        admin.unsubscribe_by_automation(email, LIST, automation=12)
    for email in groups["reason"]:
        unsubscribe_by_form(world, email, reason="moved abroad")
    for email in groups["ip"]:
        unsubscribe_by_form(world, email, reason=None)
    for email in groups["after_removal"]:
        admin.add_to_list(email, LIST)
        admin.remove_from_list(email, LIST)
    # Their new unsubscribe is seconds after the sync's: as if a day had passed since the sync removed them.
    with world.pipeline.state.connect() as connection:
        connection.execute(
            "UPDATE snapshot SET removed_at = removed_at - INTERVAL 1 DAY WHERE email IN "
            f"({', '.join(repr(e) for e in groups['after_removal'])})"
        )
    for email in groups["deleted"]:
        admin.delete_contact(email)
    world.come_back(returning)
    return groups


def snapshot_of(world: World, emails: set[str]) -> dict[str, dict]:
    snap = world.snapshot().filter(pl.col("email").is_in(sorted(emails)))
    return {row["email"]: row for row in snap.iter_rows(named=True)}


def fields_and_tags(world: World, emails: set[str]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """email -> (the City field's value, tag names), as ActiveCampaign holds them."""
    sandbox = world.pipeline.sandbox
    limits = RateLimits(safety_margin=0.2).scaled(sandbox.config.speed)
    with ActiveCampaignClient(sandbox.url, sandbox.api_key, limits=limits) as client:
        city = next(f["id"] for f in client.list_fields() if f["title"] == "City")
        tags = {t["id"]: t["tag"] for t in client.list_tags()}
        seen = {}
        for email in sorted(emails):
            answer = client.request("GET", "contacts", params={"email": email, "include": "fieldValues,contactTags"})
            values = [v["value"] for v in answer["fieldValues"] if str(v["field"]) == str(city)]
            seen[email] = (values[0] if values else None, tuple(sorted(tags[t["tag"]] for t in answer["contactTags"])))
    return seen


def requests_by_path(world: World) -> dict[str, int]:
    return {path: sum(by_status.values()) for path, by_status in world.admin.requests()["by_path_status"].items()}


@pytest.mark.parametrize(("ids_known", "seed"), [(True, 41), (False, 42)])
def test_many_returning_contacts_are_judged_in_bulk(returning_world: World, ids_known: bool, seed: int) -> None:
    world = returning_world
    groups = leave_and_return(world, seed, ids_known)
    theirs = set().union(*(groups[name] for name in THEIRS))
    before = requests_by_path(world)

    pushed = world.sync()
    sent = {path: n - before.get(path, 0) for path, n in requests_by_path(world).items()}

    assert pushed["readds"] == sum(SIZES.values())
    assert pushed["opted_out"] == len(theirs)
    assert pushed["failed"] == 0 and pushed["rejected"] == 0
    world.assert_truth(never_resubscribed=theirs)
    rows = snapshot_of(world, set().union(*groups.values()))
    for name in THEIRS:
        for email in groups[name]:
            assert rows[email]["status"] == "opted_out", (name, email, rows[email])
            assert REASONS[name] in rows[email]["reason"], (name, rows[email]["reason"])
    back = groups["ours"] | groups["deleted"]
    assert {rows[e]["status"] for e in back} == {"member"}
    assert set(fields_and_tags(world, back).values()) == {("Back", ("panel",))}
    if ids_known:
        # A deleted contact was created again one at a time, and the snapshot has its new id.
        assert all(rows[e]["contact_id"] is not None for e in back)

    # The cost: one status-1 POST per contact whose unsubscribe was ours, a few reads, bulk import for the rest.
    one_at_a_time = len(groups["deleted"]) if ids_known else 0
    assert sent.get("POST /api/3/contactLists", 0) == len(groups["ours"]) + one_at_a_time
    assert sent.get("POST /api/3/contact/sync", 0) == one_at_a_time
    assert sent.get("POST /api/3/contactTags", 0) == one_at_a_time
    # Their records, 25 a request (by id; after two pages of the list's unsubscribed when the ids are unknown).
    assert sent.get("GET /api/3/contacts", 0) <= -(-sum(SIZES.values()) // 25) + (0 if ids_known else 2), sent
    assert pushed["requests"] <= len(groups["ours"]) + 4 * one_at_a_time + 16, sent


@pytest.mark.parametrize(("path", "seed"), [("POST /api/3/contactLists", 43), ("POST /api/3/import/bulk_import", 44)])
def test_a_readd_killed_at_a_random_point_resumes_without_resubscribing_anyone(
    returning_world: World, tmp_path: Path, path: str, seed: int
) -> None:
    """SIGKILL during the bulk re-add (after a seeded number of status-1 POSTs, or once the bulk import was
    accepted), then a retry: the list is the audience less the opted out, and nobody who unsubscribed
    themselves is subscribed."""
    world = returning_world
    rng = random.Random(seed)
    groups = leave_and_return(world, seed, ids_known=rng.random() < 0.5)
    theirs = set().union(*(groups[name] for name in THEIRS))
    n = rng.randint(1, SIZES["ours"] - 1) if path.endswith("contactLists") else 1
    start = requests_by_path(world).get(path, 0)

    returncode = run_crash_child(
        KEY, "", tmp_path / "child.log", lambda: requests_by_path(world).get(path, 0) >= start + n
    )
    assert returncode == -signal.SIGKILL, (path, n, (tmp_path / "child.log").read_text(errors="replace")[-3000:])
    assert not (theirs & world.subscribed())  # not even half-way
    world.admin.wait_for_imports()

    resumed = world.sync()
    assert resumed["failed"] == 0
    world.assert_truth(never_resubscribed=theirs)
    rows = snapshot_of(world, set().union(*groups.values()))
    assert {rows[e]["status"] for e in theirs} == {"opted_out"}
    assert {rows[e]["status"] for e in groups["ours"] | groups["deleted"]} == {"member"}
    assert set(fields_and_tags(world, groups["ours"]).values()) == {("Back", ("panel",))}


def test_the_dry_run_plans_many_readds_in_bulk() -> None:
    """The plan says what the push will do: 9 re-adds one at a time (four requests each: contact/sync, their
    record, status 1, a tag; and the tags looked up once), 30 in bulk (a read per 25, at most a POST each, and
    one import with its poll)."""
    audience = parse_audiences(RETURNING_YAML).get(KEY)
    emails = [f"back{i}@example.com" for i in range(30)]
    snapshot = (
        pl.DataFrame({"email": emails, "fields_hash": ["old"] * 30, "status": ["removed"] * 30})
        .with_columns(
            *[
                pl.lit(None).cast(dtype).alias(name)
                for name, dtype in SNAPSHOT_COLUMNS.items()
                if name not in ("email", "fields_hash", "status")
            ]
        )
        .select(list(SNAPSHOT_COLUMNS))
    )
    changes = pl.DataFrame(
        {
            "op": "readd",
            "email": emails,
            "contact_id": None,
            "first_name": "Ada",
            "field:City": "Back",
            "fields_hash": "new",
        },
        schema_overrides={"contact_id": pl.String},
    )
    few, many = plan(changes.head(9), snapshot, audience), plan(changes, snapshot, audience)
    assert few.by_operation == {"one by one: readd": 9}
    assert many.by_operation == {"bulk import: readd": 30}
    resolution = 1 + 3 + 1  # find the list, create and grant it, read the fields
    assert few.requests == resolution + 1 + 9 * 4
    assert many.requests == resolution + 2 + 2 + 30


class DroppingRecord(ActiveCampaignClient):
    """The real client, but the answer of a bulk record read loses one contact's record for the list (an
    answer that does not show all of a contact's memberships)."""

    drop_contact = ""

    def request(self, method: str, path: str, params: dict | None = None, json: Any | None = None) -> dict:
        answer = super().request(method, path, params=params, json=json)
        if method == "GET" and params and "ids[]" in params:
            answer["contactLists"] = [r for r in answer["contactLists"] if str(r["contact"]) != self.drop_contact]
        return answer


def test_contacts_the_bulk_read_cannot_vouch_for_go_one_at_a_time(sandbox: SandboxServer, tmp_path: Path) -> None:
    """By id: an unsubscribe proven ours is undone (one POST), a person's own is recorded; a contact without a
    known id, deleted, whose id now carries another email, or whose record the answer left out is not judged
    here but handed to the single path; nothing else is sent."""
    limits = RateLimits(safety_margin=0.2).scaled(sandbox.config.speed)
    with DroppingRecord(sandbox.url, sandbox.api_key, limits=limits) as client:
        list_id = str(client.create_list("Back", sender_url="https://example.com", sender_reminder="r")["id"])
        names = ("ours", "theirs", "no_id", "deleted", "moved", "unreadable")
        ids, removed_at = {}, {}
        for name in names:
            contact_id = str(client.sync_contact(f"{name}@example.com")["id"])
            client.set_list_status(contact_id, list_id, 1)
            record = client.set_list_status(contact_id, list_id, 2)  # the sync's removal
            ids[name], removed_at[f"{name}@example.com"] = contact_id, parse_date(record["udate"])
        sandbox.admin.unsubscribe("theirs@example.com", "Back", campaign=5, message=6)
        sandbox.admin.delete_contact("deleted@example.com")
        client.change_email(ids["moved"], "someone.else@example.com")
        client.drop_contact = ids["unreadable"]
        rows = pl.DataFrame(
            [
                {"op": "readd", "email": f"{n}@example.com", "contact_id": None if n == "no_id" else ids[n]}
                for n in names
            ],
            schema={"op": pl.String, "email": pl.String, "contact_id": pl.String},
        )
        state = SyncState(tmp_path / "state.duckdb")
        result = PushResult(pending={}, already_confirmed=0)
        before = requests_by_path_of(sandbox)
        with Recorder(state, "back", "run-1", result) as recorder:
            settled = BulkReadds(client, list_id, recorder, lambda _: None, removed_at).settle(
                rows, list_unsubscribed=10_000
            )  # by id
        after = requests_by_path_of(sandbox)
        sent = {path: n - before.get(path, 0) for path, n in after.items() if n > before.get(path, 0)}

    assert [row["email"] for row in settled.in_bulk] == ["ours@example.com"]
    assert settled.in_bulk[0]["contact_id"] == ids["ours"]
    left = {"no_id", "deleted", "moved", "unreadable"}
    assert sorted(row["email"] for row in settled.one_at_a_time) == sorted(f"{n}@example.com" for n in left)
    assert (settled.resubscribed, settled.opted_out) == (1, 1)
    assert result.outcomes["opted_out"] == 1
    snapshot = state.snapshot("back")
    assert snapshot.select("email", "status").rows() == [("theirs@example.com", "opted_out")]
    assert "campaign 5" in snapshot.get_column("reason")[0]
    assert sandbox.admin.membership("ours@example.com", "Back")["status"] in (1, "1")
    for email in ("theirs@example.com", "no_id@example.com", "someone.else@example.com", "unreadable@example.com"):
        assert sandbox.admin.membership(email, "Back")["status"] in (2, "2"), email
    assert sent == {"GET /api/3/contacts": 1, "POST /api/3/contactLists": 1}, sent


def requests_by_path_of(sandbox: SandboxServer) -> dict[str, int]:
    return {path: sum(by_status.values()) for path, by_status in sandbox.admin.requests()["by_path_status"].items()}
