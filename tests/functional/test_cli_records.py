"""`joinedup records serve` run as a user runs it: a real server process over a records store
(SQLite and PostgreSQL), signed in with a dashboard user, writing and reading a Patient over
HTTP; a store it cannot use refused in one line."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cli_run import joinedup

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.web.access import AccessStore
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"


def _command() -> list[str]:
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from joinedup.cli import main; main()"]


def test_records_serve_answers_fhir_over_http(records_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    settings = WebSettings(warehouse=warehouse)
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOINEDUP_")}
    server = subprocess.Popen(
        [*_command(), "records", "serve", "--records", records_url, "--warehouse", str(warehouse),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env={**env, "NO_COLOR": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(
                    f"{address}/api/v1/token", json={"username": "feed", "password": PASSWORD}
                )
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                time.sleep(0.3)
        assert answer.status_code == 200, answer.text
        headers = {
            "Authorization": f"Bearer {answer.json()['access_token']}",
            "Content-Type": "application/fhir+json",
        }
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9000000009"}],
            "gender": "unknown",
        }
        made = httpx.post(f"{address}/fhir/R4/Patient", json=patient, headers=headers)
        assert made.status_code == 201, made.text
        assert made.headers["cache-control"] == "no-store"
        read = httpx.get(made.headers["location"], headers=headers)
        assert read.status_code == 200 and read.json()["identifier"] == patient["identifier"]
        anonymous = httpx.get(made.headers["location"])
        assert anonymous.status_code == 401
        assert anonymous.json()["resourceType"] == "OperationOutcome"
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "/fhir/R4" in output
    assert "9000000009" not in output


def test_records_serve_refuses_a_store_it_cannot_use(tmp_path: Path) -> None:
    result = joinedup(
        "records", "serve", "--records", "mysql://someone:secret@localhost/records",
        "--warehouse", str(tmp_path / "w.duckdb"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mysql is not a supported database" in lines[0]
    assert "secret" not in result.stderr
