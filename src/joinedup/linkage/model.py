"""The probabilistic model: its settings, and the Splink comparisons and blocking rules built
from the columns an extract has.

Each identity column is compared in levels from agreeing exactly to disagreeing; Splink
weighs each level by m (how often true matches fall in it, estimated by expectation
maximisation) over u (how often non-matches do, estimated from random pairs). Everything is
built from Splink's comparison library, so the SQL each engine runs is Splink's own.
"""

from __future__ import annotations

from typing import Any, Literal

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from pydantic import BaseModel, ConfigDict, Field
from splink import SettingsCreator, block_on

#: Match probability at or above which a pair is linked (see docs/linkage.md for how it was
#: chosen: on FEBRL it keeps precision above 0.99).
DEFAULT_THRESHOLD = 0.9
DEFAULT_SEED = 42


class LinkageSettings(BaseModel):
    """How a linkage run decides; every field has a documented default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(
        DEFAULT_THRESHOLD,
        gt=0,
        lt=1,
        description="Match probability at or above which two records are linked.",
    )
    seed: int = Field(DEFAULT_SEED, description="Seed for the random pairs that estimate u.")
    u_max_pairs: int = Field(
        2_000_000, ge=10_000, description="Random record pairs sampled to estimate u."
    )
    em_max_iterations: int = Field(
        25, ge=1, description="Most iterations of expectation maximisation for m."
    )
    wide_rule_pairs_per_record: float = Field(
        4.0,
        ge=0,
        description="A wide blocking rule (birth date alone; Soundex codes together or with the "
        "birth year) is used only while its blocks hold at most this many pairs per record; "
        "past it the tighter rules alone block, so pairs grow with the records, not their "
        "square.",
    )
    prior_recall: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Assumed recall of exact name and birth date, used to estimate how likely "
        "two random records are to match.",
    )


def _name(column: str, soundex_column: str) -> cl.CustomComparison:
    return cl.CustomComparison(
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column),
            cll.JaroWinklerLevel(column, 0.92),
            cll.JaroWinklerLevel(column, 0.88),
            cll.ExactMatchLevel(soundex_column),
            cll.JaroWinklerLevel(column, 0.7),
            cll.ElseLevel(),
        ],
        output_column_name=column,
        comparison_description=f"{column}: exact, Jaro-Winkler 0.92 / 0.88, Soundex, 0.7",
    )


def _birth_date() -> cl.CustomComparison:
    return cl.CustomComparison(
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.ColumnsReversedLevel("birth_date", "birth_date_transposed"),
            cll.DamerauLevenshteinLevel("birth_date", 1),
            cll.AbsoluteDateDifferenceLevel(
                "birth_date", input_is_string=True, threshold=1, metric="year"
            ),
            cll.ElseLevel(),
        ],
        output_column_name="birth_date",
        comparison_description="birth_date: exact, day and month swapped, one digit, a year",
    )


def _postcode() -> cl.CustomComparison:
    return cl.CustomComparison(
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel("postcode_district"),
            cll.ElseLevel(),
        ],
        output_column_name="postcode",
        comparison_description="postcode: exact, same district",
    )


def _nhs_number() -> cl.CustomComparison:
    """A mistyped NHS number that still passes Modulus 11 differs from the true one in a digit
    and its check digit (two characters); another person's number, a twin's included, differs
    in nearly all ten. Keeping the two apart lets EM learn that true matches almost never
    carry wholly different numbers, which is the evidence that keeps twins apart."""
    return cl.CustomComparison(
        comparison_levels=[
            cll.NullLevel("nhs_number_key"),
            cll.ExactMatchLevel("nhs_number_key"),
            cll.DamerauLevenshteinLevel("nhs_number_key", 2),
            cll.ElseLevel(),
        ],
        output_column_name="nhs_number_key",
        comparison_description="nhs_number_key: exact, a mistyped digit (two characters)",
    )


def _exact(column: str) -> cl.CustomComparison:
    return cl.CustomComparison(
        comparison_levels=[cll.NullLevel(column), cll.ExactMatchLevel(column), cll.ElseLevel()],
        output_column_name=column,
    )


def comparisons(columns: tuple[str, ...], compare: tuple[str, ...]) -> list[Any]:
    """Splink comparisons for the identity `columns` an extract has, then the extra columns
    `compare` as strings (exact, Jaro-Winkler 0.92, 0.8)."""
    built: list[Any] = []
    for column in columns:
        if column == "given_name":
            built.append(_name("given_name", "given_soundex"))
        elif column == "family_name":
            built.append(_name("family_name", "family_soundex"))
        elif column == "birth_date":
            built.append(_birth_date())
        elif column == "postcode":
            built.append(_postcode())
        elif column == "nhs_number":
            # Only Modulus 11 valid numbers take part (the reader's nhs_number_key).
            built.append(_nhs_number())
        elif column == "sex":
            built.append(_exact("sex"))
    built.extend(cl.JaroWinklerAtThresholds(c, [0.92, 0.8]) for c in compare)
    return built


# Pairs are scored only where one of these agrees (those a record lacks are dropped). Each
# pairs a common key (a birth date, a Soundex code) with a second one, so that blocks stay
# small as the population grows.
_BLOCKING = (
    ("birth_date", "given_soundex"),
    ("birth_date", "family_soundex"),
    ("birth_date", "postcode_district"),
    ("family_soundex", "given_soundex", "birth_year"),
    ("postcode", "given_soundex"),
    ("postcode", "family_soundex"),
    ("postcode", "birth_year"),
    ("nhs_number_key",),
)
# Wider rules, each containing some of the pairs above and more: they find links where two
# keys are wrong at once (FEBRL's swapped names and a mistyped date), but their blocks grow
# with the population and the pairs with the square of a block. At 1,000,000 records they made
# 125 million pairs (the rules above, 3.5 million), so each is used only while its blocks hold
# at most `LinkageSettings.wide_rule_pairs_per_record` pairs per record.
_WIDE_BLOCKING = (
    ("birth_date",),
    ("family_soundex", "given_soundex"),
    ("family_soundex", "birth_year"),
    ("given_soundex", "birth_year"),
)
# Expectation maximisation runs once per rule; each estimates m for every column not in it.
# Twins living together (one family name, birth date and postcode; two given names and NHS
# numbers) are pairs EM takes for matches when it blocks on the birth date or the postcode
# alone: it then learns that true matches often differ in sex, NHS number and given name, and
# twins link. Under these rules twins never share a block (their given names and numbers
# differ), so m is learnt from true matches.
_TRAINING = (("nhs_number_key",), ("family_name", "given_name"), ("birth_date", "given_name"))
# Both names exactly is a small block on real names, but synthetic names (and a population's
# commonest) repeat, and its pairs grow with the square of the records: 8.5 million at 1,000,000
# records, most of EM's time. Past the wide rules' budget it trains within a birth year too.
_TRAINING_NARROWER: dict[tuple[str, ...], tuple[str, ...]] = {
    ("family_name", "given_name"): ("family_name", "given_name", "birth_year")
}
# Used only when the rules above leave a column untrained (no NHS number: nothing estimates the
# given name), in this order.
_TRAINING_FALLBACK = (("birth_date",), ("postcode",))
_COMPARED = ("given_name", "family_name", "birth_date", "sex", "postcode", "nhs_number_key")


def narrower_training(rule: tuple[str, ...], columns: set[str]) -> tuple[str, ...] | None:
    """The narrower training rule to use in place of `rule` when its blocks are too large, if
    there is one an extract with `columns` can use."""
    narrower = _TRAINING_NARROWER.get(rule)
    return narrower if narrower is not None and set(narrower) <= columns else None


def available(columns: set[str], rules: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    return [rule for rule in rules if set(rule) <= columns]


def blocking_columns(columns: set[str]) -> list[tuple[str, ...]]:
    """The blocking rules an extract with `columns` (cleaned and derived) can use."""
    return available(columns, _BLOCKING)


def wide_blocking_columns(columns: set[str]) -> list[tuple[str, ...]]:
    """The wider blocking rules an extract with `columns` could use, if their blocks are small
    enough (the caller counts them in the engine)."""
    return available(columns, _WIDE_BLOCKING)


def training_columns(columns: set[str]) -> list[tuple[str, ...]]:
    """The blocking rules expectation maximisation trains under, for these columns: those
    twins never share, then a fallback for each compared column they leave untrained."""
    rules = available(columns, _TRAINING)
    for fallback in available(columns, _TRAINING_FALLBACK):
        compared = {c for c in _COMPARED if c in columns}
        untrained = compared.intersection(*map(set, rules)) if rules else compared
        if untrained - set(fallback):
            rules.append(fallback)
    return rules


LinkType = Literal["dedupe_only", "link_only"]


def splink_settings(
    link_type: LinkType,
    columns: tuple[str, ...],
    compare: tuple[str, ...],
    table_columns: set[str],
    *,
    max_iterations: int = 25,
    wide_rules: list[tuple[str, ...]] | None = None,
) -> SettingsCreator:
    """Splink settings for a `link_type` ("dedupe_only" or "link_only") run, blocking also on
    `wide_rules` (those of `wide_blocking_columns` whose blocks are small enough). An extract
    with none of the identity columns blocks on each extra column agreeing exactly."""
    rules = [*(wide_rules or []), *blocking_columns(table_columns)] or [(c,) for c in compare]
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="record_id",
        comparisons=comparisons(columns, compare),
        blocking_rules_to_generate_predictions=[block_on(*rule) for rule in rules],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
        max_iterations=max_iterations,
    )
