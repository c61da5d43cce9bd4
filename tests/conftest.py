"""Fixtures shared by every test layer."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_cluster import PostgresServer, PostgresUnavailableError, postgresql_cluster

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The public reference data directory (env JOINEDUP_REFERENCE_DIR, else ../shared).

    Tests that need it are skipped when it is absent, except in CI (CI=true), where a missing
    reference directory is a broken setup and fails.
    """
    configured = os.environ.get("JOINEDUP_REFERENCE_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "reference"
    if not path.is_dir():
        message = f"reference data not found in {path} (set JOINEDUP_REFERENCE_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _shared(path: Path, what: str) -> Path:
    """A folder of ../shared, skipped when absent except under CI=true, where it fails."""
    if not path.is_dir():
        message = f"{what} not found in {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sql_on_fhir_tests() -> Path:
    """The official SQL-on-FHIR v2 test files in ../shared/specs."""
    return _shared(
        REPO_ROOT.parent / "shared" / "specs" / "sql-on-fhir-v2" / "tests", "SQL-on-FHIR tests"
    )


@pytest.fixture(scope="session")
def uk_core_examples() -> Path:
    """The UK Core example resources (FHIR XML) in ../shared/specs."""
    return _shared(
        REPO_ROOT.parent / "shared" / "specs" / "uk-core" / "examples", "UK Core examples"
    )


# --- PostgreSQL for the records store ------------------------------------------------------
# Each test session starts its own server: initdb into a temporary folder, then pg_ctl start
# with a unix socket in that folder and no TCP listener, trust authentication (nothing else can
# reach the socket) and fsync off. PostgreSQL refuses to run as root, so under root (as in CI)
# the server runs as the `postgres` user that Debian's package creates.


def _missing(message: str) -> None:
    """Fail under CI=true, where PostgreSQL is part of the setup (`make postgresql`); skip
    elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


#: PostgreSQL settings of the tests' cluster: a unix socket only, and no syncing (a throwaway).
TEST_SERVER_CONF = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "max_connections": "100",
}


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session, stopped and deleted after it."""
    try:
        with postgresql_cluster(
            TEST_SERVER_CONF, initdb_options=("--no-sync",), stop_mode="immediate"
        ) as server:
            yield server
    except PostgresUnavailableError as err:
        _missing(str(err))


_DATABASES = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's records store lives, once on each database: a new SQLite file, or a new
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "records.sqlite")
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    return server.create_database(f"records_{os.getpid()}_{next(_DATABASES)}")
