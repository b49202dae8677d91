"""The removal guard: a broken upstream table must never become a mass unsubscribe.

A sync is held back before anything is sent when it would remove more of the list than the audience
allows (a share of the last synced list, or a count), or when the audience comes back empty while the
list has members. A person lets one run through by tagging it `ac_pipeline/allow_removals` (`true`
for every audience, or a comma-separated list of audience keys) from the UI, or with the run config
`allow_removals: true` on `audience_changes` (`--config-json` from the CLI, which has no tags option).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ac_pipeline.audiences.config import RemovalGuard

OVERRIDE_TAG = "ac_pipeline/allow_removals"

# The run config that lets one run through: `dagster asset materialize` and `dagster job launch` take it as
# --config-json (they have no option for run tags), and the UI's launchpad takes it as YAML.
ALLOW_REMOVALS_RUN_CONFIG = {"ops": {"audience_changes": {"config": {"allow_removals": True}}}}


def override_hint(audience_key: str) -> str:
    """How a person lets one run through, from the UI and from the command line."""
    config = json.dumps(ALLOW_REMOVALS_RUN_CONFIG)
    return (
        f"If this is intended, let one run through: in the UI, launch it with the run tag {OVERRIDE_TAG}=true "
        f"(or ={audience_key}); from the command line, run "
        "dagster asset materialize -m ac_pipeline.definitions "
        f"--select audience_members,audience_changes,activecampaign_sync --partition {audience_key} "
        f"--config-json '{config}'"
    )


@dataclass(frozen=True)
class GuardVerdict:
    passed: bool
    reason: str
    share: float


def evaluate(guard: RemovalGuard, synced_members: int, removals: int, audience_size: int) -> GuardVerdict:
    """Whether a sync that removes `removals` of `synced_members` may go ahead."""
    share = removals / synced_members if synced_members else 0.0
    if synced_members and audience_size == 0:
        return GuardVerdict(
            False,
            f"the audience is empty but the list has {synced_members:,} synced members: "
            "an empty audience usually means a broken upstream table",
            share,
        )
    if guard.max_count is not None and removals > guard.max_count:
        return GuardVerdict(False, f"{removals:,} removals exceed the limit of {guard.max_count:,}", share)
    if synced_members >= guard.min_list_size and share > guard.max_share:
        return GuardVerdict(
            False,
            f"{removals:,} removals are {share:.1%} of the {synced_members:,} synced members, "
            f"above the limit of {guard.max_share:.0%}",
            share,
        )
    return GuardVerdict(
        True, f"{removals:,} removals of {synced_members:,} synced members ({share:.1%}) are within limits", share
    )


def overridden(tag_value: str | None, audience: str) -> bool:
    """Whether the run's override tag covers this audience."""
    if not tag_value:
        return False
    value = tag_value.strip().lower()
    if value in ("true", "yes", "1", "all", "*"):
        return True
    return audience in {part.strip() for part in tag_value.split(",")}
