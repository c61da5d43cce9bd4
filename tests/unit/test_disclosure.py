"""Statistical disclosure control: small tables in, the published table out."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joinedup.disclosure import (
    DisclosurePolicy,
    Nesting,
    apply,
    control_count,
    describe,
    format_count,
    restate,
)
from joinedup.errors import ConfigurationError, InputError

DEFAULT = DisclosurePolicy()
NO_SECONDARY = DisclosurePolicy(secondary_suppression=False)


def published(table: pa.Table, column: str) -> list[Any]:
    return table.column(column).to_pylist()  # type: ignore[no-any-return]


def test_counts_1_to_7_are_suppressed_and_8_survives() -> None:
    table = pa.table({"contact_count": [1, 7, 8, 9]})
    out = apply(table, NO_SECONDARY, counts=["contact_count"])
    assert published(out, "contact_count") == [None, None, 10, 10]
    assert published(out, "contact_count_suppressed") == [True, True, False, False]


def test_zero_is_shown_unless_the_policy_suppresses_it() -> None:
    table = pa.table({"contact_count": [0, 20]})
    shown = apply(table, NO_SECONDARY, counts=["contact_count"])
    assert published(shown, "contact_count") == [0, 20]
    hidden = apply(
        table,
        DisclosurePolicy(suppress_zero=True, secondary_suppression=False),
        counts=["contact_count"],
    )
    assert published(hidden, "contact_count") == [None, 20]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(10, 10), (12, 10), (13, 15), (17, 15), (18, 20), (1234, 1235), (1232, 1230)],
)
def test_surviving_counts_round_to_the_nearest_5(raw: int, expected: int) -> None:
    out = apply(pa.table({"contact_count": [raw]}), DEFAULT, counts=["contact_count"])
    assert published(out, "contact_count") == [expected]


def test_halves_round_up() -> None:
    policy = DisclosurePolicy(round_to=10, secondary_suppression=False)
    out = apply(pa.table({"contact_count": [15, 25, 14]}), policy, counts=["contact_count"])
    assert published(out, "contact_count") == [20, 30, 10]


def test_counts_stay_integers_and_missing_values_stay_missing_not_suppressed() -> None:
    table = pa.table({"contact_count": pa.array([None, 42], type=pa.int32())})
    out = apply(table, DEFAULT, counts=["contact_count"])
    assert out.schema.field("contact_count").type == pa.int64()
    assert published(out, "contact_count") == [None, 40]
    assert published(out, "contact_count_suppressed") == [False, False]


def test_a_rate_is_nulled_with_its_numerator_and_otherwise_kept_unrounded() -> None:
    table = pa.table(
        {
            "place_code": ["P1", "P2"],
            "admission_count": [5, 123],
            "population_count": [1000, 2000],
            "admission_rate": [5.0, 61.5],
        }
    )
    out = apply(
        table,
        NO_SECONDARY,
        counts=["admission_count", "population_count"],
        rates={"admission_rate": ("admission_count", "population_count")},
    )
    assert published(out, "admission_count") == [None, 125]
    assert published(out, "admission_rate") == [None, 61.5]
    assert published(out, "admission_rate_suppressed") == [True, False]
    assert out.column_names == [
        "place_code",
        "admission_count",
        "admission_count_suppressed",
        "population_count",
        "population_count_suppressed",
        "admission_rate",
        "admission_rate_suppressed",
    ]


def test_a_rate_is_nulled_with_its_denominator() -> None:
    table = pa.table({"event_count": [50, 60], "denominator_count": [3, 900], "share": [0.9, 0.1]})
    out = apply(
        table,
        NO_SECONDARY,
        counts=["event_count", "denominator_count"],
        rates={"share": ("event_count", "denominator_count")},
    )
    assert published(out, "share") == [None, 0.1]


def test_rates_can_be_left_alone_when_the_policy_says_so() -> None:
    table = pa.table({"event_count": [3, 60], "share": [0.05, 0.95]})
    policy = DisclosurePolicy(rates_follow_counts=False, secondary_suppression=False)
    out = apply(table, policy, counts=["event_count"], rates={"share": ("event_count",)})
    assert published(out, "share") == [0.05, 0.95]


def test_secondary_suppression_takes_the_next_smallest_cell_in_the_same_group_only() -> None:
    table = pa.table(
        {
            "place_code": ["A", "A", "A", "B", "B", "B"],
            "age_band": ["0-17", "18-64", "65+", "0-17", "18-64", "65+"],
            "contact_count": [4, 30, 20, 11, 90, 60],
        }
    )
    out = apply(table, DEFAULT, counts=["contact_count"], group_by=["place_code"])
    # In A, 4 is suppressed and 20 (not 30) goes with it; B's 11 is smaller but in another
    # group, and B, having nothing suppressed, is published as it is.
    assert published(out, "contact_count") == [None, 30, None, 10, 90, 60]
    assert published(out, "contact_count_suppressed") == [True, False, True, False, False, False]


def test_without_groups_the_whole_table_is_one_group() -> None:
    table = pa.table({"place_code": ["A", "A", "B"], "contact_count": [4, 30, 11]})
    out = apply(table, DEFAULT, counts=["contact_count"])
    assert published(out, "contact_count") == [None, 30, None]


def test_two_suppressed_cells_need_no_secondary_suppression() -> None:
    table = pa.table({"contact_count": [4, 6, 20, 30]})
    out = apply(table, DEFAULT, counts=["contact_count"])
    assert published(out, "contact_count") == [None, None, 20, 30]


def test_a_secondary_suppression_also_hides_rates_built_on_it() -> None:
    table = pa.table({"event_count": [4, 30, 20], "rate": [0.1, 0.2, 0.3]})
    out = apply(table, DEFAULT, counts=["event_count"], rates={"rate": ("event_count",)})
    assert published(out, "rate") == [None, 0.2, None]


def test_groups_may_span_several_columns_and_be_null() -> None:
    table = pa.table(
        {
            "place_code": ["A", "A", "A", "A", None, None],
            "sex": ["F", "F", "M", "M", "F", "F"],
            "contact_count": [3, 50, 40, 45, 2, 100],
        }
    )
    out = apply(table, DEFAULT, counts=["contact_count"], group_by=["place_code", "sex"])
    assert published(out, "contact_count") == [None, None, 40, 45, None, None]


def test_the_input_table_is_not_changed() -> None:
    table = pa.table({"contact_count": [3, 12]})
    apply(table, DEFAULT, counts=["contact_count"])
    assert published(table, "contact_count") == [3, 12]


def test_rounding_never_publishes_a_small_number() -> None:
    # With round_to above the threshold, 8 would round to 6; it is suppressed instead.
    policy = DisclosurePolicy(round_to=6, secondary_suppression=False)
    out = apply(pa.table({"contact_count": [8, 10]}), policy, counts=["contact_count"])
    assert published(out, "contact_count") == [None, 12]
    # And a policy that hides zeros does not show a 1 rounded down to 0.
    policy = DisclosurePolicy(suppress_below=1, suppress_zero=True, secondary_suppression=False)
    out = apply(pa.table({"contact_count": [1, 3]}), policy, counts=["contact_count"])
    assert published(out, "contact_count") == [None, 5]


def test_format_count_marks_suppressed_values_and_separates_thousands() -> None:
    assert format_count(None, DEFAULT) == "*"
    assert format_count(5, DEFAULT) == "*"
    assert format_count(0, DEFAULT) == "0"
    assert format_count(1234567, DEFAULT) == "1,234,565"
    # Formatting an already-published count leaves it as it is.
    assert format_count(1235, DEFAULT) == "1,235"
    assert control_count(13, DEFAULT) == 15


def test_describe_is_one_line_for_a_footer() -> None:
    assert describe(DEFAULT) == "counts 1–7 suppressed, others rounded to the nearest 5"
    assert (
        describe(DisclosurePolicy(suppress_below=5, suppress_zero=True, round_to=1))
        == "counts 0–4 suppressed, others shown unrounded"
    )
    assert describe(DisclosurePolicy(suppress_below=1, round_to=10)) == (
        "no small counts suppressed, counts rounded to the nearest 10"
    )


def test_policy_rejects_round_to_below_1_with_the_field_and_reason() -> None:
    with pytest.raises(InputError, match=r"round_to: must be at least 1 .*got 0"):
        DisclosurePolicy.parse({"round_to": 0})


def test_policy_rejects_unknown_settings() -> None:
    with pytest.raises(InputError, match="suppress_under"):
        DisclosurePolicy.parse({"suppress_under": 5})


def test_policy_has_a_json_schema() -> None:
    schema = DisclosurePolicy.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["round_to"]["minimum"] == 1
    assert schema["properties"]["suppress_below"]["default"] == 8


def test_misnamed_columns_fail_with_the_names() -> None:
    table = pa.table({"contact_count": [10], "rate": [0.5]})
    with pytest.raises(ConfigurationError, match="contacts_count"):
        apply(table, DEFAULT, counts=["contacts_count"])
    with pytest.raises(ConfigurationError, match="must also be listed as count columns"):
        apply(table, DEFAULT, counts=["contact_count"], rates={"rate": ("rate",)})


def test_counts_must_be_whole_non_negative_numbers() -> None:
    with pytest.raises(InputError, match="whole-number"):
        apply(pa.table({"contact_count": [1.5]}), DEFAULT, counts=["contact_count"])
    with pytest.raises(InputError, match="negative"):
        apply(pa.table({"contact_count": [-1]}), DEFAULT, counts=["contact_count"])


def test_whole_decimal_sums_are_accepted_as_counts() -> None:
    # DuckDB's SUM over integers arrives as DECIMAL(38, 0).
    table = pa.table({"contact_count": pa.array([3, 12], type=pa.decimal128(38, 0))})
    out = apply(table, NO_SECONDARY, counts=["contact_count"])
    assert published(out, "contact_count") == [None, 10]


@st.composite
def tables_and_policies(draw: st.DrawFn) -> tuple[pa.Table, DisclosurePolicy]:
    rows = draw(st.integers(min_value=0, max_value=30))
    groups = draw(st.lists(st.sampled_from("ABCD"), min_size=rows, max_size=rows))
    counts = draw(
        st.lists(st.one_of(st.integers(0, 12), st.integers(0, 5000)), min_size=rows, max_size=rows)
    )
    policy = DisclosurePolicy(
        suppress_below=draw(st.integers(1, 12)),
        suppress_zero=draw(st.booleans()),
        round_to=draw(st.integers(1, 12)),
        secondary_suppression=draw(st.booleans()),
    )
    return pa.table({"place_code": pa.array(groups, pa.string()), "n_count": counts}), policy


@settings(max_examples=300, deadline=None)
@given(tables_and_policies())
def test_published_tables_never_show_small_or_unrounded_counts(
    case: tuple[pa.Table, DisclosurePolicy],
) -> None:
    table, policy = case
    out = apply(table, policy, counts=["n_count"], group_by=["place_code"])
    values = published(out, "n_count")
    flags = published(out, "n_count_suppressed")
    assert out.num_rows == table.num_rows
    for value, flag in zip(values, flags, strict=True):
        assert (value is None) == flag
        if value is not None:
            assert not 1 <= value < policy.suppress_below
            assert value % policy.round_to == 0
            assert value != 0 or not policy.suppress_zero
    if policy.secondary_suppression:
        cells: dict[str, list[bool]] = {}
        for group, flag in zip(published(out, "place_code"), flags, strict=True):
            cells.setdefault(group, []).append(flag)
        for group_flags in cells.values():
            assert sum(group_flags) != 1 or len(group_flags) == 1


def test_a_lone_suppressed_pcn_takes_a_second_pcn_of_its_place_with_it() -> None:
    """The issue's figures: place 49 = PCNs 17 + 15 + 11 + 6; with only 6 hidden, 49 minus the
    visible PCNs gave it back. Across the nesting a second PCN of that place goes too."""
    table = pa.table(
        {
            "level": ["place_code", *["pcn_code"] * 4, "place_code", "pcn_code"],
            "code": ["P1", "N1", "N2", "N3", "N4", "P2", "N5"],
            "n_count": [49, 17, 15, 11, 6, 30, 30],
        }
    )
    nesting = Nesting(
        "level",
        "code",
        "pcn_code",
        "place_code",
        {f"N{i}": "P1" for i in range(1, 5)} | {"N5": "P2"},
    )
    plain = apply(table, DEFAULT, counts=["n_count"], group_by=["level", "code"])
    assert published(plain, "n_count") == [50, 15, 15, 10, None, 30, 30]
    out = apply(table, DEFAULT, counts=["n_count"], group_by=["level", "code"], nested=[nesting])
    assert published(out, "n_count") == [50, 15, 15, None, None, 30, 30]


def test_a_parent_with_no_child_left_to_hide_is_hidden_itself() -> None:
    # A place of 40 with one PCN of 5 (hidden) and no other: 40 minus nothing gives the PCN
    # back, and with no second PCN to hide the place itself goes.
    policy = DisclosurePolicy(suppress_below=6)
    nesting = Nesting("level", "code", "pcn", "place", {"N": "P"})
    table = pa.table({"level": ["place", "pcn"], "code": ["P", "N"], "n_count": [40, 5]})
    out = apply(table, policy, counts=["n_count"], group_by=["level", "code"], nested=[nesting])
    assert published(out, "n_count") == [None, None]


def test_secondary_suppression_prefers_a_non_zero_cell() -> None:
    """Hiding a zero beside the lone hidden cell would leave the group total minus the rest
    equal to the hidden value."""
    out = apply(pa.table({"n_count": [4, 0, 20, 30]}), DEFAULT, counts=["n_count"])
    assert published(out, "n_count") == [None, 0, None, 30]


def test_nesting_must_name_columns_of_the_table() -> None:
    with pytest.raises(ConfigurationError, match="level"):
        apply(
            pa.table({"n_count": [1]}),
            DEFAULT,
            counts=["n_count"],
            nested=[Nesting("level", "code", "pcn", "place", "all")],
        )


def test_restate_puts_a_rate_on_the_published_counts() -> None:
    events, people = [406, 4, 0], [2362, 100, 50]
    rate = [e / p * 100 for e, p in zip(events, people, strict=True)]
    raw = pa.table({"events": events, "people": people, "rate": rate})
    shown = apply(
        raw, NO_SECONDARY, counts=["events", "people"], rates={"rate": ("events", "people")}
    )
    out = restate(raw, shown, {"rate": ("events", "people")}, digits=2)
    assert published(out, "rate") == [round(405 / 2360 * 100, 2), None, 0.0]
