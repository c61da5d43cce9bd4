"""The master person index: which person each source record is, under a `person_id` that
stays the same from run to run.

A linkage run gives the records of every source and the pairs worth knowing about (the exact
NHS number stage's links and Splink's scored pairs, with weights and evidence). This module
decides, in plain Python and with no store behind it:

- which pairs link (NHS number; Splink at or above the link threshold; a reviewer's accept)
  and which go to a person for review (Splink between the review and link thresholds);
- the clusters those links make (connected components), after removing rejected pairs, and
  which clusters still join a rejected pair through other links (flagged, never cut);
- each cluster's `person_id`, carried over from the previous index so that ids survive
  re-runs: an unchanged or grown cluster keeps its id, a merge keeps the id holding most of
  the records (the oldest on a tie), a split leaves the id with its largest part, and every
  id retired or minted is written to the history.

Reading and writing the index (CSV files today, the records store of issue 16 next) is
`joinedup.linkage.mpi_files`; everything here takes and returns plain values.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import pyarrow as pa

from joinedup.errors import JoinedupError

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


def is_person_id(text: str) -> bool:
    """Whether `text` has the form of a person_id (P and at least nine digits)."""
    return _PERSON_ID.fullmatch(text) is not None


def _number(person_id: str) -> int:
    match = _PERSON_ID.fullmatch(person_id)
    if match is None:
        raise JoinedupError(f"{person_id!r} is not a person_id (P and nine digits)")
    return int(match[1])


def _person_id(number: int) -> str:
    return f"{PERSON_ID_PREFIX}{number:0{_PERSON_ID_DIGITS}d}"


@dataclass(frozen=True)
class Link:
    """A pair the linkage run found: linked by the NHS number stage, or scored by Splink."""

    left: RecordKey
    right: RecordKey
    matched_by: Literal["nhs_number", "splink"]
    match_probability: float | None
    match_weight: float | None
    evidence: str

    @property
    def pair(self) -> Pair:
        return frozenset((self.left, self.right))


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
class HistoryEvent:
    """One change to the set of person_ids: an id minted (`created`, or `split_from` the
    related id), or retired (`merged_into` the related id, or `retired` with no records)."""

    person_id: str
    event: Event
    related_person_id: str | None
    record_count: int
    run_at: datetime


@dataclass(frozen=True)
class PreviousIndex:
    """What a run needs of the last one: each record's person_id, the id history and every
    decision made so far."""

    people: Mapping[RecordKey, str]
    history: Sequence[HistoryEvent] = ()
    decisions: Sequence[Decision] = ()


@dataclass(frozen=True)
class IndexEntry:
    """One source record's row in the index. `linked_by` and `match_weight` describe the
    strongest link that put the record in its cluster (empty for a record alone)."""

    source: str
    record_id: str
    person_id: str
    linked_by: LinkedBy | None
    match_weight: float | None
    needs_review: bool


@dataclass(frozen=True)
class LinkEvidence:
    """A link the index rests on, with its evidence."""

    left: RecordKey
    right: RecordKey
    person_id: str
    matched_by: LinkedBy
    match_probability: float | None
    match_weight: float | None
    evidence: str


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
    """A run's index: one entry per source record, the links it rests on, the review queue,
    the id history and the decision log (both cumulative over runs)."""

    entries: list[IndexEntry]
    links: list[LinkEvidence]
    review: list[ReviewItem]
    history: list[HistoryEvent]
    decisions: list[Decision]
    summary: Summary = field(compare=False)


def links_from_table(pairs: pa.Table) -> list[Link]:
    """Links from the table `joinedup.linkage.run.link_sources` returns."""
    return [
        Link(
            (row["left_source"], row["left_record_id"]),
            (row["right_source"], row["right_record_id"]),
            row["matched_by"],
            row["match_probability"],
            row["match_weight"],
            row["evidence"] or "",
        )
        for row in pairs.to_pylist()
    ]


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


class _Components:
    """Union-find over record positions."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class _Edge:
    left: RecordKey
    right: RecordKey
    matched_by: LinkedBy
    match_probability: float | None
    match_weight: float | None
    evidence: str

    def strength(self) -> tuple[int, float]:
        weight = float("-inf") if self.match_weight is None else self.match_weight
        return (_STRENGTH[self.matched_by], weight)


def build_index(
    records: Iterable[RecordKey],
    links: Iterable[Link],
    *,
    threshold: float,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
    previous: PreviousIndex | None = None,
    decisions: Sequence[Decision] = (),
    run_at: datetime,
) -> MasterPersonIndex:
    """The master person index of `records` (every record of every source in this run) from
    the run's `links`, keeping the person_ids of `previous` where its clusters survive and
    applying every decision (those of `previous` and the new `decisions`; the latest per pair
    is in force)."""
    if not 0 < review_threshold <= threshold < 1:
        raise JoinedupError(
            f"review threshold {review_threshold} and link threshold {threshold}: give "
            "0 < review threshold <= link threshold < 1"
        )
    keys = sorted(set(records))
    position = {key: i for i, key in enumerate(keys)}
    previous = previous or PreviousIndex({})
    log = _merge_log(previous.decisions, decisions)
    in_force = effective_decisions(log)

    edges, uncertain, scored = _classify(links, position, in_force, threshold, review_threshold)
    applied = 0
    for pair, decision in in_force.items():
        if not all(key in position for key in pair) or len(pair) != 2:
            continue
        applied += 1
        if decision.decision == "accept":
            left, right = sorted(pair)
            link = scored.get(pair)
            note = f"accepted by {decision.decided_by} at {decision.decided_at.isoformat()}"
            edges[pair] = _Edge(
                left,
                right,
                "accepted",
                None if link is None else link.match_probability,
                None if link is None else link.match_weight,
                note if link is None or not link.evidence else f"{link.evidence}; {note}",
            )

    components = _Components(len(keys))
    for edge in edges.values():
        components.union(position[edge.left], position[edge.right])
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(keys)):
        members[components.find(i)].append(i)
    # Clusters in order of their smallest record, so ids are minted in a fixed order.
    clusters = sorted(members.values(), key=lambda m: m[0])
    cluster_of = {i: c for c, m in enumerate(clusters) for i in m}

    ids, events, counts = _assign_ids(keys, clusters, cluster_of, previous, run_at)

    conflicts: list[ReviewItem] = []
    flagged: set[int] = set()
    for pair, decision in sorted(in_force.items(), key=lambda item: sorted(item[0])):
        if decision.decision != "reject" or not all(k in position for k in pair):
            continue
        left, right = sorted(pair)
        cluster = cluster_of[position[left]]
        if cluster == cluster_of[position[right]] and len(pair) == 2:
            flagged.add(cluster)
            link = scored.get(pair)
            conflicts.append(
                ReviewItem(
                    left,
                    right,
                    None if link is None else link.match_probability,
                    None if link is None else link.match_weight,
                    "" if link is None else link.evidence,
                    REVIEW_CONFLICT,
                    ids[cluster],
                    ids[cluster],
                )
            )

    review = conflicts + [
        ReviewItem(
            link.left,
            link.right,
            link.match_probability,
            link.match_weight,
            link.evidence,
            REVIEW_UNCERTAIN,
            ids[cluster_of[position[link.left]]],
            ids[cluster_of[position[link.right]]],
        )
        for link in sorted(
            uncertain, key=lambda k: (-(k.match_probability or 0.0), k.left, k.right)
        )
        # A pair other links have joined already needs no decision to join it.
        if cluster_of[position[link.left]] != cluster_of[position[link.right]]
    ]

    strongest: dict[RecordKey, _Edge] = {}
    for edge in edges.values():
        for key in (edge.left, edge.right):
            current = strongest.get(key)
            if current is None or edge.strength() > current.strength():
                strongest[key] = edge
    entries = [
        IndexEntry(
            key[0],
            key[1],
            ids[cluster_of[i]],
            None if key not in strongest else strongest[key].matched_by,
            None if key not in strongest else strongest[key].match_weight,
            cluster_of[i] in flagged,
        )
        for i, key in enumerate(keys)
    ]
    evidence = [
        LinkEvidence(
            edge.left,
            edge.right,
            ids[cluster_of[position[edge.left]]],
            edge.matched_by,
            edge.match_probability,
            edge.match_weight,
            edge.evidence,
        )
        for edge in sorted(edges.values(), key=lambda e: (e.left, e.right))
    ]
    summary = Summary(
        records=len(keys),
        people=len(clusters),
        ids_kept=counts["kept"],
        ids_created=counts["created"],
        ids_split=counts["split_from"],
        ids_merged=counts["merged_into"],
        ids_retired=counts["retired"],
        records_gone=sum(1 for key in previous.people if key not in position),
        review=len(review),
        conflicts=len(conflicts),
        decisions_applied=applied,
        decisions_unmatched=len(in_force) - applied,
    )
    return MasterPersonIndex(entries, evidence, review, [*previous.history, *events], log, summary)


def _classify(
    links: Iterable[Link],
    position: Mapping[RecordKey, int],
    in_force: Mapping[Pair, Decision],
    threshold: float,
    review_threshold: float,
) -> tuple[dict[Pair, _Edge], list[Link], dict[Pair, Link]]:
    """Split the run's links into edges (linked and not rejected), uncertain pairs (to review,
    no decision yet) and every scored pair by its records."""
    edges: dict[Pair, _Edge] = {}
    uncertain: list[Link] = []
    scored: dict[Pair, Link] = {}
    for found in links:
        for key in (found.left, found.right):
            if key not in position:
                raise JoinedupError(f"a link names {key[0]} record {key[1]!r}, not in this run")
        if found.left == found.right:
            continue
        left, right = sorted((found.left, found.right))
        link = Link(
            left,
            right,
            found.matched_by,
            found.match_probability,
            found.match_weight,
            found.evidence,
        )
        pair = frozenset((left, right))
        scored[pair] = link
        if pair in in_force:
            continue  # accepted pairs are added as edges by the caller; rejected ones never
        probability = link.match_probability or 0.0
        if link.matched_by == "nhs_number" or probability >= threshold:
            edges[pair] = _Edge(
                left,
                right,
                link.matched_by,
                link.match_probability,
                link.match_weight,
                link.evidence,
            )
        elif probability >= review_threshold:
            uncertain.append(link)
    return edges, uncertain, scored


def _assign_ids(
    keys: Sequence[RecordKey],
    clusters: Sequence[Sequence[int]],
    cluster_of: Mapping[int, int],
    previous: PreviousIndex,
    run_at: datetime,
) -> tuple[list[str], list[HistoryEvent], Counter[str]]:
    """A person_id for each cluster, keeping the previous ids where they survive.

    Each previous id and each new cluster it overlaps form a candidate, taken greedily from
    the largest overlap down (the older id first on a tie, then the cluster with the smaller
    first record): an id goes to the cluster holding most of its records (a split leaves it
    with its largest part), and a cluster keeps the id holding most of its records (a merge
    keeps that one). Clusters left without an id get new ones; ids left without a cluster are
    merged into the cluster holding most of their records, or retired if none remain."""
    overlap: Counter[tuple[str, int]] = Counter()
    for i, key in enumerate(keys):
        person_id = previous.people.get(key)
        if person_id is not None:
            overlap[(person_id, cluster_of[i])] += 1
    candidates = sorted(
        overlap.items(), key=lambda item: (-item[1], _number(item[0][0]), item[0][1])
    )
    ids: list[str | None] = [None] * len(clusters)
    taken: set[str] = set()
    for (person_id, cluster), _ in candidates:
        if ids[cluster] is None and person_id not in taken:
            ids[cluster] = person_id
            taken.add(person_id)

    minted = [_number(p) for p in previous.people.values()]
    minted += [_number(e.person_id) for e in previous.history]
    next_number = max(minted, default=0) + 1
    counts: Counter[str] = Counter(kept=len(taken))
    events: list[HistoryEvent] = []
    best_source: dict[int, tuple[int, int, str]] = {}  # cluster -> (-overlap, age, old id)
    for (person_id, cluster), count in overlap.items():
        entry = (-count, _number(person_id), person_id)
        if cluster not in best_source or entry < best_source[cluster]:
            best_source[cluster] = entry
    for cluster, members in enumerate(clusters):
        if ids[cluster] is not None:
            continue
        ids[cluster] = _person_id(next_number)
        next_number += 1
        source = best_source.get(cluster)
        event: Event = "created" if source is None else "split_from"
        counts[event] += 1
        events.append(
            HistoryEvent(
                ids[cluster] or "",
                event,
                None if source is None else source[2],
                len(members),
                run_at,
            )
        )
    final = [i or "" for i in ids]

    retired_ids = sorted(set(previous.people.values()) - taken, key=_number)
    destinations: dict[str, tuple[int, int]] = {}  # old id -> (-overlap, cluster)
    for (person_id, cluster), count in overlap.items():
        place = (-count, cluster)
        if person_id not in destinations or place < destinations[person_id]:
            destinations[person_id] = place
    for person_id in retired_ids:
        destination = destinations.get(person_id)
        if destination is None:
            counts["retired"] += 1
            events.append(HistoryEvent(person_id, "retired", None, 0, run_at))
        else:
            counts["merged_into"] += 1
            events.append(
                HistoryEvent(
                    person_id, "merged_into", final[destination[1]], -destination[0], run_at
                )
            )
    return final, events, counts
