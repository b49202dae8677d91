"""A scratch Postgres database on this machine's server (127.0.0.1:5432, trust authentication), made for one
test and dropped after it.

Postgres not reachable: the test is skipped, saying why, except on CI (`CI=true`), where it fails: `.ci/run`
requires the server, and CI never skips silently.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

HOST, PORT, MAINTENANCE_DB = "127.0.0.1", 5432, "test"


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    password: str
    name: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.name, autocommit=True
        )

    @property
    def url(self) -> str:
        """The database as AC_PIPELINE_STATE names it."""
        password = f":{self.password}" if self.password else ""
        return f"postgresql://{self.user}{password}@{self.host}:{self.port}/{self.name}"

    def dagster_env(self) -> dict[str, str]:
        """The variable deploy/dagster.yaml reads: the same database, through the driver dagster-postgres needs."""
        return {"DAGSTER_PG_URL": self.url.replace("postgresql://", "postgresql+psycopg2://", 1)}


def _maintenance_connection() -> tuple[psycopg.Connection, str]:
    """A connection to the server's `test` database, as `postgres` or else as the current user."""
    errors = []
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        try:
            connection = psycopg.connect(
                host=HOST, port=PORT, user=user, dbname=MAINTENANCE_DB, autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as error:
            errors.append(f"as {user}: {' '.join(str(error).split())}")
            continue
        return connection, user
    reason = f"PostgreSQL at {HOST}:{PORT} (database {MAINTENANCE_DB}) is not reachable: " + "; ".join(errors)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI requires it (see .ci/run).", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres_database() -> Iterator[PostgresDatabase]:
    """A fresh, empty database `ac_pipeline_<random hex>`, dropped after the test (its sessions ended first)."""
    admin, user = _maintenance_connection()
    name = f"ac_pipeline_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield PostgresDatabase(host=HOST, port=PORT, user=user, password="", name=name)
        finally:
            # Whatever the test left connected (a Dagster instance not closed, a run still going) is ended:
            # DROP DATABASE refuses a database with sessions. FORCE (PostgreSQL 13+) ends them and drops in one
            # statement, so that nothing reconnects in between.
            if admin.info.server_version >= 130000:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
