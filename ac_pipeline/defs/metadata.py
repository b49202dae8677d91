"""Small helpers for what assets show in the Dagster UI.

Dagster has no description per metadata key, so each materialization carries a `what_these_mean` table that
explains the keys it holds (ac_pipeline/defs/meanings.py). Empty values are left out rather than shown blank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import dagster as dg
import polars as pl

LEGEND = "what_these_mean"


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> str:
    """A Markdown table of the first rows (the UI renders it on the materialization). A column that is empty in
    every row shown says nothing, so it is left out."""
    if frame.is_empty():
        return "_(none)_"
    head = frame.head(rows)
    head = head.select([name for name in head.columns if not _all_empty(head.get_column(name))] or head.columns)
    cells = [[("" if value is None else str(value)).replace("|", "\\|") for value in row] for row in head.iter_rows()]
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if frame.height > rows:
        lines.append(f"\n_{rows} of {frame.height:,} rows_")
    return "\n".join(lines)


def _all_empty(column: pl.Series) -> bool:
    if column.null_count() == column.len():
        return True
    return column.dtype == pl.String and bool((column.fill_null("").str.strip_chars() == "").all())


def is_empty(value: Any) -> bool:
    """A value the UI would show blank: None, an empty or blank string (plain, text or Markdown)."""
    if isinstance(value, dg.MetadataValue):
        value = value.value
    return value is None or (isinstance(value, str) and not value.strip())


def meaning(key: str, meanings: Mapping[str, str]) -> str | None:
    """What a key means: its own entry, or the entry of a pattern it matches (`skipped_*`)."""
    if key in meanings:
        return meanings[key]
    return next((text for pattern, text in meanings.items() if "*" in pattern and fnmatchcase(key, pattern)), None)


def described(
    metadata: Mapping[str, Any], meanings: Mapping[str, str], added_on_storage: Sequence[str] = ()
) -> dict[str, Any]:
    """The metadata without empty values, and a table that says what each key means, those the IO manager adds
    when it stores the output (`added_on_storage`) included."""
    kept = {key: value for key, value in metadata.items() if not is_empty(value)}
    rows = [f"| `{key}` | {meaning(key, meanings) or ''} |" for key in [*kept, *added_on_storage]]
    legend = "\n".join(["| key | what it means |", "|---|---|", *rows])
    return {**kept, LEGEND: dg.MetadataValue.md(legend)}
