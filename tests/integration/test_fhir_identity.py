"""FHIR ingest fills `identity` with what a Patient says of who it is: first name, full date of
birth (only when the Patient gives a day) and postcode."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlglot import exp

from joinedup.fhir.ingest import ingest_fhir
from joinedup.warehouse import ALL_TABLES, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(pid: str, nhs: str, birth: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NHS, "value": nhs}],
        "gender": "female",
        "birthDate": birth,
        **extra,
    }


def test_identity_reads_name_birth_date_and_postcode_from_the_patient(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    engine = DuckDBEngine(warehouse)
    for table in ALL_TABLES:
        engine.create(table)
    engine.close()
    patients = [
        _patient(
            "full",
            "9434765919",
            "1950-04-02",
            name=[
                {"use": "official", "family": "Jackson", "given": ["Jane", "Anne"]},
                {"use": "maiden", "family": "Smith", "given": ["Jane"]},
            ],
            address=[{"use": "home", "postalCode": " ls17 6eh "}],
        ),
        _patient("month-only", "9434765870", "1961-07"),
        _patient("given-only", "9434765889", "1972-11-30", name=[{"given": ["Sam"]}]),
    ]
    source = tmp_path / "patients.ndjson"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients))
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as writer:
        ingest_fhir(writer, [source], staging_dir=tmp_path)
    query = exp.select("source_id", "given_name", "family_name", "birth_date", "postcode").from_(
        "identity"
    )
    with open_engine("duckdb", warehouse=warehouse) as reader:
        rows = {r["source_id"]: r for r in reader.execute(query).to_pylist()}
    assert rows["full"] == {
        "source_id": "full",
        "given_name": "Jane",
        "family_name": "Jackson",
        "birth_date": dt.date(1950, 4, 2),
        "postcode": "LS17 6EH",
    }
    # A year and month is no date of birth: person keeps them, identity holds no day.
    assert rows["month-only"]["birth_date"] is None
    assert rows["month-only"]["given_name"] is None
    assert rows["given-only"]["given_name"] == "Sam"
    assert rows["given-only"]["family_name"] is None
    assert rows["given-only"]["postcode"] is None
