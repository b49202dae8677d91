"""When the audiences sync by themselves: as soon as an input they read has a new data version.

`audience_members` and `audience_changes` are eager: missing, or an input updated (observed with a new
version, or about to be computed in the same run). The push is stricter: it runs only in the run that
automation launches for its changes. Eager would also push after a person's dry run (which materializes the
changes and not the push) and send what the person only meant to look at. The push keeps its `activecampaign`
pool, whoever launches it.
"""

import dagster as dg

AUDIENCE_CONDITION = dg.AutomationCondition.eager()
PUSH_CONDITION = (
    dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested()).with_label(
        "changes computed by this automation"
    )
    & ~dg.AutomationCondition.in_progress()
)


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    # Stopped until someone turns it on in the UI, like the schedules: a fresh instance must not push.
    return dg.AutomationConditionSensorDefinition(
        "audience_automation",
        target=dg.AssetSelection.all(include_sources=True),  # sources too: it observes them
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
        description="Observes the customer 360 and audiences.yaml, and syncs each audience whose inputs changed. "
        "Off by default: turn it on to keep the lists in step within minutes, without a schedule.",
    )
