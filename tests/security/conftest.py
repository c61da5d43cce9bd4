"""A small synthetic ICS (2,500 people) with population health and finance runs and the demo
users, built once per session for the security probes, and the dashboard served over it for
real (Uvicorn on a loopback port, as `tests/functional` serves it)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The functional layer's helpers run the installed CLI and serve the app under Uvicorn.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functional"))

from cli_run import PhmWarehouse, joinedup
from live import serving

from joinedup.web.settings import WebSettings

SECURITY_PEOPLE = 2_500


@pytest.fixture(scope="session")
def small_web_warehouse(tmp_path_factory: pytest.TempPathFactory) -> PhmWarehouse:
    """`joinedup synth` of 2,500 people, `phm run`, `finance run` and `users demo`."""
    folder = tmp_path_factory.mktemp("security-world")
    path = folder / "ics.duckdb"
    for step in (
        ("synth", "--people", str(SECURITY_PEOPLE), "--seed", "13", "-w", str(path)),
        ("phm", "run", "-w", str(path)),
        ("finance", "run", "-w", str(path)),
        ("users", "demo", "-w", str(path)),
    ):
        run = joinedup(*step, cwd=folder)
        assert run.returncode == 0, f"joinedup {' '.join(step)}: {run.stdout}{run.stderr}"
    return PhmWarehouse(path, folder, run)


@pytest.fixture(scope="module")
def security_settings(
    small_web_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> WebSettings:
    """Settings with an access database of the module's own (a copy of the demo users), so one
    module's lock-outs and audit entries touch no other module."""
    folder = tmp_path_factory.mktemp("security-access")
    source = small_web_warehouse.path.with_name(small_web_warehouse.path.name + ".access.sqlite")
    target = folder / "access.sqlite"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return WebSettings(warehouse=small_web_warehouse.path, access_db=target, login_max_failures=5)


@pytest.fixture(scope="module")
def security_server(security_settings: WebSettings) -> Iterator[str]:
    """The dashboard under Uvicorn over the small world, one per test module (not warmed up:
    the probes build only the figures they ask for)."""
    with serving(security_settings, warm=False) as address:
        yield address
