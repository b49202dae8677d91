"""Audience SQL reads what came home from ActiveCampaign (`activecampaign.<table>`), and nothing else besides
the customer 360: the account tables are attached read-only before the lock, which still refuses every file,
every other ATTACH and every SET. Real DuckDB files: a copy of the sample customer 360, account tables
written through AccountTables."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ac_pipeline.audiences.config import AudienceConfigError, AudienceFile, check_against_columns, parse_audiences
from ac_pipeline.audiences.members import compute_members
from ac_pipeline.audiences.sql import is_locked, locked_connection
from ac_pipeline.definitions import build_definitions
from ac_pipeline.defs.audiences.assets import account_tables_read
from ac_pipeline.readback.tables import AccountTables

VIP = "loyalty_tier IN ('gold', 'platinum') AND email_consent"
AUDIENCES = f"""
source: {{table: customers, id_column: customer_id, updated_column: updated_at}}
audiences:
  - key: vip_customers
    list: {{name: VIP customers}}
    condition: {VIP}
    fields: {{email: email}}
  - key: vip_by_condition
    list: {{name: VIP customers again}}
    condition: >-
      {VIP}
      AND lower(trim(email)) NOT IN (SELECT email FROM activecampaign.opt_outs WHERE list = 'VIP customers')
    fields: {{email: email}}
  - key: vip_by_suppression
    list: {{name: VIP customers once more}}
    condition: {VIP}
    exclude: {{suppression_table: activecampaign.opt_outs}}
    fields: {{email: email}}
  - key: everyone_but_vips
    list: {{name: Everyone else}}
    condition: email_consent
    exclude: {{audiences: [vip_by_condition]}}
    fields: {{email: email}}
"""
OPT_OUT_LABELS = ("by_person", "bounced", "elsewhere")


@pytest.fixture(autouse=True)
def _account_tables_in_the_test_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `home` fixture's account tables, not a file the environment names (runs before `home`)."""
    monkeypatch.delenv("AC_PIPELINE_ACTIVECAMPAIGN_DB", raising=False)


def vips(customer_360: Path, catalog: AudienceFile) -> list[str]:
    """Members of the VIP audience whose customer 360 email is already clean (so `lower(trim())` is the email)."""
    with locked_connection(str(customer_360)) as connection:
        rows = compute_members(connection, catalog.get("vip_customers"), catalog.by_key, catalog.source)
    clean = rows.filter((pl.col("status") == "member") & (pl.col("email") == pl.col("email_raw")))
    return sorted(clean.get_column("email").head(5))


def read_back(path: Path, people: list[str]) -> dict[str, str]:
    """The VIP list as the read-back would bring it home: two opted out, one removed by the sync, one active;
    and one of them opted out of another list. Returns label -> email."""
    by_person, bounced, ours, active, elsewhere = people
    vip = pl.DataFrame(
        {
            "contact_id": ["1", "2", "3", "4"],
            "email": [by_person.upper(), bounced, ours, active],  # stored normalised
            "status": ["unsubscribed", "bounced", "unsubscribed", "active"],
            "unsubscribed_by": ["person", "bounce", "sync", None],
            "how": ["through the unsubscribe link of campaign 3", "a hard bounce", "removed by the sync", None],
        }
    )
    tables = AccountTables(path)
    read_at = datetime.now(UTC)
    tables.write_list_members("vip_customers", 1, "VIP customers", vip, read_at)
    other = pl.DataFrame({"contact_id": ["5"], "email": [elsewhere], "status": ["unsubscribed"]})
    tables.write_list_members("newsletter", 2, "Newsletter", other, read_at)
    return {"by_person": by_person, "bounced": bounced, "ours": ours, "active": active, "elsewhere": elsewhere}


@pytest.fixture
def catalog() -> AudienceFile:
    return parse_audiences(AUDIENCES)


def test_an_audience_leaves_out_who_opted_out_by_condition_or_suppression_table(
    customer_360: Path, tmp_path: Path, catalog: AudienceFile
) -> None:
    account = tmp_path / "activecampaign.duckdb"
    people = read_back(account, vips(customer_360, catalog))
    attach = {"activecampaign": str(account)}
    with locked_connection(str(customer_360), attach=attach) as connection:
        assert is_locked(connection)
        results = {}
        for key in ("vip_customers", "vip_by_condition", "vip_by_suppression"):
            check_against_columns(catalog.get(key), connection, catalog.source)
            results[key] = compute_members(connection, catalog.get(key), catalog.by_key, catalog.source)
    members = {key: set(rows.filter(pl.col("status") == "member").get_column("email")) for key, rows in results.items()}
    everyone = members["vip_customers"]
    assert set(people.values()) <= everyone
    # The condition reads one list's opt-outs: those people are not selected at all.
    assert members["vip_by_condition"] == everyone - {people["by_person"], people["bounced"]}
    # The suppression table is every list's opt-outs: selected, then excluded with the reason.
    assert members["vip_by_suppression"] == everyone - {people[label] for label in OPT_OUT_LABELS}
    excluded = results["vip_by_suppression"].filter(pl.col("status") == "excluded")
    assert set(excluded.get_column("email")) == {people[label] for label in OPT_OUT_LABELS}
    assert set(excluded.get_column("reason")) == {"excluded: on suppression table activecampaign.opt_outs"}
    # The sync's own removal is not an opt-out: the person may come back.
    assert people["ours"] in members["vip_by_condition"] & members["vip_by_suppression"]


def _run(partition: str) -> dg.ExecuteInProcessResult:
    asset = build_definitions().resolve_assets_def("audience_members")
    return dg.materialize(
        [asset], partition_key=partition, raise_on_error=False, instance=dg.DagsterInstance.ephemeral()
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failure.event_specific_data.error.message


def test_the_members_asset_attaches_the_account_tables(home, catalog: AudienceFile) -> None:
    home.audiences.write_text(AUDIENCES)
    people = read_back(home.activecampaign, vips(home.customer_360, catalog))
    result = _run("vip_by_suppression")
    assert result.success, _failure(result)
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["excluded"].value == len(OPT_OUT_LABELS)
    members = pl.read_parquet(home.assets / "audience_members" / "vip_by_suppression.parquet")
    assert set(members.filter(pl.col("status") == "excluded").get_column("email")) == {
        people[label] for label in OPT_OUT_LABELS
    }


def test_before_any_read_back_an_audience_that_reads_it_says_to_run_it(home) -> None:
    home.audiences.write_text(AUDIENCES)
    assert not home.activecampaign.exists()
    for partition in ("vip_by_condition", "vip_by_suppression", "everyone_but_vips"):  # the last through exclusion
        result = _run(partition)
        assert not result.success
        message = _failure(result)
        assert "activecampaign_list_members" in message and "activecampaign.opt_outs" in message, message
        assert str(home.activecampaign) in message
    assert _run("vip_customers").success  # an audience that does not read it does not need it


def test_which_audiences_read_the_account_tables(catalog: AudienceFile) -> None:
    reads = {key: account_tables_read(catalog.get(key), catalog.by_key) for key in catalog.keys}
    assert reads == {
        "vip_customers": [],
        "vip_by_condition": ["activecampaign.opt_outs"],
        "vip_by_suppression": ["activecampaign.opt_outs"],
        "everyone_but_vips": ["activecampaign.opt_outs"],
    }


def test_with_the_account_tables_attached_the_lock_still_holds(customer_360: Path, tmp_path: Path) -> None:
    account = tmp_path / "activecampaign.duckdb"
    read_back(account, ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"])
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with locked_connection(str(customer_360), attach={"activecampaign": str(account)}) as connection:
        assert is_locked(connection)
        assert connection.sql("SELECT count(*) FROM activecampaign.opt_outs").fetchall() == [(3,)]
        refused = {
            "file": "SELECT * FROM read_csv('/etc/passwd')",
            "second attach": f"ATTACH '{other}' AS other (READ_ONLY)",
            "attach in memory": "ATTACH ':memory:' AS scratch",
            "set": "SET enable_external_access = true",
            "unlock": "SET lock_configuration = false",
            "write": "DELETE FROM activecampaign.list_members",
            "copy": f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        }
        for name, sql in refused.items():
            with pytest.raises(duckdb.Error):
                connection.execute(sql)
                pytest.fail(f"{name}: {sql} ran")
        assert is_locked(connection)
        assert [row[0] for row in connection.sql("SELECT database_name FROM duckdb_databases()").fetchall()] == [
            "activecampaign",
            "customer_360",
            "system",
            "temp",
        ]
    assert not (tmp_path / "out.csv").exists()


def test_only_the_attached_tables_are_allowed(customer_360: Path, tmp_path: Path, catalog: AudienceFile) -> None:
    account = tmp_path / "activecampaign.duckdb"
    read_back(account, ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"])
    attach = {"activecampaign": str(account)}
    suppression = catalog.get("vip_by_suppression")
    # Not attached: not a table audience SQL may read.
    with locked_connection(str(customer_360)) as connection:
        with pytest.raises(AudienceConfigError, match=r"'activecampaign\.opt_outs' is not a table of the customer 360"):
            check_against_columns(suppression, connection, catalog.source)
    with locked_connection(str(customer_360), attach=attach) as connection:
        # A name under the alias that is not one of its tables, and the alias as the audience's source.
        nope = suppression.model_copy(
            update={"exclude": suppression.exclude.model_copy(update={"suppression_table": "activecampaign.nope"})}
        )
        with pytest.raises(AudienceConfigError, match=r"'activecampaign\.nope' is not a table"):
            check_against_columns(nope, connection, catalog.source)
        with pytest.raises(AudienceConfigError, match=r"source\.table"):
            check_against_columns(suppression, connection, "activecampaign.list_members")
    # The three-part name is refused when the file loads, as every other database is.
    three_parts = AUDIENCES.replace("FROM activecampaign.opt_outs", "FROM activecampaign.main.opt_outs")
    with pytest.raises(AudienceConfigError, match="names the database 'activecampaign'"):
        parse_audiences(three_parts)


HOLDER = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    """Another process with the file open for writing, for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_writer_holding_the_account_tables_is_waited_for_then_named(customer_360: Path, tmp_path: Path) -> None:
    account = tmp_path / "activecampaign.duckdb"
    read_back(account, ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"])
    attach = {"activecampaign": str(account)}
    holder = _hold(account, 0.5)
    try:
        started = time.monotonic()
        with locked_connection(str(customer_360), attach=attach) as connection:
            assert connection.sql("SELECT count(*) FROM activecampaign.opt_outs").fetchall() == [(3,)]
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    holder = _hold(account, 60)
    try:
        with pytest.raises(RuntimeError, match="stayed locked by another process") as raised:
            with locked_connection(str(customer_360), attach=attach, attempts=3):
                pass
        assert str(account) in str(raised.value) and "read-back" in str(raised.value)
    finally:
        holder.kill()
        holder.wait()
