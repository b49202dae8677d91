"""What a collection's pages share, kept while the data is unchanged: its count and, for contacts in id order, the
ids of every match.

A client pages through a collection with `offset`, or (the pipeline's read-back) with `orders[id]` and a moving
`id_greater`; every page's `meta.total` counts every match of its filters, so computed afresh it costs the whole
collection on every page, and a whole read costs the square of the collection. Kept, a page costs what it shows.

Nothing here can go stale: every entry belongs to one version of the data, the connection's total of rows
inserted, updated or deleted with SQLite's `data_version`. The first moves with every write through the store's
one connection, a write rolled back included (a needless recount, never a stale one); the second with a commit by
any other connection to a state file. On another version every entry is dropped before one is read. Only
queries whose answer depends on nothing but the data may use it (none of the sandbox's reads ask for the time).
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

# Id sets kept: up to this many ids in all (8 bytes each) and this many sets, so that one-off lookups (`email=`)
# between the pages of a read do not push out the list it walks.
ID_BUDGET = 4_000_000
ID_SETS = 64
COUNTS = 256  # counts are one number each; this only bounds a client that never repeats a query


class ReadCache:
    """Counts and id sets of queries on `conn`, for the current version of the data. Callers hold the store's
    lock: the version check and the read it guards must see the same data."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.version: tuple[int, int] | None = None
        self.counts: OrderedDict[tuple[str, tuple[Any, ...]], int] = OrderedDict()
        self.id_sets: OrderedDict[tuple[str, tuple[Any, ...]], array[int]] = OrderedDict()

    def _current(self) -> None:
        version = (self.conn.total_changes, self.conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self.version:
            self.counts.clear()
            self.id_sets.clear()
            self.version = version

    def count(self, sql: str, params: Sequence[Any]) -> int:
        """How many rows `sql` gives."""
        self._current()
        key = (sql, tuple(params))
        if key not in self.counts:
            self.counts[key] = int(self.conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])
            if len(self.counts) > COUNTS:
                self.counts.popitem(last=False)
        self.counts.move_to_end(key)
        return self.counts[key]

    def ids(self, sql: str, params: Sequence[Any]) -> array[int]:
        """The ids `sql` gives (its one column: distinct integers), in ascending order."""
        self._current()
        key = (sql, tuple(params))
        if key not in self.id_sets:
            cursor = self.conn.cursor()
            cursor.row_factory = None  # plain tuples: a Row apiece is most of the cost of a large set
            # Sorted here rather than by ORDER BY: SQLite would sort the whole set in a temporary B-tree, where a
            # list's members come in a few sorted runs (one a status) that Python's sort merges in one pass.
            self.id_sets[key] = array("q", sorted(row[0] for row in cursor.execute(sql, params)))
            while len(self.id_sets) > 1 and (
                len(self.id_sets) > ID_SETS or sum(len(ids) for ids in self.id_sets.values()) > ID_BUDGET
            ):
                self.id_sets.popitem(last=False)  # the least recently read; the new set, the last, stays
        self.id_sets.move_to_end(key)
        return self.id_sets[key]


def id_window(
    ids: Sequence[int], above: int | None, below: int | None, descending: bool, limit: int, offset: int
) -> tuple[list[int], int]:
    """A page of the sorted `ids` between the bounds (`id_greater`, `id_less`, exclusive), ascending or
    descending, after skipping `offset`; and how many ids lie between the bounds (the page's `meta.total`)."""
    start = 0 if above is None else bisect_right(ids, above)
    end = max(start, len(ids) if below is None else bisect_left(ids, below))
    if descending:
        last = end - offset
        return (list(reversed(ids[max(start, last - limit) : last])) if last > start else []), end - start
    first = start + offset
    return list(ids[first : min(end, first + limit)]), end - start
