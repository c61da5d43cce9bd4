"""The master person index in the records store, on SQLite and PostgreSQL: read back as the
previous index, person_ids kept across runs, each run writing only what changed, reviewers'
decisions kept in the store and applied by the next run, and a failed write (or a run that
read an index another run has replaced since) leaves the old index."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from joinedup.linkage.mpi import (
    Decision,
    Link,
    MasterPersonIndex,
    PreviousIndex,
    build_index,
    link_table,
    record_table,
    review_items,
)
from joinedup.records import PersonIndexStore, RecordsError
from joinedup.warehouse import Engine
from joinedup.warehouse.engines import DuckDBEngine

FIRST = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECOND = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

GP = [("gp", f"g{i}") for i in range(6)]
ACUTE = [("acute", "a0"), ("acute", "a1"), ("acute", "u1")]
LINKS = [
    Link(("gp", "g0"), ("acute", "a0"), "nhs_number", None, None, "NHS number agrees"),
    Link(("gp", "g1"), ("acute", "a1"), "splink", 0.97, 9.1, "Exact match on family_name"),
    Link(("gp", "g2"), ("acute", "u1"), "splink", 0.7, 1.2, "Jaro-Winkler >0.9 on given_name"),
]
IDENTITIES = {
    ("gp", "g2"): {"given_name": "ALICE", "family_name": "SMITH", "nhs_number": "9434765919"},
    ("acute", "u1"): {"given_name": "ALISE", "family_name": "SMITH", "nhs_number": None},
}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with DuckDBEngine() as duck:
        yield duck


def _build(
    engine: Engine, records: list[tuple[str, str]], links: list[Link], **options: Any
) -> MasterPersonIndex:
    return build_index(engine, record_table(records), link_table(links), threshold=0.9, **options)


def _people(previous: PreviousIndex) -> dict[tuple[str, str], str]:
    return {(r["source"], r["record_id"]): r["person_id"] for r in previous.people.to_pylist()}


def _first(store: PersonIndexStore, engine: Engine) -> None:
    index = _build(engine, [*GP, *ACUTE], LINKS, run_at=FIRST)
    store.write_index(engine, index, None, {"run_at": FIRST.isoformat(), "seed": 1}, IDENTITIES)


def test_the_index_is_read_back_as_the_previous_one(records_url: str, engine: Engine) -> None:
    with PersonIndexStore(records_url) as store:
        assert store.read_previous() is None and not store.has_index()
        _first(store, engine)
        previous = store.read_previous()
    assert previous is not None
    people = _people(previous)
    assert len(people) == 9 and len(set(people.values())) == 7
    assert people[("gp", "g0")] == people[("acute", "a0")]
    history = previous.history.to_pylist()
    assert [e["event"] for e in history] == ["created"] * 7
    assert history[0]["run_at"] == FIRST
    # The review queue holds the uncertain pair with both records' identity fields.
    with PersonIndexStore(records_url) as store:
        total, pairs = store.review_pairs()
    assert total == 1
    (pair,) = pairs
    assert {pair.item.left, pair.item.right} == {("gp", "g2"), ("acute", "u1")}
    assert "Jaro-Winkler" in pair.item.evidence and pair.item.match_probability == 0.7
    sides = {(r.source, r.record_id): r for r in (pair.left, pair.right)}
    assert sides[("gp", "g2")].fields["given_name"] == "ALICE"
    assert sides[("acute", "u1")].fields["nhs_number"] is None
    assert sides[("gp", "g2")].person_id == people[("gp", "g2")]


def test_a_rerun_keeps_person_ids_and_applies_a_decision_saved_in_the_store(
    records_url: str, engine: Engine
) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        before = store.read_previous()
        assert before is not None
        store.decide(
            Decision(("acute", "u1"), ("gp", "g2"), "accept", "ash", SECOND, "same letter")
        )
    # The next run, with a new record, reads its previous index and decisions from the store.
    with PersonIndexStore(records_url) as store:
        previous = store.read_previous()
        assert previous is not None and len(previous.decisions) == 1
        index = _build(
            engine, [*GP, *ACUTE, ("community", "c1")], LINKS, previous=previous, run_at=SECOND
        )
        changes = store.write_index(engine, index, previous, {"run_at": SECOND.isoformat()})
        after = store.read_previous()
        total, _ = store.review_pairs()
    assert after is not None
    assert index.summary.decisions_applied == 1 and total == 0
    old, new = _people(before), _people(after)
    older = min(old[("gp", "g2")], old[("acute", "u1")])
    assert new[("gp", "g2")] == new[("acute", "u1")] == older
    for key, person_id in old.items():
        if key not in (("gp", "g2"), ("acute", "u1")):
            assert new[key] == person_id
    # Only what changed was written: the rows of the two records the accept linked (new id
    # and linked_by) and the new record's, the accepted link, the queue's one pair and its
    # two records gone, and two history events (merged_into, created).
    assert changes.entries.deleted.num_rows == 2 and changes.entries.inserted.num_rows == 3
    assert changes.links.deleted.num_rows == 0 and changes.links.inserted.num_rows == 1
    assert changes.review.deleted.num_rows == 1 and changes.review.inserted.num_rows == 0
    assert changes.review_records.deleted.num_rows == 2
    assert changes.history.num_rows == 2 and changes.rows() == 11
    assert [(d.decided_by, d.decided_at, d.reason) for d in after.decisions] == [
        ("ash", SECOND, "same letter")
    ]  # kept once, not again from the run's log
    assert [e["event"] for e in after.history.to_pylist()].count("merged_into") == 1


def test_a_failed_write_leaves_the_old_index(records_url: str, engine: Engine) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        before = store.read_previous()
        assert before is not None
        index = _build(engine, [*GP, *ACUTE, ("community", "c1")], LINKS, run_at=SECOND)
        # A new record twice: the store refuses the second row part-way through the
        # transaction (after the deletions and the first rows).
        new = index.entries.filter(pc.equal(index.entries.column("source"), "community"))
        broken = type(index)(
            pa.concat_tables([index.entries, new]), index.links,
            index.review, index.history, index.decisions, index.summary,
        )  # fmt: skip
        engine.load("mpi_out_entries", broken.entries.append_column(
            "node", pa.array(range(broken.entries.num_rows), pa.int64())))  # fmt: skip
        with pytest.raises(RecordsError, match="not written, the old one stands"):
            store.write_index(engine, broken, before, {"run_at": SECOND.isoformat()}, IDENTITIES)
        assert store.read_previous() == before
        assert store.review_pairs()[0] == 1


def test_a_run_that_read_an_index_replaced_since_is_refused(
    records_url: str, engine: Engine
) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        stale = store.read_previous()
        index = _build(engine, [*GP, *ACUTE], LINKS, previous=stale, run_at=SECOND)
        store.write_index(engine, index, stale, {"run_at": SECOND.isoformat()})
        written = store.read_previous()
        again = _build(engine, [*GP, *ACUTE, ("community", "c1")], LINKS, previous=stale,
                       run_at=SECOND)  # fmt: skip
        with pytest.raises(RecordsError, match="another run wrote it after this one read it"):
            store.write_index(engine, again, stale, {"run_at": SECOND.isoformat()})
        assert store.read_previous() == written


def test_a_decision_saved_while_a_run_is_under_way_is_kept(
    records_url: str, engine: Engine
) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        previous = store.read_previous()  # a run starts, reading the index...
        store.decide(  # ...a reviewer decides in the dashboard meanwhile...
            Decision(("gp", "g2"), ("acute", "u1"), "reject", "ash", SECOND, "twins")
        )
        index = _build(engine, [*GP, *ACUTE], LINKS, previous=previous, run_at=SECOND)
        # ...and the run writes
        store.write_index(engine, index, previous, {"run_at": SECOND.isoformat()})
        assert [(d.decision, d.reason) for d in store.decisions()] == [("reject", "twins")]
        # The pair stays queued (the run did not know of the decision); the next applies it.
        assert store.review_pairs()[0] == 1
        again = _build(engine, [*GP, *ACUTE], LINKS, previous=store.read_previous(),
                       run_at=SECOND)  # fmt: skip
        assert again.summary.decisions_applied == 1 and review_items(again.review) == []


def test_a_rerun_of_the_same_links_writes_nothing(records_url: str, engine: Engine) -> None:
    """Weights that differ only in the last bits (Splink's parallel sums) are unchanged."""
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        previous = store.read_previous()
        noisy = [
            Link(k.left, k.right, k.matched_by, k.match_probability,
                 None if k.match_weight is None else k.match_weight * (1 + 1e-13), k.evidence)
            for k in LINKS
        ]  # fmt: skip
        index = _build(engine, [*GP, *ACUTE], noisy, previous=previous, run_at=SECOND)
        changes = store.write_index(engine, index, previous, {}, IDENTITIES)
        assert changes.rows() == 0
        moved = [Link(k.left, k.right, k.matched_by, k.match_probability, 9.2, k.evidence)
                 if k.match_weight == 9.1 else k for k in LINKS]  # fmt: skip
        index = _build(engine, [*GP, *ACUTE], moved, previous=store.read_previous(), run_at=SECOND)
        changes = store.write_index(engine, index, store.read_previous(), {}, IDENTITIES)
        # The link's weight, and the two records whose strongest link it is.
        assert (changes.links.inserted.num_rows, changes.entries.inserted.num_rows) == (1, 2)


_KILLED_WRITER = """
import sys, time
from datetime import UTC, datetime
from sqlalchemy import event
from joinedup.linkage.mpi import Link, build_index, link_table, record_table
from joinedup.records import PersonIndexStore
from joinedup.warehouse.engines import DuckDBEngine

records = [("gp", f"g{i}") for i in range(6)] + [("acute", "a0"), ("acute", "a1"),
           ("acute", "u1"), ("community", "c1")]
links = [Link(("gp", "g0"), ("acute", "a0"), "nhs_number", None, None, "NHS number agrees"),
         Link(("gp", "g1"), ("community", "c1"), "splink", 0.99, 9.9, "new")]
with DuckDBEngine() as engine, PersonIndexStore(sys.argv[1]) as store:
    previous = store.read_previous()
    index = build_index(engine, record_table(records), link_table(links), threshold=0.9,
                        previous=previous, run_at=datetime(2026, 12, 3, tzinfo=UTC))

    def stop(conn, cursor, statement, *_):
        if statement.startswith("INSERT INTO mpi_person_index"):
            print("inside the transaction", flush=True)
            time.sleep(600)

    event.listen(store._engine, "before_cursor_execute", stop)
    store.write_index(engine, index, previous, {})
"""


def test_a_run_killed_while_writing_leaves_the_old_index(records_url: str, engine: Engine) -> None:
    """kill -9 of the writing process after it has deleted rows, before it inserts or
    commits: the store still holds the previous index, whole."""
    with PersonIndexStore(records_url) as store:
        _first(store, engine)
        before = store.read_previous()
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, records_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "inside the transaction"
    finally:
        writer.kill()  # SIGKILL: no rollback, no close, no atexit
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    with PersonIndexStore(records_url) as store:
        assert store.read_previous() == before
        assert store.review_pairs()[0] == 1
