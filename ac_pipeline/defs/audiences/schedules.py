"""When audiences sync on their own: a daily schedule, one run per audience."""

import dagster as dg


def build_daily_sync(job, partitions: dg.StaticPartitionsDefinition) -> dg.ScheduleDefinition:
    # Stopped until someone turns it on in the UI: a fresh instance must not start pushing to an account.
    @dg.schedule(
        job=job, cron_schedule="0 6 * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED
    )
    def daily_audience_sync(context: dg.ScheduleEvaluationContext):
        """Every audience at 06:00 UTC: one run per audience, so one failing never holds back the others."""
        for key in partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{key}:{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key)

    return daily_audience_sync
