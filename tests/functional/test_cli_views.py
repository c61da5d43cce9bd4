"""`joinedup views run` over NDJSON (plain and gzip), Bundles and folders, end to end."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from cli_run import flat, joinedup

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "a",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "gender": "female",
        "birthDate": "1970-02-03",
        "name": [{"family": "Smith", "given": ["Ann", "B"]}],
    },
    {"resourceType": "Patient", "id": "b", "gender": "male"},
]
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final"}
VIEW = {
    "resourceType": "ViewDefinition",
    "name": "patients",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {
                    "name": "nhs_number",
                    "path": "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number')"
                    ".value.first()",
                    "type": "string",
                },
                {"name": "gender", "path": "gender", "type": "code"},
            ]
        },
        {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]},
    ],
}


def _inputs(folder: Path) -> Path:
    data = folder / "fhir"
    data.mkdir()
    with gzip.open(data / "Patient.ndjson.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(PATIENTS[0]) + "\n")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": PATIENTS[1]}, {"resource": OBSERVATION}],
    }
    (data / "bundle.json").write_text(json.dumps(bundle), encoding="utf-8")
    return data


def test_a_view_flattens_ndjson_and_bundles_to_csv(tmp_path: Path) -> None:
    data = _inputs(tmp_path)
    view = tmp_path / "view.json"
    view.write_text(json.dumps(VIEW), encoding="utf-8")
    out = tmp_path / "patients.csv"
    done = joinedup("views", "run", str(view), "--input", str(data), "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 rows from 3 resources" in flat(done.stdout)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["id"])
    assert rows == [
        {"id": "a", "nhs_number": "9000000009", "gender": "female", "family": "Smith"},
        {"id": "b", "nhs_number": "", "gender": "male", "family": ""},
    ]


def test_an_invalid_view_or_input_is_one_clear_line(tmp_path: Path) -> None:
    data = _inputs(tmp_path)
    view = tmp_path / "bad.json"
    view.write_text(json.dumps({"resource": "Patient", "select": [{"forEach": "@@"}]}), "utf-8")
    done = joinedup("views", "run", str(view), "--input", str(data), cwd=tmp_path)
    assert done.returncode == 2
    assert "FHIRPath '@@'" in flat(done.stderr)
    broken = tmp_path / "broken.ndjson"
    broken.write_text(json.dumps(PATIENTS[1]) + "\n{not json\n", encoding="utf-8")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VIEW), encoding="utf-8")
    done = joinedup("views", "run", str(good), "--input", str(broken), cwd=tmp_path)
    assert done.returncode == 2
    assert "broken.ndjson, line 2" in flat(done.stderr)
