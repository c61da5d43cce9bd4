"""Views over NDJSON read typed (`fhir.typed`) give the rows of the general query over the
table of parsed resources, whatever shape a resource takes, and are used for the usual one."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.fhir import reader, views
from joinedup.fhir.ingest import shipped_views
from joinedup.fhir.reader import read_resources
from joinedup.fhir.testsuite import execute_view, load_files, resource_table
from joinedup.fhir.views import RESOURCE_TABLE
from joinedup.warehouse import open_empty_engine

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "synthea"
_ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
_TF = "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function"
_ADMISSION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"

#: An Encounter as the export writes it.
_USUAL: dict[str, Any] = {
    "resourceType": "Encounter", "id": "usual",
    "extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                   "valueMoney": {"value": 42.5, "currency": "GBP"}}],
    "identifier": [{"system": "https://fhir.joinedup.org/Id/activity", "value": "a1"}],
    "status": "finished", "class": {"code": "AMB"},
    "type": [{"coding": [{"system": "https://fhir.joinedup.org/CodeSystem/activity-type",
                          "code": "gp"}]}],
    "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-01-02"},
    "serviceProvider": {"reference": "Organization/Z1",
                        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                       "value": "Z1"}},
}  # fmt: skip

#: Changes to the usual Encounter, each a shape the typed read must hand on or read alike:
#: nulls, empty and second items, arrays where one value belongs and back, texts that look
#: like JSON, escapes, numbers written long.
_CHANGES: list[dict[str, Any]] = [
    {"status": None}, {"status": ["a", "b"]}, {"status": ["only"]}, {"status": "[not json"},
    {"status": 'quote " and \\ é'}, {"id": 7}, {"subject": None}, {"subject": {"reference": None}},
    {"subject": [{"reference": "Patient/p2"}]}, {"subject": "Patient/p3"}, {"subject": {}},
    {"identifier": [None, {"system": "https://fhir.joinedup.org/Id/activity", "value": "a2"}]},
    {"identifier": [{"system": "x", "value": "1"},
                    {"system": "https://fhir.joinedup.org/Id/activity", "value": "a3"}]},
    {"identifier": {"system": "https://fhir.joinedup.org/Id/activity", "value": "a4"}},
    {"identifier": []}, {"identifier": None}, {"identifier": ["text"]},
    {"identifier": [{"system": ["https://fhir.joinedup.org/Id/activity"], "value": "a5"}]},
    {"type": [{"coding": []}]}, {"type": [{"coding": None}]}, {"type": [[{"coding": []}]]},
    {"period": {"start": "2024-01-02", "end": None}}, {"period": [{"start": "2024-02-03"}]},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": {"value": 1.50}}]},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": [{"value": 6}, {"value": 7}]}]},
    {"extension": [None]}, {"extension": {"url": "u"}},
    {"class": {"code": None}}, {"class": [{"code": "IMP"}, {"code": "EMER"}]},
    {"priority": {"coding": [{"code": "U"}]}}, {"priority": {"coding": {"code": "V"}}},
    {"length": {"value": 12345678901234567890, "code": "min"}},
    # leaves read as text, which read_json fills from any JSON value: numbers written with
    # an exponent where DuckDB writes one and json_extract_string none, texts that look like
    # those, booleans, objects, numbers where a compared `system` belongs
    {"status": 1e21}, {"status": 1e-7}, {"status": 100000000000000000000.0}, {"status": 12.50},
    {"status": True}, {"status": {"text": "x"}}, {"id": "1e+21"}, {"id": "{x"},
    {"period": {"start": 20240102, "end": 2.5e-3}}, {"class": {"code": "[x"}},
    {"identifier": [{"system": 7, "value": "a6"}]},
    {"identifier": [{"system": "https://fhir.joinedup.org/Id/activity", "value": 8e30}]},
    {"length": {"value": "12.50", "code": 1e300}}, {"length": {"value": 1e-7}},
    {"subject": {"reference": 5e22}},
    # a JSON null after the one item (FHIR allows none in an array): the typed query tells a
    # second item by the list's length, so these take the general path
    {"identifier": [{"system": "https://fhir.joinedup.org/Id/activity", "value": "a7"}, None]},
    {"type": [{"coding": [{"system": "https://fhir.joinedup.org/CodeSystem/activity-type",
                           "code": "op"}, None]}]},
    {"type": [{"coding": [{"system": "https://fhir.joinedup.org/CodeSystem/activity-type",
                           "code": "ae"}]}, None]},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": {"value": 3}}, None]},
    {"serviceType": {"coding": [{"system": _TF, "code": "100"}, None]}},
    {"serviceType": {"coding": [{"system": _TF, "code": "101"}, {"system": _TF, "code": "102"}]}},
    {"hospitalization": {"extension": [{"url": _ADMISSION,
                                        "valueCodeableConcept": {"coding": [{"code": "11"}]}},
                                       None]}},
    {"identifier": [None]}, {"extension": [None, None]},
    # leaves cast to numbers (`length.value`, the cost's `valueMoney.value`), read as JSON:
    # texts (escaped, empty, spaced), booleans, exponents, zero, huge numbers, an array, an
    # object and a null where the number belongs
    {"length": {"value": "1.5"}}, {"length": {"value": " 7 "}}, {"length": {"value": ""}},
    {"length": {"value": "a\"b"}}, {"length": {"value": True}}, {"length": {"value": 1e21}},
    {"length": {"value": -0.0}}, {"length": {"value": [2]}}, {"length": {"value": {"v": 1}}},
    {"length": {"value": None, "code": "d"}}, {"length": {"value": 1e400}},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": {"value": "42"}}]},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": {"value": False}}]},
    {"extension": [{"url": "https://fhir.joinedup.org/StructureDefinition/cost",
                    "valueMoney": {"value": 123456789012345678901234567890}}]},
]  # fmt: skip


def _general(view: dict[str, Any], files: list[Path]) -> list[dict[str, Any]]:
    """The rows of the general query over the table of parsed resources."""
    compiled = views.compile_view(view, dialect="duckdb")
    with open_empty_engine("duckdb") as engine:
        rows = execute_view(compiled, resource_table(read_resources(files)), engine)
    return rows.to_pylist()


def _typed(view: dict[str, Any], files: list[Path]) -> tuple[list[dict[str, Any]], bool]:
    """The rows `load_files` and `execute_view` give, and whether the table of parsed
    resources was left unbuilt (the typed read gave them)."""
    compiled = views.compile_view(view, dialect="duckdb")
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, files) > 0
        rows = execute_view(compiled, None, engine)
        return rows.to_pylist(), RESOURCE_TABLE not in engine.table_names()


@pytest.mark.parametrize("change", _CHANGES, ids=lambda c: json.dumps(c)[:60])
def test_every_shape_gives_the_general_rows(change: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "Encounter.ndjson"
    lines = [_USUAL, {**_USUAL, "id": "changed", **change}]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    view = shipped_views()["encounter"]
    try:
        expected = _general(view, [data])
    except Exception as err:  # the general query refuses it (several values): so must typed
        with pytest.raises(type(err)):
            _typed(view, [data])
        return
    got, _ = _typed(view, [data])
    assert got == expected


def test_the_usual_shape_is_read_typed(tmp_path: Path) -> None:
    """The typed read gives the rows, and no table of parsed resources is built."""
    data = tmp_path / "Encounter.ndjson"
    data.write_text(json.dumps(_USUAL) + "\n", encoding="utf-8")
    view = shipped_views()["encounter"]
    got, typed = _typed(view, [data])
    assert typed
    assert got == _general(view, [data])
    assert got[0]["activity_id"] == "a1" and got[0]["cost"] == 42.5
    assert got[0]["provider_ods"] == "Z1" and got[0]["patient_key"] == "Patient/p1"


#: A view comparing a leaf with texts that are JSON of a number and of a boolean, and with
#: one that is not, and reading a boolean and a number.
_COMPARED: dict[str, Any] = {
    "resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
    "select": [{"column": [
        {"name": "n", "path": "identifier.where(system = '12').value.first()", "type": "string"},
        {"name": "t", "path": "identifier.where(system = 'true').value.first()",
         "type": "string"},
        {"name": "s", "path": "identifier.where(system = 's').value.first()", "type": "string"},
        {"name": "deceased", "path": "deceased.ofType(boolean)", "type": "boolean"},
        {"name": "births", "path": "multipleBirth.ofType(integer)", "type": "integer"},
    ]}],
}  # fmt: skip

#: Patients whose compared and typed leaves hold other JSON types than the usual.
_LEAVES: list[dict[str, Any]] = [
    {"identifier": [{"system": 12, "value": "number"}]},
    {"identifier": [{"system": "12", "value": "text"}]},
    {"identifier": [{"system": True, "value": "boolean"}]},
    {"identifier": [{"system": "true", "value": "text"}]},
    {"identifier": [{"system": "s", "value": 1e21}]},
    {"deceasedBoolean": "true"}, {"deceasedBoolean": 1}, {"deceasedBoolean": [True]},
    {"multipleBirthInteger": "2"}, {"multipleBirthInteger": 2.0}, {"multipleBirthInteger": 3e21},
]  # fmt: skip


@pytest.mark.parametrize("change", _LEAVES, ids=lambda c: json.dumps(c)[:60])
def test_leaves_read_as_text_give_the_general_rows(change: dict[str, Any], tmp_path: Path) -> None:
    """A leaf read as text holds a number's or a boolean's text as well as a string's: a
    comparison with a text that is such JSON, an exponent and an array still give the
    general path's rows."""
    data = tmp_path / "Patient.ndjson"
    usual = {"resourceType": "Patient", "id": "usual", "deceasedBoolean": False,
             "identifier": [{"system": "s", "value": "v"}], "multipleBirthInteger": 1}  # fmt: skip
    lines = [usual, {**usual, "id": "changed", **change}]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    try:
        expected = _general(_COMPARED, [data])
    except Exception as err:  # the general query refuses it: so must typed
        with pytest.raises(type(err)):
            _typed(_COMPARED, [data])
        return
    got, _ = _typed(_COMPARED, [data])
    assert got == expected
    assert got[0] == {"n": None, "t": None, "s": "v", "deceased": False, "births": 1}


def test_leaves_read_only_as_text_are_read_as_text() -> None:
    """The encounter view reads its leaves of text as VARCHAR, but not a `system` it
    compares with a text that could be another JSON value's."""
    typed = views.compile_view(shipped_views()["encounter"], dialect="duckdb").typed
    assert typed is not None
    assert typed.columns["status"].sql("duckdb") == "TEXT"
    assert "JSON" not in typed.columns["period"].sql("duckdb")
    # a leaf cast to a number is read as JSON, which writes a number more cheaply
    assert typed.columns["length"].sql("duckdb") == 'STRUCT("value" JSON, "code" TEXT)'
    compared = views.compile_view(_COMPARED, dialect="duckdb").typed
    assert compared is not None
    assert compared.columns["identifier"].sql("duckdb") == 'STRUCT("system" JSON, "value" TEXT)[]'


#: A view of several rows a resource (`unionAll`, `forEachOrNull` with `%rowIndex`), whose
#: rows hold their columns' values read out when read typed.
_ROWS: dict[str, Any] = {
    "resourceType": "ViewDefinition", "resource": "Observation", "status": "active",
    "select": [
        {"column": [{"name": "id", "path": "id", "type": "id"},
                    {"name": "status", "path": "status", "type": "code"}]},
        {"unionAll": [
            {"column": [{"name": "part", "path": "'own'", "type": "string"},
                        {"name": "i", "path": "%rowIndex", "type": "integer"},
                        {"name": "value", "path": "value.ofType(Quantity).value",
                         "type": "decimal"},
                        {"name": "code", "path": "code.coding.first().code", "type": "code"}]},
            {"forEachOrNull": "component",
             "column": [{"name": "part", "path": "'component'", "type": "string"},
                        {"name": "i", "path": "%rowIndex", "type": "integer"},
                        {"name": "value", "path": "value.ofType(Quantity).value",
                         "type": "decimal"},
                        {"name": "code", "path": "code.coding.first().code", "type": "code"}]},
        ]},
    ],
}  # fmt: skip

_OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "id": "o", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "valueQuantity": {"value": 120.5, "unit": "mmHg"},
    "component": [{"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120}},
                  {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 80}}],
}  # fmt: skip


@pytest.mark.parametrize("each", ["forEachOrNull", "forEach"])
@pytest.mark.parametrize(
    "change",
    [{}, {"component": []}, {"component": None}, {"status": 1e21}, {"status": ["a"]},
     {"valueQuantity": {"value": "12.50"}}, {"valueQuantity": {"value": 1e-7}},
     {"valueQuantity": [{"value": 1}]}, {"code": {"coding": [{"code": 44054006}]}},
     {"id": True}, {"component": {"valueQuantity": {"value": 5}}}, {"component": [{}]},
     {"component": [None, {"valueQuantity": {"value": 6}}]}],
    ids=lambda c: json.dumps(c)[:60],
)  # fmt: skip
def test_rows_of_several_a_resource_give_the_general_rows(
    change: dict[str, Any], each: str, tmp_path: Path
) -> None:
    """A resource's own row and one a component (`unionAll`), where the component is
    iterated with `forEachOrNull` and with `forEach` (whose rows, when a resource has no
    component, are the own row alone, written without the lists: `_union_without_foci`)."""
    view = json.loads(json.dumps(_ROWS).replace('"forEachOrNull"', json.dumps(each)))
    data = tmp_path / "Observation.ndjson"
    lines = [_OBSERVATION, {**_OBSERVATION, "id": "changed", **change}]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    try:
        expected = _general(view, [data])
    except Exception as err:  # the general query refuses it: so must typed
        with pytest.raises(type(err)):
            _typed(view, [data])
        return
    got, _ = _typed(view, [data])
    assert got == expected
    if each == "forEach" and change.get("component", 1) in ([], None):
        assert [(r["id"], r["part"]) for r in got[3:]] == [("changed", "own")]
    assert [(r["part"], r["i"], r["value"], r["code"]) for r in got[:3]] == [
        ("own", 0, 120.5, "85354-9"), ("component", 0, 120.0, "8480-6"),
        ("component", 1, 80.0, "8462-4"),
    ]  # fmt: skip


@pytest.mark.parametrize("several", [False, True], ids=["one row", "several rows"])
def test_a_view_where_reads_typed_and_keeps_the_general_rows(several: bool, tmp_path: Path) -> None:
    """A view's `where` over leaves read as text keeps the resources the general query
    keeps, whether a resource gives one row or several."""
    where = [{"path": "status = 'final' and code.coding.first().code.exists()"}]
    one = [{"column": [{"name": "id", "path": "id", "type": "id"}]}]
    view = {**_ROWS, "where": where, **({} if several else {"select": one})}
    data = tmp_path / "Observation.ndjson"
    lines = [
        _OBSERVATION,
        {**_OBSERVATION, "id": "p", "status": "preliminary"},
        {**_OBSERVATION, "id": "n", "status": 12},
        {**_OBSERVATION, "id": "c", "code": {}},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    got, typed = _typed(view, [data])
    assert typed
    assert got == _general(view, [data])
    assert {r["id"] for r in got} == {"o"}


@pytest.mark.parametrize("name", sorted(shipped_views()))
def test_shipped_views_over_a_sample_give_the_general_rows(name: str) -> None:
    files = sorted(SAMPLE.glob("*.ndjson"))
    view = shipped_views()[name]
    got, _ = _typed(view, files)
    assert got == _general(view, files)


#: The shipped views whose rows of the sample the typed read gives (the others' sample
#: shapes take the general query).
_TYPED_OVER_THE_SAMPLE = [
    "condition", "encounter", "medication_request", "organization", "patient_identifier",
    "procedure",
]  # fmt: skip


@pytest.mark.parametrize("name", _TYPED_OVER_THE_SAMPLE)
def test_shipped_views_read_the_sample_typed(name: str) -> None:
    """A typed query that cannot even be bound (DuckDB refused `list_transform` over the
    items' children of a NULL written in place) takes the general query for every file,
    with the same rows but none of the typed read's speed: these read the sample typed."""
    files = sorted(SAMPLE.glob("*.ndjson"))
    view = shipped_views()[name]
    got, typed = _typed(view, files)
    assert typed
    assert got == _general(view, files)


#: A Patient's General Practitioners (a list of References, each with at most one
#: `identifier`) in the shapes the R4 hint must hand on or read alike.
_PRACTICES: list[Any] = [
    [{"reference": "Organization/A", "identifier": {"system": _ODS, "value": "A"}}],
    [{"identifier": [{"system": _ODS, "value": "B"}]}],
    [{"identifier": [{"system": "x", "value": "C1"}, {"system": _ODS, "value": "C2"}]}],
    [{"identifier": {"system": "x", "value": "D"}}, {"identifier": {"system": _ODS, "value": "E"}}],
    {"identifier": {"system": _ODS, "value": "F"}},
    [{"identifier": {"system": [_ODS], "value": "G"}}],
    [{"identifier": None}], [], None, [{"reference": "Organization/H"}],
]  # fmt: skip


@pytest.mark.parametrize("practices", _PRACTICES, ids=lambda p: json.dumps(p)[:60])
def test_general_practitioners_in_every_shape(
    practices: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed, with the hint and without it, the patient view gives the same rows."""
    data = tmp_path / "Patient.ndjson"
    usual = {"resourceType": "Patient", "id": "usual", "generalPractitioner": _PRACTICES[0]}
    changed = {"resourceType": "Patient", "id": "changed", "generalPractitioner": practices}
    data.write_text("".join(json.dumps(r) + "\n" for r in (usual, changed)), encoding="utf-8")
    view = shipped_views()["patient"]
    got, _ = _typed(view, [data])
    assert got == _general(view, [data])
    with monkeypatch.context() as patched:
        patched.setattr(views, "single_paths", lambda resource_type: frozenset())
        assert got == _general(view, [data])
    assert got[0]["practice_ods"] == "A"


def _compact(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"))


_E = _compact({"resourceType": "Encounter", "id": "e"})

#: File contents and what `leading_type` says of them: the type every line starts with and
#: how many lines, or None where a line starts otherwise.
_STARTS: list[tuple[bytes, tuple[str, int] | None]] = [
    (f"{_E}\n{_E}\n".encode(), ("Encounter", 2)),
    (f"{_E}\r\n{_E}\r\n".encode(), ("Encounter", 2)),
    (f"{_E}\n{_E}".encode(), ("Encounter", 2)),  # no newline at the end
    (f"{_E}\n\n{_E}\n".encode(), None),  # a blank line
    (f"{_E}\n{_E}\n\n".encode(), None),
    (b"\xef\xbb\xbf" + f"{_E}\n".encode(), None),  # a byte order mark
    (f"{_E}\n{_compact({'resourceType': 'Patient', 'id': 'p'})}\n".encode(), None),
    (f"{_E}\n{_compact({'resourceType': 'EncounterHistory', 'id': 'h'})}\n".encode(), None),
    (f'{_E}\n{{"id":"later","resourceType":"Encounter"}}\n'.encode(), None),
    (f'{_E}\n{{ "resourceType": "Encounter"}}\n'.encode(), None),
    (b'{"resourceType":"Enc\\u006funter","id":"x"}\n', None),
    (f"{_E}\n{{}}".encode(), None),  # a last line shorter than the start
    (b"", None),
]


@pytest.mark.parametrize(
    ("blocks", "pieces"),
    [(32 * 1024 * 1024, 128 * 1024 * 1024), (7, 128 * 1024 * 1024), (7, 5), (3, 60)],
    ids=["one block", "7-byte blocks", "5-byte pieces", "60-byte pieces"],
)
@pytest.mark.parametrize(("data", "found"), _STARTS, ids=lambda v: repr(v)[:50])
def test_leading_type_reads_only_starts_it_can_trust(
    data: bytes,
    found: tuple[str, int] | None,
    blocks: int,
    pieces: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines that start otherwise are left to the parse; a file listed from its starts
    gives the count and the rows the general query gives, across the boundaries of the
    blocks scanned at once and of the pieces scanned by threads at once."""
    monkeypatch.setattr(reader, "SCAN_BYTES", blocks)
    monkeypatch.setattr(reader, "PIECE_BYTES", pieces)
    path = tmp_path / "Encounter.ndjson"
    path.write_bytes(data)
    assert reader.leading_type(path) == found
    if not data:
        return
    view = {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
            "select": [{"column": [{"name": "id", "path": "id", "type": "string"}]}]}  # fmt: skip
    compiled = views.compile_view(view, dialect="duckdb")
    try:
        expected, count = _general(view, [path]), len(list(read_resources([path])))
    except InputError:  # the general reading refuses a line: so must the views
        with pytest.raises(InputError, match="line 2"), open_empty_engine("duckdb") as engine:
            load_files(engine, [path])
            execute_view(compiled, None, engine)
        return
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [path]) == count
        got = execute_view(compiled, None, engine)
    assert got.to_pylist() == expected


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_files_scanned_together_are_each_listed_as_alone(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several files cut into many small pieces and scanned by threads at once: each file's
    answer is its own, whatever the pieces of the others hold."""
    monkeypatch.setattr(reader, "PIECE_BYTES", 40)
    monkeypatch.setattr(reader, "SCAN_BYTES", 16)
    patient = _compact({"resourceType": "Patient", "id": "p"})
    contents = {
        "Encounter.ndjson": f"{_E}\n" * 9,
        "Patient.ndjson": f"{patient}\n" * 4 + f"{_E}\n" + f"{patient}\n" * 4,
        "empty.ndjson": "",
        "blank.ndjson": f"{_E}\n" * 5 + "\n" + f"{_E}\n",
        "Patient2.ndjson": f"{patient}\n" * 7 + patient,
    }
    paths = []
    for name, text in contents.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    assert reader.leading_types(paths, workers=workers) == {
        paths[0]: ("Encounter", 9),
        paths[1]: None,
        paths[2]: None,
        paths[3]: None,
        paths[4]: ("Patient", 8),
    }


def _python(script: str, *args: str) -> str:
    """What `script` prints, run in a fresh interpreter (it must succeed)."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_more_files_than_descriptors_are_listed(tmp_path: Path) -> None:
    """A bulk export of more files than the process may hold open (macOS allows 256) is
    listed from its line starts all the same: files are mapped a batch at a time."""
    for i in range(300):
        (tmp_path / f"Encounter.{i:03}.ndjson").write_text(f"{_E}\n" * 3)
    script = (
        "import resource, sys; from pathlib import Path; from joinedup.fhir import reader\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "found = reader.leading_types(sorted(Path(sys.argv[1]).iterdir()))\n"
        "print(len(found), set(found.values()))\n"
    )
    assert _python(script, str(tmp_path)).strip() == "300 {('Encounter', 3)}"


def test_reading_views_over_files_does_not_load_pandas(tmp_path: Path) -> None:
    """Listing the files and reading a view over them keeps no Python object in DuckDB:
    DuckDB's module imports pandas the first time it is given one, 0.3-0.5 s of every
    `views run` (the listing was such a table of a few rows)."""
    path = tmp_path / "Encounter.ndjson"
    path.write_text(f"{_E}\n" * 3)
    script = (
        "import sys; from pathlib import Path\n"
        "from joinedup.fhir.ingest import shipped_views\n"
        "from joinedup.fhir.testsuite import execute_view, load_files\n"
        "from joinedup.fhir.views import compile_view\n"
        "from joinedup.warehouse import open_empty_engine\n"
        "with open_empty_engine('duckdb') as engine:\n"
        "    loaded = load_files(engine, [Path(sys.argv[1])])\n"
        "    view = compile_view(shipped_views()['encounter'])\n"
        "    rows = execute_view(view, None, engine).num_rows\n"
        "print(loaded, rows, 'pandas' in sys.modules)\n"
    )
    assert _python(script, str(path)).split() == ["3", "3", "False"]


@pytest.mark.parametrize("files", [3, 300])
def test_a_listing_of_many_files_is_kept(files: int, tmp_path: Path) -> None:
    """The listing is kept as VALUES for a few files and loaded from Arrow for many (VALUES
    of thousands of rows cost seconds to write): the same resources either way."""
    for i in range(files):
        (tmp_path / f"Encounter.{i:03}.ndjson").write_text(
            _compact({"resourceType": "Encounter", "id": f"e{i}"}) + "\n"
        )
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, sorted(tmp_path.iterdir())) == files
        view = views.compile_view(shipped_views()["encounter"])
        ids = execute_view(view, None, engine).column("id").to_pylist()
    assert sorted(ids) == sorted(f"e{i}" for i in range(files))


def test_an_interrupt_while_listing_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the scan stops the load (the mapping's close does not turn it into an
    error the loader would take as a file to parse instead)."""
    path = tmp_path / "Encounter.ndjson"
    path.write_text(f"{_E}\n" * 3)

    def interrupted(data: Any, head: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(reader, "_lines_starting", interrupted)
    with pytest.raises(KeyboardInterrupt), open_empty_engine("duckdb") as engine:
        load_files(engine, [path])


def test_a_gzipped_file_is_parsed_to_list_it(tmp_path: Path) -> None:
    path = tmp_path / "Encounter.ndjson.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(f"{_E}\n{_E}\n")
    assert reader.leading_type(path) is None
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [path]) == 2


#: A Condition as the export writes it: its codes are read through `code.coding`, a list.
_CONDITION: dict[str, Any] = {
    "resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    "verificationStatus": {"coding": [{"code": "confirmed"}]},
    "recordedDate": "2024-01-02",
}  # fmt: skip

#: Shapes of the lists read as lists of STRUCTs (`code.coding`, `verificationStatus.coding`):
#: items without the child read, null children and items, a null or empty list, an object or
#: a text where the list belongs, items that are not objects, several items, escapes.
_CODINGS: list[dict[str, Any]] = [
    {"code": {"coding": [{"system": "http://snomed.info/sct"}, {"code": "second"}]}},
    {"code": {"coding": [{"code": None}, {"code": "after a null"}]}},
    {"code": {"coding": [None, {"code": "after a null item"}]}},
    {"code": {"coding": None}}, {"code": {"coding": []}}, {"code": {}},
    {"code": {"coding": {"system": "http://snomed.info/sct", "code": "an object"}}},
    {"code": {"coding": "text"}}, {"code": {"coding": ["text"]}}, {"code": {"coding": [[]]}},
    {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"},
                         {"system": "http://snomed.info/sct", "code": "44054006"}]}},
    {"code": {"coding": [{"code": 'quote " and \\ é'}]}}, {"code": {"coding": [{"code": 12}]}},
    {"code": {"coding": [{"code": ["a", "b"]}]}}, {"code": {"coding": [{"code": {"x": 1}}]}},
    {"code": {"coding": [{"system": ["http://snomed.info/sct"], "code": "arr"}]}},
    {"code": [{"coding": [{"code": "code as a list"}]}]},
    {"verificationStatus": {"coding": [{"code": "refuted"}, {"code": "confirmed"}]}},
    {"verificationStatus": {"coding": [{}]}}, {"verificationStatus": {"coding": {"code": "x"}}},
    {"verificationStatus": None},
]  # fmt: skip


@pytest.mark.parametrize("change", _CODINGS, ids=lambda c: json.dumps(c)[:60])
def test_lists_read_as_structs_give_the_general_rows(
    change: dict[str, Any], tmp_path: Path
) -> None:
    """The condition view reads `code.coding` and `verificationStatus.coding` (member chains
    through a list: `code.coding.code.first()`) as lists of STRUCTs; every shape gives the
    general query's rows."""
    data = tmp_path / "Condition.ndjson"
    lines = [_CONDITION, {**_CONDITION, "id": "changed", **change}]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    view = shipped_views()["condition"]
    try:
        expected = _general(view, [data])
    except Exception as err:  # the general query refuses it (several values): so must typed
        with pytest.raises(type(err)):
            _typed(view, [data])
        return
    got, _ = _typed(view, [data])
    assert got == expected


def test_member_chains_through_lists_are_read_typed(tmp_path: Path) -> None:
    """`code.coding`, a Patient's `address` and `generalPractitioner` are read as lists of
    STRUCTs, not JSON, and the usual shapes give their rows with no table of parsed
    resources built."""
    condition = views.compile_view(shipped_views()["condition"], dialect="duckdb").typed
    patient = views.compile_view(shipped_views()["patient"], dialect="duckdb").typed
    assert condition is not None and patient is not None
    assert condition.columns["code"].sql("duckdb") == (
        'STRUCT("coding" STRUCT("system" JSON, "code" JSON)[])'
    )
    assert condition.columns["verificationStatus"].sql("duckdb") == (
        'STRUCT("coding" STRUCT("code" JSON)[])'
    )
    assert patient.columns["address"].sql("duckdb").endswith("[]")
    assert patient.columns["generalPractitioner"].sql("duckdb").endswith("[]")
    data = tmp_path / "Condition.ndjson"
    data.write_text(json.dumps(_CONDITION) + "\n", encoding="utf-8")
    view = shipped_views()["condition"]
    got, typed = _typed(view, [data])
    assert typed
    assert got == _general(view, [data])
    assert got[0]["first_code"] == "44054006" and got[0]["verification"] == "confirmed"


_ADDRESSES: list[Any] = [
    [{"postalCode": "AB1 2CD"}], [{"postalCode": None}, {"postalCode": "EF3 4GH"}],
    [{}, {"postalCode": "second"}], [None], [], None, {"postalCode": "an object"}, ["text"],
    [{"postalCode": ["a", "b"]}], [{"postalCode": 12}],
]  # fmt: skip


@pytest.mark.parametrize("address", _ADDRESSES, ids=lambda a: json.dumps(a)[:60])
def test_addresses_in_every_shape(address: Any, tmp_path: Path) -> None:
    data = tmp_path / "Patient.ndjson"
    usual = {"resourceType": "Patient", "id": "usual", "address": _ADDRESSES[0]}
    changed = {"resourceType": "Patient", "id": "changed", "address": address}
    data.write_text("".join(json.dumps(r) + "\n" for r in (usual, changed)), encoding="utf-8")
    view = shipped_views()["patient"]
    got, _ = _typed(view, [data])
    assert got == _general(view, [data])
    assert got[0]["postcode"] == "AB1 2CD"


def test_a_list_below_a_value_read_whole_stays_json(tmp_path: Path) -> None:
    """Where the view also reads `code` whole, `code.coding` is read from its JSON, not as a
    list of STRUCTs, and the rows are the general query's."""
    view = {
        "resourceType": "ViewDefinition", "resource": "Condition", "status": "active",
        "select": [{"column": [
            {"name": "code", "path": "code", "type": "CodeableConcept"},
            {"name": "first_code", "path": "code.coding.code.first()", "type": "code"},
        ]}],
    }  # fmt: skip
    typed = views.compile_view(view, dialect="duckdb").typed
    assert typed is not None and typed.columns["code"].sql("duckdb") == "JSON"
    data = tmp_path / "Condition.ndjson"
    lines = [_CONDITION, {**_CONDITION, "id": "two", "code": {"coding": [{}, {"code": "b"}]}}]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    got, read_typed = _typed(view, [data])
    assert read_typed
    assert got == _general(view, [data])
    assert [r["first_code"] for r in got] == ["44054006", "b"]
