"""`ac-pipeline sandbox`: starts, serves, prints the demo key but never a real one, stops on SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ac_pipeline.sandbox.cli import DEMO_API_KEY


def run_sandbox(args: list[str], env_key: str | None) -> tuple[str, int]:
    """Start the CLI, call it once with the key it should use, stop it with SIGINT; (its output, exit code)."""
    env = {k: v for k, v in os.environ.items() if k != "ACTIVECAMPAIGN_API_KEY"}
    if env_key is not None:
        env["ACTIVECAMPAIGN_API_KEY"] = env_key
    process = subprocess.Popen(
        [sys.executable, "-m", "ac_pipeline.cli", "sandbox", "--port", "0", "--speed", "50", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = ""
        for _ in range(50):  # log lines and the two banner lines, in any order
            banner += process.stdout.readline()
            if "API key:" in banner:
                break
        url = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert url, banner
        key = env_key or (args[args.index("--api-key") + 1] if "--api-key" in args else DEMO_API_KEY)
        response = httpx.get(f"{url.group(0)}/api/3/groups", headers={"Api-Token": key}, timeout=10)
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
        return banner + rest, process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("args, env_key", [([], None), ([], "env-secret-123"), (["--api-key", "cli-secret-456"], None)])
def test_cli_serves_and_prints_only_the_demo_key(args: list[str], env_key: str | None) -> None:
    started = time.monotonic()
    output, code = run_sandbox(args, env_key)
    assert code == 0
    assert time.monotonic() - started < 30
    assert "ActiveCampaign sandbox at http://127.0.0.1:" in output
    if env_key is None and not args:
        assert f"API key: {DEMO_API_KEY}" in output
    for secret in ("env-secret-123", "cli-secret-456"):
        assert secret not in output


def test_cli_rejects_a_bad_fault_spec_and_speed() -> None:
    for bad in (["--faults", "/api/3/*:oops=1"], ["--speed", "0"]):
        result = subprocess.run(
            [sys.executable, "-m", "ac_pipeline.cli", "sandbox", *bad], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2 and "error" in result.stderr


def test_the_sandbox_stops_with_the_process_group_it_follows(tmp_path) -> None:
    """`--stop-with-group`: how the built-in sandbox ends with the `dg dev` whose run started it. It stops, and
    removes the pid file the launcher wrote for it, once no process of the group is left; not before."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    state = tmp_path / "sandbox.sqlite"
    command = [sys.executable, "-m", "ac_pipeline.cli", "sandbox", "--port", "0", "--state", str(state)]
    process = subprocess.Popen(
        [*command, "--stop-with-group", str(owner.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        pid_file = tmp_path / "sandbox.sqlite.pid"
        pid_file.write_text(str(process.pid))
        time.sleep(2)  # several of its checks: the group is alive, so it keeps serving
        assert process.poll() is None
        owner.kill()
        owner.wait()
        assert process.wait(timeout=20) == 0
        assert not pid_file.exists()
    finally:
        for child in (owner, process):
            if child.poll() is None:
                child.kill()
                child.wait()
