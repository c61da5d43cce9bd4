"""A foreign bulk export loads: Synthea's US-profiled NDJSON (tests/data/synthea, three real
patients from SMART's sample bulk datasets) goes in whole, every resource stored or quarantined
with a reason, and the quality report says what did not map."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from cli_run import joinedup

SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea"


def test_a_synthea_bulk_export_loads_and_is_accounted_for(tmp_path: Path) -> None:
    warehouse = tmp_path / "synthea.duckdb"
    result = joinedup(
        "ingest", "fhir", str(SYNTHEA), "-w", str(warehouse), "--report", "q.json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "q.json").read_text())

    lines = {f.stem: len(f.read_text().splitlines()) for f in SYNTHEA.glob("*.ndjson")}
    assert report["resources_in"] == lines
    for kind, n in lines.items():
        assert report["stored"].get(kind, 0) + report["quarantined"].get(kind, 0) == n, kind

    con = duckdb.connect(str(warehouse), read_only=True)
    stored = dict(
        con.sql("SELECT resource_type, count(*) FROM fhir_resource GROUP BY 1").fetchall()
    )
    assert stored == report["stored"]
    # No NHS numbers: the three patients load by source system and id, and are counted.
    identity = con.sql("SELECT nhs_number, source_system FROM identity").fetchall()
    assert identity == [(None, "fhir")] * 3
    people = {q["item"]: q["items_count"] for q in report["quality"]["people"]}
    assert people["Patients without an NHS number"] == 3
    # Every encounter maps to an activity type by its class; observations by LOINC.
    assert con.sql("SELECT count(*) FROM activity").fetchall() == [(lines["Encounter"],)]
    kinds = {k for (k,) in con.sql("SELECT DISTINCT observation_type FROM observation").fetchall()}
    assert {"systolic_bp", "diastolic_bp", "bmi", "smoking_status"} <= kinds
    # RxNorm has no mapping to BNF or dm+d: counted, not loaded.
    unmapped = report["quality"]["unmapped codes"]
    assert any("rxnorm" in u["detail"] for u in unmapped if u["item"] == "Medication code")
    assert con.sql("SELECT count(*) FROM medication").fetchall() == [(0,)]
    # References to resources the export left out are reported, by source and target type.
    dangling = {
        (d["item"], d["detail"]): d["items_count"] for d in report["quality"]["dangling references"]
    }
    assert dangling[("Encounter -> EpisodeOfCare", "no such resource")] == lines["Encounter"]
    assert ("Encounter -> Organization", "no resource with that identifier") not in dangling
