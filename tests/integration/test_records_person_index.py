"""The master person index in the records store, on SQLite and PostgreSQL: written whole,
read back as the previous index, person_ids kept across runs, reviewers' decisions kept in
the store and applied by the next run, and a failed write leaves the old index."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from joinedup.linkage.mpi import Decision, Link, build_index
from joinedup.records import PersonIndexStore, RecordsError

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


def _first(store: PersonIndexStore) -> None:
    index = build_index([*GP, *ACUTE], LINKS, threshold=0.9, run_at=FIRST)
    store.write_index(index, {"run_at": FIRST.isoformat(), "seed": 1}, IDENTITIES)


def test_the_index_is_read_back_as_the_previous_one(records_url: str) -> None:
    with PersonIndexStore(records_url) as store:
        assert store.read_previous() is None and not store.has_index()
        _first(store)
        previous = store.read_previous()
    assert previous is not None
    assert len(previous.people) == 9 and len(set(previous.people.values())) == 7
    assert previous.people[("gp", "g0")] == previous.people[("acute", "a0")]
    assert [e.event for e in previous.history] == ["created"] * 7
    assert previous.history[0].run_at == FIRST
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
    assert sides[("gp", "g2")].person_id == previous.people[("gp", "g2")]


def test_a_rerun_keeps_person_ids_and_applies_a_decision_saved_in_the_store(
    records_url: str,
) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store)
        before = store.read_previous()
        assert before is not None
        store.decide(
            Decision(("acute", "u1"), ("gp", "g2"), "accept", "ash", SECOND, "same letter")
        )
    # The next run, with a new record, reads its previous index and decisions from the store.
    with PersonIndexStore(records_url) as store:
        previous = store.read_previous()
        assert previous is not None and len(previous.decisions) == 1
        index = build_index(
            [*GP, *ACUTE, ("community", "c1")], LINKS, threshold=0.9, previous=previous,
            run_at=SECOND,
        )  # fmt: skip
        store.write_index(index, {"run_at": SECOND.isoformat()})
        after = store.read_previous()
        total, _ = store.review_pairs()
    assert after is not None
    assert index.summary.decisions_applied == 1 and total == 0
    older = min(before.people[("gp", "g2")], before.people[("acute", "u1")])
    assert after.people[("gp", "g2")] == after.people[("acute", "u1")] == older
    for key, person_id in before.people.items():
        if key not in (("gp", "g2"), ("acute", "u1")):
            assert after.people[key] == person_id
    assert [(d.decided_by, d.decided_at, d.reason) for d in after.decisions] == [
        ("ash", SECOND, "same letter")
    ]  # kept once, not again from the run's log
    assert [e.event for e in after.history].count("merged_into") == 1


def test_a_failed_write_leaves_the_old_index(records_url: str) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store)
        before = store.read_previous()
        index = build_index([*GP, *ACUTE], LINKS, threshold=0.9, run_at=SECOND)
        broken = type(index)(
            [*index.entries, index.entries[0]], index.links, index.review, index.history,
            index.decisions, index.summary,
        )  # fmt: skip
        with pytest.raises(RecordsError, match="not written, the old one stands"):
            store.write_index(broken, {"run_at": SECOND.isoformat()}, IDENTITIES)
        assert store.read_previous() == before
        assert store.review_pairs()[0] == 1


def test_a_decision_saved_while_a_run_is_under_way_is_kept(records_url: str) -> None:
    with PersonIndexStore(records_url) as store:
        _first(store)
        previous = store.read_previous()  # a run starts, reading the index...
        store.decide(  # ...a reviewer decides in the dashboard meanwhile...
            Decision(("gp", "g2"), ("acute", "u1"), "reject", "ash", SECOND, "twins")
        )
        index = build_index([*GP, *ACUTE], LINKS, threshold=0.9, previous=previous, run_at=SECOND)
        store.write_index(index, {"run_at": SECOND.isoformat()})  # ...and the run writes
        assert [(d.decision, d.reason) for d in store.decisions()] == [("reject", "twins")]
        # The pair stays queued (the run did not know of the decision); the next applies it.
        assert store.review_pairs()[0] == 1
        again = build_index(
            [*GP, *ACUTE], LINKS, threshold=0.9, previous=store.read_previous(), run_at=SECOND
        )
        assert again.summary.decisions_applied == 1 and again.review == []
