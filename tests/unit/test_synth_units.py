"""Unit: the small exact pieces the synthetic generator is built from."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from joinedup.synth.cohort import person_ids
from joinedup.synth.columns import pence_to_gbp
from joinedup.synth.generator import nhs_numbers
from joinedup.synth.world import allocate

# DECIMAL(12,2) holds up to 9,999,999,999.99 pounds.
MAX_PENCE = 10**12 - 1


# --- allocate: practice list sizes into whole people ----------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(min_value=0, max_value=5_000_000),
    weights=st.lists(
        st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=60,
    ),
)
def test_allocate_splits_the_total_exactly_and_fairly(total: int, weights: list[float]) -> None:
    w = np.asarray(weights)
    parts = allocate(total, w)
    assert parts.dtype.kind == "i"
    assert int(parts.sum()) == total  # no person lost or invented
    assert (parts >= 0).all()
    exact = w / w.sum() * total
    assert np.abs(parts - exact).max() < 1


def test_allocate_follows_list_sizes() -> None:
    parts = allocate(1_000, np.asarray([3_000.0, 1_000.0, 1_000.0]))
    assert parts.tolist() == [600, 200, 200]
    # Largest remainders get the spare people: 10 into thirds is 4, 3, 3 in some order.
    assert sorted(allocate(10, np.ones(3)).tolist()) == [3, 3, 4]


# --- NHS numbers ---------------------------------------------------------------------------
def _valid(number: int) -> bool:
    text = str(number)
    if len(text) != 10:
        return False
    total = sum(int(d) * w for d, w in zip(text[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(text[9])


def test_nhs_numbers_are_unique_valid_and_never_real() -> None:
    numbers = nhs_numbers(np.arange(100_001, dtype=np.int64))
    assert len(numbers) == 100_001
    assert len(np.unique(numbers)) == len(numbers)
    text = [str(n) for n in numbers.tolist()]
    assert all(len(t) == 10 and t.startswith("9") for t in text)
    invalid = [t for t in text if not _valid(int(t))]
    assert not invalid, f"{len(invalid)} fail Modulus 11, e.g. {invalid[:5]}"


def test_nhs_numbers_depend_only_on_the_person_index() -> None:
    # Chunks number their own people: person 123,456 gets the same number in any chunk.
    everyone = nhs_numbers(np.arange(150_000, dtype=np.int64))
    some = np.asarray([0, 7, 99_999, 123_456, 149_999], dtype=np.int64)
    assert nhs_numbers(some).tolist() == everyone[some].tolist()


# --- Pseudonymous person ids ---------------------------------------------------------------
def test_person_ids_are_injective_on_a_large_range() -> None:
    index = np.concatenate(
        [np.arange(1_500_000, dtype=np.int64), np.arange(10**11, 10**11 + 500_000, dtype=np.int64)]
    )
    ids = person_ids(index)
    assert len(np.unique(ids)) == len(index)
    assert ids.min() >= 0
    assert ids.max() < 1 << 40


def test_person_ids_hide_the_generation_order() -> None:
    ids = person_ids(np.arange(10_000, dtype=np.int64))
    assert not (np.diff(ids) > 0).all()
    assert not (np.diff(ids) < 0).all()


@given(st.sets(st.integers(min_value=0, max_value=(1 << 40) - 1), min_size=2, max_size=200))
def test_different_people_never_share_an_id(indices: set[int]) -> None:
    ids = person_ids(np.asarray(sorted(indices), dtype=np.int64))
    assert len(set(ids.tolist())) == len(indices)


# --- Money ---------------------------------------------------------------------------------
@given(st.lists(st.integers(min_value=-MAX_PENCE, max_value=MAX_PENCE), max_size=100))
def test_pence_become_exact_pounds(pence: list[int]) -> None:
    array = pence_to_gbp(np.asarray(pence, dtype=np.int64))
    assert array.type == pa.decimal128(12, 2)
    assert array.to_pylist() == [Decimal(p).scaleb(-2) for p in pence]


def test_pence_edge_values() -> None:
    pence = np.asarray([0, 1, -1, 99, -99, 100, -100, 123_456, -123_456], dtype=np.int64)
    got = pence_to_gbp(pence).to_pylist()
    assert [str(v) for v in got] == [
        "0.00", "0.01", "-0.01", "0.99", "-0.99", "1.00", "-1.00", "1234.56", "-1234.56",
    ]  # fmt: skip
    # Summing in Arrow keeps every penny.
    assert pc.sum(pence_to_gbp(pence)).as_py() == Decimal("0.00")
