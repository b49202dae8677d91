"""The alert sensor against real runs: a sandbox, real Dagster runs on one instance, a loopback webhook."""

from __future__ import annotations

import dagster as dg
import pytest

from ac_pipeline.defs.alerts import WEBHOOK_ENV, deliver
from ac_pipeline_tests.alerts.conftest import Receiver
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.sync.orchestration_helpers import WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST, write_audiences

AUDIENCE = "welcome_series"


def tick(pipeline: Pipeline, instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    """One evaluation of the sensor, as the daemon would run it; returns the new cursor."""
    sensor = pipeline.defs.resolve_sensor_def("audience_alerts")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"audiences": pipeline.defs.resources["audiences"]}
    )
    data = sensor.evaluate_tick(context)
    assert not data.run_requests
    return data.cursor


def kinds(bodies: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((body["kind"], body["audience"], body["state"]) for body in bodies)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_a_failed_sync_is_told_once_and_resolved_once(
    pipeline: Pipeline, instance: dg.DagsterInstance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_audiences(pipeline.home, (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST))
    assert not pipeline.sync(AUDIENCE, instance=instance).success

    # Without the variable, the sensor sends nothing and remembers nothing.
    assert tick(pipeline, instance, None) is None and receiver.raw == []

    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    cursor = tick(pipeline, instance, None)
    [notice] = receiver.take()
    assert (notice["kind"], notice["audience"], notice["state"]) == ("sync_failed", AUDIENCE, "alerting")
    assert "Welcome series" in notice["message"] and notice["run_id"]

    assert not pipeline.sync(AUDIENCE, instance=instance).success  # still failing: nothing new to say
    cursor = tick(pipeline, instance, cursor)
    assert receiver.take() == []

    write_audiences(pipeline.home, (WELCOME_LIST_MUST_EXIST, WELCOME_LIST_CREATED))
    fixed = pipeline.sync(AUDIENCE, instance=instance)
    assert fixed.success

    # The webhook is down for this tick: the notice is not lost, the cursor does not move, the sensor does not fail.
    receiver.failing = 3
    assert tick(pipeline, instance, cursor) == cursor
    assert receiver.refused == 3 and receiver.take() == []

    cursor = tick(pipeline, instance, cursor)
    [resolved] = receiver.take()
    assert (resolved["kind"], resolved["state"], resolved["run_id"]) == ("sync_failed", "resolved", fixed.run_id)
    assert tick(pipeline, instance, cursor) == cursor and receiver.take() == []
    assert not any(pipeline.sandbox.api_key in raw for raw in receiver.raw)


def test_a_blocked_guard_and_a_drop_in_size(
    pipeline: Pipeline, instance: dg.DagsterInstance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    assert pipeline.sync(AUDIENCE, instance=instance).success
    cursor = tick(pipeline, instance, None)
    assert receiver.take() == []  # all is well: nothing to say

    pipeline.execute("UPDATE customers SET email_consent = NULL")  # a broken load: nobody qualifies
    assert not pipeline.sync(AUDIENCE, instance=instance).success
    cursor = tick(pipeline, instance, cursor)
    notices = receiver.take()
    # The run failed because the guard held it back: that is the guard's notice, not a failed sync's.
    assert kinds(notices) == [("removal_guard", AUDIENCE, "alerting"), ("size_drop", AUDIENCE, "alerting")]
    by_kind = {notice["kind"]: notice for notice in notices}
    assert "ac_pipeline/allow_removals" in by_kind["removal_guard"]["message"]
    assert by_kind["size_drop"]["figures"]["members"] == 0 and by_kind["size_drop"]["figures"]["previous_members"] > 0

    # A person looked, and lets the removals through: the guard passes, and the audience holds its (new) size.
    assert pipeline.sync(AUDIENCE, instance=instance, tags={"ac_pipeline/allow_removals": AUDIENCE}).success
    tick(pipeline, instance, cursor)
    assert kinds(receiver.take()) == [("removal_guard", AUDIENCE, "resolved"), ("size_drop", AUDIENCE, "resolved")]
    assert not any(pipeline.sandbox.api_key in raw for raw in receiver.raw)


def test_a_rejected_share_above_the_threshold(
    pipeline: Pipeline, instance: dg.DagsterInstance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    pipeline.execute("UPDATE customers SET email = 'not an email ' || customer_id WHERE customer_id % 10 = 0")
    assert pipeline.sync(AUDIENCE, instance=instance).success
    tick(pipeline, instance, None)
    [notice] = receiver.take()
    assert (notice["kind"], notice["state"]) == ("rejected_share", "alerting")
    assert notice["figures"]["rejected_share"] > notice["figures"]["threshold"] == 0.05
    assert "not an email" not in notice["message"]  # figures, never contact data


def test_a_delivery_failure_is_logged_without_the_webhook_token(receiver: Receiver) -> None:
    said: list[str] = []

    class Log:
        def warning(self, message: str) -> None:
            said.append(message)

    receiver.failing = 3
    assert not deliver(receiver.url, "{}", Log())
    assert receiver.refused == 3
    [message] = said
    assert "HTTP 500" in message and "127.0.0.1" in message and "secret-token" not in message
    assert deliver(receiver.url, '{"ok": true}', Log()) and receiver.take() == [{"ok": True}]
