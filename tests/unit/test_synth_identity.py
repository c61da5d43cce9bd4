"""Unit: the synthetic population's identity data (names, date of birth, postcode), drawn from
Faker's en_GB lists with the generator's seeded NumPy streams."""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from faker.providers.person.en_GB import Provider as EnGbPerson

from joinedup.footprint import Footprint, Pcn, Place, Practice, System, default_footprint
from joinedup.footprint.reference import footprint_from_reference
from joinedup.reference.practices import load_practices_from_dir
from joinedup.synth.cohort import FEMALE, MALE
from joinedup.synth.generator import _cohort, chunk_tables, measure_calibration
from joinedup.synth.identity import identity_columns, name_lists
from joinedup.synth.shapes import shapes_for
from joinedup.synth.world import World, build_world, district, practice_districts

START = dt.date(2023, 4, 1)
YEARS = 3
#: A UK postcode: outward code (A9, A99, AA9, AA99, A9A, AA9A), a space, digit and two letters
#: from the unit alphabet (no C, I, K, M, O or V).
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}$")


@functools.cache
def _world(seed: int, people: int = 20_000) -> World:
    fp = default_footprint()
    world = build_world(fp, shapes_for(fp), people=people, seed=seed, start=START, years=YEARS)
    world.calibration = measure_calibration(START, YEARS)
    return world


@functools.cache
def _tables(seed: int) -> dict[str, pa.Table]:
    return chunk_tables(_world(seed), 0)


def _joined(seed: int) -> pa.Table:
    tables = _tables(seed)
    return tables["person"].join(tables["identity"], "person_id")


# --- Names --------------------------------------------------------------------------------
def test_first_names_come_from_fakers_list_for_the_persons_sex() -> None:
    people = _joined(1)
    sex = people["sex"].cast(pa.string()).to_numpy(zero_copy_only=False)
    given = people["given_name"].cast(pa.string()).to_numpy(zero_copy_only=False)
    female, male = set(EnGbPerson.first_names_female), set(EnGbPerson.first_names_male)
    assert all(name in female for name in given[sex == "female"])
    assert all(name in male for name in given[sex == "male"])
    # Every name in the lists is used, near equally: each list is read whole, not a sample.
    assert len(set(given[sex == "female"])) > 0.95 * len(female)
    assert len(set(given[sex == "male"])) > 0.95 * len(male)


def test_family_names_follow_fakers_frequencies() -> None:
    family = _joined(2)["family_name"].cast(pa.string()).to_numpy(zero_copy_only=False)
    weights = EnGbPerson.last_names
    total = sum(weights.values())
    assert set(family) <= set(weights)
    names, counts = np.unique(family, return_counts=True)
    share = dict(zip(names.tolist(), (counts / len(family)).tolist(), strict=True))
    for name in ("Smith", "Jones", "Taylor", "Brown", "Williams"):
        expected = weights[name] / total
        # Binomial standard error on about 20,500 people: 4 of them is a generous margin.
        margin = 4 * np.sqrt(expected * (1 - expected) / len(family))
        assert abs(share.get(name, 0.0) - expected) < margin, name
    rare = [n for n, w in weights.items() if w <= 0.03]
    common_share = share.get("Smith", 0.0)
    assert all(share.get(n, 0.0) < common_share for n in rare)


def test_name_lists_are_fakers_lists_read_once() -> None:
    lists = name_lists()
    assert lists is name_lists()
    assert [lists.given[i] for i in lists.female] == list(
        dict.fromkeys(EnGbPerson.first_names_female)
    )
    assert [lists.given[i] for i in lists.male] == list(dict.fromkeys(EnGbPerson.first_names_male))
    assert lists.family == list(EnGbPerson.last_names)
    assert lists.family_cdf[-1] == pytest.approx(1.0)


def test_babies_take_their_mothers_family_name_and_postcode() -> None:
    world = _world(3)
    c, _ = _cohort(world, 0)
    columns = identity_columns(c, world.practice_district, world.seed, 0)
    babies = np.flatnonzero(c.mother >= 0)
    assert len(babies) > 50
    family = columns["family_name"].cast(pa.string()).to_numpy(zero_copy_only=False)
    postcode = columns["postcode"].to_numpy(zero_copy_only=False)
    mothers = c.mother[babies]
    assert (family[babies] == family[mothers]).all()
    assert (postcode[babies] == postcode[mothers]).all()
    assert (c.sex[mothers] == FEMALE).all()
    assert set(np.unique(c.sex[babies]).tolist()) == {FEMALE, MALE}


# --- Date of birth ------------------------------------------------------------------------
def test_birth_date_agrees_with_the_person_and_their_life() -> None:
    people = _joined(4)
    birth = people["birth_date"]
    assert birth.null_count == 0
    assert pc.all(pc.equal(pc.year(birth), people["birth_year"])).as_py()
    assert pc.all(pc.equal(pc.month(birth), people["birth_month"])).as_py()
    died = people.filter(pc.is_valid(people["death_date"]))
    assert died.num_rows > 0
    assert pc.all(pc.less_equal(died["birth_date"], died["death_date"])).as_py()
    end = START.replace(year=START.year + YEARS) - dt.timedelta(days=1)
    assert pc.max(birth).as_py() <= end
    # Days spread across the month: every day 1..31 is someone's birthday.
    assert set(pc.day(birth).to_pylist()) == set(range(1, 32))


# --- Postcodes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("postcode", "expected"),
    [
        ("CH41 5LH", "CH41"),
        ("ch415lh", "CH41"),
        (" W1A  1AA ", "W1A"),
        ("M1 1AE", "M1"),
        ("EC1A 1BB", "EC1A"),
        ("CH41", None),
        ("CH41 LH5", None),
        ("1H41 5LH", None),
        ("", None),
        (None, None),
    ],
)
def test_district_is_the_outward_code_of_a_valid_postcode(
    postcode: str | None, expected: str | None
) -> None:
    assert district(postcode) == expected


def _practice(code: str, pcn: str, postcode: str | None) -> Practice:
    return Practice(code=code, name=code, place="E1", pcn=pcn, postcode=postcode, list_size=10)


def test_practices_without_a_postcode_borrow_their_pcns_district_or_get_a_fictional_one() -> None:
    fp = Footprint(
        system=System(code="S", name="S"),
        places=[Place(code="E1", name="E1")],
        pcns=[Pcn(code="N1", name="N1", place="E1"), Pcn(code="N2", name="N2", place="E1")],
        practices=[
            _practice("P1", "N1", "CH41 5LH"),
            _practice("P2", "N1", None),
            _practice("P3", "N1", "not a postcode"),
            _practice("P4", "N2", None),
        ],
    )
    assert practice_districts(fp) == ["CH41", "CH41", "CH41", "ZZ2"]
    fictional = practice_districts(default_footprint())
    assert all(re.fullmatch(r"ZZ[1-9][0-9]?", d) for d in fictional)
    assert "ZZ99" not in fictional  # the NHS pseudo-postcodes' district
    assert len(set(fictional)) == len(default_footprint().pcns)


@pytest.mark.reference
def test_a_real_icbs_people_live_in_their_practices_real_districts(reference_dir: Path) -> None:
    fp = footprint_from_reference(load_practices_from_dir(reference_dir), "QYG")
    districts = practice_districts(fp)
    own = [p.postcode.split()[0] for p in fp.practices if p.postcode]
    assert len(own) == len(fp.practices) > 300
    assert districts == own  # e.g. CH41 for a Birkenhead practice, SK9 for Wilmslow
    assert not any(d.startswith("ZZ") for d in districts)


def test_postcodes_are_valid_and_in_the_registered_practices_district() -> None:
    people = _joined(5)
    postcode = people["postcode"].to_pylist()
    assert all(POSTCODE.match(p) for p in postcode), [p for p in postcode if not POSTCODE.match(p)]
    world = _world(5)
    districts = dict(zip(world.practice_codes, world.practice_district, strict=True))
    practice = people["practice_code"].cast(pa.string()).to_pylist()
    assert all(
        p.split(" ")[0] == districts[code] for p, code in zip(postcode, practice, strict=True)
    )
    # People of one practice share its district but not, mostly, one address.
    assert len(set(postcode)) > 0.5 * len(postcode)


# --- Reproducible -------------------------------------------------------------------------
def test_same_seed_same_identity_and_another_seed_other_people() -> None:
    first = chunk_tables(_world(6), 0)["identity"]
    again = chunk_tables(_world(6), 0)["identity"]
    assert first.equals(again)
    other = chunk_tables(_world(7), 0)["identity"]
    for name in ("given_name", "family_name", "postcode"):
        a = first[name].cast(pa.string()).to_pylist()
        b = other[name].cast(pa.string()).to_pylist()
        same = sum(x == y for x, y in zip(a, b, strict=False))
        assert same < 0.2 * min(len(a), len(b)), name
