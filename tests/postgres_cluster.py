"""A throwaway PostgreSQL cluster in a temporary folder, reached through a unix socket: the one
implementation the tests' `postgresql_server` fixture and `benchmarks/records.py` both start
(each with its own settings). No pytest here, so a benchmark can import it too."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not installed, cannot run here, or did not start; the message says which."""


def postgresql_bin() -> Path | None:
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway PostgreSQL server reached through the unix socket in `socket_dir`."""

    socket_dir: Path
    port: int
    superuser: str
    data: Path
    bindir: Path
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        """The records store's (SQLAlchemy) URL of `database`."""
        return (
            f"postgresql+psycopg://{self.superuser}@/{database}"
            f"?host={self.socket_dir}&port={self.port}"
        )

    def conninfo(self, database: str) -> str:
        """psycopg's connection string for `database`."""
        return f"host={self.socket_dir} port={self.port} user={self.superuser} dbname={database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def postgresql_cluster(
    settings: Mapping[str, str],
    *,
    prefix: str = "joinedup-pg-",
    initdb_options: tuple[str, ...] = (),
    stop_mode: str = "fast",
) -> Iterator[PostgresServer]:
    """A new cluster with `settings` added to postgresql.conf (beside its port and socket
    folder), stopped with `stop_mode` and deleted afterwards. Run as the `postgres` user when
    this runs as root, which PostgreSQL refuses. Raises PostgresUnavailableError when it cannot
    start."""
    bindir = postgresql_bin()
    if bindir is None or not (bindir / "initdb").exists():
        raise PostgresUnavailableError(
            "PostgreSQL not found (`make postgresql` installs Debian's postgresql, or set "
            "JOINEDUP_POSTGRESQL_BIN to its bin folder)"
        )
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailableError(
                "PostgreSQL will not run as root and there is no `postgres` user to run it"
            ) from None
        run_as = "postgres"
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run(args, user=run_as, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}")

    try:
        try:
            run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "joinedup",
                "-E", "UTF8", "--locale=C", *initdb_options)  # fmt: skip
            conf = {**settings, "port": str(port), "unix_socket_directories": f"'{folder}'"}
            with (data / "postgresql.conf").open("a") as written:
                written.writelines(f"{name} = {value}\n" for name, value in conf.items())
            run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                "-w", "-t", "60", "start")  # fmt: skip
        except (RuntimeError, OSError) as err:
            raise PostgresUnavailableError(f"PostgreSQL did not start: {err}") from err
        yield PostgresServer(folder, port, "joinedup", data, bindir, run_as)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", stop_mode, "-w", "stop"],
                user=run_as, capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def measured_on_both(
    name: str, measure: Callable[[str], Any], *, postgresql: bool
) -> dict[str, Any]:
    """`measure(url)` on a throwaway SQLite file and, when `postgresql`, on a throwaway
    database `name` of a fast (unsynced) cluster: the figures by database, for a records
    store benchmark."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(str(Path(folder) / "records.sqlite"))
    if postgresql:
        settings = {"fsync": "off", "synchronous_commit": "off", "timezone": "'UTC'"}
        with postgresql_cluster(settings, stop_mode="immediate") as server:
            results["postgresql"] = measure(server.create_database(name))
    return results
