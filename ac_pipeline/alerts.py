"""What the alert webhook is told, and when: one notice per change of state, not one per run.

For each audience and each kind of alert, a reading of the event log says whether the audience is alerting
now; a notice goes out only when that differs from what was last delivered (`alerting`, or `resolved` when it
clears). Pure: the sensor (defs/alerts.py) reads the event log, delivers, and keeps the open alerts in its
cursor. An audience nobody has heard about yet is taken as fine, so turning alerts on tells only what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ac_pipeline.audiences.config import Audience

SYNC_FAILED = "sync_failed"
REMOVAL_GUARD = "removal_guard"
REJECTED_SHARE = "rejected_share"
SIZE_DROP = "size_drop"
KINDS = (SYNC_FAILED, REMOVAL_GUARD, REJECTED_SHARE, SIZE_DROP)


@dataclass(frozen=True)
class Reading:
    """Whether one audience is alerting for one kind now, with the sentence and figures a person needs."""

    kind: str
    audience: Audience
    alerting: bool
    message: str
    run_id: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return alert_key(self.audience.key, self.kind)


def alert_key(audience: str, kind: str) -> str:
    """How an open alert is named in the sensor's cursor."""
    return f"{audience}/{kind}"


def sync_failure(audience: Audience, failed: bool, reason: str, run_id: str) -> Reading:
    """The latest sync run of the audience (not one the removal guard held back: that is its own alert)."""
    if failed:
        message = (
            f"The sync of audience '{audience.key}' (list '{audience.list.name}') failed: {reason}. Nothing "
            "unconfirmed entered the sync snapshot, so the next sync resumes; fix the cause, then re-execute the "
            "run from failure in the Dagster UI."
        )
    else:
        message = f"The sync of audience '{audience.key}' (list '{audience.list.name}') succeeded again."
    return Reading(SYNC_FAILED, audience, failed, message, run_id)


def guard(audience: Audience, passed: bool, description: str, figures: dict[str, Any], run_id: str) -> Reading:
    """The removal guard's latest verdict on the audience; its description already says how to let a run through."""
    if passed:
        message = f"The removal guard let the sync of audience '{audience.key}' through: {description}"
    else:
        message = f"The removal guard held back the sync of audience '{audience.key}': {description}"
    return Reading(REMOVAL_GUARD, audience, not passed, message, run_id, figures)


def rejected_share(
    audience: Audience,
    members: int,
    rejected: int,
    run_id: str,
    push_sent: int = 0,
    push_rejected: int = 0,
) -> Reading:
    """Rows whose email would be refused (of those the latest audience computation selected and did not drop as
    duplicates or exclusions), and contacts ActiveCampaign refused in the latest push (of those it sent)."""
    threshold = audience.alerts.rejected_share
    share = rejected / (members + rejected) if members + rejected else 0.0
    push_share = push_rejected / push_sent if push_sent else 0.0
    alerting = share > threshold or push_share > threshold
    figures = {
        "members": members,
        "rejected": rejected,
        "rejected_share": round(share, 4),
        "push_sent": push_sent,
        "push_rejected": push_rejected,
        "push_rejected_share": round(push_share, 4),
        "threshold": threshold,
    }
    said = (
        f"{rejected} of {members + rejected} rows of audience '{audience.key}' ({share:.1%}) have an email "
        f"ActiveCampaign would refuse, and it refused {push_rejected} of {push_sent} contacts in the latest push "
        f"({push_share:.1%})"
    )
    if alerting:
        message = (
            f"{said}: above the {threshold:.1%} threshold. Fix the emails in the customer 360 (audience_members "
            "lists the reasons; the ledger in the sync state has ActiveCampaign's), or raise alerts.rejected_share "
            "in audiences.yaml."
        )
    else:
        message = f"{said}: back within the {threshold:.1%} threshold."
    return Reading(REJECTED_SHARE, audience, alerting, message, run_id, figures)


def size_drop(audience: Audience, previous: int, current: int, run_id: str) -> Reading:
    """The audience's size against its previous computation. A drop is an event, so this clears on the next
    computation that does not drop again."""
    threshold = audience.alerts.size_drop_share
    drop = (previous - current) / previous if previous else 0.0
    alerting = previous >= audience.alerts.min_members and drop > threshold
    figures = {"previous_members": previous, "members": current, "drop_share": round(drop, 4), "threshold": threshold}
    if alerting:
        message = (
            f"Audience '{audience.key}' fell from {previous} to {current} members ({drop:.1%}, above the "
            f"{threshold:.1%} threshold) since it was last computed. Check the customer 360's latest load and the "
            "audience's condition; the removal guard holds back a sync that would remove too many."
        )
    else:
        message = f"Audience '{audience.key}' holds {current} members, not a sudden drop from the {previous} before."
    return Reading(SIZE_DROP, audience, alerting, message, run_id, figures)


def changes(readings: list[Reading], alerting: set[str]) -> list[Reading]:
    """The readings that change what was last delivered: a new alert, or one that cleared."""
    return [reading for reading in readings if reading.alerting != (reading.key in alerting)]


def delivered(alerting: set[str], reading: Reading) -> set[str]:
    """The open alerts once `reading`'s notice is delivered."""
    return alerting | {reading.key} if reading.alerting else alerting - {reading.key}


def payload(reading: Reading, at: datetime) -> dict[str, Any]:
    """The JSON body of a notice: figures, ids and sentences (a failed sync's carries its error's first line),
    never rows of the audience; the sensor also takes the API key out of the body should any message hold it."""
    return {
        "source": "ac-pipeline",
        "kind": reading.kind,
        "audience": reading.audience.key,
        "list": reading.audience.list.name,
        "state": "alerting" if reading.alerting else "resolved",
        "message": reading.message,
        "run_id": reading.run_id,
        "figures": reading.figures,
        "at": at.isoformat(),
    }
