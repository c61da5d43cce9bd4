"""The master person index's logic, built in the engine (DuckDB here; the same on Spark in
test_linkage_mpi_engines.py): links into clusters, person_ids that survive re-runs (kept,
merged, split, retired), the review queue and reviewers' decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from joinedup.errors import JoinedupError
from joinedup.linkage.mpi import (
    REVIEW_CONFLICT,
    REVIEW_UNCERTAIN,
    Decision,
    Link,
    MasterPersonIndex,
    PreviousIndex,
    RecordKey,
    build_index,
    link_table,
    people_table,
    record_table,
    review_items,
)
from joinedup.warehouse.engines import DuckDBEngine, Engine

RUN_1 = datetime(2026, 1, 1, tzinfo=UTC)
RUN_2 = datetime(2026, 2, 1, tzinfo=UTC)


def gp(n: int) -> RecordKey:
    return ("gp", f"g{n}")


def acute(n: int) -> RecordKey:
    return ("acute", f"a{n}")


def splink(left: RecordKey, right: RecordKey, probability: float, weight: float = 5.0) -> Link:
    return Link(left, right, "splink", probability, weight, "Exact match on birth_date")


def nhs(left: RecordKey, right: RecordKey) -> Link:
    return Link(left, right, "nhs_number", 1.0, 20.0, "same valid NHS number")


def decide(left: RecordKey, right: RecordKey, what: str, at: datetime = RUN_1) -> Decision:
    return Decision(left, right, what, "dana.engineer", at, "checked the letters")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def duck() -> Iterator[Engine]:
    with DuckDBEngine() as engine:
        yield engine


@pytest.fixture(autouse=True)
def _engine(duck: Engine) -> None:
    global ENGINE  # noqa: PLW0603 - the module's builds share one in-memory engine
    ENGINE = duck


ENGINE: Engine


def index_of(
    records: list[RecordKey],
    links: list[Link],
    *,
    previous: PreviousIndex | None = None,
    **options: Any,
) -> MasterPersonIndex:
    return build_index(
        ENGINE, record_table(records), link_table(links), previous=previous, **options
    )


def build(
    records: list[RecordKey],
    links: list[Link],
    previous: MasterPersonIndex | None = None,
    decisions: list[Decision] | None = None,
    run_at: datetime = RUN_1,
) -> MasterPersonIndex:
    return index_of(
        records,
        links,
        threshold=0.9,
        review_threshold=0.5,
        previous=None if previous is None else carry(previous),
        decisions=decisions or [],
        run_at=run_at,
    )


def carry(index: MasterPersonIndex) -> PreviousIndex:
    """What the next run reads back of `index` (as mpi_files.read_previous does)."""
    return PreviousIndex(index.entries, index.history, index.decisions)


def person(index: MasterPersonIndex, key: RecordKey) -> str:
    return index.people()[key]


def people(index: MasterPersonIndex) -> dict[RecordKey, str]:
    return index.people()


def events(index: MasterPersonIndex, run_at: datetime | None = None) -> list[dict[str, Any]]:
    return [e for e in index.history.to_pylist() if run_at is None or e["run_at"] == run_at]


def entries(index: MasterPersonIndex) -> dict[RecordKey, dict[str, Any]]:
    return {(e["source"], e["record_id"]): e for e in index.entries.to_pylist()}


def test_links_make_people_and_ids_are_opaque_counters() -> None:
    records = [gp(1), gp(2), gp(3), acute(1), acute(2)]
    index = build(records, [nhs(gp(1), acute(1)), splink(gp(2), acute(2), 0.97)])
    ids = people(index)
    assert ids[gp(1)] == ids[acute(1)]
    assert ids[gp(2)] == ids[acute(2)]
    assert len(set(ids.values())) == 3  # gp3 is a person alone
    # Minted in the order of each cluster's first record (acute sorts before gp).
    assert sorted(set(ids.values())) == ["P000000001", "P000000002", "P000000003"]
    assert ids[acute(1)] == "P000000001"
    assert [e["event"] for e in events(index)] == ["created"] * 3
    assert index.summary.people == 3 and index.summary.ids_created == 3


def test_each_record_names_its_strongest_link() -> None:
    records = [gp(1), acute(1), acute(2)]
    links = [nhs(gp(1), acute(1)), splink(gp(1), acute(2), 0.95, 9.5)]
    found = entries(build(records, links))
    assert (found[gp(1)]["linked_by"], found[gp(1)]["match_weight"]) == ("nhs_number", 20.0)
    assert (found[acute(2)]["linked_by"], found[acute(2)]["match_weight"]) == ("splink", 9.5)
    alone = entries(build([gp(1)], []))[gp(1)]
    assert alone["linked_by"] is None and alone["match_weight"] is None


def test_a_rerun_keeps_ids_that_a_fresh_run_would_number_differently() -> None:
    records = [gp(1), gp(2), gp(3), acute(1)]
    first = build(records, [nhs(gp(1), acute(1))])
    # Ids as an older index might hold them: not the order a fresh run would mint.
    previous = PreviousIndex(
        people_table(
            {gp(1): "P000000007", acute(1): "P000000007", gp(2): "P000000003",
             gp(3): "P000000005"}
        )
    )  # fmt: skip
    second = index_of(
        [*records, acute(2), acute(3)],
        [nhs(gp(1), acute(1)), splink(gp(2), acute(2), 0.99)],
        threshold=0.9,
        previous=previous,
        run_at=RUN_2,
    )
    ids = people(second)
    assert ids[gp(1)] == ids[acute(1)] == "P000000007"  # unchanged cluster
    assert ids[gp(2)] == ids[acute(2)] == "P000000003"  # a new record joined it
    assert ids[gp(3)] == "P000000005"
    assert ids[acute(3)] == "P000000008"  # new, after the highest id ever minted
    assert second.summary.ids_kept == 3 and second.summary.ids_created == 1
    assert people(first) != {k: v for k, v in ids.items() if k in people(first)}


def test_a_merge_keeps_the_id_holding_most_records_and_records_the_other() -> None:
    records = [gp(1), gp(2), acute(1), acute(2), acute(3)]
    first = build(records, [splink(gp(2), acute(2), 0.99), splink(acute(2), acute(3), 0.99)])
    big, small = person(first, gp(2)), person(first, gp(1))
    assert big != small
    second = build(
        records,
        [*[splink(gp(2), acute(2), 0.99), splink(acute(2), acute(3), 0.99)],
         splink(gp(1), acute(3), 0.98)],
        previous=first,
        run_at=RUN_2,
    )  # fmt: skip
    assert {person(second, k) for k in (gp(1), gp(2), acute(2), acute(3))} == {big}
    merged = events(second, RUN_2)
    assert [(e["person_id"], e["event"], e["related_person_id"]) for e in merged] == [
        (small, "merged_into", big)
    ]
    assert second.summary.ids_merged == 1


def test_a_merge_of_equal_clusters_keeps_the_older_id() -> None:
    previous = PreviousIndex(people_table({gp(1): "P000000009", acute(1): "P000000004"}))
    index = index_of(
        [gp(1), acute(1)],
        [splink(gp(1), acute(1), 0.99)],
        threshold=0.9,
        previous=previous,
        run_at=RUN_2,
    )
    assert set(people(index).values()) == {"P000000004"}
    assert [(e["person_id"], e["related_person_id"]) for e in events(index)] == [
        ("P000000009", "P000000004")
    ]


def test_a_split_leaves_the_id_with_the_largest_part() -> None:
    records = [gp(1), gp(2), acute(1), acute(2), acute(3)]
    links = [
        splink(gp(1), acute(1), 0.99),
        splink(acute(1), acute(2), 0.99),
        splink(acute(2), gp(2), 0.99),
        splink(gp(2), acute(3), 0.99),
    ]
    first = build(records, links)
    old = person(first, gp(1))
    assert set(people(first).values()) == {old}
    # The link between acute2 and gp2 goes: {gp1, acute1, acute2} and {gp2, acute3}.
    second = build(records, [links[0], links[1], links[3]], previous=first, run_at=RUN_2)
    ids = people(second)
    assert ids[gp(1)] == ids[acute(1)] == ids[acute(2)] == old
    assert ids[gp(2)] == ids[acute(3)] != old
    event = events(second, RUN_2)
    assert [
        (e["person_id"], e["event"], e["related_person_id"], e["record_count"]) for e in event
    ] == [(ids[gp(2)], "split_from", old, 2)]


def test_ids_of_records_that_left_are_retired_and_never_reused() -> None:
    first = build([gp(1), gp(2)], [])
    gone = person(first, gp(2))
    second = build([gp(1), gp(3)], [], previous=first, run_at=RUN_2)
    assert person(second, gp(1)) == person(first, gp(1))
    assert person(second, gp(3)) not in {gone, person(first, gp(1))}
    assert (gone, "retired") in [(e["person_id"], e["event"]) for e in events(second)]
    assert second.summary.records_gone == 1
    third = build([gp(1), gp(3), gp(4)], [], previous=second, run_at=RUN_2)
    assert person(third, gp(4)) not in {gone, person(second, gp(3)), person(first, gp(1))}


def test_uncertain_pairs_go_to_the_review_queue() -> None:
    records = [gp(1), gp(2), gp(3), acute(1), acute(2), acute(3)]
    links = [
        splink(gp(1), acute(1), 0.7, 1.2),  # uncertain
        splink(gp(2), acute(2), 0.4),  # below the review threshold
        splink(gp(3), acute(3), 0.95),  # linked
        splink(acute(3), gp(2), 0.6),  # uncertain
    ]
    index = build(records, links)
    queue = [
        (i.left, i.right, i.match_probability, i.queued_for) for i in review_items(index.review)
    ]
    assert queue == [
        (acute(1), gp(1), 0.7, REVIEW_UNCERTAIN),
        (acute(3), gp(2), 0.6, REVIEW_UNCERTAIN),
    ]
    assert person(index, gp(1)) != person(index, acute(1))  # not linked while in review
    assert review_items(index.review)[1].right_person_id == person(index, gp(2))


def test_an_accepted_pair_links_and_leaves_the_queue() -> None:
    records = [gp(1), acute(1), gp(2), acute(2)]
    links = [splink(gp(1), acute(1), 0.7)]
    decisions = [decide(gp(1), acute(1), "accept"), decide(acute(2), gp(2), "accept")]
    index = build(records, links, decisions=decisions)
    assert person(index, gp(1)) == person(index, acute(1))
    assert person(index, gp(2)) == person(index, acute(2))  # accepted though never scored
    assert index.review.num_rows == 0
    accepted = [link for link in index.links.to_pylist() if link["matched_by"] == "accepted"]
    assert len(accepted) == 2
    assert "accepted by dana.engineer" in accepted[0]["evidence"]
    assert entries(index)[gp(2)]["linked_by"] == "accepted"


def test_a_rejected_link_is_removed() -> None:
    records = [gp(1), acute(1)]
    index = build(records, [nhs(gp(1), acute(1))], decisions=[decide(gp(1), acute(1), "reject")])
    assert person(index, gp(1)) != person(index, acute(1))
    assert index.links.num_rows == 0 and index.review.num_rows == 0


def test_a_rejected_pair_other_links_join_is_flagged_not_merged_silently() -> None:
    records = [gp(1), acute(1), acute(2)]
    links = [
        splink(gp(1), acute(1), 0.99),
        splink(gp(1), acute(2), 0.99),
        splink(acute(1), acute(2), 0.99),
    ]
    index = build(records, links, decisions=[decide(acute(2), gp(1), "reject")])
    assert len(set(people(index).values())) == 1  # still joined through acute1
    assert all(e["needs_review"] for e in entries(index).values())
    assert [(i.left, i.right, i.queued_for) for i in review_items(index.review)] == [
        (acute(2), gp(1), REVIEW_CONFLICT)
    ]
    assert index.summary.conflicts == 1


def test_decisions_persist_and_the_latest_is_in_force() -> None:
    records = [gp(1), acute(1)]
    links = [splink(gp(1), acute(1), 0.95)]
    first = build(records, links, decisions=[decide(gp(1), acute(1), "reject")])
    # The next run is given no decisions: those of the previous index still apply.
    second = build(records, links, previous=first, run_at=RUN_2)
    assert person(second, gp(1)) != person(second, acute(1))
    assert second.summary.decisions_applied == 1
    assert second.decisions == first.decisions
    # A later accept overrides the reject; both stay in the log.
    third = build(
        records,
        links,
        previous=second,
        decisions=[decide(acute(1), gp(1), "accept", RUN_2)],
        run_at=RUN_2,
    )
    assert person(third, gp(1)) == person(third, acute(1))
    assert [d.decision for d in third.decisions] == ["reject", "accept"]


def test_decisions_on_records_not_in_the_run_are_kept_but_not_applied() -> None:
    index = build([gp(1)], [], decisions=[decide(gp(1), acute(9), "accept")])
    assert index.summary.decisions_unmatched == 1 and index.summary.decisions_applied == 0
    assert len(index.decisions) == 1
    assert index.links.num_rows == 0


def test_the_same_input_gives_the_same_index() -> None:
    records = [gp(i) for i in range(20)] + [acute(i) for i in range(20)]
    links = [splink(gp(i), acute(i), 0.99) for i in range(0, 20, 3)]
    assert build(records, links) == build(list(reversed(records)), list(reversed(links)))


def test_thresholds_in_the_wrong_order_are_refused() -> None:
    with pytest.raises(JoinedupError, match=r"review threshold 0\.95"):
        index_of([gp(1)], [], threshold=0.9, review_threshold=0.95, run_at=RUN_1)


def test_a_link_to_an_unknown_record_is_refused() -> None:
    with pytest.raises(JoinedupError, match="not in this run"):
        build([gp(1)], [splink(gp(1), acute(1), 0.99)])
