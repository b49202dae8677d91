"""The built-in destination: a local ActiveCampaign sandbox, started on first use.

When no ACTIVECAMPAIGN_API_URL is set, syncs go to `ac-pipeline sandbox` on 127.0.0.1 (port 8765 by
default), whose state lives in AC_PIPELINE_HOME. It runs as one process of its own, shared by every
step process of every run, because the rate limit is per account and the account must be one. It is
started when a sync first needs it and keeps running afterwards (stop it with `kill $(cat PIDFILE)`).
"""

from __future__ import annotations

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


def ensure_local_sandbox(state_file: Path, port: int, speed: float, wait_seconds: float = 30.0) -> str:
    """The URL of a running local sandbox, starting one (detached) when none answers on `port`."""
    url = f"http://127.0.0.1:{port}"
    config = _healthy(url)
    if config is not None:
        running = float(config.get("speed", speed))
        if abs(running - speed) > 1e-9:
            raise SandboxUnavailable(
                f"a sandbox already runs on {url} at speed {running:g}, but this pipeline is set for speed {speed:g}; "
                f"stop it (kill $(cat {state_file}.pid)) or set AC_PIPELINE_SANDBOX_SPEED={running:g}"
            )
        return url
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
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives the step that started it, and ignores the step's Ctrl-C
        env={k: v for k, v in os.environ.items() if k != "ACTIVECAMPAIGN_API_KEY"},
    )
    log.close()
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _healthy(url) is not None:
            Path(f"{state_file}.pid").write_text(str(process.pid))
            return url
        if process.poll() is not None and _healthy(url) is None:
            # Another step may have won the race for the port; give it a moment, then give up.
            time.sleep(0.5)
            if _healthy(url) is not None:
                return url
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
    try:
        os.kill(int(pid_file.read_text()), 15)
    except (ProcessLookupError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)
    return True
