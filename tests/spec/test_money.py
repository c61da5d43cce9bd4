"""Money splits exactly: the parts are whole pence and always sum to the whole."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joinedup.errors import InputError
from joinedup.finance.money import pence, pounds, split

WEIGHTS = st.dictionaries(
    st.text(alphabet="ABCDEFGH", min_size=1, max_size=3),
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    min_size=1,
    max_size=12,
).filter(lambda w: sum(w.values()) > 0)


@given(total=st.integers(min_value=0, max_value=10**14), weights=WEIGHTS)
def test_parts_sum_to_the_whole_and_are_within_a_penny_of_their_share(
    total: int, weights: dict[str, float]
) -> None:
    parts = split(total, weights)
    assert sum(parts.values()) == total
    whole = sum(weights.values())
    for key, part in parts.items():
        assert abs(part - total * weights[key] / whole) < 1 + 1e-6 * total


def test_a_hand_worked_split() -> None:
    # £100.00 three ways: 3333.33p each, one penny left over goes to the first key in order.
    assert split(10_000, {"b": 1, "a": 1, "c": 1}) == {"a": 3334, "b": 3333, "c": 3333}
    # 2:1 of 100p: 66.67p and 33.33p, the larger remainder (0.67) takes the spare penny.
    assert split(100, {"x": 2, "y": 1}) == {"x": 67, "y": 33}


def test_pounds_and_pence_are_exact() -> None:
    assert pence("1234.56") == 123_456
    assert pounds(123_456) == Decimal("1234.56")
    with pytest.raises(InputError, match="whole pence"):
        pence("0.001")


def test_bad_weights_are_refused_with_the_reason() -> None:
    with pytest.raises(InputError, match="negative weight for a"):
        split(100, {"a": -1, "b": 2})
    with pytest.raises(InputError, match="sum to zero"):
        split(100, {"a": 0})
