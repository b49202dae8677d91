"""The batches a bulk send has still to send, handed to its submitter threads once they are journaled."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import polars as pl

from ac_pipeline.sync.payloads import Batch

# Batches journaled at once, in units of max_in_flight (see Outbox).
JOURNAL_GROUPS = 2


class Outbox:
    """The batches still to send, taken one at a time by the submitter threads.

    At most `max_in_flight` batches are out at once (sent and not yet settled): a slot is taken with a
    batch and given back when the batch settles, so a crash resends at most that many. No batch is handed
    out before its contacts are in the intent journal: batches are journaled `JOURNAL_GROUPS x max_in_flight`
    at a time, the next group while the current one goes out, so the sends rarely wait for the write. (A
    journal write costs tens of milliseconds of CPU on a big DuckDB state file, more when it must open the file
    (state/duckdb_keep.py): fewer, larger writes leave that CPU to the sends. A crash leaves more intents to settle, which the next attempt does
    from the list's records at the same cost.)
    """

    def __init__(
        self,
        upcoming: Iterator[Batch],
        max_in_flight: int,
        journal: Callable[[pl.DataFrame], Future[None]],
    ):
        self._upcoming = upcoming
        self._journal = journal
        self._max_in_flight = max_in_flight
        self._journaled: deque[Batch] = deque()  # built and journaled, not yet taken
        self._journaling: tuple[list[Batch], Future[None]] | None = None  # the next group, being written
        self._built_all = False
        self._again: deque[Batch] = deque()  # sent before new batches: remainders, failed imports
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_in_flight)
        self._exhausted = False
        self._out = 0  # taken by a submitter, not yet reported back
        self._error: BaseException | None = None
        self.stopped = threading.Event()

    def take(self, timeout: float) -> Batch | None:
        if not self._slots.acquire(timeout=timeout):
            return None
        with self._lock:
            batch = self._again.popleft() if self._again else self._next_new()
            if batch is None:
                self._exhausted = True
            else:
                self._out += 1
        if batch is None:
            self._slots.release()
            self.stopped.wait(timeout)  # nothing to send now; a failed import may still come back
        return batch

    def _next_new(self) -> Batch | None:
        if self._journaling is not None and (not self._journaled or self._journaling[1].done()):
            self._take_journaled()
        group = JOURNAL_GROUPS * self._max_in_flight
        if self._journaling is None and len(self._journaled) <= group // 2 and not self._built_all:
            ahead = list(itertools.islice(self._upcoming, group))
            if ahead:
                self._journaling = (ahead, self._journal(pl.concat([b.rows for b in ahead], rechunk=False)))
            else:
                self._built_all = True
        if not self._journaled and self._journaling is not None:
            self._take_journaled()
        return self._journaled.popleft() if self._journaled else None

    def _take_journaled(self) -> None:
        assert self._journaling is not None
        ahead, written = self._journaling
        self._journaling = None
        written.result()  # a failed journal write stops the send: nothing unjournaled goes out
        self._journaled.extend(ahead)

    def reported(self) -> None:
        with self._lock:
            self._out -= 1

    def release(self, again: Batch | None = None) -> None:
        """A batch left flight; `again` is to be sent (once more)."""
        with self._lock:
            if again is not None:
                self._again.append(again)
        self._slots.release()

    def drained(self) -> bool:
        with self._lock:
            return (
                self._exhausted
                and not self._again
                and not self._journaled
                and self._journaling is None
                and self._out == 0
            )

    def fail(self, error: BaseException) -> None:
        """A submitter thread hit something it cannot hand back as a report: stop everything."""
        with self._lock:
            self._error = self._error or error
        self.stopped.set()

    def raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"a bulk-import thread stopped: {self._error}") from self._error
