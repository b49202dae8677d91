"""The removal guard on audience changes: it stands between a broken table and a mass unsubscribe.

It is a blocking check evaluated by `audience_changes` itself, with the changes in hand: when it fails,
the changes are still recorded (so a person can look at them) but the push never starts, and the step fails
with a `dg.Failure` that says why and what to do (not Dagster's bare "1 blocking asset check failed").

The check is partitioned like its asset (one status per audience): Dagster 1.13 keeps a check's status per
partition when its spec has a `partitions_def`, so one audience's pass never hides another's block.
"""

import json
import warnings

import dagster as dg

from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.guard import ALLOW_REMOVALS_RUN_CONFIG, OVERRIDE_TAG, evaluate, override_hint

REMOVAL_GUARD = "removal_guard"
REMOVAL_GUARD_DESCRIPTION = (
    "Holds the sync back, before anything is sent, when it would remove more than the audience allows "
    "(default 20% of the last synced list) or the audience came back empty while the list has members. "
    f"Let one run through with the run tag {OVERRIDE_TAG}=true (or the audience key), or the run config "
    f"--config-json '{json.dumps(ALLOW_REMOVALS_RUN_CONFIG)}' (for the CLI, which has no tags option)."
)


def partitioned_check_spec(
    name: str, asset: str, partitions: dg.PartitionsDefinition, description: str, blocking: bool
) -> dg.AssetCheckSpec:
    """A check with one status per audience. Partitioned checks are a preview feature in Dagster 1.13, chosen
    knowingly (an asset-wide status let a passing audience hide a blocked one), so its warning is not repeated at
    every load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, blocking=blocking, description=description, partitions_def=partitions
        )


def removal_guard_spec(partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return partitioned_check_spec(
        REMOVAL_GUARD, "audience_changes", partitions, REMOVAL_GUARD_DESCRIPTION, blocking=True
    )


def removal_guard_result(
    audience: Audience, synced_members: int, removals: int, audience_size: int, override: bool
) -> dg.AssetCheckResult:
    verdict = evaluate(audience.removal_guard, synced_members, removals, audience_size)
    metadata: dict[str, dg.RawMetadataValue] = {
        "audience": audience.key,
        "removals": removals,
        "synced_members": synced_members,
        "removal_share": round(verdict.share, 4),
        "max_share": audience.removal_guard.max_share,
        "overridden": override and not verdict.passed,
    }
    where = f"{audience.key} (list '{audience.list.name}')"
    if verdict.passed:
        return dg.AssetCheckResult(
            check_name=REMOVAL_GUARD, passed=True, metadata=metadata, description=f"{where}: {verdict.reason}."
        )
    if override:
        return dg.AssetCheckResult(
            check_name=REMOVAL_GUARD,
            passed=True,
            metadata=metadata,
            description=f"{where}: overridden for this run by a person: {verdict.reason}.",
        )
    return dg.AssetCheckResult(
        check_name=REMOVAL_GUARD,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=f"{where}: sync held back, nothing was sent: {verdict.reason}. {override_hint(audience.key)}",
    )


def removal_guard_failure(audience: Audience, result: dg.AssetCheckResult) -> dg.Failure:
    """The step failure of a held-back sync: the guard's verdict and how to let it through, in the failure itself
    (the operator reads the failed step first)."""
    return dg.Failure(
        description=f"Removal guard: {result.description}",
        metadata={
            **result.metadata,
            "what_to_do": dg.MetadataValue.md(
                "Look at the `audience_changes` preview: if the removals are a broken upstream table, fix it and "
                f"run again. If they are intended: {override_hint(audience.key)}"
            ),
        },
        allow_retries=False,
    )
