"""A reader never sees half a value: a write that fails midway leaves the earlier value in place, on S3 as in a
local folder, and whatever fsspec URL the values live at."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ac_pipeline_tests.objectstore.conftest import S3
from ac_pipeline_tests.objectstore.values import NAME, failure, materialize

EARLIER = pl.DataFrame({"email": ["a@example.com", "b@example.com"], "status": ["member", "member"]})
LATER = pl.DataFrame({"email": [f"{n}@example.com" for n in range(5_000)], "status": ["member"] * 5_000})


@contextmanager
def failing_midway() -> Iterator[None]:
    """Every Parquet write puts out the first half of a real file, then fails (a full disk, a killed step)."""
    write_parquet = pl.DataFrame.write_parquet

    def half_then_fail(frame: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        complete = io.BytesIO()
        write_parquet(frame, complete, *args, **kwargs)
        data = complete.getvalue()
        if isinstance(file, str | Path):
            Path(file).write_bytes(data[: len(data) // 2])
        else:
            file.write(data[: len(data) // 2])
        raise OSError("no space left on device (simulated, halfway through the file)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_parquet", half_then_fail)
        yield


def test_a_write_failing_midway_leaves_the_earlier_value_on_s3(s3: S3) -> None:
    base = s3.url("prefix")
    assert materialize(base, EARLIER)[0].success
    before = s3.get(f"prefix/{NAME}")

    with failing_midway():
        result, _ = materialize(base, LATER)
    assert "halfway through the file" in failure(result)

    # Byte for byte the earlier object, and no stray object beside it.
    assert s3.get(f"prefix/{NAME}") == before
    assert s3.keys() == [f"prefix/{NAME}"]
    result, loaded = materialize(base)
    assert result.success
    assert loaded[0].equals(EARLIER)


def test_a_write_failing_midway_leaves_the_earlier_value_in_a_folder(tmp_path: Path) -> None:
    base = str(tmp_path / "assets")
    assert materialize(base, EARLIER)[0].success

    with failing_midway():
        result, _ = materialize(base, LATER)
    assert "halfway through the file" in failure(result)

    result, loaded = materialize(base)
    assert result.success
    assert loaded[0].equals(EARLIER)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_any_fsspec_url(scheme: str, tmp_path: Path) -> None:
    """The same IO manager on other fsspec URLs: `file://` is the local folder (renamed into place), `memory://`
    goes through the object-store path."""
    base = f"memory://ac-pipeline-{tmp_path.name}" if scheme == "memory" else f"file://{tmp_path}/assets"
    result, _ = materialize(base, LATER)
    assert result.success
    written = result.get_asset_materialization_events()[0].materialization.metadata
    assert next(iter(written.values())).value == f"{base if scheme == 'memory' else tmp_path / 'assets'}/{NAME}"
    if scheme == "file":
        assert (tmp_path / "assets" / NAME).exists()

    result, loaded = materialize(base)
    assert result.success
    assert loaded[0].equals(LATER)
