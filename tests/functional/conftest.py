"""A small synthetic ICS with a population health run, shared by the functional tests, and the
dashboard served over a copy of it with a finance run and the demo users."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cli_run import PhmWarehouse, joinedup

from joinedup.web.settings import WebSettings

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


@contextmanager
def serving(settings: WebSettings) -> Iterator[str]:
    """The real application for `settings` under Uvicorn on a free loopback port, warmed up;
    yields its address and stops it afterwards."""
    import uvicorn

    from joinedup.web.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning",
            access_log=False,
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{address}/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the dashboard did not become ready within 180 s")
        yield address
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(web_settings: WebSettings) -> Iterator[str]:
    """The dashboard over `web_warehouse`, shared by the API and browser tests."""
    with serving(web_settings) as address:
        yield address
