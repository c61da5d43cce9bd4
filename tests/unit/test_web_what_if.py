"""The dashboard's what-if runs: a scenario checked field by field with a message a person can
act on, at most WHAT_IF_RUNS at once (the rest refused, not queued), and a repeated scenario
answered from the result kept."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.web import finance
from joinedup.web.finance import WHAT_IF_RUNS, WhatIfBusyError, WhatIfRequest, checked, run_what_if


class Board:
    """Only what the checks ask of the dashboard: the places."""

    def place_names(self) -> dict[str, str]:
        return {"E1": "Riverside City"}


def test_a_scenario_is_checked_field_by_field() -> None:
    board: Any = Board()
    got = checked(board, "E1", "frailty_dementia", "emergency_admission", " -10.0% ")
    assert got == WhatIfRequest(
        place_code="E1", segment="frailty_dementia", activity_type="emergency_admission",
        change_percent=Decimal("-10"),
    )  # fmt: skip
    assert checked(board, "", "", "day_case", "\u22122.5").change_percent == Decimal("-2.5")
    bad = {
        ("E9", "", "emergency_admission", "-10"): ("place", "'E9' is not a place of this ICS"),
        ("", "frail", "emergency_admission", "-10"): ("segment", "'frail' is not a segment"),
        ("", "", "admissions", "-10"): ("activity", "'admissions' is not an activity type"),
        ("", "", "day_case", "ten"): ("change", "a number of percent, like -10; got 'ten'"),
        ("", "", "day_case", "NaN"): ("change", "a number of percent"),
        ("", "", "day_case", "-95"): ("change", "between -90% and +100%; got -95%"),
        ("", "", "day_case", "1e9"): ("change", "between -90% and +100%"),
        ("", "", "day_case", "-10.25"): ("change", "to one decimal place; got -10.25%"),
        ("", "", "day_case", "0"): ("change", "0% changes nothing"),
    }
    for (place, segment, activity, change), (field, message) in bad.items():
        with pytest.raises(InputError) as err:
            checked(board, place, segment, activity, change)
        assert err.value.where == field and message in err.value.reason, err.value


def test_runs_beyond_the_limit_are_refused_and_repeats_are_kept() -> None:
    board: Any = Board()
    scenario = WhatIfRequest(change_percent=Decimal("-10"))
    runner = finance._runner(board)
    for _ in range(WHAT_IF_RUNS):
        assert runner.slots.acquire(blocking=False)
    try:
        with pytest.raises(WhatIfBusyError, match="already under way"):
            run_what_if(board, scenario)
        # A result kept from an earlier run needs no slot.
        earlier: Any = finance.WhatIfResult.model_construct(scenario=scenario, kept=False)
        runner.kept[scenario.model_dump_json()] = earlier
        assert run_what_if(board, scenario).kept is True
    finally:
        for _ in range(WHAT_IF_RUNS):
            runner.slots.release()
