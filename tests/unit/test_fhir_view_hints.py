"""The R4 cardinality hint (`fhir.elements`) changes how DuckDB reads a view's values, never
the rows: every shipped view gives the same rows, in the same order, with and without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from joinedup.fhir import views
from joinedup.fhir.ingest import shipped_views
from joinedup.fhir.testsuite import execute_view, load_files
from joinedup.warehouse import open_empty_engine

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "synthea"


@pytest.mark.parametrize("name", sorted(shipped_views()))
def test_shipped_views_same_rows_with_and_without_the_hint(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = shipped_views()[name]
    hinted = views.compile_view(view, dialect="duckdb")
    with monkeypatch.context() as patched:
        patched.setattr(views, "single_paths", lambda resource_type: frozenset())
        plain = views.compile_view(view, dialect="duckdb")
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [SAMPLE]) > 0
        got = execute_view(hinted, None, engine)
        expected = execute_view(plain, None, engine)
    assert got.equals(expected)
    if name in ("patient", "condition", "encounter", "observation"):
        assert hinted.sql() != plain.sql()  # the hint was used


def test_unused_reads_are_dropped() -> None:
    """A single element read only to step through it is not read whole."""
    compiled = views.compile_view(shipped_views()["encounter"], dialect="duckdb")
    sql = compiled.sql()
    assert "'$.\"subject\"[0]'" in sql and '\'$."subject"."reference"\'' in sql
    assert "'$.\"subject\"'," not in sql and "'$.\"period\"'," not in sql


@pytest.mark.parametrize("name", sorted(shipped_views()))
def test_shipped_views_same_rows_with_and_without_the_single_pass_where(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`where(f = 'text')` and `extension('text')` read in the resource's one pass give the
    rows of the general path."""
    view = shipped_views()[name]
    fast = views.compile_view(view, dialect="duckdb")
    with monkeypatch.context() as patched:
        patched.setattr(views, "_where_values", lambda *args: None)
        general = views.compile_view(view, dialect="duckdb")
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [SAMPLE]) > 0
        assert execute_view(fast, None, engine).equals(execute_view(general, None, engine))


#: Encounters whose `identifier`, `type.coding` and `extension` take every shape the single-pass
#: `where` must hand to the general path: one item, two, an object, a system in an array,
#: empty, null, missing, the match only in the second item.
_SHAPES = [
    {"identifier": [{"system": "a", "value": "1"}],
     "type": [{"coding": [{"system": "s", "code": "x"}]}]},
    {"identifier": [{"system": "b", "value": "1"}, {"system": "a", "value": "2"}]},
    {"identifier": {"system": "a", "value": "3"}, "type": {"coding": {"system": "s", "code": "y"}}},
    {"identifier": [{"system": ["a"], "value": "4"}],
     "type": [{"coding": [{"system": "t"}, {"system": "s", "code": "z"}]}]},
    {"identifier": [], "type": [], "extension": []},
    {"identifier": None, "extension": None},
    {},
    {"type": [{"coding": [{"system": "t", "code": "q"}]},
              {"coding": [{"system": "s", "code": "w"}]}]},
    {"extension": [{"url": "u", "valueString": "e1"}]},
    {"extension": {"url": "u", "valueString": "e2"}},
    {"extension": [{"url": "v", "valueString": "no"}, {"url": "u", "valueString": "e3"}]},
    {"extension": [{"url": "m", "valueMoney": {"value": 5}}]},
    {"extension": [{"url": "m", "valueMoney": [{"value": 6}, {"value": 7}]}]},
    {"extension": [{"url": "m", "valueMoney": []}, {"url": "m", "valueMoney": "text"}]},
    {"extension": [{"url": "m", "valueMoney": None}]},
    {"type": [{"coding": [{"system": "t", "code": "r"}]}]},
    {"type": [{"coding": [{"system": "u", "code": "n"}]}]},
    {"type": [{"coding": [{"code": "no system"}]}]},
    {"type": [{"coding": [{"system": 7, "code": "number"}]}]},
]  # fmt: skip
#: The same system and url written with JSON escapes (`\u0061` is `a`, `\/` is `/`): the
#: single pass compares texts as JSON, so these must still match.
_ESCAPED = (
    '{"resourceType": "Encounter", "id": "escaped", "identifier": [{"system": "\\u0061", '
    '"value": "9"}], "extension": [{"url": "\\u0075", "valueString": "e\\/9"}]}'
)


def test_single_pass_where_follows_every_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = {
        "resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
        "select": [{"column": [
            {"name": "id", "path": "id"},
            {"name": "value", "path": "identifier.where(system = 'a').value", "collection": True},
            {"name": "code", "path": "type.coding.where(system = 's').code.first()"},
            {"name": "either", "path": "type.coding.where(system = 's' or system = 't').code",
             "collection": True},
            {"name": "mixed", "path": "identifier.where(system = 'b' or value = '3').value",
             "collection": True},
            {"name": "ext", "path": "extension('u').value.ofType(string)", "collection": True},
            {"name": "money", "path": "extension('m').value.ofType(Money).value",
             "collection": True},
        ]}],
    }  # fmt: skip
    lines = [
        json.dumps({"resourceType": "Encounter", "id": str(i), **shape})
        for i, shape in enumerate(_SHAPES)
    ] + [_ESCAPED]
    data = tmp_path / "Encounter.ndjson"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fast = views.compile_view(view, dialect="duckdb")
    with monkeypatch.context() as patched:
        patched.setattr(views, "_where_values", lambda *args: None)
        general = views.compile_view(view, dialect="duckdb")
    assert fast.sql() != general.sql()  # the single pass was used
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [data]) == len(_SHAPES) + 1
        got = execute_view(fast, None, engine)
        assert got.equals(execute_view(general, None, engine))
    assert got.column("value").to_pylist()[:4] == ['["1"]', '["2"]', '["3"]', '["4"]']
    assert got.column("money").to_pylist()[11:13] == ["[5]", "[6,7]"]
    assert got.column("value").to_pylist()[-1] == '["9"]'
    either = got.column("either").to_pylist()
    assert either[0] == '["x"]' and either[-5:-1] == ['["r"]', "[]", "[]", "[]"]
    assert got.column("ext").to_pylist()[-1] == '["e/9"]'


def test_resource_type_read_from_the_start_or_parsed(tmp_path: Path) -> None:
    """`load_files` reads `resourceType` from the start of a line when it is written first
    and parses the resource otherwise; every line gets the type the JSON says."""
    lines = [
        '{"resourceType":"Encounter","id":"plain"}',
        '{ "resourceType" : "Encounter", "id": "spaced"}',
        '{"id":"later","resourceType":"Encounter"}',
        '{"resourceType":"Enc\\u006funter","id":"escaped"}',
        '{"resourceType":"Encounter","id":"twice","resourceType":"Patient"}',
        '{"resourceType":"Patient","id":"other"}',
    ]
    data = tmp_path / "mixed.ndjson"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    view = {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
            "select": [{"column": [{"name": "id", "path": "id", "type": "string"}]}]}  # fmt: skip
    with open_empty_engine("duckdb") as engine:
        assert load_files(engine, [data]) == len(lines)
        got = execute_view(views.compile_view(view, dialect="duckdb"), None, engine)
    assert sorted(got.column("id").to_pylist()) == ["escaped", "later", "plain", "spaced", "twice"]
