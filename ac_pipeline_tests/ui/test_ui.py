"""The Dagster UI as an operator uses it: `dg dev` on loopback with a temporary DAGSTER_HOME, one audience launched
through the webserver's GraphQL API, what the run recorded read back through the same API and, where Debian's
Chromium is installed, the asset pages as a person sees them. Then SIGTERM stops `dg dev` and everything it
started, the built-in sandbox included.

One server for the module (starting it is the expensive part); the tests run in file order and the last one stops
it. Every wait is bounded, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ac_pipeline.customer360.generate import generate
from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline.sandbox.admin_client import SandboxAdmin
from ac_pipeline_tests.fixtures.devserver import DevServer
from ac_pipeline_tests.fixtures.network import free_port, port_open

REPO = Path(__file__).resolve().parents[2]
AUDIENCE, LIST = "vip_customers", "VIP customers"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright drives it and downloads no browser of its own

# Bounds, not targets: on a loaded 2-core machine `dg dev` takes 15-50 s to answer and a run 10-60 s.
START_SECONDS, RUN_SECONDS, PAGE_MS, STOP_SECONDS = 180, 180, 90_000, 60

# Runs launch at once (no daemon in the way): the webserver hands them to the run launcher directly, so the test
# does not depend on the daemon's queue loop. The daemon still runs (`dg dev` starts it), with its sensors.
DAGSTER_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""

MATERIALIZATION = """
query Materialization($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 1) {
        runId
        partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on MarkdownMetadataEntry { mdStr }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
  }
}
"""

CHECK_EXECUTIONS = """
query Check($key: AssetKeyInput!, $name: String!, $partition: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, partition: $partition, limit: 1) {
    runId
    status
    partition
    evaluation { success partition description }
  }
}
"""


@dataclass
class Operator:
    """The server, the home it serves, and the built-in sandbox it syncs to."""

    server: DevServer
    home: Path
    sandbox_port: int
    run_id: str = ""

    @property
    def sandbox_pid_file(self) -> Path:
        return self.home / "sandbox.sqlite.pid"

    def listed(self) -> list[str]:
        admin = SandboxAdmin(f"http://127.0.0.1:{self.sandbox_port}")
        try:
            return admin.members(LIST)
        finally:
            admin.close()


def _dg() -> str:
    dg = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
    if dg is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dg is not installed: dagster-dg-cli is a dependency, `pip install -e .` brings it")
        pytest.skip("dg is not installed (pip install -e . brings dagster-dg-cli)")
    return dg


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    home = tmp_path_factory.mktemp("ui-home")
    generate(home / "customer_360.duckdb", customers=2_000, seed=7)
    shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
    (home / "dagster_home").mkdir()
    (home / "dagster_home" / "dagster.yaml").write_text(DAGSTER_YAML)
    sandbox_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "DAGSTER_", "ACTIVECAMPAIGN_"))}
    # No ACTIVECAMPAIGN_API_URL: the destination is the built-in sandbox on 127.0.0.1, started by the run.
    env.update(
        AC_PIPELINE_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster_home"),
        AC_PIPELINE_SANDBOX_PORT=str(sandbox_port),
        AC_PIPELINE_SANDBOX_SPEED="100",
    )
    server = DevServer.start([_dg(), "dev"], cwd=REPO, env=env, log=home / "dg-dev.log")
    try:
        server.wait_until_up(START_SECONDS)
        yield Operator(server=server, home=home, sandbox_port=sandbox_port)
    finally:
        # Normally the last test has stopped it; after a failure, nothing may outlive the module.
        server.stop(STOP_SECONDS)
        server.kill_leftovers()
        stop_local_sandbox(home / "sandbox.sqlite")


def _metadata(entries: list[dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for entry in entries:
        fields = [v for k, v in entry.items() if k != "label"]
        values[entry["label"]] = fields[0] if fields else None
    return values


def _materialization(operator: Operator, asset: str) -> dict[str, Any]:
    found = operator.server.graphql(MATERIALIZATION, key={"path": [asset]}, partition=AUDIENCE)["assetOrError"]
    assert found["__typename"] == "Asset", found
    [event] = found["assetMaterializations"]
    assert event["runId"] == operator.run_id and event["partition"] == AUDIENCE
    return _metadata(event["metadataEntries"])


def test_one_audience_launched_through_graphql_reaches_its_list_and_says_so(operator: Operator) -> None:
    operator.run_id = operator.server.launch_partition("audience_sync", AUDIENCE)
    status = operator.server.wait_for_run(operator.run_id, RUN_SECONDS)
    assert status == "SUCCESS", operator.server.tail()

    listed = operator.listed()  # the truth: what the sandbox's list holds
    members = _materialization(operator, "audience_members")
    pushed = _materialization(operator, "activecampaign_sync")
    assert len(listed) > 0
    assert pushed["adds"] == pushed["confirmed"] == members["members"] == len(listed)
    assert pushed["removals"] == pushed["failed"] == pushed["rejected"] == 0
    assert pushed["list"] == LIST and pushed["destination"] == "the built-in sandbox"
    assert "`adds`" in pushed["what_these_mean"] and "`confirmed`" in pushed["what_these_mean"]

    [check] = operator.server.graphql(
        CHECK_EXECUTIONS, key={"path": ["audience_changes"]}, name="removal_guard", partition=AUDIENCE
    )["assetCheckExecutions"]
    assert check["runId"] == operator.run_id and check["status"] == "SUCCEEDED" and check["partition"] == AUDIENCE
    evaluation = check["evaluation"]
    assert evaluation["success"] and evaluation["partition"] == AUDIENCE
    assert evaluation["description"].startswith(f"{AUDIENCE} (list '{LIST}'): ")


def _chromium() -> None:
    """Skip, saying why, without Debian's Chromium or Playwright; on CI (.ci/run installs both) fail instead."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}. CI requires them (see .ci/run).", pytrace=False)
        pytest.skip(reason)


def test_the_asset_pages_show_the_sync_and_the_passed_check_in_chromium(operator: Operator) -> None:
    _chromium()
    if not operator.run_id:
        pytest.skip("the sync through GraphQL did not run (see the test before)")
    from playwright.sync_api import expect, sync_playwright

    adds = str(len(operator.listed()))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(PAGE_MS)
            expect.set_options(timeout=PAGE_MS)  # its own default is 5 s, whatever the page's is

            page.goto(f"{operator.server.url}/assets/activecampaign_sync?partition={AUDIENCE}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text("activecampaign_sync", exact=True).first).to_be_visible()
            expect(page.get_by_text(AUDIENCE, exact=True).first).to_be_visible()
            # The metadata table: the row of `adds` shows the count the list holds.
            adds_row = page.locator("tr").filter(has=page.get_by_text("adds", exact=True))
            expect(adds_row.locator("td").last).to_have_text(adds)

            page.goto(f"{operator.server.url}/assets/audience_changes?view=checks")
            expect(page.get_by_text("removal_guard").first).to_be_visible()
            expect(page.get_by_text("Succeeded").first).to_be_visible()
            expect(page.get_by_text("Passed", exact=True)).to_be_visible()
            expect(page.get_by_text(f"{AUDIENCE} (list '{LIST}'): ")).to_be_visible()
        finally:
            browser.close()


def test_sigterm_stops_dg_dev_and_everything_it_started(operator: Operator) -> None:
    server = operator.server
    sandbox_pid = operator.sandbox_pid_file.read_text().strip() if operator.sandbox_pid_file.exists() else None
    seconds = server.stop(STOP_SECONDS)
    assert seconds is not None, f"dg dev was still running {STOP_SECONDS} s after SIGTERM:\n{server.tail()}"
    print(f"dg dev exited {seconds:.1f} s after SIGTERM")
    # Its children (the code server waits for its own shutdown) end shortly after it, and the built-in sandbox,
    # in a session of its own, once none of them is left.
    sandbox_alive = Path(f"/proc/{sandbox_pid}").exists if sandbox_pid else lambda: False
    deadline = time.monotonic() + 30
    while (server.leftovers() or sandbox_alive()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.leftovers() == [], "processes of dg dev outlived it"
    assert not sandbox_alive(), "the built-in sandbox outlived dg dev"
    assert sandbox_pid is not None, "no built-in sandbox was started (did the sync run?)"
    assert not operator.sandbox_pid_file.exists() and not port_open(operator.sandbox_port)
