"""Fixtures of the sync tests: the small `panel` audience on a real sandbox (see consent_world)."""

from ac_pipeline_tests.sync.consent_world import world  # noqa: F401 - a fixture
