"""Test doubles shared by the client's unit tests."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when something sleeps on it, recording each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
