"""A warehouse that a running server has open is never replaced or written under it: `synth`
is refused as `phm run`, `finance run`, `finance control-total` and `ingest fhir` are, in one
line naming the file and the server and saying to stop it first (even at 80 columns), and the
file is left byte for byte as it was (issue 13, defect 6; issue 15, item 9)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from cli_run import PhmWarehouse, joinedup

from joinedup.warehouse.locks import holding

pytestmark = pytest.mark.security

SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea"


@dataclass(frozen=True)
class Served:
    path: Path
    pid: int
    address: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fingerprint(path: Path) -> tuple[int, int, str]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _scratch(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def served(
    small_web_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`joinedup serve` in a process of its own over a copy of the small world."""
    folder = tmp_path_factory.mktemp("in-use")
    path = folder / "ics.duckdb"
    shutil.copyfile(small_web_warehouse.path, path)
    port = _free_port()
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    assert exe, "the joinedup command is not installed beside this Python"
    server = subprocess.Popen(
        [exe, "serve", "-w", str(path), "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"joinedup serve stopped: {server.stderr.read()}"  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"{address}/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "joinedup serve was not ready within 120 s"
            time.sleep(0.3)
        yield Served(path, server.pid, address)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _refused(run: subprocess.CompletedProcess[str], served: Served) -> None:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: warehouse {served.path} is open in process"), lines[0]
    assert lines[0].endswith(
        f"process {served.pid} (joinedup serve): stop `joinedup serve` first (it reads the file "
        "as long as it runs)"
    ), lines[0]
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("synth", "--people", "300", "--seed", "5", "--workers", "1"),
        ("phm", "run"),
        ("finance", "run"),
        ("finance", "control-total"),
        ("ingest", "fhir", str(SYNTHEA / "Patient.ndjson")),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_write_to_a_served_warehouse_is_refused_and_changes_nothing(
    served: Served, command: tuple[str, ...]
) -> None:
    before = _fingerprint(served.path)
    narrow = {"COLUMNS": "80"}  # one line at 80 columns, however long the path
    run = joinedup(*command, "-w", str(served.path), cwd=served.path.parent, env=narrow)
    _refused(run, served)
    assert not run.stdout.strip(), "refused before any work is announced"
    assert _fingerprint(served.path) == before  # same file (inode), untouched, same bytes
    assert _scratch(served.path.parent) == [], "nothing left beside the warehouse"
    with urllib.request.urlopen(f"{served.address}/ready", timeout=10) as answer:
        assert answer.status == 200, "the server goes on serving"


def test_a_server_cannot_open_a_warehouse_while_it_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "ics.duckdb"
    duckdb.connect(str(path)).close()
    with holding(path):  # as `synth` holds the old file until the new one is in place
        run = joinedup("serve", "-w", str(path), "--port", str(_free_port()), cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"warehouse {path} is open in process {os.getpid()}" in " ".join(run.stderr.split())


def test_synth_rebuilds_the_warehouse_once_the_server_has_stopped(tmp_path: Path) -> None:
    path = tmp_path / "ics.duckdb"
    for seed in ("5", "6"):
        run = joinedup("synth", "--people", "300", "--seed", seed, "--workers", "1",
                       "-w", str(path), cwd=tmp_path)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT seed FROM build").fetchall() == [(6,)]
    assert _scratch(tmp_path) == []
