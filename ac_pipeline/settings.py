"""Where things live: the customer 360, the audience definitions, the sync state and what comes home from
ActiveCampaign.

Everything sits under one home folder, `AC_PIPELINE_HOME` (default `data/`, relative to the working
directory, which is the repository root for `dagster dev` and the demo). Each path can be pointed
elsewhere on its own, e.g. a read-only customer 360 on a shared disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Paths:
    home: Path
    customer_360: Path
    audiences: Path
    # A DuckDB file, or a Postgres URL (postgresql://...) for production: state.open_state picks the store.
    state: Path | str
    # What the read-back brings home from ActiveCampaign (list members, opt-outs, lists, tags): a file of its
    # own, since the customer 360 is read-only and belongs to someone else.
    activecampaign: Path
    # Intermediate asset values (audience members and changes, one Parquet file per partition).
    # A folder, or an object-store URL (s3://bucket/prefix) for production: defs.io writes there.
    assets: Path | str
    # The built-in sandbox's state, and Dagster's own home for the demo's runs.
    sandbox_state: Path
    dagster_home: Path


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


def _env_location(name: str, default: Path) -> Path | str:
    """A path, or a URL (`scheme://...`) kept as written: a URL names a server or a bucket, not a file here."""
    value = os.environ.get(name, "").strip()
    return value if "://" in value else _env_path(name, default)


def paths() -> Paths:
    """Read the locations from the environment now (tests and the demo change it between calls)."""
    home = _env_path("AC_PIPELINE_HOME", Path("data").resolve())
    return Paths(
        home=home,
        customer_360=_env_path("AC_PIPELINE_CUSTOMER_360", home / "customer_360.duckdb"),
        audiences=_env_path("AC_PIPELINE_AUDIENCES", home / "audiences.yaml"),
        state=_env_location("AC_PIPELINE_STATE", home / "state.duckdb"),
        activecampaign=_env_path("AC_PIPELINE_ACTIVECAMPAIGN_DB", home / "activecampaign.duckdb"),
        assets=_env_location("AC_PIPELINE_ASSETS", home / "assets"),
        sandbox_state=_env_path("AC_PIPELINE_SANDBOX_STATE", home / "sandbox.sqlite"),
        dagster_home=_env_path("DAGSTER_HOME", home / "dagster_home"),
    )


def redact(url: str) -> str:
    """A location as it may be shown (messages, logs, metadata): a URL's password replaced with `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
