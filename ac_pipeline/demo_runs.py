"""The demo's Dagster runs: the tags that say who started each one, and the clean-up of runs whose process
is gone (marked failed, their `activecampaign` pool slots freed), which the supervisor does after a
stopped worker and every worker does before it starts.

Imports Dagster only inside its functions, so that the supervisor stays light.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

# The push's pool (ac_pipeline.defs.activecampaign.assets.POOL; not imported, to keep Dagster out of
# the supervisor).
POOL = "activecampaign"
# Every demo run says who started it: the demo, which process and on which machine, so that a later
# demo can tell a run that is still going from one whose process is gone.
SOURCE_TAG, PID_TAG, HOST_TAG = "ac_pipeline/source", "ac_pipeline/pid", "ac_pipeline/host"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # somebody else's process, alive
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False  # no /proc to ask: alive, as far as we can tell
    # A zombie is dead; a live process running something else took over a recycled pid.
    return fields[0] == "Z" or b"demo" not in cmdline


def _run_is_dead(run: dg.DagsterRun) -> bool:
    pid = run.tags.get(PID_TAG)
    if pid is None:
        return True  # started by a demo older than the pid tag, which this checkout replaced
    if run.tags.get(HOST_TAG, socket.gethostname()) != socket.gethostname():
        return False  # another machine's process: no way to tell from here
    return _process_gone(int(pid))


def free_dead_runs(instance: dg.DagsterInstance, pid: int | None = None) -> list[str]:
    """Mark failed the demo's runs whose process is gone (or only process `pid`'s), and free every pool
    slot held by a run that has ended. Returns a line per run it cleaned up."""
    import dagster as dg

    tags = {SOURCE_TAG: "demo", **({PID_TAG: str(pid)} if pid is not None else {})}
    unfinished = [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    storage = instance.event_log_storage
    lines = []
    for run in instance.get_runs(dg.RunsFilter(tags=tags, statuses=unfinished)):
        if not _run_is_dead(run):
            continue
        instance.report_run_failed(
            run, f"The demo process that ran this run (pid {run.tags.get(PID_TAG, 'unknown')}) is gone."
        )
        storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(
            f"cleaned up run {run.run_id} ({partition_of(run)}): its process is gone; marked failed, pool slots freed"
        )
    # Slots still held by runs that ended: what run monitoring's free_slots_after_run_end_seconds does
    # when the daemon runs. Another source's run gets the same delay the daemon would give it.
    delay = float(instance.run_monitoring_settings.get("free_slots_after_run_end_seconds") or 30)
    for run_id in storage.get_concurrency_run_ids():
        record = instance.get_run_record_by_id(run_id)
        if record is None or not record.dagster_run.is_finished:
            continue
        ours = record.dagster_run.tags.get(SOURCE_TAG) == "demo" and _run_is_dead(record.dagster_run)
        if not ours and (record.end_time is None or time.time() - record.end_time < delay):
            continue
        if any(slot.run_id == run_id for slot in storage.get_concurrency_info(POOL).claimed_slots):
            lines.append(
                f"freed the {POOL} pool slot of run {run_id} ({partition_of(record.dagster_run)}), "
                f"which ended ({record.dagster_run.status.value}) without freeing it"
            )
        storage.free_concurrency_slots_for_run(run_id)
    return lines


def partition_of(run: dg.DagsterRun) -> str:
    return f"{run.job_name}, {run.tags.get('dagster/partition', 'no partition')}"
