"""Bulk FHIR ingest into a DuckDB warehouse: quarantine, versions, idempotence, atomicity and
what the quality report counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from joinedup.fhir import canonical
from joinedup.fhir.ingest import VERSION_CONFLICT, ingest_fhir
from joinedup.warehouse import ALL_TABLES, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(pid: str, nhs: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "gender": "female",
        "birthDate": "1950-04-02",
        **extra,
    }
    if nhs:
        resource["identifier"] = [{"system": NHS, "value": nhs}]
    return resource


def _condition(cid: str, patient: str, code: str = "44054006", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "recordedDate": "2020-05-01",
        **extra,
    }


def _ndjson(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    engine = DuckDBEngine(path)
    for table in ALL_TABLES:
        engine.create(table)
    engine.close()
    return path


def _ingest(warehouse: Path, *paths: Path) -> Any:
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        return ingest_fhir(engine, list(paths), staging_dir=warehouse.parent)


def _rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with open_engine("duckdb", warehouse=warehouse) as engine:
        return engine.fetch(sql)


def test_bad_records_are_quarantined_with_file_line_and_reason(
    warehouse: Path, tmp_path: Path
) -> None:
    source = _ndjson(tmp_path / "mixed.ndjson", [
        _patient("p1", "9434765919"),
        '{"resourceType": "Patient", "id": "broken"',
        {"resourceType": "Spaceship", "id": "s1"},
        {"resourceType": "Patient", "gender": "male"},
        _patient("p2", birthDate="2023-02-30"),
        _patient("p3", "9434765918"),
        _condition("c1", "p1"),
    ])  # fmt: skip
    report = _ingest(warehouse, source)
    quarantined = _rows(
        warehouse, "SELECT source_line, reason FROM fhir_quarantine ORDER BY source_line"
    )
    lines = dict(quarantined)
    assert sorted(lines) == [2, 3, 4, 5, 6]
    assert "not JSON" in lines[2]
    assert "resourceType is not a FHIR R4 resource type" in lines[3]
    assert "Patient.id is missing" in lines[4]
    assert "Patient.birthDate: not a real date" in lines[5]
    assert "Patient.identifier[0].value: NHS number fails the Modulus 11 check" in lines[6]
    assert all(
        r[0].endswith("mixed.ndjson")
        for r in _rows(warehouse, "SELECT source_file FROM fhir_quarantine")
    )
    # resources in = stored + quarantined, by type
    for kind, n in report.resources_in.items():
        assert report.stored.get(kind, 0) + report.quarantined.get(kind, 0) == n
    assert _rows(warehouse, "SELECT count(*) FROM person") == [(1,)]
    assert _rows(warehouse, "SELECT code FROM diagnosis") == [("44054006",)]


def test_quarantine_reasons_name_the_element_and_rule_never_the_value(
    warehouse: Path, tmp_path: Path
) -> None:
    """The quarantine's reasons are shown to analysts, who may not see records: a reason says
    which element breaks which rule, and repeats nothing the record holds."""
    bad = [
        _patient("p-401", "4010232138", birthDate="1980-02-30"),
        _patient("p-402", birthDate="1975-13-01"),
        {**_patient("p-403"), "deceasedDateTime": "2001-05-06T26:30:00Z"},
        {"resourceType": "Starship-Enterprise", "id": "s1"},
        _patient("has space and 9434765919"),
        {**_patient("p-404"), "9434765919": "a key that is content"},
    ]
    source = _ndjson(tmp_path / "bad.ndjson", [_patient("p1", "9434765919"), *bad])
    _ingest(warehouse, source)
    reasons = dict(_rows(warehouse, "SELECT source_line, reason FROM fhir_quarantine"))
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "Patient.identifier[0].value: NHS number fails the Modulus 11 check" in reasons[2]
    assert "Patient.birthDate: not a real date" in reasons[2]
    assert "Patient.birthDate: not a real date (the month is not 01-12)" in reasons[3]
    assert "Patient.deceasedDateTime: not a real time of day" in reasons[4]
    assert "not a FHIR element name" in reasons[7]
    for line, resource in enumerate(bad, start=2):
        for value in _values(resource):
            assert value not in reasons[line], (line, value)


def test_reasons_stored_before_with_values_lose_them_at_the_next_load(
    warehouse: Path, tmp_path: Path
) -> None:
    first = _ndjson(tmp_path / "a.ndjson", [_patient("p1", "9434765919")])
    _ingest(warehouse, first)
    old = (
        "Patient.identifier[0]: NHS number '4010232138' fails the Modulus 11 check; "
        "Patient.birthDate: '1980-02-30' is not a real date or time (day is out of range for "
        "month)"
    )
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        engine.run(
            "INSERT INTO fhir_quarantine (load_id, source_file, source_line, reason, "
            "content_hash) VALUES ('old', 'old.ndjson', 7, '{}', 'h')".format(
                old.replace("'", "''")
            )
        )
    _ingest(warehouse, first)
    assert _rows(warehouse, "SELECT reason FROM fhir_quarantine") == [
        ("Patient.identifier[0]: NHS number fails the Modulus 11 check; "
         "Patient.birthDate: not a real date or time",)
    ]  # fmt: skip


def _values(item: Any) -> set[str]:
    """Every key and scalar value in `item` that could identify someone (skipping structure
    a reason must name: the resource type and short words like `female`)."""
    if isinstance(item, dict):
        found = {str(k) for k in item if not str(k).isalpha()}
        for key, value in item.items():
            if key not in ("resourceType", "system"):
                found |= _values(value)
        return found
    if isinstance(item, list):
        return set().union(*(_values(v) for v in item)) if item else set()
    text = str(item)
    return {text} if len(text) >= 4 and not text.isalpha() else set()


def test_a_failed_load_leaves_the_warehouse_as_it_was(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _ndjson(tmp_path / "a.ndjson", [_patient("p1", "9434765919"), _condition("c1", "p1")])
    _ingest(warehouse, first)
    before = _rows(
        warehouse,
        "SELECT (SELECT count(*) FROM fhir_resource), "
        "(SELECT count(*) FROM diagnosis), (SELECT count(*) FROM fhir_load)",
    )
    second = _ndjson(
        tmp_path / "b.ndjson", [_patient("p9", "9434765870"), _condition("c9", "p9", "38341003")]
    )

    def fail_half_way(engine: Any) -> dict[str, int]:
        engine.run("DELETE FROM diagnosis")  # a partial rebuild ...
        raise KeyboardInterrupt  # ... then the user presses Ctrl-C

    monkeypatch.setattr(canonical, "rebuild", fail_half_way)
    with pytest.raises(KeyboardInterrupt):
        _ingest(warehouse, second)
    after = _rows(
        warehouse,
        "SELECT (SELECT count(*) FROM fhir_resource), "
        "(SELECT count(*) FROM diagnosis), (SELECT count(*) FROM fhir_load)",
    )
    assert after == before
    assert not list(warehouse.parent.glob(".fhir-staging-*")), "scratch file left behind"


def test_new_versions_replace_old_ones_and_reruns_change_nothing(
    warehouse: Path, tmp_path: Path
) -> None:
    v1 = _ndjson(
        tmp_path / "v1.ndjson", [_patient("p1", "9434765919"), _condition("c1", "p1", "44054006")]
    )
    v2 = _ndjson(tmp_path / "v2.ndjson", [_condition("c1", "p1", "38341003")])
    _ingest(warehouse, v1)
    report = _ingest(warehouse, v2)
    assert report.stored == {"Condition": 1}
    assert _rows(warehouse, "SELECT code FROM diagnosis") == [("38341003",)]
    assert _rows(warehouse, "SELECT count(*) FROM fhir_resource") == [(3,)]
    again = _ingest(warehouse, v1, v2)
    assert sum(again.stored.values()) == 0
    assert _rows(warehouse, "SELECT code FROM diagnosis") == [("38341003",)]


def test_person_ids_are_stable_and_patients_without_nhs_numbers_still_load(
    warehouse: Path, tmp_path: Path
) -> None:
    a = _ndjson(tmp_path / "a.ndjson", [_patient("p1", "9434765919")])
    _ingest(warehouse, a)
    (first_id,) = _rows(warehouse, "SELECT person_id FROM person")[0]
    foreign = _patient("abc-123", meta={"source": "https://example.org/ehr"})
    same_person_elsewhere = _patient("x9", "9434765919", meta={"source": "gp-system"})
    b = _ndjson(tmp_path / "b.ndjson", [foreign, same_person_elsewhere])
    report = _ingest(warehouse, a, b)
    identity = _rows(
        warehouse,
        "SELECT person_id, nhs_number, source_system, source_id "
        "FROM identity ORDER BY source_system",
    )
    assert (first_id, "9434765919", "fhir", "p1") in identity
    assert (first_id, "9434765919", "gp-system", "x9") in identity
    foreign_rows = [r for r in identity if r[3] == "abc-123"]
    assert foreign_rows == [(foreign_rows[0][0], None, "https://example.org/ehr", "abc-123")]
    assert foreign_rows[0][0] != first_id
    assert ("people", "Patients without an NHS number", "loaded by source system and id", 1) in [
        (s, i, d, n) for s, i, d, n in report.quality
    ]


def test_bundles_gzip_and_references_between_entries(warehouse: Path, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1b0f3a4e-0000-4000-8000-000000000001",
         "resource": _patient("pb", "9434765919"), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:1b0f3a4e-0000-4000-8000-000000000002",
         "resource": {k: v for k, v in _condition("x", "x").items() if k != "id"}
         | {"subject": {"reference": "urn:uuid:1b0f3a4e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Condition"}},
    ]}  # fmt: skip
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    with gzip.open(tmp_path / "Condition.ndjson.gz", "wt") as handle:
        handle.write(json.dumps(_condition("gz1", "pb", "38341003")) + "\n")
    report = _ingest(warehouse, tmp_path / "bundle.json", tmp_path / "Condition.ndjson.gz")
    assert report.quarantined == {}
    assert sorted(_rows(warehouse, "SELECT code FROM diagnosis")) == [("38341003",), ("44054006",)]
    assert _rows(
        warehouse, "SELECT id FROM fhir_resource WHERE resource_type = 'Condition' ORDER BY id"
    ) == [("1b0f3a4e-0000-4000-8000-000000000002",), ("gz1",)]


def test_dangling_references_and_unmapped_codes_are_counted(
    warehouse: Path, tmp_path: Path
) -> None:
    source = _ndjson(tmp_path / "d.ndjson", [
        _patient("p1", "9434765919"),
        _condition("c1", "nobody"),
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://example.org/local", "code": "X1"}]},
         "recordedDate": "2021-01-01"},
        {"resourceType": "Observation", "id": "o1", "status": "final",
         "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2021-01-01",
         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
         "valueQuantity": {"value": 7.0, "unit": "%", "code": "%"}},
    ])  # fmt: skip
    report = _ingest(warehouse, source)
    quality = {(s, i, d): n for s, i, d, n in report.quality}
    assert quality[("dangling references", "Condition -> Patient", "no such resource")] == 1
    assert quality[("unmapped codes", "Condition.code", "http://example.org/local X1")] == 1
    # HbA1c in % (DCCT) becomes mmol/mol (IFCC): (7.0 - 2.15) x 10.929 = 53.0
    assert _rows(warehouse, "SELECT observation_type, value, unit FROM observation") == [
        ("hba1c", 53.0, "mmol/mol")
    ]


def test_the_fhir_tables_are_as_documented(warehouse: Path, tmp_path: Path) -> None:
    from joinedup.fhir.tables import FHIR_TABLE_DOCS

    _ingest(warehouse, _ndjson(tmp_path / "p.ndjson", [_patient("p1", "9434765919")]))
    for name, _, columns in FHIR_TABLE_DOCS:
        described = _rows(warehouse, f"SELECT column_name FROM (DESCRIBE {name})")
        assert [c for (c,) in described] == [c for c, _ in columns], name


def test_bad_bytes_are_quarantined_line_by_line_and_every_good_line_loads(
    warehouse: Path, tmp_path: Path
) -> None:
    """Bytes no parser should meet (Latin-1, UTF-16, gzip where text was expected, JSON nested
    100,000 deep, a lone surrogate, a gzip file cut short) each become quarantine rows naming
    file and line; no file stops the load, and every good line of every file is stored."""

    def line(pid: str) -> bytes:
        return (json.dumps(_patient(pid, "9434765919")) + "\n").encode()

    def gz(data: bytes) -> bytes:
        return gzip.compress(data, mtime=0)

    long = b"".join(line(f"t{i}") for i in range(300))
    latin1 = b'{"resourceType": "Patient", "id": "x", "name": [{"family": "Gr\xfcn"}]}\n'
    files = {
        "latin1.ndjson": line("a1") + latin1 + line("a2"),
        "utf16.ndjson": line("a3").decode().encode("utf-16"),
        "gzip-inside.ndjson": gz(line("a4") + line("a5")),
        "deep.ndjson": line("a6")
        + b'{"resourceType": "Patient", "id": "d", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}\n"
        + line("a7"),
        "surrogate.ndjson": line("a8")
        + b'{"resourceType": "Patient", "id": "s", "name": [{"family": "\\ud800"}]}\n',
        "bom.ndjson": b"\xef\xbb\xbf" + line("a9"),
        "export.ndjson.gz": gz(line("a10")),
        "cut.ndjson.gz": gz(long)[: len(gz(long)) // 2],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _ingest(warehouse, *(tmp_path / name for name in files))
    quarantined = {
        (Path(f).name, n): reason
        for f, n, reason in _rows(
            warehouse, "SELECT source_file, source_line, reason FROM fhir_quarantine"
        )
    }
    cut = [n for name, n in quarantined if name == "cut.ndjson.gz"]
    assert len(cut) == 1 and 1 < cut[0] < 300
    assert quarantined == {
        ("latin1.ndjson", 2): f"not UTF-8 (an invalid byte at byte {latin1.index(0xFC) + 1})",
        ("utf16.ndjson", 1): "not UTF-8: the file is UTF-16 (FHIR NDJSON is UTF-8)",
        ("deep.ndjson", 2): "JSON nested more than 100 deep",
        ("surrogate.ndjson", 2): "not valid Unicode: a \\uD800-\\uDFFF escape without its pair "
        "(a lone surrogate)",
        ("cut.ndjson.gz", cut[0]): "gzip stream is truncated or corrupt from this line on: "
        "nothing after it could be read",
    }
    stored = {r[0] for r in _rows(warehouse, "SELECT id FROM fhir_resource")}
    read_before_the_cut = {f"t{i}" for i in range(cut[0] - 1)}
    assert stored == {f"a{i}" for i in range(1, 11) if i != 3} | read_before_the_cut


def test_the_last_in_load_order_wins_unless_meta_says_otherwise(
    warehouse: Path, tmp_path: Path
) -> None:
    """Duplicate ids in one load: the last one read wins (not the one whose content hash
    sorts last); meta.versionId compares as a number (10 after 9) and meta.lastUpdated as an
    instant (10:00+01:00 is before 09:30Z)."""
    codes = ["44054006", "38341003", "195967001", "13645005"]
    by_order = _ndjson(tmp_path / "order.ndjson", [_patient("p1", "9434765919")] + [
        _condition("c1", "p1", code) for code in codes
    ])  # fmt: skip
    _ingest(warehouse, by_order)
    assert _rows(warehouse, "SELECT code FROM diagnosis") == [(codes[-1],)]

    def versioned(cid: str, code: str, **meta: str) -> dict[str, Any]:
        return _condition(cid, "p1", code, meta=meta)

    versions = _ndjson(tmp_path / "versions.ndjson", [
        versioned("c2", "38341003", versionId="10"),
        versioned("c2", "44054006", versionId="9"),
        versioned("c3", "38341003", lastUpdated="2024-03-01T09:30:00Z"),
        versioned("c3", "44054006", lastUpdated="2024-03-01T10:00:00+01:00"),
    ])  # fmt: skip
    _ingest(warehouse, versions)
    # c1 as last read; c2 at version 10, not 9; c3 at 09:30Z, an hour after 10:00+01:00
    assert sorted(_rows(warehouse, "SELECT code FROM diagnosis")) == [
        ("13645005",), ("38341003",), ("38341003",)
    ]  # fmt: skip


def test_a_changed_resource_under_a_stored_version_is_a_conflict_not_unchanged(
    warehouse: Path, tmp_path: Path
) -> None:
    first = _ndjson(tmp_path / "v1.ndjson", [
        _patient("p1", "9434765919"), _condition("c1", "p1", "44054006", meta={"versionId": "1"})
    ])  # fmt: skip
    _ingest(warehouse, first)
    changed = _ndjson(
        tmp_path / "v1-changed.ndjson",
        [_condition("c1", "p1", "38341003", meta={"versionId": "1"})],
    )
    report = _ingest(warehouse, changed)
    assert report.unchanged == {} and report.stored == {}
    assert report.quarantined == {"Condition": 1}
    assert _rows(warehouse, "SELECT source_line, resource_type, resource_id, reason FROM "
        "fhir_quarantine") == [(1, "Condition", "c1", "Condition." + VERSION_CONFLICT)]  # fmt: skip
    assert _rows(warehouse, "SELECT code FROM diagnosis") == [("44054006",)]
    again = _ingest(warehouse, first, changed)
    assert again.stored == {} and again.unchanged == {"Patient": 1, "Condition": 1}
    assert _rows(warehouse, "SELECT count(*) FROM fhir_quarantine") == [(1,)]


def test_impossible_numbers_and_lives_are_quarantined_and_a_bom_is_not(
    warehouse: Path, tmp_path: Path
) -> None:
    def hba1c(oid: str, value: str) -> str:
        return (
            '{"resourceType": "Observation", "id": "' + oid + '", "status": "final", '
            '"subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01", '
            '"code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, '
            '"valueQuantity": {"value": ' + value + ', "unit": "%"}}'
        )

    source = tmp_path / "life.ndjson"
    source.write_bytes(b"\xef\xbb\xbf" + "\n".join([
        json.dumps(_patient("p1", "9434765919")),
        hba1c("o1", "NaN"), hba1c("o2", "Infinity"), hba1c("o3", "-Infinity"),
        hba1c("o4", "1e400"), hba1c("o5", "7.1"),
        json.dumps(_patient("p2", birthDate="2099-01-01")),
        json.dumps(_patient("p3", birthDate="1950-04-02", deceasedDateTime="1949-12-31")),
        json.dumps(_patient("p4", birthDate="1950", deceasedDateTime="1950-01-01T10:00:00Z")),
    ]).encode())  # fmt: skip
    _ingest(warehouse, source)
    reasons = dict(_rows(warehouse, "SELECT source_line, reason FROM fhir_quarantine"))
    value = "Observation.valueQuantity.value: not a finite number (NaN, Infinity or out of range)"
    assert reasons == {
        2: value, 3: value, 4: value, 5: value,
        7: "Patient.birthDate: after the date of loading (a birth in the future)",
        8: "Patient.deceasedDateTime: before Patient.birthDate",
    }  # fmt: skip
    stored = sorted(r[0] for r in _rows(warehouse, "SELECT id FROM fhir_resource"))
    assert stored == ["o5", "p1", "p4"]
