"""A read-back run in a process of its own, that kills itself at a precise point, for test_reconcile_crashes.py.

    python reconcile_child.py PARTITION DIE_AT [--full]

Runs the list_reconcile job for one audience, with its locations and destination taken from the environment
(as crash_child.py does for the sync). DIE_AT is where the process SIGKILLs itself:
- `page:N`: as the N-th page of the read is requested;
- `before-commit`: inside the reconciliation's transaction, the snapshot rows written, before COMMIT;
- `after-commit`: right after the reconciliation committed, before the asset's value and the account tables
  are written.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(die_at: str) -> None:
    from ac_pipeline.activecampaign import ActiveCampaignClient
    from ac_pipeline.state import readback

    if die_at.startswith("page:"):
        nth, pages = int(die_at.split(":")[1]), [0]
        original_get = ActiveCampaignClient.get_dated

        def get_dated(self: ActiveCampaignClient, path: str, params: dict[str, Any]) -> Any:
            pages[0] += 1
            if pages[0] == nth:
                die()
            return original_get(self, path, params)

        ActiveCampaignClient.get_dated = get_dated  # type: ignore[method-assign]
    elif die_at == "before-commit":
        original_upsert = readback.upsert_snapshot

        def upsert_snapshot(*args: Any, **kwargs: Any) -> None:
            original_upsert(*args, **kwargs)
            die()

        readback.upsert_snapshot = upsert_snapshot
    elif die_at == "after-commit":
        original_commit = readback.ReadBackState.commit

        def commit(self: readback.ReadBackState, *args: Any, **kwargs: Any) -> None:
            original_commit(self, *args, **kwargs)
            die()

        readback.ReadBackState.commit = commit  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown DIE_AT {die_at!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("partition")
    parser.add_argument("die_at")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    arm(args.die_at)

    import dagster as dg

    from ac_pipeline.definitions import build_definitions

    config = {"ops": {"activecampaign_list_members": {"config": {"full": args.full}}}}
    result = (
        build_definitions()
        .resolve_job_def("list_reconcile")
        .execute_in_process(
            partition_key=args.partition,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
            run_config=config,
        )
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
