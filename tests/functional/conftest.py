"""A small synthetic ICS with a population health run, shared by the functional tests, and the
dashboard served over a copy of it with a finance run and the demo users."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import PhmWarehouse, joinedup
from live import serving
from playwright.sync_api import Browser, sync_playwright

from joinedup.web.settings import WebSettings

PHM_PEOPLE = 30_000
#: Debian's Chromium, which `make test` installs; the browser tests drive it headless.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip


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


@pytest.fixture(scope="session")
def web_warehouse(
    phm_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> PhmWarehouse:
    """A copy of the population health warehouse with a finance run and the demo users, for
    the dashboard (a copy, so the dashboard's tests change nothing other tests read)."""
    folder = tmp_path_factory.mktemp("web")
    path = folder / "ics.duckdb"
    shutil.copyfile(phm_warehouse.path, path)
    run = joinedup("finance", "run", "-w", str(path), cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    users = joinedup("users", "demo", "-w", str(path), cwd=folder)
    assert users.returncode == 0, users.stdout + users.stderr
    return PhmWarehouse(path, folder, run)


@pytest.fixture(scope="session")
def web_settings(web_warehouse: PhmWarehouse) -> WebSettings:
    return WebSettings(warehouse=web_warehouse.path, login_max_failures=5)


@pytest.fixture(scope="session")
def live_server(web_settings: WebSettings) -> Iterator[str]:
    """The dashboard over `web_warehouse`, shared by the API and browser tests."""
    with serving(web_settings) as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A real headless Chromium for one test module's pages."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install it (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
