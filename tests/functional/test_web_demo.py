"""`joinedup demo --serve` (what `make demo` runs) ends by serving the dashboard at the address
it prints, where a README user can sign in, with the shared care record's store loaded with
some of the demo people's FHIR records: a demo clinician reads one of their patients through
the FHIR API (audited), and running the load again loads nothing."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlglot import exp

from joinedup.cli.records import load_demo_records
from joinedup.cli.web import pcns_for_demo
from joinedup.records import RecordStore
from joinedup.warehouse import open_engine

pytestmark = pytest.mark.slow

RECORDS_PEOPLE = 24


def _clinicians_patient(warehouse: Path, patients: set[str]) -> str:
    """A Patient of the store registered at a practice of the demo clinician's PCN (the first
    of the demo PCNs), asserting every Patient is a person of the warehouse."""
    query = (
        exp.select("person_id", "pcn_code")
        .from_("person")
        .join("practice", using=["practice_code"])
    )
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        pcn_of = {str(r["person_id"]): r["pcn_code"] for r in engine.execute(query).to_pylist()}
    assert patients <= set(pcn_of)
    first, second = pcns_for_demo(warehouse)
    assert {pcn_of[p] for p in patients} == {first, second}  # both clinicians have patients
    return min(p for p in patients if pcn_of[p] == first)


def test_demo_ends_serving_the_dashboard_at_the_printed_address(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    assert exe
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOINEDUP_")}
    demo = subprocess.Popen(
        [exe, "demo", "--people", "5000", "--seed", "3", "-w", str(tmp_path / "demo.duckdb"),
         "--outputs", str(tmp_path / "outputs"), "--serve", "--port", str(port),
         "--records-people", str(RECORDS_PEOPLE)],
        cwd=tmp_path, env={**env, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    printed: list[str] = []
    store_path = tmp_path / "records.sqlite"  # beside the warehouse
    try:
        assert demo.stdout is not None
        address = None
        deadline = time.monotonic() + 400
        while address is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                break
            printed.append(line)
            found = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
            address = found.group(1) if found else None
        assert address == f"http://127.0.0.1:{port}/", "".join(printed)[-3000:]
        assert "clinician-demo-2026" in "".join(printed)  # the demo users, with passwords
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{address}ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        signed_in = httpx.post(
            f"{address}login", data={"username": "analyst", "password": "analyst-demo-2026"},
            follow_redirects=True, timeout=30,
        )  # fmt: skip
        assert signed_in.status_code == 200
        assert "system overview" in signed_in.text

        with RecordStore(store_path) as store:
            page = store.search("Patient", [("_count", "1000")])
        patients = {str(p["id"]) for p in page.resources}
        assert len(patients) == RECORDS_PEOPLE
        mine = _clinicians_patient(tmp_path / "demo.duckdb", patients)
        with RecordStore(store_path) as store:
            loaded = store.read("Patient", mine)["meta"]

        def token(user: str) -> dict[str, str]:
            answer = httpx.post(
                f"{address}api/v1/token",
                json={"username": user, "password": f"{user}-demo-2026"}, timeout=30,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        fhir = f"{address}fhir/R4"
        read = httpx.get(f"{fhir}/Patient/{mine}", headers=token("clinician"), timeout=30)
        assert read.status_code == 200, read.text
        assert read.json()["id"] == mine
        audit = httpx.get(
            f"{fhir}/AuditEvent", params={"patient": f"Patient/{mine}"},
            headers=token("privacy-officer"), timeout=30,
        )  # fmt: skip
        assert audit.status_code == 200, audit.text
        reads = [
            e["resource"] for e in audit.json().get("entry", [])
            if any(a.get("who", {}).get("identifier", {}).get("value") == "clinician"
                   for a in e["resource"]["agent"])
        ]  # fmt: skip
        assert [(e["action"], e["outcomeDesc"]) for e in reads] == [("R", "200")]
    finally:
        demo.terminate()
        demo.wait(timeout=30)
    # A second run of the demo's load finds the same build's records and loads nothing.
    assert load_demo_records(tmp_path / "demo.duckdb", store_path, RECORDS_PEOPLE) is None
    with RecordStore(store_path) as store:
        assert store.read("Patient", mine)["meta"] == loaded  # the same version, not reloaded
        assert store.type_history("Patient", count=0)[0] == RECORDS_PEOPLE
