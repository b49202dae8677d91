"""One sandbox account: its configuration, data, rate-limit windows, faults, request log and import queue."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ac_pipeline.sandbox.bulk import ImportQueue
from ac_pipeline.sandbox.faults import FaultPlan
from ac_pipeline.sandbox.ratelimit import SlidingWindow
from ac_pipeline.sandbox.requestlog import RequestLog
from ac_pipeline.sandbox.store import Store

REQUESTS_PER_SECOND = 5
MULTI_IMPORTS_PER_MINUTE = 100
SINGLE_IMPORTS_PER_MINUTE = 20
DEFAULT_IMPORT_DELAY = 2.0  # seconds at speed 1 from accepted to applied


@dataclass(frozen=True)
class SandboxConfig:
    """What a sandbox is started with. Times are at speed 1: every delay is divided by `speed`, and every
    window shrinks by it, so each limit allows `speed` times as many requests per real second."""

    api_key: str
    speed: float = 1.0
    state_path: str | None = None
    faults: str | dict[str, Any] | None = None
    seed: int = 0
    import_delay: float | None = None

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be a positive number, got {self.speed}.")
        if not self.api_key:
            raise ValueError("api_key must not be empty.")
        if self.import_delay is not None and self.import_delay < 0:
            raise ValueError(f"import_delay must be zero or more seconds, got {self.import_delay}.")

    def scaled(self, seconds: float) -> float:
        """A duration at speed 1 as it passes in this sandbox."""
        return seconds / self.speed


class SandboxState:
    """Everything the endpoints and the admin surface share. Safe to use from the event loop and the worker."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config.state_path)
        self.api_limit = SlidingWindow(REQUESTS_PER_SECOND, config.scaled(1.0))
        self.multi_import_limit = SlidingWindow(MULTI_IMPORTS_PER_MINUTE, config.scaled(60.0))
        self.single_import_limit = SlidingWindow(SINGLE_IMPORTS_PER_MINUTE, config.scaled(60.0))
        self.faults = FaultPlan.from_config(config.faults, config.seed)
        self.requests = RequestLog()
        delay = DEFAULT_IMPORT_DELAY if config.import_delay is None else config.import_delay
        self.imports = ImportQueue(self.store, config.scaled(delay))

    def start(self) -> None:
        self.imports.start()

    def close(self) -> None:
        self.imports.stop()
        self.store.close()

    def set_faults(self, faults: str | dict[str, Any] | None) -> None:
        self.faults = FaultPlan.from_config(faults, self.config.seed)

    def reset(self) -> None:
        """Empty the account and every counter, and give it a new account id: a reset account is another
        account to anything that remembered the old one. Keep the key, speed and fault rules (the RNG restarts)."""
        self.imports.clear()
        self.store.reset()
        for window in (self.api_limit, self.multi_import_limit, self.single_import_limit):
            window.clear()
        self.requests.clear()
        self.faults = FaultPlan(self.faults.rules, self.faults.seed)

    def describe(self) -> dict[str, Any]:
        """The configuration and the account's identity, for the admin surface (never the key). `state_file` is
        the absolute path of the state file, None for an account in memory."""
        path = self.config.state_path
        return {
            "account_id": self.store.account_id(),
            "state_file": os.path.abspath(path) if path else None,
            "speed": self.config.speed,
            "state_path": self.config.state_path,
            "seed": self.config.seed,
            "import_delay_seconds": self.imports.delay,
            "limits": {
                "requests": {"limit": REQUESTS_PER_SECOND, "window_seconds": self.api_limit.window},
                "multi_contact_imports": {
                    "limit": MULTI_IMPORTS_PER_MINUTE,
                    "window_seconds": self.multi_import_limit.window,
                },
                "single_contact_imports": {
                    "limit": SINGLE_IMPORTS_PER_MINUTE,
                    "window_seconds": self.single_import_limit.window,
                },
            },
        }
