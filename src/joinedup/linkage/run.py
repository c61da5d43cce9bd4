"""A linkage run, inside an engine: the exact NHS number stage, then Splink, then clusters.

(a) Records whose NHS numbers are equal and Modulus 11 valid, and whose demographics agree
(same birth date, a name that sounds alike, no conflicting sex), are linked outright.
(b) Splink scores every other blocked pair and links those at or above the threshold.
Dedupe joins both sets of links into clusters with Splink's connected components; a pair
link writes them as pairs. The engine's own connection or session runs every step, so the
same run works on DuckDB and on Spark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from splink import Linker, block_on
from splink.clustering import cluster_pairwise_predictions_at_threshold
from sqlglot import exp

from joinedup.errors import JoinedupError
from joinedup.linkage.extract import IDENTITY_COLUMNS, Extract
from joinedup.linkage.model import (
    LinkageSettings,
    LinkType,
    comparisons,
    narrower_training,
    splink_settings,
    training_columns,
    wide_blocking_columns,
)
from joinedup.linkage.mpi import PAIRS_SCHEMA
from joinedup.warehouse import Engine

Progress = Callable[[str], None]

_RECORDS = "linkage_records"
_LEFT = "linkage_left"
_RIGHT = "linkage_right"
_NHS_PAIRS = "linkage_nhs_pairs"
_EDGES = "linkage_edges"
_PAIRS_SCHEMA = pa.schema(
    [
        ("left_record_id", pa.string()),
        ("right_record_id", pa.string()),
        ("match_probability", pa.float64()),
        ("match_weight", pa.float64()),
        ("matched_by", pa.string()),
    ]
)


def _quiet(_: str) -> None:
    return None


def _col(table: str, name: str) -> exp.Column:
    return exp.column(name, table=table)


def nhs_number_pairs(
    left: str, right: str, columns: tuple[str, ...], *, dedupe: bool
) -> exp.Select | None:
    """Pairs with the same valid NHS number whose demographics agree, or None when the
    extract has no NHS number or nothing to check it against."""
    has = set(columns)
    if "nhs_number" not in has or not has & {"birth_date", "given_name", "family_name"}:
        return None
    conditions: list[Any] = [
        exp.EQ(this=_col("l", "nhs_number_key"), expression=_col("r", "nhs_number_key"))
    ]
    if dedupe:
        conditions.append(exp.LT(this=_col("l", "record_id"), expression=_col("r", "record_id")))
    if "birth_date" in has:
        conditions.append(exp.EQ(this=_col("l", "birth_date"), expression=_col("r", "birth_date")))
    names = [
        exp.EQ(this=_col("l", key), expression=_col("r", key))
        for column, key in (("given_name", "given_soundex"), ("family_name", "family_soundex"))
        if column in has
    ]
    if names:
        conditions.append(exp.or_(*names))
    if "sex" in has:
        conditions.append(
            exp.or_(
                _col("l", "sex").is_(exp.null()),
                _col("r", "sex").is_(exp.null()),
                exp.EQ(this=_col("l", "sex"), expression=_col("r", "sex")),
            )
        )
    return (
        exp.select(
            _col("l", "record_id").as_("record_id_l"), _col("r", "record_id").as_("record_id_r")
        )
        .from_(exp.to_table(left).as_("l"))
        .join(exp.to_table(right).as_("r"), on=exp.and_(*conditions))
    )


def _train(
    linker: Linker,
    settings: LinkageSettings,
    extract: Extract,
    progress: Progress,
    engine: Engine,
    tables: list[str],
) -> None:
    columns = set(extract.records.column_names)
    if {"given_name", "family_name", "birth_date"} <= columns:
        linker.training.estimate_probability_two_random_records_match(
            [block_on("given_name", "family_name", "birth_date")], recall=settings.prior_recall
        )
    progress("estimating u from random pairs")
    linker.training.estimate_u_using_random_sampling(
        max_pairs=settings.u_max_pairs, seed=settings.seed
    )
    rules = training_columns(columns) or [(c,) for c in extract.compare_columns]
    if not rules:
        raise JoinedupError(
            f"{extract.path}: nothing to train the model on; give birth_date, postcode or both "
            "given_name and family_name, or --compare a column"
        )
    budget = settings.wide_rule_pairs_per_record * len(extract)
    trained = 0
    for wide in rules:
        narrower = narrower_training(wide, columns)
        rule = wide
        if narrower is not None and _block_pairs(engine, tables, wide) > budget:
            rule = narrower
        progress(f"estimating m by expectation maximisation, blocking on {' and '.join(rule)}")
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(block_on(*rule))
        except ValueError as err:
            # Splink refuses an m that underflows to 0, which happens when every pair in a
            # block agrees (very clean data); the other blocks still estimate m.
            if "m_probability" not in str(err):
                raise
            continue
        trained += 1
    if not trained:
        raise JoinedupError(
            f"{extract.path}: expectation maximisation could not estimate m under any blocking "
            "rule (too few records, or too few that differ)"
        )


def _block_pairs(engine: Engine, tables: list[str], rule: tuple[str, ...]) -> int:
    """How many pairs of records (of all `tables` together) agree on every column of `rule`:
    the size of its blocks, counted in the engine without forming the pairs."""
    columns = [exp.column(c) for c in rule]
    parts = [exp.select(*columns).from_(table) for table in tables]
    union: exp.Query = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    known = exp.and_(*[exp.not_(c.is_(exp.null())) for c in columns])
    blocks = (
        exp.select(exp.func("count", exp.Star()).as_("n"))
        .from_(union.subquery("records"))
        .where(known)
        .group_by(*columns)
    )
    n = exp.cast(exp.column("n"), "BIGINT")
    less_one = exp.paren(exp.Sub(this=n, expression=exp.Literal.number(1)))
    pairs = exp.Div(
        this=exp.paren(exp.Mul(this=n, expression=less_one)), expression=exp.Literal.number(2)
    )
    total = engine.execute(
        exp.select(
            exp.func("coalesce", exp.func("sum", pairs), exp.Literal.number(0)).as_("pairs")
        ).from_(blocks.subquery("blocks"))
    )
    return int(total.column("pairs")[0].as_py())


def wide_rules(
    engine: Engine, tables: list[str], extract: Extract, settings: LinkageSettings
) -> list[tuple[str, ...]]:
    """The wide blocking rules whose blocks, over the records of `tables`, hold at most
    `settings.wide_rule_pairs_per_record` pairs per record."""
    budget = settings.wide_rule_pairs_per_record * len(extract)
    return [
        rule
        for rule in wide_blocking_columns(set(extract.records.column_names))
        if _block_pairs(engine, tables, rule) <= budget
    ]


def _linker(
    engine: Engine,
    tables: list[tuple[str, str]],
    link_type: LinkType,
    extract: Extract,
    settings: LinkageSettings,
    *,
    keep_levels: bool = False,
) -> tuple[Any, Linker]:
    api = engine.splink_api()
    inputs = [api.register(table, dataset_display_name=label) for table, label in tables]
    wide = wide_rules(engine, [table for table, _ in tables], extract, settings)
    creator = splink_settings(
        link_type,
        extract.identity_columns,
        extract.compare_columns,
        set(extract.records.column_names),
        max_iterations=settings.em_max_iterations,
        wide_rules=wide,
    )
    # Splink keeps each pair's comparison levels (gamma_ columns) only with the values it
    # compared; the master person index wants the levels as evidence (the values stay in the
    # engine: only the levels are read back).
    if keep_levels:
        creator.retain_matching_columns = True
    linker = Linker(inputs if len(inputs) > 1 else inputs[0], creator, log_level=logging.ERROR)
    return api, linker


def dedupe(
    engine: Engine,
    extract: Extract,
    settings: LinkageSettings | None = None,
    progress: Progress = _quiet,
) -> pa.Table:
    """Cluster the records of `extract` that are the same person: `record_id, cluster_id`
    (a cluster is named by its smallest record_id), ordered by record_id."""
    settings = settings or LinkageSettings()
    engine.load(_RECORDS, extract.records)
    progress("stage 1: exact NHS number")
    nhs = nhs_number_pairs(_RECORDS, _RECORDS, extract.identity_columns, dedupe=True)
    api, linker = _linker(engine, [(_RECORDS, "records")], "dedupe_only", extract, settings)
    _train(linker, settings, extract, progress, engine, [_RECORDS])
    progress("stage 2: scoring blocked pairs with Splink")
    predictions = linker.inference.predict(threshold_match_probability=settings.threshold)
    edges: exp.Query = exp.select(
        exp.column("record_id_l"), exp.column("record_id_r"), exp.column("match_probability")
    ).from_(exp.to_table(predictions.physical_name))
    if nhs is not None:
        edges = exp.union(
            edges,
            exp.select(
                exp.column("record_id_l"),
                exp.column("record_id_r"),
                exp.cast(exp.Literal.number(1), "DOUBLE").as_("match_probability"),
            ).from_(nhs.subquery("nhs")),
            distinct=False,
        )
    engine.materialise(_EDGES, edges)
    progress("clustering: connected components")
    clusters = cluster_pairwise_predictions_at_threshold(
        _RECORDS,
        _EDGES,
        api,
        node_id_column_name="record_id",
        edge_id_column_name_left="record_id_l",
        edge_id_column_name_right="record_id_r",
        threshold_match_probability=settings.threshold,
    )
    return engine.execute(
        exp.select(exp.column("record_id"), exp.column("cluster_id"))
        .from_(exp.to_table(clusters.physical_name))
        .order_by("record_id")
    )


def link_pair(
    engine: Engine,
    left: Extract,
    right: Extract,
    settings: LinkageSettings | None = None,
    progress: Progress = _quiet,
) -> pa.Table:
    """Pairs of a `left` and a `right` record that are the same person, with Splink's match
    probability and weight (`matched_by` says which stage linked them; an NHS number link
    has probability 1 and no weight), ordered by left then right record_id."""
    settings = settings or LinkageSettings()
    if left.columns != right.columns:
        raise JoinedupError(
            f"{left.path} and {right.path} compare different columns "
            f"({', '.join(left.columns)} against {', '.join(right.columns)}): give both the same"
        )
    engine.load(_LEFT, left.records)
    engine.load(_RIGHT, right.records)
    progress("stage 1: exact NHS number")
    nhs = nhs_number_pairs(_LEFT, _RIGHT, left.identity_columns, dedupe=False)
    if nhs is not None:
        engine.materialise(_NHS_PAIRS, nhs)
    # Train on both files together, as Splink does for a link.
    merged = Extract(
        left.path,
        pa.concat_tables([left.records, right.records]),
        left.identity_columns,
        left.compare_columns,
    )
    _, linker = _linker(engine, [(_LEFT, "left"), (_RIGHT, "right")], "link_only", merged, settings)
    _train(linker, settings, merged, progress, engine, [_LEFT, _RIGHT])
    progress("stage 2: scoring blocked pairs with Splink")
    predictions = exp.to_table(
        linker.inference.predict(threshold_match_probability=settings.threshold).physical_name
    )
    from_left = exp.EQ(this=exp.column("source_dataset_l"), expression=exp.Literal.string("left"))

    def side(left_side: bool) -> exp.Expression:
        own, other = ("record_id_l", "record_id_r") if left_side else ("record_id_r", "record_id_l")
        return exp.case().when(from_left, exp.column(own)).else_(exp.column(other))

    splink_rows = exp.select(
        side(True).as_("left_record_id"),
        side(False).as_("right_record_id"),
        exp.cast(exp.column("match_probability"), "DOUBLE").as_("match_probability"),
        exp.cast(exp.column("match_weight"), "DOUBLE").as_("match_weight"),
        exp.Literal.string("splink").as_("matched_by"),
    ).from_(predictions)
    query: exp.Query = splink_rows
    if nhs is not None:
        scored = splink_rows.subquery("s")
        kept = (  # Splink's links that the NHS number stage has not made already
            exp.select(*[_col("s", n) for n in _PAIRS_SCHEMA.names])
            .from_(scored)
            .join(
                exp.to_table(_NHS_PAIRS).as_("n"),
                on=exp.and_(
                    exp.EQ(this=_col("s", "left_record_id"), expression=_col("n", "record_id_l")),
                    exp.EQ(this=_col("s", "right_record_id"), expression=_col("n", "record_id_r")),
                ),
                join_type="left",
            )
            .where(_col("n", "record_id_l").is_(exp.null()))
        )
        by_nhs = exp.select(
            exp.column("record_id_l").as_("left_record_id"),
            exp.column("record_id_r").as_("right_record_id"),
            exp.cast(exp.Literal.number(1), "DOUBLE").as_("match_probability"),
            exp.cast(exp.null(), "DOUBLE").as_("match_weight"),
            exp.Literal.string("nhs_number").as_("matched_by"),
        ).from_(_NHS_PAIRS)
        query = exp.union(kept, by_nhs, distinct=False)
    rows = engine.execute(
        exp.select(*[exp.column(n) for n in _PAIRS_SCHEMA.names])
        .from_(query.subquery("p"))
        .order_by("left_record_id", "right_record_id")
    )
    return rows.cast(_PAIRS_SCHEMA)


#: The scored pairs `link_sources` returns, one row a pair of source records.
SOURCE_PAIRS_SCHEMA = PAIRS_SCHEMA
_NHS_EVIDENCE = "same valid NHS number; birth date, a name and sex agree"


def _evidence(creator_comparisons: list[Any]) -> exp.Func:
    """Each pair's comparison levels in words, from Splink's gamma_ columns: the level's own
    label, 'COLUMN missing' or 'COLUMN differs'."""
    parts: list[exp.Expression] = []
    for built in creator_comparisons:
        # Levels and their labels are the same in every dialect; only the SQL differs.
        comparison = built.get_comparison("duckdb")
        gamma = exp.column(f"gamma_{comparison.output_column_name}")
        name = comparison.output_column_name.removesuffix("_key")  # nhs_number_key
        case = exp.case()
        for level in comparison.comparison_levels:
            value = level.comparison_vector_value
            if level.is_null_level:
                text = f"{name} missing"
            elif value == 0:
                text = f"{name} differs"
            else:
                text = level.label_for_charts.replace("nhs_number_key", "nhs_number")
            case = case.when(
                exp.EQ(this=gamma, expression=exp.Literal.number(value)), exp.Literal.string(text)
            )
        parts.append(case)
    return exp.func("concat_ws", exp.Literal.string("; "), *parts)


def combine_sources(sources: Sequence[tuple[str, Extract]]) -> Extract:
    """The records of several sources as one extract whose `record_id` is the source's
    position, a colon and the source's own record_id (unique across sources). Sources may lack
    identity columns others have (their values are missing); all compare the same extra
    columns."""
    if not sources:
        raise JoinedupError("give at least one source extract")
    compare = sources[0][1].compare_columns
    tables = []
    for position, (_, extract) in enumerate(sources):
        if extract.compare_columns != compare:
            raise JoinedupError(f"{extract.path}: every source must compare the same columns")
        ids = extract.records.column("record_id")
        keys = pc.binary_join_element_wise(pa.scalar(str(position)), ids, ":")
        tables.append(extract.records.set_column(0, "record_id", keys))
    present = {c for _, e in sources for c in e.identity_columns}
    return Extract(
        Path(", ".join(str(e.path) for _, e in sources)),
        pa.concat_tables(tables, promote_options="default"),
        tuple(c for c in IDENTITY_COLUMNS if c in present),
        compare,
    )


def link_sources(
    engine: Engine,
    sources: Sequence[tuple[str, Extract]],
    settings: LinkageSettings | None = None,
    review_threshold: float | None = None,
    progress: Progress = _quiet,
) -> pa.Table:
    """Every pair of records, within or across the named `sources`, that is linked or worth a
    look: the exact NHS number stage's pairs (`matched_by` nhs_number, probability 1) and
    Splink's pairs at or above `review_threshold` (default: the link threshold), each with
    Splink's match weight and its comparison levels in words (`evidence`). Deciding which
    pairs link is left to the caller (the master person index)."""
    settings = settings or LinkageSettings()
    floor = settings.threshold if review_threshold is None else review_threshold
    names = [name for name, _ in sources]
    combined = combine_sources(sources)
    engine.load(_RECORDS, combined.records)
    progress("stage 1: exact NHS number")
    nhs = nhs_number_pairs(_RECORDS, _RECORDS, combined.identity_columns, dedupe=True)
    _, linker = _linker(
        engine, [(_RECORDS, "records")], "dedupe_only", combined, settings, keep_levels=True
    )
    _train(linker, settings, combined, progress, engine, [_RECORDS])
    progress("stage 2: scoring blocked pairs with Splink")
    predictions = linker.inference.predict(threshold_match_probability=floor)
    evidence = _evidence(comparisons(combined.identity_columns, combined.compare_columns))
    scored = exp.select(
        exp.column("record_id_l"),
        exp.column("record_id_r"),
        exp.cast(exp.column("match_probability"), "DOUBLE").as_("match_probability"),
        exp.cast(exp.column("match_weight"), "DOUBLE").as_("match_weight"),
        evidence.as_("evidence"),
    ).from_(exp.to_table(predictions.physical_name))
    if nhs is None:
        query: exp.Query = exp.select(
            exp.column("record_id_l").as_("left_key"),
            exp.column("record_id_r").as_("right_key"),
            exp.column("match_probability"),
            exp.column("match_weight"),
            exp.Literal.string("splink").as_("matched_by"),
            exp.column("evidence"),
        ).from_(scored.subquery("s"))
    else:
        by_nhs = exp.not_(_col("n", "record_id_l").is_(exp.null()))
        query = (
            exp.select(
                exp.func("coalesce", _col("s", "record_id_l"), _col("n", "record_id_l")).as_(
                    "left_key"
                ),
                exp.func("coalesce", _col("s", "record_id_r"), _col("n", "record_id_r")).as_(
                    "right_key"
                ),
                exp.case()
                .when(by_nhs, exp.cast(exp.Literal.number(1), "DOUBLE"))
                .else_(_col("s", "match_probability"))
                .as_("match_probability"),
                _col("s", "match_weight"),
                exp.case()
                .when(by_nhs, exp.Literal.string("nhs_number"))
                .else_(exp.Literal.string("splink"))
                .as_("matched_by"),
                exp.func("coalesce", _col("s", "evidence"), exp.Literal.string(_NHS_EVIDENCE)).as_(
                    "evidence"
                ),
            )
            .from_(scored.subquery("s"))
            .join(
                nhs.subquery("n"),
                on=exp.and_(
                    exp.EQ(this=_col("s", "record_id_l"), expression=_col("n", "record_id_l")),
                    exp.EQ(this=_col("s", "record_id_r"), expression=_col("n", "record_id_r")),
                ),
                join_type="full outer",
            )
        )
    rows = engine.execute(
        exp.select("*").from_(query.subquery("p")).order_by("left_key", "right_key")
    )
    return _split_keys(rows, names)


def _split_keys(rows: pa.Table, names: list[str]) -> pa.Table:
    """Turn combined keys (position:record_id) back into a source name and record_id."""
    columns: dict[str, Any] = {}
    for side in ("left", "right"):
        parts = pc.split_pattern(rows.column(f"{side}_key"), ":", max_splits=1)
        position = pc.cast(pc.list_element(parts, 0), pa.int64())
        columns[f"{side}_source"] = pc.take(pa.array(names, pa.string()), position)
        columns[f"{side}_record_id"] = pc.list_element(parts, 1)
    for name in ("match_probability", "match_weight", "matched_by", "evidence"):
        columns[name] = rows.column(name)
    return pa.table(columns).select(SOURCE_PAIRS_SCHEMA.names).cast(SOURCE_PAIRS_SCHEMA)
