"""`ac-pipeline sandbox`: serve a local ActiveCampaign API sandbox until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from ac_pipeline.sandbox.faults import FaultSpecError, parse_spec

DEMO_API_KEY = "sandbox-key"
API_KEY_ENV = "ACTIVECAMPAIGN_API_KEY"


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fault_spec(text: str) -> str:
    try:
        parse_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="serve a local ActiveCampaign API sandbox",
        description="Serve a local ActiveCampaign API (under /api/3) with its rate limits, bulk import, "
        "injectable faults and an admin surface under /_sandbox/. See docs/sandbox.md.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 picks one)")
    parser.add_argument(
        "--state", metavar="FILE", help="SQLite file that keeps the account across restarts (default: memory only)"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the key clients must send as Api-Token (default: ${API_KEY_ENV}, else {DEMO_API_KEY!r})",
    )
    parser.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        help="multiply every limit and divide every delay by this (default 1: the documented limits)",
    )
    parser.add_argument(
        "--faults",
        type=fault_spec,
        metavar="SPEC",
        help='inject faults, e.g. "/api/3/*:500=0.1,503=0.05,drop=0.05,slow=0.1@2.0;/api/3/import/*:429=0.2"',
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault generator (default 0)")
    parser.add_argument(
        "--import-delay",
        type=float,
        metavar="SECONDS",
        help="seconds from an accepted bulk import to its completion, at speed 1 (default 2)",
    )
    parser.add_argument(
        "--stop-with-group",
        type=int,
        metavar="PGID",
        help="stop once no process of this process group is left (how the pipeline ties the built-in sandbox "
        "to the `dg dev`, `dagster dev` or command that started it)",
    )
    parser.set_defaults(func=run)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _stop_with_group(pgid: int, stopping: threading.Event) -> None:
    """Set `stopping` once the process group has no process left. Polled: Linux tells no one when a group ends."""
    while not stopping.wait(0.5):
        if not _group_alive(pgid):
            logging.getLogger(__name__).info("process group %d has ended: stopping the sandbox", pgid)
            stopping.set()


def _forget_pid_file(state: str | None) -> None:
    """Remove the pid file the launcher wrote next to the state, if it names this process: a stale one would
    have `stop_local_sandbox` signal whatever process gets the number next."""
    if not state:
        return
    pid_file = f"{state}.pid"
    try:
        with open(pid_file) as file:
            if file.read().strip() == str(os.getpid()):
                os.unlink(pid_file)
    except (OSError, ValueError):
        pass


def run(args: argparse.Namespace) -> int:
    from ac_pipeline.sandbox.server import SandboxServer

    if args.api_key:
        api_key, key_note = args.api_key, "the one given with --api-key"
    elif os.environ.get(API_KEY_ENV):
        api_key, key_note = os.environ[API_KEY_ENV], f"from ${API_KEY_ENV}"
    else:
        api_key, key_note = DEMO_API_KEY, DEMO_API_KEY  # the demo key is no secret: show it
    server = SandboxServer(
        api_key=api_key,
        speed=args.speed,
        state_path=args.state,
        faults=args.faults,
        seed=args.seed,
        host=args.host,
        port=args.port,
        import_delay=args.import_delay,
        log_level="info",
        access_log=True,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()
    # Both set explicitly: a process started from a non-interactive shell in the background inherits an
    # ignored SIGINT, and Python then raises no KeyboardInterrupt, so Ctrl-C / kill -INT would do nothing.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    server.start()
    if args.stop_with_group is not None:
        threading.Thread(target=_stop_with_group, args=(args.stop_with_group, stopping), daemon=True).start()
    try:
        print(
            f"ActiveCampaign sandbox at {server.url} (API under {server.url}/api/3, admin under "
            f"{server.url}/_sandbox/)",
            flush=True,
        )
        print(f"API key: {key_note}; speed {args.speed:g}; state: {args.state or 'memory only'}", flush=True)
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        _forget_pid_file(args.state)
    return 0
