"""The removal guard's rule, and the override tag's reach."""

from __future__ import annotations

import pytest

from ac_pipeline.audiences.config import RemovalGuard
from ac_pipeline.audiences.guard import evaluate, overridden


@pytest.mark.parametrize(
    ("guard", "synced", "removals", "size", "passed"),
    [
        (RemovalGuard(), 1000, 200, 800, True),  # exactly 20%
        (RemovalGuard(), 1000, 201, 799, False),
        (RemovalGuard(max_share=0.5), 1000, 400, 600, True),
        (RemovalGuard(max_count=10, max_share=1.0), 1000, 11, 989, False),
        (RemovalGuard(), 1000, 1000, 0, False),  # the audience came back empty
        (RemovalGuard(), 10, 5, 5, True),  # below min_list_size, shares mean little
        (RemovalGuard(min_list_size=0), 10, 5, 5, False),
        (RemovalGuard(), 0, 0, 0, True),  # nothing synced yet
        (RemovalGuard(), 5, 5, 0, False),  # empty audience blocks even a small list
    ],
)
def test_guard(guard, synced, removals, size, passed) -> None:
    verdict = evaluate(guard, synced, removals, size)
    assert verdict.passed is passed
    assert verdict.reason


@pytest.mark.parametrize(
    ("tag", "audience", "expected"),
    [
        (None, "vip", False),
        ("", "vip", False),
        ("true", "vip", True),
        ("TRUE", "vip", True),
        ("vip", "vip", True),
        ("lapsed, vip", "vip", True),
        ("lapsed", "vip", False),
        ("false", "vip", False),
    ],
)
def test_override_tag(tag, audience, expected) -> None:
    assert overridden(tag, audience) is expected
