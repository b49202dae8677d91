"""When lists are read back on their own: a daily reconciliation, one run per audience."""

import dagster as dg


def build_daily_reconcile(job, partitions: dg.StaticPartitionsDefinition) -> dg.ScheduleDefinition:
    # Stopped until someone turns it on in the UI, like the sync's schedule. A sync whose list changed
    # identity reconciles by itself; this catches what happens to a list between syncs.
    @dg.schedule(
        job=job, cron_schedule="0 5 * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED
    )
    def daily_list_reconcile(context: dg.ScheduleEvaluationContext):
        """Every audience's list read back at 05:00 UTC, an hour before the daily sync, so that the sync's diff
        starts from what the lists really hold: opt-outs and bounces home, hand edits and deletions repaired."""
        for key in partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{key}:{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key)

    return daily_list_reconcile


def build_daily_account_import(job) -> dg.ScheduleDefinition:
    """The account's lists and tags, read at 05:00 UTC with the lists' members (stopped until turned on)."""
    return dg.ScheduleDefinition(
        name="daily_account_import",
        job=job,
        cron_schedule="0 5 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="The account's lists and tags come home at 05:00 UTC, for audiences built on them.",
    )
