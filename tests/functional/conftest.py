"""A small synthetic ICS with a population health run, shared by the functional tests."""

from __future__ import annotations

import pytest
from cli_run import PhmWarehouse, joinedup

PHM_PEOPLE = 30_000


@pytest.fixture(scope="session")
def phm_warehouse(tmp_path_factory: pytest.TempPathFactory) -> PhmWarehouse:
    """A 30,000-person warehouse built by `joinedup synth`, then `joinedup phm run`."""
    folder = tmp_path_factory.mktemp("phm")
    path = folder / "ics.duckdb"
    built = joinedup(
        "synth", "--people", str(PHM_PEOPLE), "--seed", "11", "-w", str(path), cwd=folder
    )
    assert built.returncode == 0, built.stderr
    run = joinedup("phm", "run", "-w", str(path), cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    return PhmWarehouse(path, folder, run)
