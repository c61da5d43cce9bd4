"""The built-in footprint and the checks every footprint file goes through."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.footprint import (
    CollaborativeKind,
    Footprint,
    OrganisationType,
    PlaceProfile,
    default_footprint,
    footprint_from_reference,
    icb_codes,
)
from joinedup.reference import PracticeRecord


@pytest.fixture
def raw() -> dict[str, Any]:
    """The default footprint as plain JSON data, ready to be spoilt by a test."""
    data: dict[str, Any] = json.loads(default_footprint().model_dump_json())
    return data


def test_default_footprint_is_a_realistic_ics() -> None:
    fp = default_footprint()
    assert not fp.system.is_real
    assert 1_100_000 <= fp.population <= 1_300_000
    assert len(fp.places) == 5
    assert {p.profile for p in fp.places} == set(PlaceProfile) - {PlaceProfile.REFERENCE}
    assert 20 <= len(fp.pcns) <= 30
    assert all(30_000 <= size <= 50_000 for size in fp.pcn_population().values())
    assert 130 <= len(fp.practices) <= 170
    sizes = [p.list_size for p in fp.practices]
    assert min(sizes) >= 2_000 and max(sizes) <= 25_000
    assert 7_000 <= statistics.mean(sizes) <= 9_000
    assert any("fictional" in note.lower() for note in fp.notes)


def test_default_footprint_has_the_organisations_an_ics_needs() -> None:
    fp = default_footprint()
    count = {kind: len(fp.organisations_of(kind)) for kind in OrganisationType}
    assert count[OrganisationType.ICB] == 1
    assert 2 <= count[OrganisationType.ACUTE_TRUST] <= 3
    assert count[OrganisationType.COMMUNITY_TRUST] >= 1
    assert count[OrganisationType.MENTAL_HEALTH_TRUST] >= 1
    assert count[OrganisationType.AMBULANCE_TRUST] >= 1
    assert count[OrganisationType.LOCAL_AUTHORITY] == len(fp.places)
    assert count[OrganisationType.VOLUNTARY_SECTOR] >= 2
    vertical = [c for c in fp.collaboratives if c.kind is CollaborativeKind.VERTICAL]
    assert sorted(c.place or "" for c in vertical) == sorted(p.code for p in fp.places)
    assert sum(c.kind is CollaborativeKind.HORIZONTAL for c in fp.collaboratives) >= 2


def test_default_footprint_is_deterministic_and_fictional() -> None:
    first, second = default_footprint(), default_footprint()
    assert first == second
    assert all(p.code.startswith("E99") for p in first.places)
    assert all(p.code.startswith("U99") for p in first.pcns)
    assert all(p.code.startswith("Z") for p in first.practices)
    assert len({p.name for p in first.practices}) == len(first.practices)


def test_default_practices_lie_inside_their_place() -> None:
    fp = default_footprint()
    for place in fp.places:
        located = [
            (p.latitude, p.longitude)
            for p in fp.practices
            if p.place == place.code and p.latitude is not None and p.longitude is not None
        ]
        assert len(located) == sum(p.place == place.code for p in fp.practices)
        lats, lons = zip(*located, strict=True)
        # A place spans well under a degree: its practices cluster, they are not scattered.
        assert max(lats) - min(lats) < 0.5
        assert max(lons) - min(lons) < 1.0


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    fp = default_footprint()
    path = tmp_path / "nested" / "footprint.json"
    fp.save(path)
    assert Footprint.load(path) == fp


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "footprint.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_practice_naming_an_unknown_pcn_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["practices"][3]["pcn"] = "U99999"
    with pytest.raises(InputError) as caught:
        Footprint.load(_write(tmp_path, raw))
    assert "practices.3.pcn" in str(caught.value)
    assert "unknown PCN 'U99999'" in str(caught.value)
    assert str(tmp_path) in caught.value.where


def test_negative_list_size_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["practices"][5]["list_size"] = -10
    with pytest.raises(InputError, match=r"practices\.5\.list_size: .*greater than 0"):
        Footprint.load(_write(tmp_path, raw))


def test_missing_field_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["places"][2]["name"]
    with pytest.raises(InputError, match=r"places\.2\.name: Field required"):
        Footprint.load(_write(tmp_path, raw))


def test_unknown_field_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["pcns"][0]["colour"] = "blue"
    with pytest.raises(InputError, match=r"pcns\.0\.colour: Extra inputs are not permitted"):
        Footprint.load(_write(tmp_path, raw))


def test_invalid_json_is_refused_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "footprint.json"
    path.write_text('{"system": {"code": "QZZ",\n  "name": }', encoding="utf-8")
    with pytest.raises(InputError, match=r"footprint\.json:2:\d+: not valid JSON"):
        Footprint.load(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read footprint file"):
        Footprint.load(tmp_path / "absent.json")


def _record(code: str, lad: str, population: float, lat: float, lon: float) -> PracticeRecord:
    return PracticeRecord(
        practice_code=code,
        practice_name=f"Practice {code}",
        postcode=None,
        latitude=lat,
        longitude=lon,
        icb_code="QAA",
        icb_name="NHS Test ICB",
        lad_code=lad,
        ltla_name=f"Town {lad}",
        pcn_code=None,
        population=population,
        general_and_acute_wp=population,
        community_services_wp=population,
        mental_health_wp=population,
        maternity_wp=population,
        health_inequalities_wp=population,
        prescribing_wp=population,
        final_wp=population,
        primary_medical_care_wp=population,
        final_pmc_wp=population,
    )


def _grid_place() -> list[PracticeRecord]:
    """A 10 x 10 grid of 2,000-person practices (200k people) and one 12,000 village."""
    records = [
        _record(f"P{i:03d}", "E06000001", 2_000.0, 53.0 + (i // 10) * 0.01, -2.0 + (i % 10) * 0.01)
        for i in range(100)
    ]
    return [*records, _record("V001", "E06000002", 12_000.4, 54.0, -1.0)]


def test_neighbourhoods_are_balanced_and_cover_every_practice() -> None:
    records = _grid_place()
    fp = footprint_from_reference(records, "qaa")
    assert fp.system.code == "QAA" and fp.system.is_real
    assert [p.code for p in fp.places] == ["E06000001", "E06000002"]
    assert {p.profile for p in fp.places} == {PlaceProfile.REFERENCE}
    assert sorted(p.code for p in fp.practices) == sorted(r.practice_code for r in records)
    sizes = fp.pcn_population()
    town = [size for code, size in sizes.items() if code.startswith("E06000001")]
    assert len(town) == 5 and all(size == 40_000 for size in town)
    assert sizes["E06000002-N01"] == 12_000
    assert any("no PCN codes" in note for note in fp.notes)
    assert any("E06000002-N01" in note for note in fp.notes), "the small neighbourhood is reported"


def test_neighbourhoods_do_not_depend_on_row_order() -> None:
    records = _grid_place()
    assert footprint_from_reference(records, "QAA") == footprint_from_reference(
        list(reversed(records)), "QAA"
    )


def test_unknown_icb_lists_valid_codes() -> None:
    records = _grid_place()
    assert icb_codes(records) == ["QAA"]
    with pytest.raises(InputError, match=r"ICB 'QXX': no practices for this ICB.*QAA"):
        footprint_from_reference(records, "QXX")
