"""Ids and text as clients send them in request bodies: numbers or strings, both accepted.

Pure functions, shared by the HTTP endpoints and the bulk import worker; nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any


def id_of(value: Any) -> int | None:
    """An id given as a number or a string of digits (clients send both), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def text_of(value: Any) -> str | None:
    """A text attribute given as a string or a number, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    return None
