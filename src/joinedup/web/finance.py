"""Finance: need, targets, pace of change, MHIS, budgets, the control total and risk share, and
what-if scenarios run from the page or the API.

A what-if run changes one activity type's volume for the people of a place, a segment or both,
refits need and shows each place's cost, need index, target and first-year allocation beside
the baseline, by the same `finance.pipeline.what_if` the `joinedup finance what-if` command
runs, on the settings of the warehouse's last finance run. Nothing is written: the warehouse
stays read-only. Runs are bounded (WHAT_IF_RUNS at once, the rest refused with 503) and the
last WHAT_IF_KEPT results are kept, so a repeated or linked scenario answers at once.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from joinedup.disclosure import control_count
from joinedup.disclosure import describe as describe_policy
from joinedup.errors import ConfigurationError, InputError
from joinedup.finance import pipeline as fp
from joinedup.finance.money import money_text, pounds
from joinedup.finance.whatif import (
    ACTIVITY_LABELS,
    SEGMENT_LABELS,
    ActivityChange,
    describe,
    people_in_scope,
)
from joinedup.web.access import User
from joinedup.web.dashboard import Dashboard
from joinedup.web.downloads import XLSX_MEDIA_TYPE, Column, Format, Table, respond
from joinedup.web.finance_tables import DOWNLOADS, SIGNS, finance_download, table_names
from joinedup.web.site import (
    access,
    allowed,
    api_user,
    cached_json,
    client,
    csrf_token,
    dashboard,
    figures,
    page_user,
    render,
)

router = APIRouter()

#: What-if runs at once per server; more are refused (503) rather than queued.
WHAT_IF_RUNS = 2
#: What-if results kept (most recently asked), so a repeated scenario costs nothing.
WHAT_IF_KEPT = 64
#: The activity change a page or API call may ask for, in percent.
CHANGE_MIN, CHANGE_MAX = Decimal(-90), Decimal(100)


class WhatIfBusyError(Exception):
    """Every what-if slot is taken."""


class WhatIfRequest(BaseModel):
    """A what-if scenario: one activity type's volume changed by a percentage, for everyone or
    the people of one place, one Bridges to Health segment, or both."""

    place_code: str | None = Field(None, description="Only the people of this place; none: all.")
    segment: str | None = Field(None, description="Only the people of this segment; none: all.")
    activity_type: str = Field("emergency_admission", description="The activity that changes.")
    change_percent: Decimal = Field(
        description="The change in that activity, in percent (-10 is 10% fewer), between "
        f"{CHANGE_MIN} and {CHANGE_MAX}, to one decimal place."
    )


class WhatIfPlace(BaseModel):
    """One place: baseline and scenario side by side (pounds, exact to the penny)."""

    place_code: str
    place_name: str
    baseline_cost_gbp: Decimal
    scenario_cost_gbp: Decimal
    cost_change_gbp: Decimal
    baseline_index: float
    scenario_index: float
    baseline_target_gbp: Decimal
    scenario_target_gbp: Decimal
    target_change_gbp: Decimal
    baseline_allocation_gbp: Decimal
    scenario_allocation_gbp: Decimal
    allocation_change_gbp: Decimal


class WhatIfResult(BaseModel):
    """What the scenario does to each place's cost, need index, target and allocation."""

    scenario: WhatIfRequest
    description: str = Field(description="The scenario in words, places and segments named.")
    financial_year: str = Field(description="The year of the target and allocation effects.")
    people_in_scope: int = Field(description="People whose activity changes (rounded).")
    places: list[WhatIfPlace]
    total: WhatIfPlace = Field(description="The system: every place summed.")
    seconds: float = Field(description="Time the run took (when first run, if kept).")
    kept: bool = Field(description="True when answered from a result kept from an earlier run.")
    run_id: str = Field(description="The finance run whose settings the scenario uses.")


class _Runner:
    """Bounded what-if runs and the results kept, for one served warehouse."""

    def __init__(self) -> None:
        self.slots = threading.BoundedSemaphore(WHAT_IF_RUNS)
        self.lock = threading.Lock()
        self.kept: OrderedDict[str, WhatIfResult] = OrderedDict()


_RUNNERS: WeakKeyDictionary[Dashboard, _Runner] = WeakKeyDictionary()
_RUNNERS_LOCK = threading.Lock()


def _runner(board: Dashboard) -> _Runner:
    with _RUNNERS_LOCK:
        found = _RUNNERS.get(board)
        if found is None:
            found = _RUNNERS[board] = _Runner()
        return found


def choices(board: Dashboard) -> dict[str, Any]:
    """What the form offers: places, segments and activity types, in words."""
    return {
        "places": board.place_names(),
        "segments": SEGMENT_LABELS,
        "activities": ACTIVITY_LABELS,
        "change_min": CHANGE_MIN,
        "change_max": CHANGE_MAX,
    }


def checked(
    board: Dashboard, place: str | None, segment: str | None, activity: str, change: str
) -> WhatIfRequest:
    """The scenario from a form or API body, or InputError naming the field and the fix."""
    places = board.place_names()
    if place and place not in places:
        raise InputError(
            "place", f"Choose a place from the list: {place!r} is not a place of this ICS"
        )
    if segment and segment not in SEGMENT_LABELS:
        raise InputError("segment", f"Choose a segment from the list: {segment!r} is not a segment")
    if activity not in ACTIVITY_LABELS:
        raise InputError(
            "activity", f"Choose an activity from the list: {activity!r} is not an activity type"
        )
    try:
        percent = Decimal(change.strip().replace("%", "").replace("\u2212", "-"))
    except InvalidOperation:
        percent = Decimal("NaN")
    if not percent.is_finite():
        raise InputError(
            "change", f"Give the activity change as a number of percent, like -10; got {change!r}"
        )
    if not CHANGE_MIN <= percent <= CHANGE_MAX:
        raise InputError(
            "change",
            f"The activity change must be between {CHANGE_MIN}% and +{CHANGE_MAX}%; got {percent}%",
        )
    if percent != percent.quantize(Decimal("0.1")):
        raise InputError("change", f"Give the activity change to one decimal place; got {percent}%")
    if percent == 0:
        raise InputError("change", "An activity change of 0% changes nothing: give another")
    percent = percent.quantize(Decimal("0.1"))
    if percent == percent.to_integral_value():
        percent = percent.quantize(Decimal(1))
    return WhatIfRequest(
        place_code=place or None, segment=segment or None, activity_type=activity,
        change_percent=percent,
    )  # fmt: skip


def _place(code: str, name: str, e: dict[str, int | float]) -> WhatIfPlace:
    def gbp(key: str) -> Decimal:
        return pounds(int(e[key]))

    return WhatIfPlace(
        place_code=code, place_name=name,
        baseline_cost_gbp=gbp("baseline_cost"), scenario_cost_gbp=gbp("scenario_cost"),
        cost_change_gbp=gbp("scenario_cost") - gbp("baseline_cost"),
        baseline_index=float(e["baseline_index"]), scenario_index=float(e["scenario_index"]),
        baseline_target_gbp=gbp("baseline_target"), scenario_target_gbp=gbp("scenario_target"),
        target_change_gbp=gbp("scenario_target") - gbp("baseline_target"),
        baseline_allocation_gbp=gbp("baseline_allocation"),
        scenario_allocation_gbp=gbp("scenario_allocation"),
        allocation_change_gbp=gbp("scenario_allocation") - gbp("baseline_allocation"),
    )  # fmt: skip


def _compute(board: Dashboard, scenario: WhatIfRequest) -> WhatIfResult:
    need, config = board.finance_need()
    driver = ActivityChange(
        name="dashboard",
        activity_type=scenario.activity_type,
        change=scenario.change_percent / 100,
        place=scenario.place_code,
        segment=scenario.segment,
    )
    if need.estimate is None:
        raise ConfigurationError("what-if needs need estimated from the population")
    scope = people_in_scope(need.estimate.cells, driver)
    policy = board.policy()
    shown = control_count(scope, policy) if scope else 0
    if not shown:
        raise InputError(
            "scenario",
            f"Fewer than {policy.suppress_below} people are in that place and segment, too few "
            "to show a what-if for: choose a wider group",
        )
    started = time.perf_counter()
    effects = fp.what_if(need, config, [driver])
    seconds = time.perf_counter() - started
    names = {e.place_code: e.place_name for e in effects}
    rows = [
        (e.place_code, e.place_name, {
            "baseline_cost": e.baseline_cost_pence, "scenario_cost": e.scenario_cost_pence,
            "baseline_index": e.baseline_index, "scenario_index": e.scenario_index,
            "baseline_target": e.baseline_target_pence, "scenario_target": e.scenario_target_pence,
            "baseline_allocation": e.baseline_allocation_pence,
            "scenario_allocation": e.scenario_allocation_pence,
        })
        for e in effects
    ]  # fmt: skip
    summed = {k: sum(int(r[2][k]) for r in rows) for k in rows[0][2] if not k.endswith("index")}
    total = _place("", "System", {**summed, "baseline_index": 1.0, "scenario_index": 1.0})
    return WhatIfResult(
        scenario=scenario,
        description=describe(driver, names),
        financial_year=config.allocation.years[0].year,
        people_in_scope=shown,
        places=[_place(code, name, e) for code, name, e in rows],
        total=total,
        seconds=round(seconds, 3),
        kept=False,
        run_id=str(board.finance()["run"].get("run_id", "")),
    )


def run_what_if(board: Dashboard, scenario: WhatIfRequest) -> WhatIfResult:
    """The scenario's result, kept or run now; WhatIfBusyError when every slot is taken."""
    runner = _runner(board)
    key = scenario.model_dump_json()
    with runner.lock:
        found = runner.kept.get(key)
        if found is not None:
            runner.kept.move_to_end(key)
            return found.model_copy(update={"kept": True})
    if not runner.slots.acquire(blocking=False):
        raise WhatIfBusyError(
            f"{WHAT_IF_RUNS} what-if runs are already under way: try again in a few seconds"
        )
    try:
        result = _compute(board, scenario)
    finally:
        runner.slots.release()
    with runner.lock:
        runner.kept[key] = result
        while len(runner.kept) > WHAT_IF_KEPT:
            runner.kept.popitem(last=False)
    return result


async def _answer(request: Request, user: User, scenario: WhatIfRequest) -> WhatIfResult:
    """Run (in a worker thread) and audit; 503 when busy, 409 when the warehouse cannot,
    InputError for a scenario too small to show."""
    board = dashboard(request)
    try:
        result = await run_in_threadpool(run_what_if, board, scenario)
    except WhatIfBusyError as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "5"}) from err
    except ConfigurationError as err:
        raise HTTPException(409, str(err)) from err
    access(request).audit(
        user, "what-if", "finance/what-if",
        detail=f"{result.description}; {result.seconds:.2f} s" + (" (kept)" if result.kept else ""),
        reason="", client=client(request),
    )  # fmt: skip
    return result


def result_view(result: WhatIfResult) -> dict[str, Any]:
    """The result as the page shows it: detail in whole pounds, the summary in £ million."""

    def row(p: WhatIfPlace) -> dict[str, Any]:
        return {
            "place": p.place_name,
            "code": p.place_code,
            "cells": [
                money_text(p.baseline_cost_gbp), money_text(p.scenario_cost_gbp),
                money_text(p.cost_change_gbp, signed=True),
                f"{p.baseline_index:.3f}", f"{p.scenario_index:.3f}",
                money_text(p.baseline_target_gbp), money_text(p.scenario_target_gbp),
                money_text(p.target_change_gbp, signed=True),
                money_text(p.baseline_allocation_gbp), money_text(p.scenario_allocation_gbp),
                money_text(p.allocation_change_gbp, signed=True),
            ],
        }  # fmt: skip

    t = result.total
    moved_target = sum(abs(p.target_change_gbp) for p in result.places) / 2
    moved_allocation = sum(abs(p.allocation_change_gbp) for p in result.places) / 2
    cost_change = money_text(t.cost_change_gbp, "£m", signed=True)
    summary = (
        f"Modelled cost across the system moves by {cost_change} (from "
        f"{money_text(t.baseline_cost_gbp, '£m')} to {money_text(t.scenario_cost_gbp, '£m')}); "
        f"{money_text(moved_target, '£m')} of the {result.financial_year} targets moves between "
        f"places, and {money_text(moved_allocation, '£m')} of the allocations."
    )
    scenario = result.scenario
    query = urlencode(
        {
            "place": scenario.place_code or "",
            "segment": scenario.segment or "",
            "activity": scenario.activity_type,
            "change": str(scenario.change_percent),
        }
    )
    return {
        "result": result,
        "summary": summary,
        "rows": [row(p) for p in result.places],
        "total": row(t),
        "link": f"/finance/what-if?{query}",
        "download": f"/api/v1/finance/what-if?{query}",
    }


# --- the API ----------------------------------------------------------------------------------


@router.get("/api/v1/finance", response_model=dict[str, Any], tags=["finance"])
async def api_finance(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Need indices, targets against baselines, distance from target, the pace-of-change
    path, MHIS and guarantees, the control total and forecast, and the risk share."""
    allowed(user, "finance")
    return await cached_json(request, ("finance",), dashboard(request).finance)


@router.get(
    "/api/v1/finance/table", response_model=list[dict[str, Any]], tags=["finance"],
    responses={200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}}},
)  # fmt: skip
async def api_finance_table(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    name: Annotated[
        str,
        Query(
            description=f"The table, in the finance page's order: {table_names()}.",
            json_schema_extra={"enum": list(DOWNLOADS)},
        ),
    ] = "allocation",
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """One table of the finance page, every table having one: its rows with exact figures
    (pounds to the penny, indices and rates unrounded: the page's figures before rounding;
    counts as published, a suppressed one null), as JSON, CSV or Excel with its notes
    (definition, signs, period, disclosure, source). Column keys carry their unit: `_gbp`
    pounds, `_index` need index, `_ratio`, `_rate` and `_share` fractions, `_count` people.
    An unknown name is 404, naming the tables."""
    allowed(user, "finance")
    board = dashboard(request)
    table = await run_in_threadpool(figures, lambda: finance_download(board.finance(), name))
    if format == "json":
        return await cached_json(request, ("finance-table", name), lambda: table.rows)
    return await run_in_threadpool(respond, table, format)


def finance_api_user(user: Annotated[User, Depends(api_user)]) -> User:
    """An API user who may see finance (403 before the body is read otherwise)."""
    allowed(user, "finance")
    return user


@router.post("/api/v1/finance/what-if", response_model=WhatIfResult, tags=["finance"])
async def api_what_if(
    request: Request, user: Annotated[User, Depends(finance_api_user)], body: WhatIfRequest
) -> WhatIfResult:
    """Run a what-if: each place's cost, need index, target and first-year allocation under
    the scenario beside the baseline, as `joinedup finance what-if` computes them (nothing is
    written). 422 names a bad field; 503 when too many runs are under way. Audited."""
    try:
        scenario = checked(
            dashboard(request), body.place_code, body.segment, body.activity_type,
            str(body.change_percent),
        )  # fmt: skip
        return await _answer(request, user, scenario)
    except InputError as err:
        raise HTTPException(422, str(err)) from err


#: The columns of a what-if result download: one row per place, then the system.
WHAT_IF_COLUMNS = [
    Column("place_name", "Place"), Column("place_code", "Place code"),
    Column("baseline_cost_gbp", "Modelled cost, baseline", "£"),
    Column("scenario_cost_gbp", "Modelled cost, scenario", "£"),
    Column("cost_change_gbp", "Modelled cost change", "£"),
    Column("baseline_index", "Overall need index, baseline"),
    Column("scenario_index", "Overall need index, scenario"),
    Column("baseline_target_gbp", "Target, baseline", "£"),
    Column("scenario_target_gbp", "Target, scenario", "£"),
    Column("target_change_gbp", "Target change", "£"),
    Column("baseline_allocation_gbp", "First-year allocation, baseline", "£"),
    Column("scenario_allocation_gbp", "First-year allocation, scenario", "£"),
    Column("allocation_change_gbp", "First-year allocation change", "£"),
]  # fmt: skip


def what_if_table(result: WhatIfResult, disclosure: str) -> Table:
    """A what-if result as its page shows it, baseline beside scenario, in exact pounds."""
    # The system's need index is not a figure (each place's is relative to it): blank, as
    # on the page.
    total = result.total.model_dump() | {"baseline_index": None, "scenario_index": None}
    rows = [*(p.model_dump() for p in result.places), total]
    return Table(
        name="finance-what-if-result",
        title=f"What-if: {result.description}",
        columns=WHAT_IF_COLUMNS,
        rows=rows,
        notes=[
            ("Definition", f"{result.description}: each place's modelled cost, overall need "
             "index, target and first-year allocation under the scenario beside the baseline, "
             f"as `joinedup finance what-if` computes them; {result.people_in_scope:,} people "
             "in scope; the last row is the system (every place summed)."),
            ("Signs", SIGNS),
            ("Period", f"Financial year {result.financial_year}"),
            ("Disclosure", disclosure),
            ("Source", f"joinedup finance run {result.run_id}, run from the dashboard"),
        ],
    )  # fmt: skip


@router.get(
    "/api/v1/finance/what-if", response_model=WhatIfResult, tags=["finance"],
    responses={200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}}},
)  # fmt: skip
async def api_what_if_get(
    request: Request,
    user: Annotated[User, Depends(finance_api_user)],
    change: Annotated[str, Query(description="The activity change in percent (-10: 10% fewer).")],
    place: Annotated[str, Query(description="A place code; empty: every place.")] = "",
    segment: Annotated[str, Query(description="A segment; empty: every segment.")] = "",
    activity: Annotated[str, Query(description="The activity type that changes.")] = (
        "emergency_admission"
    ),
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """The what-if of the page's result link (`/finance/what-if?place=&segment=&activity=
    &change=`) as JSON, CSV or Excel: the same figures as the page, money as exact pounds, and
    the same as POST /api/v1/finance/what-if. Audited as a run."""
    board = dashboard(request)
    try:
        scenario = checked(board, place, segment, activity, change)
        result = await _answer(request, user, scenario)
    except InputError as err:
        raise HTTPException(422, str(err)) from err
    if format == "json":
        return Response(result.model_dump_json(), media_type="application/json")
    table = what_if_table(result, describe_policy(board.policy()))
    return await run_in_threadpool(respond, table, format)


# --- the pages --------------------------------------------------------------------------------


@router.get("/finance", response_class=HTMLResponse, include_in_schema=False)
def finance_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "finance")
    board = dashboard(request)
    return render(
        request, "finance.html.j2", user, r=figures(board.finance), what_if=choices(board),
        downloads=True,
        form={"place": "", "segment": "", "activity": "emergency_admission", "change": "-10"},
    )  # fmt: skip


async def _what_if_page(request: Request, user: User, form: dict[str, str], run: bool) -> Response:
    board = dashboard(request)
    context: dict[str, Any] = {"what_if": choices(board), "form": form, "error": None}
    figures(board.finance)  # 409 when the warehouse has no finance run
    status = 200
    if run:
        try:
            scenario = checked(
                board, form["place"], form["segment"], form["activity"], form["change"]
            )
            context["view"] = result_view(await _answer(request, user, scenario))
        except InputError as err:
            context["error"] = {"field": err.where, "message": err.reason}
            status = 422
    page = render(request, "finance_what_if.html.j2", user, **context)
    page.status_code = status
    return page


@router.get("/finance/what-if", response_class=HTMLResponse, include_in_schema=False)
async def what_if_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    place: str = "",
    segment: str = "",
    activity: str = "emergency_admission",
    change: str | None = None,
) -> Response:
    """The what-if form; with `change` given, the scenario's result (a link reproduces it)."""
    allowed(user, "finance")
    form = {"place": place, "segment": segment, "activity": activity, "change": change or "-10"}
    return await _what_if_page(request, user, form, run=change is not None)


@router.post("/finance/what-if", response_class=HTMLResponse, include_in_schema=False)
async def what_if_submit(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    csrf: Annotated[str, Form()] = "",
    place: Annotated[str, Form()] = "",
    segment: Annotated[str, Form()] = "",
    activity: Annotated[str, Form()] = "emergency_admission",
    change: Annotated[str, Form()] = "",
) -> Response:
    """Run the scenario the form gives, with the CSRF token; audited."""
    allowed(user, "finance")
    if not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "This form has expired: open the finance page again")
    form = {"place": place, "segment": segment, "activity": activity, "change": change}
    return await _what_if_page(request, user, form, run=True)
