"""The R4 cardinality hint (`fhir.elements`) changes how DuckDB reads a view's values, never
the rows: every shipped view gives the same rows, in the same order, with and without it."""

from __future__ import annotations

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
