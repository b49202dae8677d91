from ac_pipeline_tests.fixtures.sandbox import make_sandbox  # noqa: F401  (fixture)
