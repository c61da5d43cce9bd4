"""The master person index: which person each source record is, under a `person_id` that
stays the same from run to run.

A linkage run gives the records of every source and the pairs worth knowing about (the exact
NHS number stage's links and Splink's scored pairs, with weights and evidence). This module
decides, inside the engine (DuckDB or Spark, as sqlglot trees; only the reviewers' decisions
and counts pass through Python):

- which pairs link (NHS number; Splink at or above the link threshold; a reviewer's accept)
  and which go to a person for review (Splink between the review and link thresholds);
- the clusters those links make (connected components, by Splink's label propagation in the
  engine), after removing rejected pairs, and which clusters still join a rejected pair
  through other links (flagged, never cut);
- each cluster's `person_id`, carried over from the previous index so that ids survive
  re-runs: an unchanged or grown cluster keeps its id, a merge keeps the id holding most of
  the records (the oldest on a tie), a split leaves the id with its largest part, and every
  id retired or minted is written to the history;
- what changed against the index a store holds (`index_changes`), so the store writes only
  those rows.

Reading and writing the index is `joinedup.linkage.mpi_files` (CSV folders) and
`joinedup.records.store.person_index` (the records store); both give and take Arrow tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from joinedup.errors import JoinedupError
from joinedup.warehouse import Engine

#: (source, record_id): a record as its source knows it.
RecordKey = tuple[str, str]
Pair = frozenset[RecordKey]

#: person_ids are "P" and a zero-padded counter: opaque (they carry nothing about the person),
#: never reused (the counter continues past every id ever minted, retired ones included), and
#: ordered by age, which settles a merge between two equally large clusters.
PERSON_ID_PREFIX = "P"
_PERSON_ID = re.compile(r"P(\d{9,})")
_PERSON_ID_DIGITS = 9

DEFAULT_REVIEW_THRESHOLD = 0.5

#: How a record came to be in its cluster, strongest first.
LinkedBy = Literal["accepted", "nhs_number", "splink"]
_STRENGTH = {"accepted": 3, "nhs_number": 2, "splink": 1}

Event = Literal["created", "split_from", "merged_into", "retired"]
REVIEW_UNCERTAIN = "uncertain"
REVIEW_CONFLICT = "rejected pair joined by other links"

_S = pa.string()
_F = pa.float64()
_PAIR = [("left_source", _S), ("left_record_id", _S), ("right_source", _S), ("right_record_id", _S)]

#: The pairs a linkage run found (`joinedup.linkage.run.link_sources`), one row a pair.
PAIRS_SCHEMA = pa.schema(
    [*_PAIR, ("match_probability", _F), ("match_weight", _F), ("matched_by", _S), ("evidence", _S)]
)
#: The records of a run.
RECORDS_SCHEMA = pa.schema([("source", _S), ("record_id", _S)])
#: One row per source record: its person_id, how it was linked, its match weight.
ENTRIES_SCHEMA = pa.schema(
    [
        ("source", _S),
        ("record_id", _S),
        ("person_id", _S),
        ("linked_by", _S),
        ("match_weight", _F),
        ("needs_review", pa.bool_()),
    ]
)
#: One row per link the index rests on, with its evidence.
LINKS_SCHEMA = pa.schema(
    [
        *_PAIR,
        ("person_id", _S),
        ("matched_by", _S),
        ("match_probability", _F),
        ("match_weight", _F),
        ("evidence", _S),
    ]
)
#: One row per pair for a person to decide, in the queue's order (`position` from 0).
REVIEW_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        *_PAIR,
        ("match_probability", _F),
        ("match_weight", _F),
        ("queued_for", _S),
        ("evidence", _S),
        ("left_person_id", _S),
        ("right_person_id", _S),
    ]
)
#: One row per person_id minted or retired, over every run (`seq` from 0).
HISTORY_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("person_id", _S),
        ("event", _S),
        ("related_person_id", _S),
        ("record_count", pa.int64()),
        ("run_at", pa.timestamp("us", tz="UTC")),
    ]
)


def is_person_id(text: str) -> bool:
    """Whether `text` has the form of a person_id (P and at least nine digits)."""
    return _PERSON_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Link:
    """A pair the linkage run found: linked by the NHS number stage, or scored by Splink."""

    left: RecordKey
    right: RecordKey
    matched_by: Literal["nhs_number", "splink"]
    match_probability: float | None
    match_weight: float | None
    evidence: str


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision on a pair: accept (link them) or reject (never link them)."""

    left: RecordKey
    right: RecordKey
    decision: Literal["accept", "reject"]
    decided_by: str
    decided_at: datetime
    reason: str = ""

    @property
    def pair(self) -> Pair:
        return frozenset((self.left, self.right))


@dataclass(frozen=True)
class ReviewItem:
    """A pair for a person to decide: an `uncertain` one (between the review and link
    thresholds) or a rejected pair other links still join (its cluster is flagged)."""

    left: RecordKey
    right: RecordKey
    match_probability: float | None
    match_weight: float | None
    evidence: str
    queued_for: str
    left_person_id: str
    right_person_id: str


def review_items(review: pa.Table) -> list[ReviewItem]:
    """The rows of a review table (`REVIEW_SCHEMA`) as items, in order (a queue is small)."""
    return [
        ReviewItem(
            (r["left_source"], r["left_record_id"]),
            (r["right_source"], r["right_record_id"]),
            r["match_probability"],
            r["match_weight"],
            r["evidence"],
            r["queued_for"],
            r["left_person_id"],
            r["right_person_id"],
        )
        for r in review.to_pylist()
    ]


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


@dataclass(frozen=True)
class PreviousIndex:
    """What a run needs of the last one: each record's person_id (`people`: source,
    record_id, person_id; a store gives its whole `ENTRIES_SCHEMA` table), the id history and
    every decision made so far. A records store also gives its links, review queue and queued
    records, so a run can write only what changed, and the run it read (`run_seq`)."""

    people: pa.Table
    history: pa.Table = field(default_factory=lambda: _empty(HISTORY_SCHEMA))
    decisions: Sequence[Decision] = ()
    links: pa.Table | None = None
    review: pa.Table | None = None
    review_records: pa.Table | None = None
    run_seq: int | None = None


def people_table(people: Mapping[RecordKey, str]) -> pa.Table:
    """A previous index's `people` from a mapping of record to person_id (small indexes)."""
    return pa.table(
        {
            "source": pa.array([k[0] for k in people], _S),
            "record_id": pa.array([k[1] for k in people], _S),
            "person_id": pa.array(list(people.values()), _S),
        }
    )


def record_table(records: Iterable[RecordKey]) -> pa.Table:
    """A run's records from (source, record_id) keys (small runs and tests)."""
    keys = list(records)
    return pa.table(
        [pa.array([k[0] for k in keys], _S), pa.array([k[1] for k in keys], _S)],
        schema=RECORDS_SCHEMA,
    )


def link_table(links: Iterable[Link]) -> pa.Table:
    """A run's pairs (`PAIRS_SCHEMA`) from links (small runs and tests)."""
    rows = [
        {
            "left_source": k.left[0],
            "left_record_id": k.left[1],
            "right_source": k.right[0],
            "right_record_id": k.right[1],
            "match_probability": k.match_probability,
            "match_weight": k.match_weight,
            "matched_by": k.matched_by,
            "evidence": k.evidence,
        }
        for k in links
    ]
    return pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA)


@dataclass(frozen=True)
class Summary:
    """What a run did, in counts (no identifiers)."""

    records: int
    people: int
    ids_kept: int
    ids_created: int
    ids_split: int
    ids_merged: int
    ids_retired: int
    records_gone: int
    review: int
    conflicts: int
    decisions_applied: int
    decisions_unmatched: int


@dataclass(frozen=True)
class MasterPersonIndex:
    """A run's index: one entry per source record (`ENTRIES_SCHEMA`, in record order), the
    links it rests on (`LINKS_SCHEMA`), the review queue (`REVIEW_SCHEMA`), the id history
    (`HISTORY_SCHEMA`) and the decision log (both cumulative over runs). The engine that
    built it keeps the entries, links and queue as tables `ENTRIES`, `LINKS` and `REVIEW`
    while it is open, for `index_changes`."""

    entries: pa.Table
    links: pa.Table
    review: pa.Table
    history: pa.Table
    decisions: list[Decision]
    summary: Summary = field(compare=False)

    def people(self) -> dict[RecordKey, str]:
        """Each record's person_id (small indexes: tests and examples)."""
        return {(r["source"], r["record_id"]): r["person_id"] for r in self.entries.to_pylist()}


def effective_decisions(decisions: Iterable[Decision]) -> dict[Pair, Decision]:
    """The decision in force for each pair: the latest by `decided_at` (the later one in the
    log on a tie)."""
    latest: dict[Pair, Decision] = {}
    for decision in decisions:
        current = latest.get(decision.pair)
        if current is None or decision.decided_at >= current.decided_at:
            latest[decision.pair] = decision
    return latest


def _merge_log(previous: Sequence[Decision], new: Sequence[Decision]) -> list[Decision]:
    seen: set[Decision] = set()
    log = []
    for decision in [*previous, *new]:
        if decision not in seen:
            seen.add(decision)
            log.append(decision)
    return log


# --- sqlglot helpers -----------------------------------------------------------------------

#: The engine tables a build leaves behind (inputs and working tables are dropped).
ENTRIES = "mpi_out_entries"
LINKS = "mpi_out_links"
REVIEW = "mpi_out_review"
_RECORDS = "mpi_in_records"
_PAIRS = "mpi_in_pairs"
_PREVIOUS = "mpi_in_previous"
_DECISIONS = "mpi_in_decisions"
_NODES = "mpi_nodes"
_OCCURRENCES = "mpi_occurrences"
_SCORED = "mpi_scored"
_SCORED_COLUMNS = ("lo", "hi", "matched_by", "match_probability", "match_weight", "evidence", "ord")
_DECIDED = "mpi_decided"
_EDGES = "mpi_edges"
_UNCERTAIN = "mpi_uncertain"
_CLUSTERS = "mpi_clusters"
_OVERLAP = "mpi_overlap"
_KEPT = "mpi_kept"
_IDS = "mpi_ids"
_EVENTS = "mpi_events"
_CONFLICTS = "mpi_conflicts"


def _c(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def _t(name: str, alias: str | None = None) -> exp.Expr:
    return exp.to_table(name).as_(alias) if alias else exp.to_table(name)


def _n(value: float) -> exp.Expr:
    return exp.Literal.number(value)


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _eq(a: exp.Expr, b: exp.Expr) -> exp.EQ:
    return exp.EQ(this=a, expression=b)


def _null(e: exp.Expr) -> exp.Is:
    return e.is_(exp.null())


def _coalesce(*parts: exp.Expr) -> exp.Expr:
    return exp.func("coalesce", *parts)


def _ordered(*keys: tuple[exp.Expr, bool]) -> exp.Order:
    return exp.Order(expressions=[exp.Ordered(this=k, desc=d, nulls_first=not d) for k, d in keys])


def _row_number(partition: Sequence[exp.Expr], *order: tuple[exp.Expr, bool]) -> exp.Window:
    return exp.Window(this=exp.RowNumber(), partition_by=list(partition), order=_ordered(*order))


def _count(engine: Engine, query: exp.Query) -> int:
    rows = engine.execute(
        exp.select(exp.func("count", exp.Star()).as_("n")).from_(query.subquery("q"))
    )
    return int(rows.column("n")[0].as_py())


def _number(person_id: exp.Expr) -> exp.Expr:
    """A person_id's counter (its digits after the P), as a number."""
    return exp.cast(exp.Substring(this=person_id, start=_n(2)), "BIGINT")


def _person_id(number: exp.Expr) -> exp.Expr:
    """The person_id of counter `number`: P and the number, zero-padded to nine digits."""
    digits = exp.cast(number, "VARCHAR")
    padded = (
        exp.case()
        .when(
            exp.LT(this=exp.func("length", digits), expression=_n(_PERSON_ID_DIGITS)),
            exp.func("lpad", digits, _n(_PERSON_ID_DIGITS), _s("0")),
        )
        .else_(digits)
    )
    return exp.func("concat", _s(PERSON_ID_PREFIX), padded)


def _max_number(*columns: pa.ChunkedArray) -> int:
    """The highest counter among person_id columns (0 for none)."""
    best = 0
    for column in columns:
        if len(column) == 0:
            continue
        digits = pc.utf8_slice_codeunits(column.drop_null(), 1)
        value = pc.max(pc.cast(digits, pa.int64())).as_py()
        best = max(best, value or 0)
    return best


def _key_of(alias: str, side: str) -> list[exp.Expr]:
    """The source and record_id of the record joined as `alias`, named for `side`."""
    return [
        _c("source", alias).as_(f"{side}_source"),
        _c("record_id", alias).as_(f"{side}_record_id"),
    ]


def _join_node(query: exp.Select, node: exp.Expr, alias: str) -> exp.Select:
    return query.join(_t(_NODES, alias), on=_eq(_c("node", alias), node))


def _in_force_table(in_force: Mapping[Pair, Decision]) -> pa.Table:
    rows = []
    for pair, decision in in_force.items():
        left, right = sorted(pair) if len(pair) == 2 else (next(iter(pair)),) * 2
        note = f"accepted by {decision.decided_by} at {decision.decided_at.isoformat()}"
        rows.append(
            {
                "left_source": left[0],
                "left_record_id": left[1],
                "right_source": right[0],
                "right_record_id": right[1],
                "decision": decision.decision,
                "note": note,
            }
        )
    schema = pa.schema([*_PAIR, ("decision", _S), ("note", _S)])
    return pa.Table.from_pylist(rows, schema=schema)


def build_index(
    engine: Engine,
    records: pa.Table,
    links: pa.Table,
    *,
    threshold: float,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
    previous: PreviousIndex | None = None,
    decisions: Sequence[Decision] = (),
    run_at: datetime,
) -> MasterPersonIndex:
    """The master person index of `records` (`RECORDS_SCHEMA`: every record of every source
    in this run) from the run's `links` (`PAIRS_SCHEMA`), built in `engine`, keeping the
    person_ids of `previous` where its clusters survive and applying every decision (those
    of `previous` and the new `decisions`; the latest per pair is in force)."""
    if not 0 < review_threshold <= threshold < 1:
        raise JoinedupError(
            f"review threshold {review_threshold} and link threshold {threshold}: give "
            "0 < review threshold <= link threshold < 1"
        )
    previous = previous or PreviousIndex(people_table({}))
    log = _merge_log(previous.decisions, decisions)
    in_force = effective_decisions(log)
    engine.load(_RECORDS, records.select(RECORDS_SCHEMA.names).cast(RECORDS_SCHEMA))
    pairs = links.select(PAIRS_SCHEMA.names).cast(PAIRS_SCHEMA)
    engine.load(_PAIRS, pairs.append_column("ord", pa.array(range(pairs.num_rows), pa.int64())))
    engine.load(_PREVIOUS, previous.people.select(["source", "record_id", "person_id"]))
    engine.load(_DECISIONS, _in_force_table(in_force))
    try:
        return _build(engine, threshold, review_threshold, previous, log, len(in_force), run_at)
    finally:
        for name in (
            _RECORDS,
            _PAIRS,
            _PREVIOUS,
            _DECISIONS,
            _NODES,
            _OCCURRENCES,
            _SCORED,
            _DECIDED,
            _EDGES,
            _UNCERTAIN,
            _CLUSTERS,
            _OVERLAP,
            _KEPT,
            _IDS,
            _EVENTS,
            _CONFLICTS,
        ):
            engine.drop(name)


def _build(
    engine: Engine,
    threshold: float,
    review_threshold: float,
    previous: PreviousIndex,
    log: list[Decision],
    in_force_count: int,
    run_at: datetime,
) -> MasterPersonIndex:
    # Records numbered in (source, record_id) order: the smallest number in a cluster is its
    # first record, so clusters are named, ordered and minted by it.
    distinct = exp.select("source", "record_id").from_(_RECORDS).distinct()
    engine.materialise_now(
        _NODES,
        exp.select(
            "source",
            "record_id",
            exp.Sub(
                this=_row_number([], (_c("source"), False), (_c("record_id"), False)),
                expression=_n(1),
            ).as_("node"),
        ).from_(distinct.subquery("d")),
    )
    _check_links(engine)
    _scored_and_decided(engine)
    _edges(engine, threshold, review_threshold)
    _cluster(engine)
    kept = _keep_ids(engine)
    next_number = (
        _max_number(previous.people.column("person_id"), previous.history.column("person_id")) + 1
    )
    _mint_ids(engine, next_number)
    _conflicts_and_review(engine)
    _entries_and_links(engine)

    counts = engine.execute(
        exp.select(
            exp.Subquery(this=exp.select(exp.func("count", exp.Star())).from_(_NODES)).as_(
                "records"
            ),
            exp.Subquery(this=exp.select(exp.func("count", exp.Star())).from_(_IDS)).as_("people"),
            exp.Subquery(
                this=exp.select(exp.func("count", exp.Star()))
                .from_(_DECIDED)
                .where(exp.LT(this=_c("lo"), expression=_c("hi")))
            ).as_("applied"),
            exp.Subquery(
                this=exp.select(exp.func("count", exp.Star()))
                .from_(_PREVIOUS)
                .join(
                    _t(_NODES, "n"),
                    on=exp.and_(
                        _eq(_c("source", _PREVIOUS), _c("source", "n")),
                        _eq(_c("record_id", _PREVIOUS), _c("record_id", "n")),
                    ),
                    join_type="left",
                )
                .where(_null(_c("node", "n")))
            ).as_("gone"),
            exp.Subquery(this=exp.select(exp.func("count", exp.Star())).from_(_CONFLICTS)).as_(
                "conflicts"
            ),
        )
    ).to_pylist()[0]
    events = _fetch(engine, exp.select("*").from_(_EVENTS).order_by("seq"), _EVENT_SCHEMA)
    offset = previous.history.num_rows
    history = pa.concat_tables(
        [
            previous.history.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA),
            pa.table(
                {
                    "seq": pc.add(events.column("seq"), offset),
                    "person_id": events.column("person_id"),
                    "event": events.column("event"),
                    "related_person_id": events.column("related_person_id"),
                    "record_count": events.column("record_count"),
                    "run_at": pa.array(
                        [run_at.astimezone(UTC)] * events.num_rows,
                        HISTORY_SCHEMA.field("run_at").type,
                    ),
                },
                schema=HISTORY_SCHEMA,
            ),
        ]
    )
    kinds = pc.value_counts(events.column("event")).to_pylist()
    made = {k["values"]: k["counts"] for k in kinds}
    entries = _fetch(
        engine, exp.select(*ENTRIES_SCHEMA.names).from_(ENTRIES).order_by("node"), ENTRIES_SCHEMA
    )
    links = _fetch(
        engine, exp.select(*LINKS_SCHEMA.names).from_(LINKS).order_by("lo", "hi"), LINKS_SCHEMA
    )
    review = _fetch(
        engine, exp.select(*REVIEW_SCHEMA.names).from_(REVIEW).order_by("position"), REVIEW_SCHEMA
    )
    summary = Summary(
        records=counts["records"],
        people=counts["people"],
        ids_kept=kept,
        ids_created=made.get("created", 0),
        ids_split=made.get("split_from", 0),
        ids_merged=made.get("merged_into", 0),
        ids_retired=made.get("retired", 0),
        records_gone=counts["gone"],
        review=review.num_rows,
        conflicts=counts["conflicts"],
        decisions_applied=counts["applied"],
        decisions_unmatched=in_force_count - counts["applied"],
    )
    return MasterPersonIndex(entries, links, review, history, log, summary)


_EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("person_id", _S),
        ("event", _S),
        ("related_person_id", _S),
        ("record_count", pa.int64()),
    ]
)


def _fetch(engine: Engine, query: exp.Query, schema: pa.Schema) -> pa.Table:
    return engine.execute(query).select(schema.names).cast(schema)


def _check_links(engine: Engine) -> None:
    """Refuse a link naming a record not in this run (the first in the links' order)."""
    sides = []
    for rank, side in enumerate(("left", "right")):
        sides.append(
            exp.select(
                _c(f"{side}_source", "p").as_("source"),
                _c(f"{side}_record_id", "p").as_("record_id"),
                _c("ord", "p"),
                exp.Literal.number(rank).as_("side"),
            )
            .from_(_t(_PAIRS, "p"))
            .join(
                _t(_NODES, "n"),
                on=exp.and_(
                    _eq(_c(f"{side}_source", "p"), _c("source", "n")),
                    _eq(_c(f"{side}_record_id", "p"), _c("record_id", "n")),
                ),
                join_type="left",
            )
            .where(_null(_c("node", "n")))
        )
    missing = engine.execute(
        exp.select("source", "record_id")
        .from_(exp.union(*sides, distinct=False).subquery("m"))
        .order_by("ord", "side")
        .limit(1)
    ).to_pylist()
    if missing:
        source, record_id = missing[0]["source"], missing[0]["record_id"]
        raise JoinedupError(f"a link names {source} record {record_id!r}, not in this run")


def _sorted_pair(table: str, alias: str) -> exp.Select:
    """Rows of `table` (a pair per row) with both records numbered: `lo` the smaller, `hi`."""
    query = exp.select(
        exp.Least(this=_c("node", "l"), expressions=[_c("node", "r")]).as_("lo"),
        exp.Greatest(this=_c("node", "l"), expressions=[_c("node", "r")]).as_("hi"),
    ).from_(_t(table, alias))
    for node_alias, side in (("l", "left"), ("r", "right")):
        query = query.join(
            _t(_NODES, node_alias),
            on=exp.and_(
                _eq(_c(f"{side}_source", alias), _c("source", node_alias)),
                _eq(_c(f"{side}_record_id", alias), _c("record_id", node_alias)),
            ),
        )
    return query


def _scored_and_decided(engine: Engine) -> None:
    """The run's links with both records numbered (every one, in the links' order `ord`),
    each scored pair once (the last of the run's links for it), and every decision in force
    on records of this run."""
    engine.materialise_now(
        _OCCURRENCES,
        _sorted_pair(_PAIRS, "p")
        .select(
            _c("matched_by", "p"),
            _c("match_probability", "p"),
            _c("match_weight", "p"),
            _coalesce(_c("evidence", "p"), _s("")).as_("evidence"),
            _c("ord", "p"),
        )
        .where(exp.NEQ(this=_c("node", "l"), expression=_c("node", "r"))),
    )
    engine.materialise_now(_SCORED, _last_per_pair(exp.select("*").from_(_OCCURRENCES)))
    engine.materialise_now(
        _DECIDED, _sorted_pair(_DECISIONS, "d").select(_c("decision", "d"), _c("note", "d"))
    )


def _last_per_pair(query: exp.Select) -> exp.Select:
    """The rows of `query` (pairs with `ord`), only the last (highest `ord`) of each pair."""
    last = _row_number([_c("lo"), _c("hi")], (_c("ord"), True))
    return (
        exp.select(*_SCORED_COLUMNS)
        .from_(exp.select("*", last.as_("nth")).from_(query.subquery("s")).subquery("ranked"))
        .where(_eq(_c("nth"), _n(1)))
    )


def _pair_join(left: str, right: str) -> exp.Expr:
    return exp.and_(_eq(_c("lo", left), _c("lo", right)), _eq(_c("hi", left), _c("hi", right)))


def _edges(engine: Engine, threshold: float, review_threshold: float) -> None:
    """The links: pairs with no decision that the NHS number stage linked or Splink scored at
    or above `threshold` (the last such of the run's links for a pair), and accepted pairs;
    and the uncertain links (no decision, from `review_threshold` up to `threshold`; a pair
    the run's links give twice is queued twice, unless other links join it)."""
    probability = _coalesce(_c("match_probability", "s"), _n(0))
    undecided = (
        exp.select("s.*")
        .from_(_t(_OCCURRENCES, "s"))
        .join(_t(_DECIDED, "d"), on=_pair_join("s", "d"), join_type="left")
        .where(_null(_c("lo", "d")))
    )
    linked = exp.or_(
        _eq(_c("matched_by", "s"), _s("nhs_number")),
        exp.GTE(this=probability, expression=_n(threshold)),
    )
    by_score = _last_per_pair(undecided.where(linked, append=True))
    note = _c("note", "d")
    accepted = (
        exp.select(
            _c("lo", "d"),
            _c("hi", "d"),
            _s("accepted").as_("matched_by"),
            _c("match_probability", "s"),
            _c("match_weight", "s"),
            exp.case()
            .when(exp.or_(_null(_c("lo", "s")), _eq(_c("evidence", "s"), _s(""))), note)
            .else_(exp.func("concat", _c("evidence", "s"), _s("; "), note))
            .as_("evidence"),
        )
        .from_(_t(_DECIDED, "d"))
        .join(_t(_SCORED, "s"), on=_pair_join("d", "s"), join_type="left")
        .where(
            exp.and_(
                _eq(_c("decision", "d"), _s("accept")),
                exp.LT(this=_c("lo", "d"), expression=_c("hi", "d")),
            )
        )
    )
    columns = ["lo", "hi", "matched_by", "match_probability", "match_weight", "evidence"]
    engine.materialise_now(
        _EDGES,
        exp.union(
            exp.select(*columns).from_(by_score.subquery("e")),
            exp.select(*columns).from_(accepted.subquery("a")),
            distinct=False,
        ),
    )
    engine.materialise_now(
        _UNCERTAIN,
        undecided.where(exp.not_(linked), append=True).where(
            exp.GTE(this=probability, expression=_n(review_threshold)), append=True
        ),
    )


def _cluster(engine: Engine) -> None:
    """Connected components of the links: each record's cluster is its smallest node."""
    from splink.clustering import (  # noqa: PLC0415 - only building the index loads Splink
        cluster_pairwise_predictions_at_threshold,
    )

    clusters = cluster_pairwise_predictions_at_threshold(
        _NODES,
        _EDGES,
        engine.splink_api(),
        node_id_column_name="node",
        edge_id_column_name_left="lo",
        edge_id_column_name_right="hi",
    )
    engine.materialise_now(
        _CLUSTERS,
        exp.select(
            exp.cast(_c("node"), "BIGINT").as_("node"),
            exp.cast(_c("cluster_id"), "BIGINT").as_("cluster"),
        ).from_(exp.to_table(clusters.physical_name)),
    )
    clusters.drop_table_from_database_and_remove_from_cache()


def _keep_ids(engine: Engine) -> int:
    """Carry previous ids to this run's clusters (table `_KEPT`: person_id, cluster).

    Each previous id and each cluster it overlaps form a candidate, taken greedily from the
    largest overlap down (the older id first on a tie, then the cluster with the smaller
    first record): an id goes to the cluster holding most of its records (a split leaves it
    with its largest part), and a cluster keeps the id holding most of its records (a merge
    keeps that one). The greedy pass runs as rounds: a candidate first in that order among
    the remaining ones of both its id and its cluster is taken (the greedy pass would take
    it), and candidates of a taken id or cluster are dropped; this gives the greedy pass's
    choices exactly, in as many rounds as the longest chain of competing candidates."""
    overlap = (
        exp.select(
            _c("person_id", "p"),
            _c("cluster", "c"),
            exp.func("count", exp.Star()).as_("n"),
            _number(_c("person_id", "p")).as_("number"),
        )
        .from_(_t(_PREVIOUS, "p"))
        .join(
            _t(_NODES, "r"),
            on=exp.and_(
                _eq(_c("source", "p"), _c("source", "r")),
                _eq(_c("record_id", "p"), _c("record_id", "r")),
            ),
        )
        .join(_t(_CLUSTERS, "c"), on=_eq(_c("node", "r"), _c("node", "c")))
        .group_by(_c("person_id", "p"), _c("cluster", "c"))
    )
    engine.materialise_now(_OVERLAP, overlap)
    order = (
        (_c("n"), True),
        (_c("number"), False),
        (_c("person_id"), False),
        (_c("cluster"), False),
    )
    remaining, rounds, taken = _OVERLAP, list[str](), 0
    while _count(engine, exp.select("*").from_(remaining)):
        ranked = exp.select(
            "person_id",
            "cluster",
            _row_number([_c("person_id")], *order).as_("by_id"),
            _row_number([_c("cluster")], *order).as_("by_cluster"),
        ).from_(remaining)
        chosen = f"{_KEPT}_{len(rounds)}"
        engine.materialise_now(
            chosen,
            exp.select("person_id", "cluster")
            .from_(ranked.subquery("r"))
            .where(exp.and_(_eq(_c("by_id"), _n(1)), _eq(_c("by_cluster"), _n(1)))),
        )
        rounds.append(chosen)
        taken += engine.count(chosen)
        left = f"{_OVERLAP}_{len(rounds)}"
        engine.materialise_now(
            left,
            exp.select("o.*")
            .from_(_t(remaining, "o"))
            .join(
                _t(chosen, "a"),
                on=_eq(_c("person_id", "o"), _c("person_id", "a")),
                join_type="left",
            )
            .join(_t(chosen, "b"), on=_eq(_c("cluster", "o"), _c("cluster", "b")), join_type="left")
            .where(exp.and_(_null(_c("person_id", "a")), _null(_c("cluster", "b")))),
        )
        if remaining != _OVERLAP:
            engine.drop(remaining)
        remaining = left
    parts = [exp.select("person_id", "cluster").from_(name) for name in rounds]
    if not parts:
        parts = [exp.select("person_id", "cluster").from_(_OVERLAP).where(exp.false())]
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    engine.materialise_now(_KEPT, exp.select("person_id", "cluster").from_(union.subquery("k")))
    for name in [*rounds, remaining if remaining != _OVERLAP else None]:
        if name:
            engine.drop(name)
    return taken


def _mint_ids(engine: Engine, next_number: int) -> None:
    """Every cluster's person_id (table `_IDS`: cluster, person_id, size) and this run's
    history events (table `_EVENTS`, in order from `seq` 0): clusters left without an id get
    new ones in order of their first record (`created`, or `split_from` the id holding most
    of their records); ids left without a cluster are `merged_into` the cluster holding most
    of their records, or `retired` if none remain, in order of age."""
    sizes = (
        exp.select("cluster", exp.func("count", exp.Star()).as_("size"))
        .from_(_CLUSTERS)
        .group_by("cluster")
    )
    best = exp.select(
        "cluster",
        _c("person_id").as_("source_id"),
        _row_number(
            [_c("cluster")], (_c("n"), True), (_c("number"), False), (_c("person_id"), False)
        ).as_("nth"),
    ).from_(_OVERLAP)
    fresh = (
        exp.select(
            _c("cluster", "z"),
            _c("size", "z"),
            _c("source_id", "b"),
            _row_number([], (_c("cluster", "z"), False)).as_("nth"),
        )
        .from_(sizes.subquery("z"))
        .join(_t(_KEPT, "k"), on=_eq(_c("cluster", "z"), _c("cluster", "k")), join_type="left")
        .join(
            best.subquery("b"),
            on=exp.and_(_eq(_c("cluster", "z"), _c("cluster", "b")), _eq(_c("nth", "b"), _n(1))),
            join_type="left",
        )
        .where(_null(_c("cluster", "k")))
    )
    number = exp.Add(this=_n(next_number - 1), expression=_c("nth"))
    minted = exp.select(
        "cluster", "size", "source_id", "nth", _person_id(number).as_("person_id")
    ).from_(fresh.subquery("f"))
    engine.materialise_now(f"{_IDS}_new", minted)
    engine.materialise_now(
        _IDS,
        exp.union(
            exp.select(_c("cluster", "k"), _c("person_id", "k"), _c("size", "z"))
            .from_(_t(_KEPT, "k"))
            .join(sizes.subquery("z"), on=_eq(_c("cluster", "k"), _c("cluster", "z"))),
            exp.select("cluster", "person_id", "size").from_(f"{_IDS}_new"),
            distinct=False,
        ),
    )
    new_events = exp.select(
        exp.Sub(this=_c("nth"), expression=_n(1)).as_("seq"),
        "person_id",
        exp.case().when(_null(_c("source_id")), _s("created")).else_(_s("split_from")).as_("event"),
        _c("source_id").as_("related_person_id"),
        _c("size").as_("record_count"),
    ).from_(f"{_IDS}_new")
    previous_ids = (
        exp.select("person_id", _number(_c("person_id")).as_("number")).from_(_PREVIOUS).distinct()
    )
    destination = exp.select(
        "person_id",
        "cluster",
        "n",
        _row_number([_c("person_id")], (_c("n"), True), (_c("cluster"), False)).as_("nth"),
    ).from_(_OVERLAP)
    gone = (
        exp.select(
            _c("person_id", "p"),
            _row_number([], (_c("number", "p"), False), (_c("person_id", "p"), False)).as_("nth"),
            exp.case()
            .when(_null(_c("cluster", "d")), _s("retired"))
            .else_(_s("merged_into"))
            .as_("event"),
            _c("person_id", "i").as_("related_person_id"),
            _coalesce(_c("n", "d"), _n(0)).as_("record_count"),
        )
        .from_(previous_ids.subquery("p"))
        .join(_t(_KEPT, "k"), on=_eq(_c("person_id", "p"), _c("person_id", "k")), join_type="left")
        .join(
            destination.subquery("d"),
            on=exp.and_(
                _eq(_c("person_id", "p"), _c("person_id", "d")), _eq(_c("nth", "d"), _n(1))
            ),
            join_type="left",
        )
        .join(_t(_IDS, "i"), on=_eq(_c("cluster", "d"), _c("cluster", "i")), join_type="left")
        .where(_null(_c("person_id", "k")))
    )
    created = exp.select(exp.func("count", exp.Star())).from_(f"{_IDS}_new")
    engine.materialise_now(
        _EVENTS,
        exp.union(
            new_events,
            exp.select(
                exp.Add(
                    this=exp.Subquery(this=created),
                    expression=exp.Sub(this=_c("nth"), expression=_n(1)),
                ).as_("seq"),
                "person_id",
                "event",
                "related_person_id",
                "record_count",
            ).from_(gone.subquery("g")),
            distinct=False,
        ),
    )
    engine.drop(f"{_IDS}_new")


def _with_people(query: exp.Select, lo: exp.Expr, hi: exp.Expr) -> exp.Select:
    """`query` with both records' keys and person_ids (left_*, right_*)."""
    for alias, node, side in (("l", lo, "left"), ("r", hi, "right")):
        query = _join_node(query, node, f"n{alias}")
        query = query.join(_t(_CLUSTERS, f"c{alias}"), on=_eq(_c("node", f"c{alias}"), node))
        query = query.join(
            _t(_IDS, f"i{alias}"), on=_eq(_c("cluster", f"i{alias}"), _c("cluster", f"c{alias}"))
        )
        query = query.select(
            *_key_of(f"n{alias}", side), _c("person_id", f"i{alias}").as_(f"{side}_person_id")
        )
    return query


def _conflicts_and_review(engine: Engine) -> None:
    """Rejected pairs other links still join (table `_CONFLICTS`), and the review queue
    (table `REVIEW`): those pairs first, then the uncertain pairs not already joined, most
    probable first."""
    conflicts = (
        exp.select(_c("lo", "d"), _c("hi", "d"), _c("cluster", "cl"))
        .from_(_t(_DECIDED, "d"))
        .join(_t(_CLUSTERS, "cl"), on=_eq(_c("node", "cl"), _c("lo", "d")))
        .join(_t(_CLUSTERS, "ch"), on=_eq(_c("node", "ch"), _c("hi", "d")))
        .where(
            exp.and_(
                _eq(_c("decision", "d"), _s("reject")),
                _eq(_c("cluster", "cl"), _c("cluster", "ch")),
                exp.LT(this=_c("lo", "d"), expression=_c("hi", "d")),
            )
        )
    )
    engine.materialise_now(_CONFLICTS, conflicts)
    first = _with_people(
        exp.select(
            _c("match_probability", "s"),
            _c("match_weight", "s"),
            _coalesce(_c("evidence", "s"), _s("")).as_("evidence"),
            _s(REVIEW_CONFLICT).as_("queued_for"),
            exp.Sub(
                this=_row_number([], (_c("lo", "x"), False), (_c("hi", "x"), False)),
                expression=_n(1),
            ).as_("position"),
        )
        .from_(_t(_CONFLICTS, "x"))
        .join(_t(_SCORED, "s"), on=_pair_join("x", "s"), join_type="left"),
        _c("lo", "x"),
        _c("hi", "x"),
    )
    probability = _coalesce(_c("match_probability", "u"), _n(0))
    then = _with_people(
        exp.select(
            _c("match_probability", "u"),
            _c("match_weight", "u"),
            _c("evidence", "u"),
            _s(REVIEW_UNCERTAIN).as_("queued_for"),
            exp.Add(
                this=exp.Subquery(this=exp.select(exp.func("count", exp.Star())).from_(_CONFLICTS)),
                expression=exp.Sub(
                    this=_row_number(
                        [],
                        (probability, True),
                        (_c("lo", "u"), False),
                        (_c("hi", "u"), False),
                        (_c("ord", "u"), False),
                    ),
                    expression=_n(1),
                ),
            ).as_("position"),
        ).from_(_t(_UNCERTAIN, "u")),
        _c("lo", "u"),
        _c("hi", "u"),
    )
    # A pair other links have joined already needs no decision to join it (the filter comes
    # before the numbering, as a window follows WHERE).
    then = then.where(exp.NEQ(this=_c("cluster", "cl"), expression=_c("cluster", "cr")))
    columns = REVIEW_SCHEMA.names
    engine.materialise_now(
        REVIEW,
        exp.union(
            exp.select(*columns).from_(first.subquery("f")),
            exp.select(*columns).from_(then.subquery("k")),
            distinct=False,
        ),
    )


def _entries_and_links(engine: Engine) -> None:
    """The index's entries (table `ENTRIES`: each record's person_id, strongest link and
    whether its cluster needs review) and links (table `LINKS`, with each link's person_id)."""
    strength = exp.case()
    for name, rank in _STRENGTH.items():
        strength = strength.when(_eq(_c("matched_by"), _s(name)), _n(rank))
    ends = exp.union(
        exp.select(_c("lo").as_("node"), "matched_by", "match_weight").from_(_EDGES),
        exp.select(_c("hi").as_("node"), "matched_by", "match_weight").from_(_EDGES),
        distinct=False,
    )
    strongest = exp.select(
        "node",
        "matched_by",
        "match_weight",
        _row_number([_c("node")], (strength, True), (_c("match_weight"), True)).as_("nth"),
    ).from_(ends.subquery("e"))
    flagged = exp.select("cluster").from_(_CONFLICTS).distinct()
    engine.materialise_now(
        ENTRIES,
        exp.select(
            _c("node", "n"),
            _c("source", "n"),
            _c("record_id", "n"),
            _c("person_id", "i"),
            _c("matched_by", "s").as_("linked_by"),
            _c("match_weight", "s"),
            exp.not_(_null(_c("cluster", "f"))).as_("needs_review"),
        )
        .from_(_t(_NODES, "n"))
        .join(_t(_CLUSTERS, "c"), on=_eq(_c("node", "n"), _c("node", "c")))
        .join(_t(_IDS, "i"), on=_eq(_c("cluster", "c"), _c("cluster", "i")))
        .join(
            strongest.subquery("s"),
            on=exp.and_(_eq(_c("node", "n"), _c("node", "s")), _eq(_c("nth", "s"), _n(1))),
            join_type="left",
        )
        .join(
            flagged.subquery("f"), on=_eq(_c("cluster", "c"), _c("cluster", "f")), join_type="left"
        ),
    )
    links = _with_people(
        exp.select(
            _c("lo", "e"),
            _c("hi", "e"),
            _c("matched_by", "e"),
            _c("match_probability", "e"),
            _c("match_weight", "e"),
            _c("evidence", "e"),
        ).from_(_t(_EDGES, "e")),
        _c("lo", "e"),
        _c("hi", "e"),
    )
    engine.materialise_now(
        LINKS,
        exp.select(
            *[c for c in LINKS_SCHEMA.names if c != "person_id"],
            _c("left_person_id").as_("person_id"),
            "lo",
            "hi",
        ).from_(links.subquery("x")),
    )


# --- what changed against a store's index ---------------------------------------------------


@dataclass(frozen=True)
class TableChange:
    """Rows of one table to delete (by `keys`) and to insert, against what a store holds.
    A changed row is deleted and inserted again."""

    keys: tuple[str, ...]
    deleted: pa.Table
    inserted: pa.Table


@dataclass(frozen=True)
class IndexChanges:
    """What a store must change to hold a run's index: entries, links, queue, queued records
    and history (only new events), and the run it was computed against (`run_seq`)."""

    entries: TableChange
    links: TableChange
    review: TableChange
    review_records: TableChange
    history: pa.Table
    run_seq: int | None

    def rows(self) -> int:
        """Rows written: deleted and inserted, over every table."""
        parts = (self.entries, self.links, self.review, self.review_records)
        written = sum(int(p.deleted.num_rows + p.inserted.num_rows) for p in parts)
        return written + int(self.history.num_rows)


#: Two match weights or probabilities closer than this (relative) are the same: the sums
#: behind Splink's estimates run in parallel, so two runs on the same input can differ in the
#: last bits, and a re-run would otherwise rewrite thousands of unchanged links.
_FLOAT_TOLERANCE = 1e-9


def _same(a: exp.Expr, b: exp.Expr, kind: pa.DataType) -> exp.Expr:
    """Whether two values are the same, null equal to null; floats within the tolerance."""
    if not pa.types.is_floating(kind):
        return exp.NullSafeEQ(this=a, expression=b)
    scale = exp.Greatest(this=_n(1), expressions=[exp.Abs(this=a), exp.Abs(this=b)])
    close = exp.LTE(
        this=exp.Abs(this=exp.Sub(this=a, expression=b)),
        expression=exp.Mul(this=_n(_FLOAT_TOLERANCE), expression=scale),
    )
    both = exp.and_(exp.not_(_null(a)), exp.not_(_null(b)), close)
    return exp.paren(exp.or_(exp.and_(_null(a), _null(b)), both))


def _difference(
    engine: Engine, new: str, old: pa.Table, keys: Sequence[str], schema: pa.Schema
) -> TableChange:
    """The rows of engine table `new` not in `old` (inserted) and the keys of `old`'s rows not
    in `new` (deleted), a row differing in any column counting as both; compared in the
    engine, null equal to null."""
    stored = f"{new}_stored"
    engine.load(stored, old.select(schema.names).cast(schema))
    try:
        values = [c for c in schema.names if c not in keys]
        same_key = exp.and_(*[_eq(_c(k, "a"), _c(k, "b")) for k in keys])
        differs = exp.or_(
            _null(_c(keys[0], "b")),
            *[exp.not_(_same(_c(v, "a"), _c(v, "b"), schema.field(v).type)) for v in values],
        )
        inserted = _fetch(
            engine,
            exp.select(*[_c(c, "a") for c in schema.names])
            .from_(_t(new, "a"))
            .join(_t(stored, "b"), on=same_key, join_type="left")
            .where(differs),
            schema,
        )
        deleted = _fetch(
            engine,
            exp.select(*[_c(k, "a") for k in keys])
            .from_(_t(stored, "a"))
            .join(_t(new, "b"), on=same_key, join_type="left")
            .where(differs),
            pa.schema([schema.field(k) for k in keys]),
        )
    finally:
        engine.drop(stored)
    return TableChange(tuple(keys), deleted, inserted)


_REVIEW_RECORDS_KEYS = ("source", "record_id")


def index_changes(
    engine: Engine,
    index: MasterPersonIndex,
    previous: PreviousIndex | None,
    review_records: pa.Table,
) -> IndexChanges:
    """What a store holding `previous` (its whole tables, as a records store gives them; none
    for an empty store) must delete and insert to hold `index`, computed in the `engine`
    that built it, and `review_records` (the queued records' identity fields) against the
    stored ones."""
    entries_schema = ENTRIES_SCHEMA
    old_entries = _empty(entries_schema) if previous is None else previous.people
    old_links = (
        _empty(LINKS_SCHEMA) if previous is None or previous.links is None else previous.links
    )
    old_review = (
        _empty(REVIEW_SCHEMA) if previous is None or previous.review is None else previous.review
    )
    old_records = (
        review_records.schema.empty_table()
        if previous is None or previous.review_records is None
        else previous.review_records
    )
    staged = f"{REVIEW}_records"
    engine.load(staged, review_records)
    try:
        records_change = _difference(
            engine, staged, old_records, _REVIEW_RECORDS_KEYS, review_records.schema
        )
    finally:
        engine.drop(staged)
    stored_history = 0 if previous is None else previous.history.num_rows
    return IndexChanges(
        entries=_difference(engine, ENTRIES, old_entries, ("source", "record_id"), entries_schema),
        links=_difference(engine, LINKS, old_links, tuple(n for n, _ in _PAIR), LINKS_SCHEMA),
        review=_difference(engine, REVIEW, old_review, ("position",), REVIEW_SCHEMA),
        review_records=records_change,
        history=index.history.slice(stored_history),
        run_seq=None if previous is None else previous.run_seq,
    )
