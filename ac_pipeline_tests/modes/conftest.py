"""Fixtures of the mode tests: a small audience on a real sandbox, with the YAML each test gives."""

from ac_pipeline_tests.modes.world import make_world  # noqa: F401 - a fixture
