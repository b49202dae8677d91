"""The removal guard on audience changes: it stands between a broken table and a mass unsubscribe.

It is a blocking check evaluated by `audience_changes` itself, with the changes in hand: when it fails,
the changes are still recorded (so a person can look at them) but the push never starts.
"""

import json

import dagster as dg

from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.guard import ALLOW_REMOVALS_RUN_CONFIG, OVERRIDE_TAG, evaluate, override_hint

REMOVAL_GUARD = "removal_guard"
removal_guard_spec = dg.AssetCheckSpec(
    REMOVAL_GUARD,
    asset="audience_changes",
    blocking=True,
    description=(
        "Holds the sync back, before anything is sent, when it would remove more than the audience allows "
        "(default 20% of the last synced list) or the audience came back empty while the list has members. "
        f"Let one run through with the run tag {OVERRIDE_TAG}=true (or the audience key), or the run config "
        f"--config-json '{json.dumps(ALLOW_REMOVALS_RUN_CONFIG)}' (for the CLI, which has no tags option)."
    ),
)


def removal_guard_result(
    audience: Audience, synced_members: int, removals: int, audience_size: int, override: bool
) -> dg.AssetCheckResult:
    verdict = evaluate(audience.removal_guard, synced_members, removals, audience_size)
    metadata = {
        "removals": removals,
        "synced_members": synced_members,
        "removal_share": round(verdict.share, 4),
        "max_share": audience.removal_guard.max_share,
        "overridden": override and not verdict.passed,
    }
    if verdict.passed:
        return dg.AssetCheckResult(check_name=REMOVAL_GUARD, passed=True, metadata=metadata, description=verdict.reason)
    if override:
        return dg.AssetCheckResult(
            check_name=REMOVAL_GUARD,
            passed=True,
            metadata=metadata,
            description=f"Overridden for this run by a person: {verdict.reason}",
        )
    return dg.AssetCheckResult(
        check_name=REMOVAL_GUARD,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=(
            f"Sync of '{audience.list.name}' held back, nothing was sent: {verdict.reason}. "
            f"{override_hint(audience.key)}"
        ),
    )
