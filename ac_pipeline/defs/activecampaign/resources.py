"""The ActiveCampaign account a sync writes to.

`ACTIVECAMPAIGN_API_URL` and `ACTIVECAMPAIGN_API_KEY` (read through Dagster's `EnvVar`, so the key is
never shown in the UI nor stored in run config) point it at a real account. Without a URL, the
destination is the built-in sandbox, so the same code path runs in the demo, the tests and production.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.activecampaign.import_callbacks import ImportCallbacks
from ac_pipeline.defs.activecampaign.local_sandbox import SANDBOX_API_KEY, ensure_local_sandbox
from ac_pipeline.readback.tables import AccountTables
from ac_pipeline.settings import Paths

OFF = frozenset({"off", "0", "false", "no"})


class ActiveCampaignResource(dg.ConfigurableResource):
    """An ActiveCampaign account: its API URL and key, and the limits its plan allows."""

    api_url: str | None = Field(
        default=None, description="The account's API URL (Settings -> Developer). Unset: the built-in sandbox."
    )
    api_key: str | None = Field(default=None, description="The API key; set it through ACTIVECAMPAIGN_API_KEY.")
    requests_per_second: float = Field(default=5.0, description="The account's request budget (5 on every plan).")
    bulk_imports_per_minute: float = 100
    single_contact_imports_per_minute: float = 20
    timeout_seconds: float = 30.0
    max_retries: int = 8
    sandbox_state: str = Field(default="data/sandbox.sqlite", description="The built-in sandbox's state file.")
    sandbox_port: int = 8765
    sandbox_speed: float = Field(
        default=1.0,
        description="For a sandbox only: its --speed; the limits are "
        "multiplied and the waits divided by it. Leave at 1 for a real account.",
    )

    import_callbacks: bool = Field(
        default=True,
        description="Ask ActiveCampaign to call back when a bulk import has run, instead of asking after each "
        "batch (halves the push's requests). Needs callback_url for a real account.",
    )
    callback_url: str | None = Field(
        default=None,
        description="Where ActiveCampaign reaches this process's callback listener (AC_PIPELINE_CALLBACK_URL), e.g. "
        "https://sync.example.com/ac-callback. Unset: callbacks only with the built-in sandbox.",
    )
    callback_listen: str | None = Field(
        default=None,
        description="host:port the callback listener binds (AC_PIPELINE_CALLBACK_LISTEN). Unset: 0.0.0.0:8766 "
        "with a callback_url, else a free loopback port.",
    )

    def callbacks(self) -> ImportCallbacks | None:
        """Where this account's pushes take their import callbacks, or None if they poll every batch."""
        if not self.import_callbacks or not (self.uses_sandbox or self.callback_url):
            return None
        listen = self.callback_listen or ("0.0.0.0:8766" if self.callback_url else "127.0.0.1:0")
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise dg.Failure(
                f"AC_PIPELINE_CALLBACK_LISTEN is {listen!r}: give host:port, e.g. 0.0.0.0:8766",
                allow_retries=False,
            )
        return ImportCallbacks(host, int(port), self.callback_url or None)

    @property
    def uses_sandbox(self) -> bool:
        return not self.api_url

    @property
    def poll_interval(self) -> float:
        """How long a bulk import is left alone before asking after it."""
        return 1.0 / self.sandbox_speed

    def _limits(self) -> RateLimits:
        # A sped-up sandbox shrinks its one-second window (to 50 ms at speed 20) but not the jitter of a
        # request's trip, so it gets a wider margin; against a real account 5% is plenty.
        margin = 0.05 if self.sandbox_speed <= 1 else 0.2
        limits = RateLimits(
            self.requests_per_second,
            self.bulk_imports_per_minute,
            self.single_contact_imports_per_minute,
            safety_margin=margin,
        )
        return limits.scaled(self.sandbox_speed)

    @contextmanager
    def get_client(self) -> Iterator[ActiveCampaignClient]:
        with self.open_account() as (client, _account):
            yield client

    @contextmanager
    def open_account(self) -> Iterator[tuple[ActiveCampaignClient, str]]:
        """A client, and the identity of the account it reaches: the built-in sandbox's own account id,
        or the real account's API URL (one URL per account). The sync state records it, so that a
        snapshot is never used against another account."""
        if self.uses_sandbox:
            url, account = ensure_local_sandbox(Path(self.sandbox_state), self.sandbox_port, self.sandbox_speed)
            account = f"sandbox:{account}"
            key = SANDBOX_API_KEY
        else:
            if not (self.api_key or "").strip():
                raise dg.Failure(
                    "ACTIVECAMPAIGN_API_URL is set but ACTIVECAMPAIGN_API_KEY is empty: set the key from "
                    "Settings -> Developer in ActiveCampaign",
                    allow_retries=False,
                )
            url, key = str(self.api_url), str(self.api_key)
            account = _account_of(url)
        client = ActiveCampaignClient(
            url, key, limits=self._limits(), timeout=self.timeout_seconds, max_retries=self.max_retries
        )
        try:
            yield client, account
        finally:
            client.close()

    def describe(self) -> str:
        """Where the pushes go, in words a person can check: the account's URL, never the key."""
        if self.uses_sandbox:
            return "the built-in sandbox"
        url = self.api_url
        if isinstance(url, dg.EnvVar):
            # Outside a run nothing has resolved the EnvVar yet, and reading it as a string raises.
            url = url.get_value() or f"${url.env_var_name} (unset)"
        return str(url)


class AccountTablesResource(dg.ConfigurableResource):
    """What comes home from ActiveCampaign (list members, opt-outs, lists, tags): a DuckDB file of its own,
    which audience SQL reads as `activecampaign.<table>`."""

    path: str = Field(description="The account tables' DuckDB file (AC_PIPELINE_ACTIVECAMPAIGN_DB).")

    def tables(self) -> AccountTables:
        return AccountTables(self.path)

    @property
    def exists(self) -> bool:
        """Whether a read-back has written the file yet."""
        return Path(self.path).exists()


def _account_of(api_url: str) -> str:
    """The account an API URL names: scheme and host, lower-cased (`https://acme.api-us1.com/api/3/` and
    `https://ACME.api-us1.com` are one account)."""
    parts = urlsplit(api_url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def activecampaign_resource(where: Paths) -> ActiveCampaignResource:
    """A real account when ACTIVECAMPAIGN_API_URL is set, the built-in sandbox otherwise."""
    # A sandbox started by hand with --speed X (or the built-in one) needs the same X here.
    speed = float(os.environ.get("AC_PIPELINE_SANDBOX_SPEED", "1"))
    callbacks: dict[str, Any] = dict(
        import_callbacks=os.environ.get("AC_PIPELINE_IMPORT_CALLBACKS", "on").strip().lower() not in OFF,
        callback_url=os.environ.get("AC_PIPELINE_CALLBACK_URL", "").strip() or None,
        callback_listen=os.environ.get("AC_PIPELINE_CALLBACK_LISTEN", "").strip() or None,
    )
    if os.environ.get("ACTIVECAMPAIGN_API_URL", "").strip():
        return ActiveCampaignResource(
            api_url=dg.EnvVar("ACTIVECAMPAIGN_API_URL"),
            api_key=dg.EnvVar("ACTIVECAMPAIGN_API_KEY"),
            sandbox_speed=speed,
            **callbacks,
        )
    return ActiveCampaignResource(
        sandbox_state=str(where.sandbox_state),
        sandbox_port=int(os.environ.get("AC_PIPELINE_SANDBOX_PORT", "8765")),
        sandbox_speed=speed,
        **callbacks,
    )
