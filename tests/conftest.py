"""Fixtures shared by every test layer."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def _postgresql_bin() -> Path | None:
    """Where pg_ctl and initdb are: JOINEDUP_POSTGRESQL_BIN, PATH, or Debian's newest."""
    configured = os.environ.get("JOINEDUP_POSTGRESQL_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return debian[-1].parent if debian else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway PostgreSQL server reached through its unix socket."""

    socket_dir: Path
    port: int
    superuser: str

    def url(self, database: str = "postgres") -> str:
        return (
            f"postgresql+psycopg://{self.superuser}@/{database}"
            f"?host={self.socket_dir}&port={self.port}"
        )

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session, stopped and deleted after it."""
    bindir = _postgresql_bin()
    if bindir is None or not (bindir / "initdb").exists():
        _missing("PostgreSQL not found (`make postgresql` installs Debian's postgresql)")
        raise AssertionError("unreachable")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("PostgreSQL will not run as root and there is no `postgres` user to run it")
        user = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="joinedup-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run(args, user=user, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "joinedup",
            "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = ''\nport = {port}\nunix_socket_directories = '{folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "timezone = 'UTC'\nmax_connections = 100\n"
            )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
            "-w", "-t", "60", "start")  # fmt: skip
    except (RuntimeError, OSError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        _missing(f"PostgreSQL did not start: {err}")
    try:
        yield PostgresServer(folder, port, "joinedup")
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            user=user,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


_DATABASES = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's records store lives, once on each database: a new SQLite file, or a new
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "records.sqlite")
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    return server.create_database(f"records_{os.getpid()}_{next(_DATABASES)}")
