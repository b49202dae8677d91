"""One partition per audience, read from audiences.yaml when the code location loads.

Adding an audience to the file needs no code change: reload the code location in the UI and the new
partition is there. A file that does not load fails the code location with the file's own error,
which the UI shows.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ac_pipeline.audiences.config import load_audiences


def audience_partitions(audiences_file: Path) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(load_audiences(audiences_file).keys)
