"""The rules of ac_pipeline/alerts.py without Dagster: thresholds, and one notice per change of state."""

from __future__ import annotations

from datetime import UTC, datetime

from ac_pipeline import alerts
from ac_pipeline.audiences.config import Audience

AUDIENCE = Audience.model_validate(
    {
        "key": "vip",
        "list": {"name": "VIP"},
        "condition": "true",
        "fields": {"email": "email"},
        "alerts": {"rejected_share": 0.1, "size_drop_share": 0.5, "min_members": 10},
    }
)


def test_defaults() -> None:
    plain = Audience.model_validate({"key": "a", "list": {"name": "A"}, "condition": "true", "fields": {"email": "e"}})
    assert (plain.alerts.rejected_share, plain.alerts.size_drop_share, plain.alerts.min_members) == (0.05, 0.3, 20)


def test_size_drop_threshold_and_small_audiences() -> None:
    assert alerts.size_drop(AUDIENCE, 100, 49, "r").alerting
    assert not alerts.size_drop(AUDIENCE, 100, 50, "r").alerting
    assert not alerts.size_drop(AUDIENCE, 9, 0, "r").alerting  # too small to mean anything
    assert not alerts.size_drop(AUDIENCE, 0, 0, "r").alerting


def test_rejected_share_counts_the_audience_and_the_push() -> None:
    assert alerts.rejected_share(AUDIENCE, 89, 11, "r").alerting
    assert not alerts.rejected_share(AUDIENCE, 90, 10, "r").alerting
    assert alerts.rejected_share(AUDIENCE, 100, 0, "r", push_sent=10, push_rejected=2).alerting
    assert not alerts.rejected_share(AUDIENCE, 0, 0, "r").alerting


def test_one_notice_per_change_of_state() -> None:
    failing = alerts.sync_failure(AUDIENCE, True, "boom", "r1")
    fine = alerts.sync_failure(AUDIENCE, False, "", "r2")
    open_alerts: set[str] = set()
    assert alerts.changes([fine], open_alerts) == []  # nothing was wrong: nothing to say
    assert alerts.changes([failing], open_alerts) == [failing]
    open_alerts = alerts.delivered(open_alerts, failing)
    assert alerts.changes([failing], open_alerts) == []  # still failing: said already
    assert alerts.changes([fine], open_alerts) == [fine]
    assert alerts.delivered(open_alerts, fine) == set()


def test_payload() -> None:
    body = alerts.payload(alerts.size_drop(AUDIENCE, 100, 10, "run-1"), datetime(2026, 1, 1, tzinfo=UTC))
    assert body["kind"] == "size_drop" and body["state"] == "alerting" and body["run_id"] == "run-1"
    assert body["audience"] == "vip" and body["list"] == "VIP" and body["figures"]["members"] == 10
    assert "fell from 100 to 10" in body["message"]
    cleared = alerts.payload(alerts.size_drop(AUDIENCE, 10, 10, "run-2"), datetime(2026, 1, 1, tzinfo=UTC))
    assert cleared["state"] == "resolved"
