"""Counts of the /api/3 requests the sandbox answered, by path template and status, for tests to inspect."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

# The status recorded for a request closed without an answer: a `drop` fault, or a client that went away.
DROPPED = "dropped"


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path_status: Counter[tuple[str, str]] = Counter()

    def record(self, path: str, status: int | str) -> None:
        with self._lock:
            self._by_path_status[(path, str(status))] += 1

    def clear(self) -> None:
        with self._lock:
            self._by_path_status.clear()

    def summary(self) -> dict[str, Any]:
        """{"total": 123, "by_path": {"POST /api/3/import/bulk_import": 40}, "by_status": {"200": 100},
        "by_path_status": {"POST /api/3/import/bulk_import": {"200": 38, "429": 2}}}"""
        with self._lock:
            items = list(self._by_path_status.items())
        by_path: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_path_status: dict[str, dict[str, int]] = {}
        for (path, status), count in items:
            by_path[path] += count
            by_status[status] += count
            by_path_status.setdefault(path, {})[status] = count
        return {
            "total": sum(by_path.values()),
            "by_path": dict(by_path),
            "by_status": dict(by_status),
            "by_path_status": by_path_status,
        }
