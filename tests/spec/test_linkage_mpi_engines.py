"""The master person index's linkage on DuckDB and on Spark: the same pairs, weights and
evidence, so the same index, for the same sources and seed."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from test_linkage_engines import people_csv

from joinedup.linkage import Extract, LinkageSettings, build_index, link_sources, read_extract
from joinedup.linkage.mpi import links_from_table
from joinedup.warehouse.engines import DuckDBEngine, Engine


def _two_sources(folder: Path) -> list[tuple[str, Extract]]:
    """people_csv's records split in two sources: the first copies in one, second in other."""
    people_csv(folder / "people.csv")
    with (folder / "people.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    for name, suffix in (("gp", "a"), ("acute", "b")):
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(r for r in body if r[0].endswith(suffix))
    return [(name, read_extract(folder / f"{name}.csv")) for name in ("gp", "acute")]


Found = dict[tuple[str, str, str, str], tuple[float, str, str]]


def _pairs(engine: Engine, sources: list[tuple[str, Extract]]) -> Found:
    table = link_sources(engine, sources, LinkageSettings(seed=11), review_threshold=0.3)
    return {
        (r["left_source"], r["left_record_id"], r["right_source"], r["right_record_id"]): (
            r["match_probability"],
            r["matched_by"],
            r["evidence"],
        )
        for r in table.to_pylist()
    }


def _index(found: Found, sources: list[tuple[str, Extract]]) -> dict[tuple[str, str], str]:
    table = pa.table(
        {
            "left_source": [k[0] for k in found],
            "left_record_id": [k[1] for k in found],
            "right_source": [k[2] for k in found],
            "right_record_id": [k[3] for k in found],
            "match_probability": [v[0] for v in found.values()],
            "match_weight": [None for _ in found],
            "matched_by": [v[1] for v in found.values()],
            "evidence": [v[2] for v in found.values()],
        }
    )
    records = [(n, r) for n, e in sources for r in e.records.column("record_id").to_pylist()]
    index = build_index(
        records, links_from_table(table), threshold=0.9, run_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return {(e.source, e.record_id): e.person_id for e in index.entries}


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_make_the_same_index(tmp_path: Path, spark_engine: Engine) -> None:
    sources = _two_sources(tmp_path)
    with DuckDBEngine() as duck:
        on_duckdb = _pairs(duck, sources)
    on_spark = _pairs(spark_engine, sources)
    # Floating point sums differ in the last places between engines (u and m estimates), so
    # probabilities agree closely, not exactly; the pairs linked and their evidence exactly.
    linked = {k for k, v in on_duckdb.items() if v[0] >= 0.9}
    assert linked == {k for k, v in on_spark.items() if v[0] >= 0.9}
    for key in on_duckdb.keys() & on_spark.keys():
        assert on_spark[key][1:] == on_duckdb[key][1:]
        assert on_spark[key][0] == pytest.approx(on_duckdb[key][0], abs=0.01)
    assert _index(on_spark, sources) == _index(on_duckdb, sources)
    assert {v[1] for v in on_duckdb.values()} == {"splink"}  # no NHS numbers here
    assert all("; " in v[2] for v in on_duckdb.values())  # each pair's levels in words


def test_link_sources_feeds_the_index(tmp_path: Path) -> None:
    sources = _two_sources(tmp_path)
    with DuckDBEngine() as duck:
        table = link_sources(duck, sources, LinkageSettings(seed=11), review_threshold=0.3)
    assert table.num_rows > 0
    assert min(table.column("match_probability").to_pylist()) >= 0.3
    records = [(n, r) for n, e in sources for r in e.records.column("record_id").to_pylist()]
    index = build_index(
        records,
        links_from_table(table),
        threshold=0.9,
        review_threshold=0.3,
        run_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    ids = {(e.source, e.record_id): e.person_id for e in index.entries}
    joined = sum(ids[("gp", f"p{n}a")] == ids.get(("acute", f"p{n}b")) for n in range(60))
    assert joined >= 32  # of the 40 people recorded in both sources
    assert index.summary.people == len(set(ids.values()))
