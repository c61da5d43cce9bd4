"""The master person index on DuckDB and on Spark: the same pairs, weights and evidence from
the linkage, and the same index (clusters, person_ids carried over, merged and split, review
queue, history) built in each engine from the same pairs."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from test_linkage_engines import people_csv

from joinedup.linkage import Extract, LinkageSettings, build_index, link_sources, read_extract
from joinedup.linkage.mpi import (
    RECORDS_SCHEMA,
    Decision,
    Link,
    MasterPersonIndex,
    PreviousIndex,
    index_changes,
    link_table,
    record_table,
)
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


def _records(sources: list[tuple[str, Extract]]) -> pa.Table:
    return pa.concat_tables(
        pa.table([pa.array([n] * len(e)), e.records.column("record_id")], schema=RECORDS_SCHEMA)
        for n, e in sources
    )


def _index(
    engine: Engine, found: Found, sources: list[tuple[str, Extract]]
) -> dict[tuple[str, str], str]:
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
    index = build_index(
        engine, _records(sources), table, threshold=0.9, run_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return index.people()


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_make_the_same_index(tmp_path: Path, spark_engine: Engine) -> None:
    sources = _two_sources(tmp_path)
    with DuckDBEngine() as duck:
        on_duckdb = _pairs(duck, sources)
        duck_index = _index(duck, on_duckdb, sources)
    on_spark = _pairs(spark_engine, sources)
    # Floating point sums differ in the last places between engines (u and m estimates), so
    # probabilities agree closely, not exactly; the pairs linked and their evidence exactly.
    linked = {k for k, v in on_duckdb.items() if v[0] >= 0.9}
    assert linked == {k for k, v in on_spark.items() if v[0] >= 0.9}
    for key in on_duckdb.keys() & on_spark.keys():
        assert on_spark[key][1:] == on_duckdb[key][1:]
        assert on_spark[key][0] == pytest.approx(on_duckdb[key][0], abs=0.01)
    assert _index(spark_engine, on_spark, sources) == duck_index
    assert {v[1] for v in on_duckdb.values()} == {"splink"}  # no NHS numbers here
    assert all("; " in v[2] for v in on_duckdb.values())  # each pair's levels in words


def test_link_sources_feeds_the_index(tmp_path: Path) -> None:
    sources = _two_sources(tmp_path)
    with DuckDBEngine() as duck:
        table = link_sources(duck, sources, LinkageSettings(seed=11), review_threshold=0.3)
    assert table.num_rows > 0
    assert min(table.column("match_probability").to_pylist()) >= 0.3
    with DuckDBEngine() as duck:
        index = build_index(
            duck,
            _records(sources),
            table,
            threshold=0.9,
            review_threshold=0.3,
            run_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    ids = index.people()
    joined = sum(ids[("gp", f"p{n}a")] == ids.get(("acute", f"p{n}b")) for n in range(60))
    assert joined >= 32  # of the 40 people recorded in both sources
    assert index.summary.people == len(set(ids.values()))


RUNS = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]


def _key(n: int) -> tuple[str, str]:
    return ("gp" if n % 2 else "acute", f"r{n}")


def _link(a: int, b: int, p: float, source: str = "splink") -> Link:
    return Link(_key(a), _key(b), source, p, p * 10, f"levels {a}-{b}")  # type: ignore[arg-type]


CHAIN = [_link(0, 1, 0.99), _link(1, 2, 0.95), _link(2, 3, 0.97), _link(4, 5, 1.0, "nhs_number")]
#: Three runs over twelve records: links come and go (merges, splits, a new record, records
#: gone), a reviewer accepts one pair and rejects another still joined.
SCENARIO = [
    ([*range(10)], [*CHAIN, _link(6, 7, 0.7), _link(8, 9, 0.6), _link(7, 8, 0.92)], []),
    (
        [*range(11)],
        [CHAIN[0], CHAIN[2], CHAIN[3], _link(5, 6, 0.99), _link(6, 7, 0.99), _link(9, 10, 0.8)],
        [Decision(_key(8), _key(9), "accept", "ash", RUNS[1], "same letter")],
    ),
    (
        [n for n in range(12) if n not in (3, 10)],
        [CHAIN[0], _link(1, 2, 0.99), _link(5, 6, 0.99), _link(4, 6, 0.99), _link(4, 5, 0.99),
         _link(7, 8, 0.6)],
        [Decision(_key(4), _key(6), "reject", "ash", RUNS[2], "twins"),
         Decision(_key(8), _key(9), "reject", "ash", RUNS[2], "changed my mind")],
    ),
]  # fmt: skip


def _run(engine: Engine, step: int, previous: MasterPersonIndex | None) -> MasterPersonIndex:
    numbers, links, decisions = SCENARIO[step]
    return build_index(
        engine,
        record_table(_key(n) for n in numbers),
        link_table(links),
        threshold=0.9,
        previous=None if previous is None else PreviousIndex(
            previous.entries, previous.history, previous.decisions
        ),
        decisions=decisions,
        run_at=RUNS[step],
    )  # fmt: skip


_QUEUED = pa.table({"source": pa.array([], pa.string()), "record_id": pa.array([], pa.string())})


def _stored(index: MasterPersonIndex) -> PreviousIndex:
    """`index` as a records store would give it back."""
    return PreviousIndex(
        index.entries, index.history, index.decisions, index.links, index.review, _QUEUED, 1
    )


@pytest.mark.spark
@pytest.mark.slow
def test_the_index_is_built_the_same_on_duckdb_and_spark(spark_engine: Engine) -> None:
    """The third run, from the second's index, on both engines (a Spark build runs some 60
    queries, so one run here; the rules themselves are tested in test_linkage_mpi.py)."""
    with DuckDBEngine() as duck:
        first = _run(duck, 0, None)
        second = _run(duck, 1, first)
        on_duckdb = _run(duck, 2, second)
        duck_changes = index_changes(duck, on_duckdb, _stored(second), _QUEUED)
    on_spark = _run(spark_engine, 2, second)
    spark_changes = index_changes(spark_engine, on_spark, _stored(second), _QUEUED)
    assert on_spark == on_duckdb
    assert on_spark.summary == on_duckdb.summary
    # What a store holding the second run's index would change, the same on both engines.
    assert spark_changes.rows() == duck_changes.rows() > 0
    for name in ("entries", "links", "review", "review_records"):
        spark_part, duck_part = getattr(spark_changes, name), getattr(duck_changes, name)
        for side in ("deleted", "inserted"):
            spark_rows, duck_rows = getattr(spark_part, side), getattr(duck_part, side)
            keys = [(k, "ascending") for k in spark_part.keys]
            assert spark_rows.sort_by(keys) == duck_rows.sort_by(keys), (name, side)
    events = {e["event"] for e in on_duckdb.history.slice(second.history.num_rows).to_pylist()}
    assert events == {"created", "split_from", "merged_into", "retired"}
    assert on_duckdb.summary.conflicts == 1 and on_duckdb.summary.records_gone == 2
