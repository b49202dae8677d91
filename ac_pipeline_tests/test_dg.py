"""`dg check defs`, Dagster's own CLI, loads the project from pyproject.toml's [tool.dg] at the repository root."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_dg_check_defs_passes_from_the_repository_root(tmp_path: Path) -> None:
    dg = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
    if dg is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dg is not installed: dagster-dg-cli is a dependency, `pip install -e .` brings it")
        pytest.skip("dg is not installed (pip install -e . brings dagster-dg-cli)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "DAGSTER_"))}
    # The sample audiences define the partitions; the rest of the home (customer 360, state) may be absent.
    env.update(AC_PIPELINE_HOME=str(REPO / "data"), DAGSTER_HOME=str(tmp_path))
    done = subprocess.run(
        [dg, "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
