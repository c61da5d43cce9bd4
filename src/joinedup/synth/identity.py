"""Who each synthetic person is to the services that care for them: given and family name, full
date of birth and postcode, held only in the identifiable `identity` table.

Names come from Faker's `en_GB` word lists (ONS first names by sex, surnames weighted by how
common they are); the lists are read once and drawn from with NumPy, never one Faker call per
person. A postcode is the person's registered practice's postcode district with a sector and
unit of its own, so the patients of a practice share a district as neighbours do. Every draw
uses a random stream of its own, derived from (seed, chunk), so adding identity left every other
table exactly as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker.providers.person.en_GB import Provider as _EnGbPerson
from numpy.typing import NDArray

from joinedup.synth import columns as col
from joinedup.synth.cohort import FEMALE, Cohort

#: Letters a postcode's unit uses: never C, I, K, M, O or V (Royal Mail's address standard).
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
#: Stream number that separates identity's random draws from the chunk's main stream.
_IDENTITY_STREAM = 1


@dataclass(frozen=True)
class NameLists:
    """Faker's en_GB person names as arrays: each draw is an index into `given` or `family`."""

    given: list[str]  # female names, then male names not already listed
    female: NDArray[np.int32]  # indices into `given` of the female first names
    male: NDArray[np.int32]
    family: list[str]
    family_cdf: NDArray[np.float64]  # cumulative share of each surname


@functools.cache
def name_lists() -> NameLists:
    """Faker's en_GB first names (one list per sex, equally likely) and surnames (with
    Faker's relative frequencies), read once per process."""
    female = list(dict.fromkeys(_EnGbPerson.first_names_female))
    male = list(dict.fromkeys(_EnGbPerson.first_names_male))
    given = female + [name for name in male if name not in set(female)]
    position = {name: i for i, name in enumerate(given)}
    surnames = _EnGbPerson.last_names
    family = list(surnames)
    weights = np.asarray([float(surnames[name]) for name in family])
    return NameLists(
        given=given,
        female=np.asarray([position[n] for n in female], np.int32),
        male=np.asarray([position[n] for n in male], np.int32),
        family=family,
        family_cdf=np.cumsum(weights) / weights.sum(),
    )


def identity_columns(
    c: Cohort, practice_district: Sequence[str], seed: int, chunk: int
) -> dict[str, pa.Array]:
    """given_name, family_name, birth_date and postcode for a chunk's people (base population
    first, then babies, as `Cohort` orders them). Babies take their mother's family name and
    postcode; birth_date is the day the population model drew, so it agrees with
    person.birth_year/birth_month and never falls after the death or the end of the history."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk, _IDENTITY_STREAM]))
    n = len(c)
    names = name_lists()
    female = c.sex == FEMALE
    pick = rng.random(n)
    given = np.where(
        female,
        names.female[(pick * len(names.female)).astype(np.int64)],
        names.male[(pick * len(names.male)).astype(np.int64)],
    )
    family = np.searchsorted(names.family_cdf, rng.random(n), side="right")
    family = np.minimum(family, len(names.family) - 1)
    sector = rng.integers(0, 10, n)
    unit = rng.integers(0, len(UNIT_LETTERS), (n, 2))
    baby = np.flatnonzero(c.mother >= 0)
    family[baby] = family[c.mother[baby]]
    sector[baby] = sector[c.mother[baby]]
    unit[baby] = unit[c.mother[baby]]
    return {
        "given_name": col.coded(given, names.given),
        "family_name": col.coded(family, names.family),
        "birth_date": col.dates(c.birth_day),
        "postcode": _postcodes(c.practice, practice_district, sector, unit),
    }


def _postcodes(
    practice: NDArray[np.int32],
    practice_district: Sequence[str],
    sector: NDArray[np.int64],
    unit: NDArray[np.int64],
) -> pa.Array:
    """Postcodes as `<district> <sector><unit>`, built from byte buffers with no Python string
    per person."""
    n = len(practice)
    letters = np.frombuffer(UNIT_LETTERS.encode(), np.uint8)
    inward = np.empty((n, 3), np.uint8)
    inward[:, 0] = ord("0") + sector
    inward[:, 1:] = letters[unit]
    offsets = np.arange(0, 3 * n + 1, 3, dtype=np.int32)
    inward_text = pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(inward.tobytes())]
    )
    outward = pc.take(pa.array(list(practice_district), pa.string()), pa.array(practice))
    return pc.binary_join_element_wise(outward, inward_text, " ")
