"""`ac-pipeline demo` as a person runs it, in the ways it went wrong: with a real account's URL and key
set (a sandbox on 127.0.0.1 stands in for the account), after a demo was killed in the pool, and stopped
with Ctrl-C or SIGTERM while it waits for the pool or pushes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg

from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.fixtures.network import free_port, port_open
from ac_pipeline_tests.fixtures.pool import HOLDER, dagster_home, holders, kill, start, wait_for_holder

REPO = Path(__file__).resolve().parent.parent
KEYS = ["vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series"]
# Not a pattern the sandbox or the client would print by chance.
ACCOUNT_KEY = "acct-key-9d41f0c2e7b3"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "ACTIVECAMPAIGN_", "DAGSTER_"))}
    env.update(extra)
    return env


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
    return home


class _Demo:
    """`ac-pipeline demo` in a process of its own, its output collected as it comes."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ac_pipeline.cli", "demo", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.process.poll() is None, f"the demo ended ({self.process.returncode}):\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"{what} did not happen within {seconds:g} s:\n{self.output}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def stop(self, signum: int) -> tuple[float, int]:
        """Send one signal to the demo (its own process only, as `kill` would): seconds until it ended, code."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                os.killpg(os.getpgid(self.process.pid), signal.SIGKILL)
        self._reader.join(timeout=10)
        return time.monotonic() - started, code


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_the_demo_syncs_a_real_account_after_cleaning_up_a_killed_demo_run(tmp_path: Path) -> None:
    home = _home(tmp_path)
    where = dagster_home(home / "dagster_home")
    with SandboxServer(api_key=ACCOUNT_KEY, speed=100.0) as account:
        env = _clean_env(
            AC_PIPELINE_HOME=str(home),
            ACTIVECAMPAIGN_API_URL=account.url,
            ACTIVECAMPAIGN_API_KEY=ACCOUNT_KEY,
            # Were the built-in sandbox started by mistake, it would be on a port of its own.
            AC_PIPELINE_SANDBOX_PORT=str(free_port()),
        )
        # An earlier demo, killed with SIGKILL while it held the pool.
        with dg.DagsterInstance.from_config(str(where)) as instance:
            earlier = start(HOLDER, "demo", home=where, env=env)
            try:
                dead = wait_for_holder(instance, earlier)
            finally:
                kill(earlier)

        result = subprocess.run(
            [sys.executable, "-m", "ac_pipeline.cli", "demo", "--customers", "3000", "--speed", "100"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert ACCOUNT_KEY not in output
        assert f"cleaned up run {dead}" in result.stdout
        assert f"destination: {account.url}" in result.stdout
        for title in ("sync 1: every audience", "sync 2: only what changed"):
            section = result.stdout.split(title, 1)[1].split("\n\n", 1)[0]
            assert [line.split()[0] for line in section.splitlines()[2:]] == KEYS, section
            assert "FAILED" not in section
        assert set(account.admin.members("VIP customers", status=1))  # the account got the lists

        with dg.DagsterInstance.from_config(str(where)) as instance:
            assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
            runs = instance.get_runs(dg.RunsFilter(job_name="audience_sync"))
            assert len(runs) == 2 * len(KEYS)
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
            assert holders(instance) == set()
            # The key never reached the event log either.
            for run in runs:
                assert not any(ACCOUNT_KEY in (entry.message or "") for entry in instance.all_logs(run.run_id))
        # No built-in sandbox was started for a real account.
        assert not (home / "sandbox.sqlite").exists()

        check = subprocess.run(
            [sys.executable, "-m", "ac_pipeline.cli", "check"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert account.url in check.stdout and ACCOUNT_KEY not in check.stdout + check.stderr


def test_sigterm_stops_a_demo_that_waits_for_the_pool_within_seconds(tmp_path: Path) -> None:
    home = _home(tmp_path)
    where = dagster_home(home / "dagster_home")
    env = _clean_env(AC_PIPELINE_HOME=str(home), AC_PIPELINE_SANDBOX_PORT=str(free_port()))
    with dg.DagsterInstance.from_config(str(where)) as instance:
        # A live run (launched from the UI, say) holds the pool's one slot for as long as the test needs.
        other = start(HOLDER, "ui", home=where, env=env)
        try:
            other_run = wait_for_holder(instance, other)
            demo = _Demo(env, tmp_path, "--customers", "3000", "--speed", "50")
            demo.wait_for(lambda: "waiting for the activecampaign pool" in demo.output, 90, "the pool wait message")
            assert f"held by run {other_run}" in demo.output and "Free concurrency slots" in demo.output
            workers = demo.worker_pids()
            assert workers
            seconds, code = demo.stop(signal.SIGTERM)
            assert code == 128 + signal.SIGTERM, demo.output
            assert seconds < 5, f"the demo took {seconds:.1f} s to stop"
            assert all(_gone(pid) for pid in workers)
            # A live run's slot is not the demo's to take.
            assert holders(instance) == {other_run}
            assert other.poll() is None
        finally:
            kill(other)


def test_ctrl_c_stops_a_demo_in_the_middle_of_a_push_and_stops_its_sandbox(tmp_path: Path) -> None:
    home = _home(tmp_path)
    where = dagster_home(home / "dagster_home")
    port = free_port()
    env = _clean_env(AC_PIPELINE_HOME=str(home), AC_PIPELINE_SANDBOX_PORT=str(port))
    pid_file = home / "sandbox.sqlite.pid"
    demo = _Demo(env, tmp_path, "--customers", "20000", "--speed", "1")
    try:
        with dg.DagsterInstance.from_config(str(where)) as instance:
            # At the real limits the first push takes a while: stop it once it holds the pool with its sandbox up.
            demo.wait_for(lambda: pid_file.exists() and bool(holders(instance)), 90, "a push in the pool")
            [pushing] = holders(instance)
            workers = demo.worker_pids()
            seconds, code = demo.stop(signal.SIGINT)
            assert code == 128 + signal.SIGINT, demo.output
            assert seconds < 5, f"the demo took {seconds:.1f} s to stop"
            assert all(_gone(pid) for pid in workers)
            # The run it stopped is over (failed), and holds nothing.
            run = instance.get_run_by_id(pushing)
            assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
            assert holders(instance) == set()
        assert not pid_file.exists()
        deadline = time.monotonic() + 10
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open(port), "the demo's sandbox still answers"
    finally:
        if demo.process.poll() is None:
            os.killpg(os.getpgid(demo.process.pid), signal.SIGKILL)
        stop_local_sandbox(home / "sandbox.sqlite")


def test_a_demo_stopped_before_any_run_exits_at_once(tmp_path: Path) -> None:
    # While it loads Dagster and generates the sample data: nothing to clean up, nothing left behind.
    home = _home(tmp_path)
    env = _clean_env(AC_PIPELINE_HOME=str(home), AC_PIPELINE_SANDBOX_PORT=str(free_port()))
    demo = _Demo(env, tmp_path, "--customers", "3000")
    demo.wait_for(lambda: bool(demo.worker_pids()), 30, "the worker's start")
    workers = demo.worker_pids()
    seconds, code = demo.stop(signal.SIGINT)
    assert code == 128 + signal.SIGINT and seconds < 5, (seconds, demo.output)
    assert "Traceback" not in demo.output, demo.output
    assert all(_gone(pid) for pid in workers)
