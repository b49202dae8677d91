"""The built-in destination: a local ActiveCampaign sandbox, started on first use.

When no ACTIVECAMPAIGN_API_URL is set, syncs go to `ac-pipeline sandbox` on 127.0.0.1 (port 8765 by
default), whose state lives in AC_PIPELINE_HOME. It runs as one process of its own, shared by every
run (and every Celery worker), because the rate limit is per account and the account must be one. It is
started when a sync first needs it and keeps running as long as the process group of the run that started
it: under `dg dev` or `dagster dev`, until the dev server and its children have exited (they share its group);
from a terminal, until the command ends. Stop it sooner with `kill $(cat PIDFILE)`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

# The sandbox's key: no secret, it guards nothing but a local test account.
SANDBOX_API_KEY = "sandbox-key"


class SandboxUnavailable(RuntimeError):
    """The local sandbox could not be reached or started."""


def _healthy(url: str) -> dict | None:
    try:
        response = httpx.get(f"{url}/_sandbox/config", timeout=1.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _identity(url: str, config: dict, state_file: Path) -> str:
    """The running sandbox's account id, after checking it is the one started for this home.

    Adopting whatever answers on the port would push into another checkout's account (and leave this
    home's snapshot describing a list it never saw), so a sandbox with other state is refused.
    """
    running = config.get("state_file")
    if running is None or Path(running).resolve() != state_file.resolve() or not config.get("account_id"):
        raise SandboxUnavailable(
            f"the sandbox answering on {url} keeps its account in {running or 'memory'}, not in {state_file.resolve()}: "
            "it was started for another home, and this pipeline will not push into another account. Stop it "
            "(ac-pipeline's sandbox writes its pid next to its state file), or give this home a port of its own "
            "with AC_PIPELINE_SANDBOX_PORT"
        )
    return str(config["account_id"])


def ensure_local_sandbox(state_file: Path, port: int, speed: float, wait_seconds: float = 30.0) -> tuple[str, str]:
    """(URL, account id) of the local sandbox of this home, starting one (detached) when none answers on
    `port`; refuses a sandbox started for another home (see `_identity`)."""
    url = f"http://127.0.0.1:{port}"
    config = _healthy(url)
    if config is not None:
        account = _identity(url, config, state_file)
        running = float(config.get("speed", speed))
        if abs(running - speed) > 1e-9:
            raise SandboxUnavailable(
                f"a sandbox already runs on {url} at speed {running:g}, but this pipeline is set for speed {speed:g}; "
                f"stop it (kill $(cat {state_file}.pid)) or set AC_PIPELINE_SANDBOX_SPEED={running:g}"
            )
        return url, account
    state_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(state_file.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ac_pipeline.cli",
            "sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state",
            str(state_file),
            "--speed",
            repr(speed),
            "--api-key",
            SANDBOX_API_KEY,
            # Not the step's own lifetime (the sandbox outlives the step, for the next steps and runs), but its
            # group's: otherwise it outlived `dg dev` too, a stray process holding the port and the state file.
            "--stop-with-group",
            str(os.getpgid(0)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives the step that started it, and ignores the terminal's Ctrl-C
        env={k: v for k, v in os.environ.items() if k != "ACTIVECAMPAIGN_API_KEY"},
    )
    log.close()
    try:
        return _wait_for_start(process, url, state_file, port, wait_seconds)
    except BaseException:
        if process.poll() is None:  # never leave a sandbox running that nobody will use or stop
            process.terminate()
        raise


def _wait_for_start(
    process: subprocess.Popen[bytes], url: str, state_file: Path, port: int, wait_seconds: float
) -> tuple[str, str]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        config = _healthy(url)
        if config is not None:
            account = _identity(url, config, state_file)
            if process.poll() is None:
                Path(f"{state_file}.pid").write_text(str(process.pid))
            return url, account
        if process.poll() is not None:
            # Another step may have won the race for the port; give it a moment, then give up.
            time.sleep(0.5)
            config = _healthy(url)
            if config is not None:
                return url, _identity(url, config, state_file)
            raise SandboxUnavailable(
                f"the local sandbox exited (code {process.returncode}); see {state_file.with_suffix('.log')}. "
                f"Is port {port} taken? Set AC_PIPELINE_SANDBOX_PORT to another port"
            )
        time.sleep(0.1)
    raise SandboxUnavailable(f"the local sandbox did not answer on {url} within {wait_seconds:g} s")


def stop_local_sandbox(state_file: Path) -> bool:
    """Stop a sandbox that `ensure_local_sandbox` started (its state stays on disk)."""
    pid_file = Path(f"{state_file}.pid")
    if not pid_file.exists():
        return False
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text()), 15)
    pid_file.unlink(missing_ok=True)
    return True
