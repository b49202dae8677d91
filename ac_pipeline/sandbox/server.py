"""Running the sandbox: uvicorn on a background thread with its own event loop, started and stopped in-process."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from ac_pipeline.sandbox.admin_client import SandboxAdmin
from ac_pipeline.sandbox.app import build_app
from ac_pipeline.sandbox.state import SandboxConfig, SandboxState

START_TIMEOUT = 15.0


class SandboxServer:
    """A local ActiveCampaign account. `url` is its API URL; endpoints are url + "/api/3/...".

    Use as a context manager, or call start() and stop(). port=0 picks a free port.
    """

    def __init__(
        self,
        api_key: str = "sandbox-key",
        speed: float = 1.0,
        state_path: str | os.PathLike[str] | None = None,
        faults: str | dict[str, Any] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        import_delay: float | None = None,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        self.config = SandboxConfig(
            api_key=api_key,
            speed=speed,
            state_path=os.fspath(state_path) if state_path else None,
            faults=faults,
            seed=seed,
            import_delay=import_delay,
        )
        self.host = host
        self.port = port
        self.log_level = log_level
        self.access_log = access_log
        self.state: SandboxState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._admin: SandboxAdmin | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def admin(self) -> SandboxAdmin:
        if self._admin is None:
            if self._server is None:
                raise RuntimeError("The sandbox is not running; call start() first.")
            self._admin = SandboxAdmin(self.url)
        return self._admin

    def start(self) -> SandboxServer:
        """Serve, and return once the port accepts connections."""
        if self._server is not None:
            raise RuntimeError("The sandbox is already running.")
        state = SandboxState(self.config)  # also validates the fault spec before anything starts
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            state.close()
            raise OSError(f"Cannot listen on {self.host}:{self.port} ({exc}); pick another --port.") from exc
        self.port = sock.getsockname()[1]
        state.start()
        config = uvicorn.Config(
            build_app(state),
            log_config=None,
            log_level=self.log_level,
            access_log=self.access_log,
            lifespan="off",
            proxy_headers=False,
            date_header=False,  # gate.dated stamps each answer as it starts instead
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True)
        self.state, self._server, self._thread, self._socket = state, server, thread, sock
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The sandbox did not start on {self.url}; see the log above.")
            time.sleep(0.005)
        socket.create_connection((self.host, self.port), timeout=5).close()
        return self

    def stop(self) -> None:
        """Stop serving, finish the import worker's current batch, and close (flush) the state."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        if self.state is not None:
            self.state.close()
        self.state, self._server, self._thread, self._socket = None, None, None, None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
