"""Resources of the audience domain: the audience definitions and the sync state file."""

from __future__ import annotations

import dagster as dg

from ac_pipeline.audiences.config import AudienceFile, load_audiences
from ac_pipeline.state.store import SyncState


class AudienceCatalog(dg.ConfigurableResource):
    """audiences.yaml: what each audience is and which list it feeds."""

    path: str

    def load(self) -> AudienceFile:
        return load_audiences(self.path)


class SyncStateResource(dg.ConfigurableResource):
    """The sync state DuckDB file (snapshot, ledger, runs)."""

    path: str

    def store(self) -> SyncState:
        return SyncState(self.path)
