"""Fixtures of the read-back tests: the sync tests' small `panel` audience on a real sandbox."""

from ac_pipeline_tests.sync.consent_world import world  # noqa: F401 - a fixture
