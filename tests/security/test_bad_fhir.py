"""A bad-FHIR corpus, as a careless or hostile feed would send it: bad encodings, broken
structure, oversized records, impossible facts and broken references, each line mixed with good
ones in the same files. One load of the whole corpus is shared by the assertions: nothing
crashes, every good line is stored, every bad one is quarantined with its file, line and a
reason that repeats nothing from the record, and loading it all again changes nothing."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from joinedup.fhir.ingest import LoadReport, ingest_fhir
from joinedup.warehouse import ALL_TABLES, POPULATION_TABLES, open_engine
from joinedup.warehouse.engines.duckdb import DuckDBEngine

pytestmark = pytest.mark.security

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
#: The line limit the corpus loads with, so an over-long line stays cheap to write.
MAX_LINE = 1024 * 1024


@dataclass
class Case:
    """One record of the corpus: its bytes (one NDJSON line, no newline), whether it should
    load, and the identifying values a reason must never repeat."""

    name: str
    kind: str  # encoding, structure, size, semantics, references
    line: bytes
    good: bool
    secrets: list[str] = field(default_factory=list)


def _patient(pid: str, **extra: Any) -> dict[str, Any]:
    """A patient full of identifying values (NHS number, name, birth date, postcode)."""
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NHS, "value": "9434765919"}],
        "name": [{"family": "Quxworth-Zebedee", "given": ["Philomena"]}],
        "gender": "female",
        "birthDate": "1957-08-19",
        "address": [{"postalCode": "ZZ99 3WZ"}],
        **extra,
    }


def _observation(oid: str, code: tuple[str, str], value: Any, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": "Patient/good-1"},
        "effectiveDateTime": "2024-02-11",
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "valueQuantity": {"value": value, "unit": "x"},
        **extra,
    }


def _condition(cid: str, subject: Any, code: str = "44054006", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": subject} if not isinstance(subject, dict) else subject,
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "recordedDate": "2021-06-03",
        **extra,
    }


def _leaves(item: Any) -> list[str]:
    """Every identifying scalar in `item` (strings of 4+ characters that are not structure:
    resource types, code systems, references to the good patient)."""
    if isinstance(item, dict):
        return [
            v for k, x in item.items() if k not in ("resourceType", "system") for v in _leaves(x)
        ]
    if isinstance(item, list):
        return [v for x in item for v in _leaves(x)]
    text = str(item)
    return [text] if len(text) >= 4 and text not in ("Patient/good-1", "final") else []


def _json(item: Any) -> bytes:
    return json.dumps(item).encode()


def _bad(name: str, kind: str, item: Any, *more: str) -> Case:
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        item = {**item, "id": f"bad-{item['id']}"}  # an id is content too, never a word
    return Case(name, kind, _json(item), False, [*_leaves(item), *more])


def _raw(name: str, kind: str, line: bytes, *secrets: str) -> Case:
    return Case(name, kind, line, False, list(secrets))


def _good(name: str, kind: str, item: Any) -> Case:
    return Case(name, kind, _json(item), True)


def line_cases() -> list[Case]:
    """Records that share NDJSON files with good ones, one a line."""
    patient = _patient("x")
    text = json.dumps(patient)
    return [
        # encoding
        _raw("latin-1 byte", "encoding", text.replace("Quxworth", "Qux\xf6rth").encode("latin-1"),
             "9434765919", "1957-08-19"),
        _raw("overlong UTF-8", "encoding", _json(patient).replace(b"Zebedee", b"Zeb\xc0\xafdee"),
             "9434765919"),
        _raw("UTF-8-encoded surrogate", "encoding",
             _json(patient).replace(b"Zebedee", b"Zeb\xed\xa0\x80dee"), "9434765919"),
        _raw("lone surrogate escape", "encoding",
             _json(patient).replace(b"Zebedee", b"Zeb\\ud800dee"), "9434765919", "Philomena"),
        _raw("lone low surrogate in a key", "encoding",
             _json(patient).replace(b'"gender"', b'"gen\\udc00der"'), "9434765919"),
        _raw("raw NUL byte inside a string", "encoding",
             _json(patient).replace(b"Zebedee", b"Zeb\x00dee"), "9434765919"),
        _raw("raw NUL byte between tokens", "encoding",
             _json(patient).replace(b', "gender"', b',\x00 "gender"'), "9434765919"),
        _bad("escaped NUL in a string", "encoding",
             _patient("nul", name=[{"family": "Quxworth\u0000Zebedee"}])),
        _bad("escape character in a string", "encoding",
             _patient("esc", name=[{"family": "Quxworth\u001b[2JZebedee"}])),
        _good("surrogate pair (an emoji)", "encoding",
              _patient("good-emoji", name=[{"family": "Quxworth \U0001f600"}])),
        _good("non-ASCII names in UTF-8", "encoding",
              _patient("good-utf8", name=[{"family": "Nguyễn-Ó Súilleabháin"}])),
        # structure
        _raw("not JSON: cut short", "structure", _json(patient)[:-7], "9434765919"),
        _raw("not JSON: single quotes", "structure",
             b"{'resourceType': 'Patient', 'id': 'sq', 'birthDate': '1957-08-19'}", "1957-08-19"),
        _raw("not JSON: trailing garbage", "structure", _json(patient) + b" ,{9434765919",
             "9434765919"),
        _raw("not JSON: comment", "structure", b"// 9434765919 Quxworth\n"[:-1],
             "9434765919", "Quxworth"),
        _raw("JSON scalar", "structure", b"9434765919", "9434765919"),
        _raw("JSON string", "structure", b'"Quxworth-Zebedee 9434765919"', "9434765919"),
        _raw("JSON null", "structure", b"null"),
        _bad("JSON array of resources", "structure", [patient, patient]),
        _bad("no resourceType", "structure", {k: patient[k] for k in patient if k[0] != "r"}),
        _bad("resourceType not a string", "structure", {**patient, "resourceType": 12345678}),
        _bad("unknown resourceType", "structure", {**patient, "resourceType": "Quxworth94347659"}),
        _bad("R5-only resourceType", "structure", {**patient, "resourceType": "Transport"}),
        _bad("no id", "structure", {k: v for k, v in patient.items() if k != "id"}),
        _bad("id not a string", "structure", {**patient, "id": 9434765919}),
        _bad("id with spaces", "structure", {**patient, "id": "Quxworth Zebedee 9434765919"}),
        _bad("id too long", "structure", {**patient, "id": "q" * 65}),
        _bad("a key that is content", "structure", {**patient, "9434765919": "Quxworth"}),
        _bad("Bundle.entry not a list", "structure",
             {"resourceType": "Bundle", "type": "collection", "entry": {"resource": patient}}),
        _raw("JSON nested 100,000 deep", "structure",
             b'{"resourceType": "Patient", "id": "deep", "birthDate": "1957-08-19", "x": '
             + b"[" * 100_000 + b"]" * 100_000 + b"}", "1957-08-19"),
        _raw("JSON nested 500 deep", "structure",
             b'{"resourceType": "Patient", "id": "deep5", "x": '
             + b'{"a": ' * 500 + b'"9434765919"' + b"}" * 500 + b"}", "9434765919"),
        _good("nested extensions", "structure", _patient("good-nested", extension=[
            {"url": "https://example.org/x", "extension": [{"url": "https://example.org/y"}]}
        ])),
        # size
        _raw("line over the limit", "size",
             _json(_patient("huge", text={"div": "Quxworth " * (MAX_LINE // 8)})), "9434765919"),
        _good("very long string under the limit", "size",
              _patient("good-long", name=[{"family": "Q" * 100_000}])),
        _raw("integer of 5,000 digits", "size",
             b'{"resourceType": "Observation", "id": "big", "valueInteger": ' + b"9" * 5000 + b"}"),
        # semantics
        _bad("NHS number failing Modulus 11", "semantics",
             _patient("nhs", identifier=[{"system": NHS, "value": "4010232138"}])),
        _bad("NHS number not ten digits", "semantics",
             _patient("nhs9", identifier=[{"system": NHS, "value": "943476591"}])),
        _bad("NHS number not a string", "semantics",
             _patient("nhsint", identifier=[{"system": NHS, "value": 9434765918}])),
        _bad("impossible day", "semantics", _patient("feb30", birthDate="1980-02-30")),
        _bad("impossible month", "semantics", _patient("m13", birthDate="1980-13-02")),
        _bad("impossible time", "semantics",
             _condition("t25", "Patient/good-1", onsetDateTime="2021-06-03T25:61:00Z")),
        _bad("birth in the future", "semantics", _patient("future", birthDate="2099-01-01")),
        _bad("death before birth", "semantics",
             _patient("dead", deceasedDateTime="1950-03-04T10:00:00Z")),
        _raw("NaN", "semantics",
             _json(_observation("nan", (LOINC, "4548-4"), 7.0)).replace(b"7.0", b"NaN")),
        _raw("Infinity", "semantics",
             _json(_observation("inf", (LOINC, "4548-4"), 7.0)).replace(b"7.0", b"Infinity")),
        _raw("-Infinity", "semantics",
             _json(_observation("ninf", (LOINC, "4548-4"), 7.0)).replace(b"7.0", b"-Infinity")),
        _raw("1e400", "semantics",
             _json(_observation("e400", (LOINC, "4548-4"), 7.0)).replace(b"7.0", b"1e400")),
        _bad("negative HbA1c", "semantics", _observation("neghba1c", (LOINC, "4548-4"), -6.5)),
        _bad("negative BMI", "semantics", _observation("negbmi", (SNOMED, "60621009"), -31.2)),
        _bad("negative systolic in a BP panel", "semantics", {
            **_observation("negbp", (SNOMED, "75367002"), 1.0),
            "component": [{"code": {"coding": [{"system": SNOMED, "code": "72313002"}]},
                           "valueQuantity": {"value": -128, "unit": "mm[Hg]"}}],
        }),
        _bad("negative length of stay", "semantics", {
            "resourceType": "Encounter", "id": "neglos", "status": "finished",
            "class": {"code": "IMP"}, "subject": {"reference": "Patient/good-1"},
            "period": {"start": "2024-01-05"}, "length": {"value": -4, "unit": "d"},
        }),
        _bad("negative number of repeats", "semantics", {
            "resourceType": "MedicationRequest", "id": "negrep", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/good-1"},
            "authoredOn": "2024-01-05", "dispenseRequest": {"numberOfRepeatsAllowed": -3},
        }),
        _good("negative value of a measurement that can be (base excess)", "semantics",
              _observation("good-base-excess", (LOINC, "1925-7"), -3.0)),
        _good("unknown code", "semantics", _condition("good-local-code", "Patient/good-1", "X99")),
        # references
        _good("dangling reference", "references", _condition("good-dangling", "Patient/nobody")),
        _good("conditional reference", "references",
              _condition("good-conditional", f"Patient?identifier={NHS}|9434765919")),
        _bad("reference not a string", "references", _condition("refint", {"reference": 94347})),
        _bad("empty reference", "references", _condition("refempty", "")),
        _bad("reference with no id", "references", _condition("refnoid", "Patient/")),
        _bad("reference that is prose", "references",
             _condition("refprose", "Quxworth-Zebedee's GP, 9434765919")),
        _bad("reference to an unknown type", "references",
             _condition("refunknown", "Quxworth/9434765919")),
        _bad("reference to the wrong type", "references",
             _condition("refwrong", "Organization/quxworth-9434765919")),
        _bad("GP that is an Encounter", "references",
             _patient("gpwrong", generalPractitioner=[{"reference": "Encounter/qux-9434765919"}])),
    ]  # fmt: skip


def _good_patients(first: int, count: int) -> list[bytes]:
    return [
        _json(_patient(f"good-{i}", identifier=[{"system": NHS, "value": "9434765919"}]))
        for i in range(first, first + count)
    ]


@dataclass
class Corpus:
    """The corpus on disk: which (file, line) should load and which should be quarantined."""

    folder: Path
    good: set[tuple[str, int]] = field(default_factory=set)
    bad: dict[tuple[str, int], Case] = field(default_factory=dict)
    resources: int = 0  # resources the good lines hold (a Bundle holds several)


def _write_mixed(corpus: Corpus, cases: list[Case], per_file: int = 12) -> None:
    """The line cases, `per_file` to a file, each after a good line, with CRLF endings and
    blank lines in some files."""
    serial = 5000  # after the ids the whole files use
    for start in range(0, len(cases), per_file):
        name = f"mixed-{start // per_file:02d}.ndjson"
        crlf = (start // per_file) % 2 == 1
        lines: list[bytes] = []
        for case in cases[start : start + per_file]:
            lines += [*_good_patients(serial, 1), case.line]
            serial += 1
        lines.append(b"   ")  # a blank line is neither good nor bad
        lines += _good_patients(serial, 1)
        serial += 1
        body = (b"\r\n" if crlf else b"\n").join(lines) + b"\n"
        (corpus.folder / name).write_bytes(body)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            case = next((c for c in cases[start : start + per_file] if c.line is line), None)
            if case is None or case.good:
                corpus.good.add((name, number))
                corpus.resources += 1
            else:
                corpus.bad[(name, number)] = case


def _write_whole_files(corpus: Corpus) -> list[Case]:
    """Cases that are whole files: encodings and compression, Bundles, whole-file JSON."""
    folder = corpus.folder
    cases: list[Case] = []

    def good(name: str, lines: int, resources: int | None = None) -> None:
        corpus.good |= {(name, n) for n in range(1, lines + 1)}
        corpus.resources += lines if resources is None else resources

    def bad(name: str, line: int, case: Case) -> None:
        corpus.bad[(name, line)] = case
        cases.append(case)

    three = b"\n".join(_good_patients(1, 3)) + b"\n"
    (folder / "bom.ndjson").write_bytes(b"\xef\xbb\xbf" + three)
    good("bom.ndjson", 3)
    cases.append(Case("UTF-8 byte order mark", "encoding", b"", True))
    (folder / "export.ndjson.gz").write_bytes(gzip.compress(b"\n".join(_good_patients(4, 2))))
    good("export.ndjson.gz", 2)
    cases.append(Case(".ndjson.gz", "encoding", b"", True))
    (folder / "gzip-inside.ndjson").write_bytes(gzip.compress(b"\n".join(_good_patients(6, 2))))
    good("gzip-inside.ndjson", 2)
    cases.append(Case("gzip bytes in a .ndjson file", "encoding", b"", True))
    (folder / "utf16.ndjson").write_bytes(three.decode().encode("utf-16"))
    for n in (1, 2, 3):
        bad("utf16.ndjson", n, Case(f"UTF-16 line {n}", "encoding", b"", False, ["9434765919"]))
    many = b"\n".join(_good_patients(100, 400)) + b"\n"
    whole = gzip.compress(many)
    cut = whole[: len(whole) * 2 // 3]
    (folder / "truncated.ndjson.gz").write_bytes(cut)
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    good("truncated.ndjson.gz", complete)
    bad("truncated.ndjson.gz", complete + 1, Case("truncated .gz", "encoding", b"", False))
    entries = [{"resource": json.loads(p)} for p in _good_patients(600, 2000)]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    (folder / "many.ndjson").write_bytes(_json(bundle) + b"\n")
    good("many.ndjson", 1, 2000)
    cases.append(Case("Bundle of 2,000 entries", "size", b"", True))
    (folder / "array.json").write_bytes(_json([_patient("arr1"), _patient("arr2")]))
    bad("array.json", 1, Case("JSON array file", "structure", b"", False, _leaves(_patient("a"))))
    (folder / "notjson.json").write_bytes(b'{"resourceType": "Patient", "id": "nj",\n "x": }')
    bad("notjson.json", 2, Case("file not JSON", "structure", b"", False))
    (folder / "deep.json").write_bytes(
        b'{"resourceType": "Patient", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    )
    bad("deep.json", 1, Case("file nested 50,000 deep", "structure", b"", False))
    (folder / "truncated.json.gz").write_bytes(gzip.compress(_json(_patient("tj")))[:-20])
    bad("truncated.json.gz", 1, Case("truncated .json.gz", "encoding", b"", False, ["9434765919"]))
    return cases


@dataclass
class Loaded:
    corpus: Corpus
    cases: list[Case]
    warehouse: Path
    first: LoadReport
    again: LoadReport
    before: dict[str, Any]
    after: dict[str, Any]


def _load(warehouse: Path, folder: Path) -> LoadReport:
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        return ingest_fhir(engine, [folder], staging_dir=warehouse.parent, max_line_bytes=MAX_LINE)


def _snapshot(warehouse: Path) -> dict[str, Any]:
    tables = [t.name for t in POPULATION_TABLES] + ["fhir_resource", "fhir_quarantine"]
    with open_engine("duckdb", warehouse=warehouse) as engine:
        snap = {
            name: engine.fetch(f"SELECT count(*), sum(hash(x)) FROM {name} x") for name in tables
        }
        snap["build history"] = engine.fetch(
            "SELECT history_start_date, history_end_date, people_count FROM build"
        )
    return snap


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    root = tmp_path_factory.mktemp("bad-fhir")
    folder = root / "feed"
    folder.mkdir()
    corpus = Corpus(folder)
    cases = line_cases()
    _write_mixed(corpus, cases)
    cases += _write_whole_files(corpus)
    warehouse = root / "w.duckdb"
    engine = DuckDBEngine(warehouse)
    for table in ALL_TABLES:
        engine.create(table)
    engine.close()
    first = _load(warehouse, folder)
    before = _snapshot(warehouse)
    again = _load(warehouse, folder)
    return Loaded(corpus, cases, warehouse, first, again, before, _snapshot(warehouse))


def _rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with open_engine("duckdb", warehouse=warehouse) as engine:
        return engine.fetch(sql)


def test_the_corpus_covers_every_kind_of_bad_feed(loaded: Loaded) -> None:
    bad = [c for c in loaded.cases if not c.good]
    assert len(bad) >= 50
    kinds = Counter(c.kind for c in bad)
    assert set(kinds) == {"encoding", "structure", "size", "semantics", "references"}, kinds


def test_every_good_line_of_every_file_is_stored(loaded: Loaded) -> None:
    stored = _rows(loaded.warehouse, "SELECT source_file, source_line FROM fhir_resource")
    lines = {(Path(f).name, n) for f, n in stored}
    assert lines == loaded.corpus.good
    assert len(stored) == loaded.corpus.resources
    assert sum(loaded.first.stored.values()) == loaded.corpus.resources


def test_every_bad_line_is_quarantined_with_file_line_and_reason(loaded: Loaded) -> None:
    rows = _rows(loaded.warehouse, "SELECT source_file, source_line, reason FROM fhir_quarantine")
    found = {(Path(f).name, n): reason for f, n, reason in rows}
    assert len(found) == len(rows), "one row per bad line"
    missing = {k: c.name for k, c in loaded.corpus.bad.items() if k not in found}
    extra = {k: found[k] for k in found if k not in loaded.corpus.bad}
    assert not missing and not extra, (missing, extra)
    assert all(reason.strip() for reason in found.values())


def test_no_reason_repeats_anything_from_the_record(loaded: Loaded) -> None:
    rows = _rows(loaded.warehouse, "SELECT source_file, source_line, reason FROM fhir_quarantine")
    for file, line, reason in rows:
        case = loaded.corpus.bad[(Path(file).name, line)]
        for secret in case.secrets:
            assert secret not in reason, (case.name, secret, reason)
        # and nothing that looks like an NHS number, a date of birth or a postcode
        assert not re.search(r"\d{10}|\d{3} \d{3} \d{4}|\d{4}-\d{2}-\d{2}|ZZ99", reason), (
            case.name, reason,
        )  # fmt: skip


def test_loading_it_all_again_changes_nothing(loaded: Loaded) -> None:
    assert loaded.after == loaded.before
    assert sum(loaded.again.stored.values()) == 0
    assert sum(loaded.again.quarantined.values()) == sum(loaded.first.quarantined.values())
    # in = stored + unchanged + quarantined, both times
    for report in (loaded.first, loaded.again):
        for kind, n in report.resources_in.items():
            assert (
                report.stored.get(kind, 0)
                + report.unchanged.get(kind, 0)
                + report.quarantined.get(kind, 0)
            ) == n, kind
