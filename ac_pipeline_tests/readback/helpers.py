"""Running the read-back in tests: the list_reconcile job for the `panel` world, and counting writes."""

from __future__ import annotations

import dagster as dg

from ac_pipeline_tests.fixtures.pipeline import QUIET, materialization
from ac_pipeline_tests.sync.consent_world import KEY, World

# What writes to a list: the only requests a list in step must not cause.
SENDS = ("POST /api/3/import/bulk_import", "POST /api/3/contact/sync", "POST /api/3/contactLists")


def reconcile(world: World, **config: bool) -> dict:
    """Read the panel's list back (the list_reconcile job, in process); the asset's metadata. Fails the test if
    the run failed."""
    run_config: dict = {**QUIET}
    if config:
        run_config["ops"] = {"activecampaign_list_members": {"config": config}}
    result = world.pipeline.defs.resolve_job_def("list_reconcile").execute_in_process(
        partition_key=KEY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=run_config
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return materialization(result, "activecampaign_list_members")


def sends(world: World) -> int:
    by_path = world.admin.requests()["by_path_status"]
    return sum(sum(int(n) for n in by_path.get(path, {}).values()) for path in SENDS)
