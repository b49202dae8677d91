"""Fixtures of the deploy tests: a scratch Postgres database (see postgres.py)."""

from ac_pipeline_tests.deploy.postgres import postgres_database  # noqa: F401 - a fixture
