"""How long `dg dev` / `dagster dev` take to stop on SIGTERM, and what they leave running.

Each run: a temporary pipeline home (2,000 sample customers, the sample audiences) and DAGSTER_HOME; start the
command on a free loopback port in a session of its own; wait until /server_info answers; optionally sync one
audience through GraphQL first (which starts the built-in sandbox), or leave the asset page open in headless
Chromium; SIGTERM the command (or its whole process group); then print how long until it exited, until its
session was empty, until the built-in sandbox stopped, and whatever was still running after that.

The command starts with SIGINT and SIGTERM at their default, as from a terminal. `--sigint-ignored` starts it as
`dg dev &` in a non-interactive script does: SIGINT ignored, which Dagster copies onto SIGTERM.

    python benchmarks/dev_stop_bench.py --command dg --runs 3 --sync
    python benchmarks/dev_stop_bench.py --command dagster --runs 3 --sync
    python benchmarks/dev_stop_bench.py --command dg --runs 1 --sigint-ignored
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ac_pipeline.customer360.generate import generate

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' server helper: the package does not ship the tests
from ac_pipeline_tests.fixtures.devserver import DevServer  # noqa: E402
from ac_pipeline_tests.fixtures.network import free_port  # noqa: E402

GIVE_UP_SECONDS = 90.0


class ChromiumPage:
    """The asset page open in headless Chromium (Debian's, driven by Playwright), as a person leaves the UI open."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = self._browser.new_page()
        page.goto(url, timeout=90_000)
        page.get_by_text("Latest materialization").wait_for(timeout=90_000)

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()


def _alive(pid: str) -> bool:
    return bool(pid) and Path(f"/proc/{pid}").exists()


def one_run(command: str, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="dev-stop-") as scratch:
        home = Path(scratch)
        generate(home / "customer_360.duckdb", customers=2_000, seed=7)
        shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
        (home / "dagster_home").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "DAGSTER_", "ACTIVECAMPAIGN_"))}
        env.update(
            AC_PIPELINE_HOME=str(home),
            DAGSTER_HOME=str(home / "dagster_home"),
            AC_PIPELINE_SANDBOX_PORT=str(free_port()),
            AC_PIPELINE_SANDBOX_SPEED="100",
        )
        pid_file = home / "sandbox.sqlite.pid"
        page = None
        server = DevServer.start(
            [command, "dev"], cwd=REPO, env=env, log=home / "dev.log", sigint_ignored=args.sigint_ignored
        )
        try:
            server.wait_until_up(180)
            if args.sync:
                run_id = server.launch_partition("audience_sync", "vip_customers")
                assert server.wait_for_run(run_id, 300) == "SUCCESS", server.tail()
            if args.browser:
                page = ChromiumPage(f"{server.url}/assets/activecampaign_sync")
            time.sleep(args.settle)
            sandbox = pid_file.read_text().strip() if pid_file.exists() else ""
            started = time.perf_counter()
            if args.group:  # as a service manager that signals the whole control group does
                os.killpg(server.process.pid, signal.SIGTERM)
            else:
                server.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=GIVE_UP_SECONDS)
            exited = time.perf_counter() - started
            if server.process.poll() is None:
                print(f"  {command} dev was still running {GIVE_UP_SECONDS:g} s after SIGTERM", flush=True)
                return exited
            print(f"  {command} dev exited {exited:.1f} s after SIGTERM", flush=True)
            while server.leftovers() and time.perf_counter() - started < exited + 60:
                time.sleep(0.1)
            print(f"  its session was empty {time.perf_counter() - started:.1f} s after SIGTERM", flush=True)
            while _alive(sandbox) and time.perf_counter() - started < exited + 60:
                time.sleep(0.1)
            if sandbox:
                state = "still running" if _alive(sandbox) else "stopped"
                print(f"  the built-in sandbox {state} {time.perf_counter() - started:.1f} s after SIGTERM", flush=True)
            left = [f"{pid} {cmd[:80]}" for pid, cmd in server.leftovers()]
            print(f"  left running: {left or 'nothing'}", flush=True)
            return exited
        finally:
            if page is not None:
                page.close()
            server.stop(10)
            server.kill_leftovers()
            if pid_file.exists():  # the sandbox runs in a session of its own
                with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--command", choices=["dg", "dagster"], default="dg")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync", action="store_true", help="sync one audience through GraphQL before stopping")
    parser.add_argument("--browser", action="store_true", help="keep the asset page open in headless Chromium")
    parser.add_argument("--group", action="store_true", help="SIGTERM the whole process group, not the command")
    parser.add_argument("--sigint-ignored", action="store_true", help="start it as `dg dev &` in a script does")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to leave it running before SIGTERM")
    args = parser.parse_args()
    command = shutil.which(args.command, path=str(Path(sys.executable).parent)) or args.command
    times = []
    for index in range(args.runs):
        print(f"run {index + 1}:", flush=True)
        times.append(one_run(command, args))
    print(f"median {statistics.median(times):.1f} s from SIGTERM to exit over {len(times)} runs of {args.command} dev")


if __name__ == "__main__":
    main()
