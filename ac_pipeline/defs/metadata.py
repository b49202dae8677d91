"""Small helpers for what assets show in the Dagster UI."""

from __future__ import annotations

import polars as pl


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> str:
    """A Markdown table of the first rows (the UI renders it on the materialization)."""
    if frame.is_empty():
        return "_(none)_"
    head = frame.head(rows)
    cells = [[("" if value is None else str(value)).replace("|", "\\|") for value in row] for row in head.iter_rows()]
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if frame.height > rows:
        lines.append(f"\n_{rows} of {frame.height:,} rows_")
    return "\n".join(lines)
