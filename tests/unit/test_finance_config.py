"""Finance settings are typed and checked: a file that does not add up is refused with the
field and the reason, and what `joinedup finance config` writes reads back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.finance.config import dump_config, load_config, parse_config
from joinedup.finance.defaults import Profile, default_config

PLACES = {"E1": "Northby", "E2": "Southby"}
PROFILE = Profile(PLACES, {"E1": 600, "E2": 400})


def _text(**replace: str) -> str:
    text = dump_config(default_config(PROFILE))
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_written_settings_read_back_identical(tmp_path: Path) -> None:
    config = default_config(PROFILE)
    path = tmp_path / "finance.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config
    # 1,000 people at £2,000 a head, shared by head count.
    assert config.allocation.baselines_gbp == {"E1": 1_200_000, "E2": 800_000}


def test_baselines_that_do_not_reconcile_to_their_total_are_refused() -> None:
    reason = (
        r"baselines_gbp sum to £2,000,001\.00, not the baseline_total_gbp of £2,000,000\.00 "
        r"\(a difference of £1\.00\)"
    )
    with pytest.raises(InputError, match=reason):
        parse_config(_text(**{"E1: 1200000": "E1: 1200001"}), "f.yaml")


def test_fractions_of_a_penny_are_refused_with_the_field() -> None:
    with pytest.raises(InputError, match=r"allocation\.baselines_gbp\.E1: .*fractions of a penny"):
        parse_config(_text(**{"E1: 1200000": "E1: 1200000.001"}))


def test_years_out_of_order_are_refused() -> None:
    with pytest.raises(
        InputError, match=r"years\.0\.year: 2027/28 out of order.*should be 2026/27"
    ):
        parse_config(_text(**{"year: 2026/27": "year: 2027/28"}))


def test_a_badly_written_year_is_refused() -> None:
    with pytest.raises(InputError, match=r"baseline_year: '2025/27': write 2025/26"):
        parse_config(_text(**{"baseline_year: 2025/26": "baseline_year: 2025/27"}))


def test_an_unknown_place_is_refused_with_the_places_there_are() -> None:
    config = parse_config(_text(**{"E2:": "E9:"}))
    with pytest.raises(InputError, match=r"baselines_gbp\.E9: unknown code 'E9'; the footprint "
                       r"has E1 \(Northby\), E2 \(Southby\).*no baseline for E2"):  # fmt: skip
        config.check_footprint(PLACES, {}, "f.yaml")


def test_unknown_keys_and_bad_yaml_are_refused() -> None:
    with pytest.raises(InputError, match=r"allocation\.pace\.speed: Extra inputs"):
        parse_config(_text(**{"  pace:\n": "  pace:\n    speed: 2\n"}))
    with pytest.raises(InputError, match=r"f\.yaml:\d+: not valid YAML"):
        parse_config("allocation: [unclosed", "f.yaml")


def test_a_what_if_scenario_must_name_a_known_segment_and_activity() -> None:
    base = _text()
    with pytest.raises(InputError, match=r"what_if\.0\.segment: unknown segment 'frail'"):
        parse_config(base + "what_if:\n- {name: a, kind: change, activity_type: "
                     "emergency_admission, change: -0.1, segment: frail}\n")  # fmt: skip
    with pytest.raises(InputError, match=r"unknown activity type 'admissions'"):
        parse_config(base + "what_if:\n- {name: a, kind: change, activity_type: admissions, "
                     "change: -0.1}\n")  # fmt: skip
