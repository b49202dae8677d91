"""audience_sync on Celery workers, for real: two workers stand in for two machines, two runs (two audiences)
send their steps to them, and the worker pushing the first audience is killed (SIGKILL) mid-push. The broker
gives the push to the other worker, which resumes from the shared sync state; the other audience's push waits
for the `activecampaign` pool the whole time. Afterwards each list is its audience, contact by contact, the
snapshot agrees, and the sandbox saw the two pushes' writes one after the other, never interleaved.

The machines share only Postgres (Dagster's instance from deploy/dagster.yaml, and the sync state), an S3 bucket
(moto's server, started here on loopback) and the broker. Needs Postgres and RabbitMQ at their standard ports on
127.0.0.1; skipped without them, saying why, except on CI, where it fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from moto.server import ThreadedMotoServer

from ac_pipeline.definitions import build_definitions
from ac_pipeline.defs.executor import BROKER_VAR, QUEUE_VAR, celery_config
from ac_pipeline.defs.object_store import LocalFolder, ObjectStore, open_store
from ac_pipeline.defs.one_process import one_process_executor
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.admin_client import SandboxAdminError
from ac_pipeline.settings import Paths
from ac_pipeline.state.store import SyncState
from ac_pipeline_tests.conftest import REPO
from ac_pipeline_tests.deploy.celery_workers import Cluster, cluster_on_rabbitmq, wait_until
from ac_pipeline_tests.deploy.postgres import PostgresDatabase
from ac_pipeline_tests.deploy.write_log import WriteLog, record_writes
from ac_pipeline_tests.fixtures.network import free_port
from ac_pipeline_tests.fixtures.sandbox import SANDBOX_API_KEY

DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
POOL, PUSH = "activecampaign", "activecampaign_sync"
BUCKET = "ac-pipeline"
# Two audiences of about 7,000-8,000 contacts each over the sample customer 360: a push takes several seconds at
# sandbox speed SPEED, in about 30 bulk imports, and the push commits what was confirmed every 2,500 contacts
# (sync.outcomes.Recorder), so that the kill lands after its first commit and before its last.
AUDIENCES_YAML = """
source: {table: customers, id_column: customer_id, updated_column: updated_at}
audiences:
  - key: customers_us
    list: {name: Customers US, create: true}
    condition: country = 'US'
    fields: {email: email, first_name: first_name, custom: {City: city}, create_missing: true}
  - key: customers_europe
    list: {name: Customers Europe, create: true}
    condition: country IN ('GB', 'DE', 'FR', 'ES')
    fields: {email: email, first_name: first_name, custom: {City: city}, create_missing: true}
"""
AUDIENCES = {"customers_us": "Customers US", "customers_europe": "Customers Europe"}
SPEED = 1.0


@pytest.fixture
def instance(
    postgres_database: PostgresDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The test's own view of the Dagster instance the machines share (deploy/dagster.yaml on the scratch
    database), to read the runs' events."""
    for name, value in postgres_database.dagster_env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "observer"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _push_workers(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The workers the run's push was executed on, in order (dagster-celery's engine event names the worker)."""
    workers = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is not None and event.step_key == PUSH and "Celery worker" in event.engine_event_data.metadata:
            workers.append(str(event.engine_event_data.metadata["Celery worker"].value))
    return workers


def _members_metadata(instance: dg.DagsterInstance, partition: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("audience_members"), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"audience_members of {partition} not materialized"
    return int(records[0].asset_materialization.metadata["members"].value)


def test_only_a_broker_puts_audience_sync_on_celery(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable, nothing changes (`dagster dev`, the demo: every job's steps in its run's process); with one,
    audience_sync alone goes to Celery: the other jobs write the account tables, a file on the machine that runs
    them."""
    jobs = ("audience_sync", "list_reconcile", "activecampaign_account_import")
    default = build_definitions()
    assert {default.resolve_job_def(job).executor_def is one_process_executor for job in jobs} == {True}

    monkeypatch.setenv(BROKER_VAR, "amqp://guest:secret@broker.invalid:5672//")
    monkeypatch.setenv(QUEUE_VAR, "staging")
    on_celery = build_definitions()
    assert [on_celery.resolve_job_def(job).executor_def.name for job in jobs] == [
        "ac_pipeline_celery",
        one_process_executor.name,
        one_process_executor.name,
    ]
    config = celery_config()
    assert config is not None and "secret" not in str(config), "the broker's password is read where the run starts"
    assert config["config_source"]["task_default_queue"] == "staging"
    assert config["config_source"]["task_acks_late"] and config["config_source"]["task_reject_on_worker_lost"]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> WriteLog:
    """The writes to the sandbox, with their times and lists."""
    return record_writes(monkeypatch)


@pytest.fixture
def sandbox(writes: WriteLog, make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return make_sandbox(speed=SPEED)


@pytest.fixture
def object_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An S3 bucket on moto's server on loopback: the AWS variables that reach it, set here too."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.stop()


@pytest.fixture
def cluster(
    postgres_database: PostgresDatabase,
    object_store: dict[str, str],
    sandbox: SandboxServer,
    sample_360: Path,
    tmp_path: Path,
) -> Iterator[Cluster]:
    """Machines that share only Postgres (Dagster's instance, and the sync state in a schema of its own), the
    object store and the broker; each has its own copy of the customer 360 and of audiences.yaml."""
    audiences_yaml = tmp_path / "audiences.yaml"
    audiences_yaml.write_text(AUDIENCES_YAML)
    env = {
        **postgres_database.dagster_env(),
        **object_store,
        "AC_PIPELINE_STATE": postgres_database.url,
        "AC_PIPELINE_ASSETS": f"s3://{BUCKET}/assets",
        "ACTIVECAMPAIGN_API_URL": sandbox.url,
        "ACTIVECAMPAIGN_API_KEY": SANDBOX_API_KEY,
        "AC_PIPELINE_SANDBOX_SPEED": repr(SPEED),
    }
    with cluster_on_rabbitmq(tmp_path / "machines", [sample_360, audiences_yaml], DAGSTER_YAML, env) as cluster:
        yield cluster


def test_a_push_on_a_killed_worker_resumes_on_the_other_without_overlap(
    cluster: Cluster, instance: dg.DagsterInstance, sandbox: SandboxServer, writes: WriteLog
) -> None:
    state = SyncState(cluster.shared_env["AC_PIPELINE_STATE"])
    assets = open_store(cluster.shared_env["AC_PIPELINE_ASSETS"])
    started = time.monotonic()
    workers = {name: cluster.worker(name) for name in ("w1", "w2")}
    wait_until(lambda: all(" ready." in w.log() for w in workers.values()), "both workers ready", 30)
    # The pool's row, made before two runs race to make it: on Postgres, Dagster 1.13's first use of a pool
    # (initialize_concurrency_limit_to_default) fails one of two runs that make it at once. A deployment sets
    # the limit once (deploy/README.md, "Steps on Celery workers").
    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    runs = {partition: cluster.run(f"run-{partition}", partition) for partition in AUDIENCES}

    # The first push to start, on whichever worker took it.
    first: dict[str, str] = {}

    def a_push_started() -> bool:
        for partition, run_id in _run_ids(instance).items():
            if pushed_on := _push_workers(instance, run_id):
                first.update(partition=partition, run_id=run_id, worker=pushed_on[0])
                return True
        return False

    wait_until(a_push_started, "a push started", 40)
    partition, list_name = first["partition"], AUDIENCES[first["partition"]]
    expected = _members_metadata(instance, partition)
    # Mid-push: some batches confirmed (in the shared snapshot), others not yet.
    wait_until(lambda: state.snapshot_counts(partition)["member"] > 0, f"a first batch of {partition} confirmed", 20)
    killed = next(w for w in workers.values() if first["worker"].startswith(f"{w.name}@"))
    killed.kill()
    killed_at = time.monotonic()
    confirmed = state.snapshot_counts(partition)["member"]
    assert confirmed < expected, f"the kill missed the push: {confirmed} of {expected} confirmed"

    for run in runs.values():
        assert run.wait(60) == 0, f"{run.name} failed:\n{run.log()}"
    elapsed = time.monotonic() - started

    # The push moved to the surviving worker, and resumed there.
    [survivor] = [w for w in workers.values() if w is not killed]
    pushed_on = _push_workers(instance, first["run_id"])
    assert [w.split("@")[0] for w in pushed_on] == [killed.name, survivor.name], pushed_on
    list_id = sandbox.admin.list_info(list_name)["id"]
    resent = sum(w.contacts for w in writes.writes if w.started > killed_at and list_id in w.lists)
    assert 0 < resent <= expected - confirmed, f"the resumed push sent {resent}, {confirmed} of {expected} confirmed"

    # Nothing lost: each list is its audience, and the snapshot agrees.
    for audience, name in AUDIENCES.items():
        members = _audience(assets, audience)
        assert _listed(sandbox, name) == members, audience
        snapshot = state.snapshot(audience)
        assert set(snapshot.filter(pl.col("status") == "member").get_column("email")) == members, audience

    # No machine kept the state or an asset value on its disk: only its own copy of the customer 360.
    kept = [
        path.relative_to(cluster.root)
        for path in cluster.root.rglob("*")
        if path.suffix in (".parquet", ".duckdb") and path.name != "customer_360.duckdb"
    ]
    assert not kept, f"files on the machines' disks: {kept}"

    # One push at a time: the writes for one list all came before those for the other.
    spans = sorted(writes.spans().values())
    assert len(spans) == 2, spans
    assert spans[0][1] <= spans[1][0], f"the two pushes overlapped: {spans}"
    print(f"two audiences on two workers, one killed mid-push: {elapsed:.1f} s")


def _run_ids(instance: dg.DagsterInstance) -> dict[str, str]:
    return {run.tags["dagster/partition"]: run.run_id for run in instance.get_runs()}


def _listed(sandbox: SandboxServer, list_name: str) -> set[str]:
    """The list's subscribed emails; none before the push created the list."""
    try:
        return set(sandbox.admin.members(list_name))
    except SandboxAdminError as error:
        if "404" in str(error):
            return set()
        raise


def _audience(assets: LocalFolder | ObjectStore, partition: str) -> set[str]:
    members = assets.read(f"audience_members/{partition}.parquet")
    assert members is not None, f"no audience_members of {partition} in {assets.locate('')}"
    return set(members.filter(pl.col("status") == "member").get_column("email"))
