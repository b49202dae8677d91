"""The sandbox's fast JSON reader answers exactly as Python's parser, in the corners where orjson is stricter."""

from __future__ import annotations

import json

import pytest

from ac_pipeline.sandbox.json_text import loads


@pytest.mark.parametrize(
    "raw",
    [
        b'{"contacts": [{"email": "a@example.com", "fields": [{"id": 1, "value": "x"}]}]}',
        b'{"n": NaN, "big": 123456789012345678901234567890, "inf": -Infinity}',  # orjson refuses these
        b'{"lone": "\\ud800"}',  # a lone surrogate escape: orjson refuses it, Python takes it
        '{"text": "\u00e9\U0001f600"}'.encode(),
        b'{"a": 1, "a": 2}',  # the last of a repeated key wins, as in Python
    ],
)
def test_what_python_takes_is_taken_the_same(raw: bytes) -> None:
    assert json.dumps(loads(raw)) == json.dumps(json.loads(raw))


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": }', b"\xff\xfe{}", b'{"a": 1} x'])
def test_what_python_refuses_is_refused_with_its_error(raw: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(raw)
    with pytest.raises(ValueError) as got:
        loads(raw)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))
