"""The account's identity: an id made when its state is created, kept across restarts of a state file, new
after a reset and for every fresh in-memory sandbox; /_sandbox/config shows it with the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ac_pipeline_tests.sandbox.helpers import MakeSandbox


def test_the_account_id_survives_a_restart_and_changes_on_reset(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    state = tmp_path / "account.sqlite"
    first = make_sandbox(state_path=state)
    config = first.admin.config()
    assert config["state_file"] == str(state.resolve())
    account = config["account_id"]
    first.stop()

    second = make_sandbox(state_path=state)
    assert second.admin.config()["account_id"] == account
    second.admin.reset()
    after_reset = second.admin.config()["account_id"]
    assert after_reset != account
    second.stop()
    assert make_sandbox(state_path=state).admin.config()["account_id"] == after_reset


def test_a_relative_state_path_is_shown_absolute(
    make_sandbox: MakeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert make_sandbox(state_path="here.sqlite").admin.config()["state_file"] == str(tmp_path / "here.sqlite")


def test_every_in_memory_sandbox_is_another_account(make_sandbox: MakeSandbox) -> None:
    first, second = make_sandbox().admin.config(), make_sandbox().admin.config()
    assert first["state_file"] is None and second["state_file"] is None
    assert first["account_id"] != second["account_id"]
