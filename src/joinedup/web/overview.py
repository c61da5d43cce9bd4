"""Population health in aggregate: the system overview, places and PCNs (pages and API)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from joinedup.disclosure import SUPPRESSED_MARK
from joinedup.population.conditions import SEGMENTS
from joinedup.reports.phm import QUINTILE_LABELS
from joinedup.web import headlines, indicators, profiles
from joinedup.web.access import User
from joinedup.web.dashboard import Dashboard
from joinedup.web.downloads import (
    Column,
    Format,
    Table,
    TableOut,
    as_json,
    cached_download,
    respond,
)
from joinedup.web.downloads import percent as percent_of
from joinedup.web.site import allowed, api_user, cached_json, dashboard, figures, page_user, render

router = APIRouter()


class PlaceOut(BaseModel):
    place_code: str
    place_name: str
    people: int | None = Field(
        description="Registered people, opt-outs excluded; null when suppressed."
    )
    people_text: str
    share: str
    pcns: int
    practices: int


class PcnOut(BaseModel):
    pcn_code: str
    pcn_name: str
    place_code: str
    place_name: str
    people: int | None
    people_text: str
    practices: int


# --- system overview -------------------------------------------------------------------------


@router.get("/api/v1/overview", response_model=dict[str, Any], tags=["population health"])
async def api_overview(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """The system overview: population by place, pyramid, segments, risk tiers,
    inequality gaps with 95% confidence intervals, and deaths."""
    allowed(user, "overview")
    return await cached_json(request, ("overview",), dashboard(request).overview)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def overview_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "overview")
    board = dashboard(request)
    r = figures(board.overview)
    return render(
        request, "overview.html.j2", user, r=r, h=headlines.for_page(request, "system"),
        worst=indicators.worst_summary(board),
    )  # fmt: skip


# --- the overview's tables, for download ----------------------------------------------------

PEOPLE = Column("people", "People", "people")
SHARE = Column("share_percent", "Share", "%")
RATE_COLUMNS = [
    Column("events", "Events", "people"),
    Column("people", "People", "people"),
    Column("rate", "Rate"),
    Column("lower", "Lower 95% limit"),
    Column("upper", "Upper 95% limit"),
]


def _number_of(text: str) -> int | None:
    """A count as the page shows it ("1,235", "*" when suppressed) as the number."""
    if not text or text == SUPPRESSED_MARK:
        return None
    return int(text.replace(",", ""))


def _published(row: dict[str, Any], column: str) -> Any:
    """A published cell: None when disclosure control suppressed it."""
    return None if row.get(f"{column}_suppressed") else row.get(column)


def _notes(r: dict[str, Any], definition: str, period: str | None = None) -> list[tuple[str, str]]:
    rule = str(r["disclosure_rule"])
    return [
        ("Definition", definition),
        ("Period", period or f"People registered on {r['index_date']} (data to "
         f"{r['extract_date']})"),
        ("Disclosure", f"{rule[:1].upper()}{rule[1:]}; a suppressed cell is left empty."),
        ("Source", f"joinedup population health run {r['run_id']}, {r['ics_name']}"),
    ]  # fmt: skip


def _by_place(board: Dashboard, r: dict[str, Any]) -> Table:
    rows = [{**p, "share_percent": percent_of(p["share"])} for p in r["places"]]
    return Table(
        "population-by-place", f"People registered by place, {r['ics_name']}",
        [Column("place_code", "Place code"), Column("place_name", "Place"), PEOPLE, SHARE,
         Column("pcns", "PCNs"), Column("practices", "Practices")],
        rows,
        _notes(r, "People registered with a practice in each place on the index date, national "
               "data opt-outs excluded; share of the people shown."),
    )  # fmt: skip


def _age_sex(board: Dashboard, r: dict[str, Any]) -> Table:
    pyramid = r["pyramid"]
    rows = [
        {"band": row["band"], "sex": sex, "people": _number_of(cell)}
        for row in pyramid["rows"]
        for sex, cell in zip(pyramid["sexes"], row["cells"], strict=True)
    ]
    return Table(
        "population-by-age-and-sex", f"People by age band and sex, {r['area']}",
        [Column("band", "Age band"), Column("sex", "Sex"), PEOPLE], rows,
        _notes(r, "People registered on the index date by five-year age band and sex, national "
               "data opt-outs excluded. " + (pyramid.get("note") or "")),
    )  # fmt: skip


def _segments(board: Dashboard, r: dict[str, Any]) -> Table:
    rows = [
        {"lynn": s["lynn"], "segment": s["label"], "people": s["value"],
         "share_percent": percent_of(s["share"])}
        for s in r["segments"]["rows"]
    ]  # fmt: skip
    return Table(
        "segments", f"People by Bridges to Health segment, {r['area']}",
        [Column("lynn", "Lynn group"), Column("segment", "Segment"), PEOPLE, SHARE], rows,
        _notes(r, "Everyone in one of the eight Bridges to Health segments (Lynn et al., 2007), "
               "by the first rule they meet in priority order; share of the people shown. "
               + (r["segments"].get("note") or "")),
    )  # fmt: skip


def _tiers(board: Dashboard, r: dict[str, Any]) -> Table:
    rows = [
        {"risk_tier": t["label"], "people": t["value"], "share_percent": percent_of(t["share"])}
        for t in r["tiers"]["rows"]
    ]
    return Table(
        "risk-tiers", f"People by emergency admission risk tier, {r['area']}",
        [Column("risk_tier", "Risk tier"), PEOPLE, SHARE], rows,
        _notes(r, "People ranked by their predicted chance of an emergency admission in the "
               "next 12 months, in tiers of fixed share across the system. "
               + (r["tiers"].get("note") or "")),
    )  # fmt: skip


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    shown = _published(row, "dsr") is not None
    return {
        "events": _published(row, "events_count"),
        "people": _published(row, "people_count"),
        "rate": _published(row, "dsr"),
        "lower": _published(row, "dsr_lower") if shown else None,
        "upper": _published(row, "dsr_upper") if shown else None,
    }


def _inequality_gaps(board: Dashboard, r: dict[str, Any]) -> Table:
    every = board._table("phm_inequalities")
    rows = []
    for measure in dict.fromkeys(x["measure"] for x in every):
        quintiles = sorted(
            (x for x in every if x["measure"] == measure and x["dimension"] == "imd_quintile"),
            key=lambda x: str(x["group_value"]),
        )
        for x in quintiles:
            group = str(x["group_value"])
            rows.append(
                {"measure": x["measure_label"], "unit": x["unit"],
                 "imd_quintile": QUINTILE_LABELS.get(group, group), **_rates(x)}
            )  # fmt: skip
    return Table(
        "inequality-gaps", "Age-standardised rates by IMD quintile, system",
        [Column("measure", "Measure"), Column("unit", "Unit of the rate"),
         Column("imd_quintile", "IMD quintile"), *RATE_COLUMNS], rows,
        _notes(r, "Age-standardised rates (European Standard Population 2013) with 95% "
               "confidence intervals by quintile of the Index of Multiple Deprivation "
               "(1 = most deprived), for the whole system; each rate in its measure's unit."),
    )  # fmt: skip


def _deaths(board: Dashboard, r: dict[str, Any]) -> Table:
    names = board.place_names()
    rows = []
    for x in board._table("phm_inequalities"):
        if x["measure"] != "mortality" or x["dimension"] not in ("system", "place_code"):
            continue
        code = "system" if x["dimension"] == "system" else str(x["group_value"])
        area = "System" if code == "system" else names.get(code, code)
        rows.append({"area_code": code, "area": area, **_rates(x)})
    rows.sort(key=lambda d: (d["area_code"] != "system", d["area"]))
    columns = [Column("area_code", "Area code"), Column("area", "Area"), *RATE_COLUMNS]
    columns[2] = Column("events", "Deaths", "people")
    columns[3] = Column("people", "People at the start of the year", "people")
    columns[4] = Column("rate", "Rate", "per 100,000, age-standardised")
    return Table(
        "deaths", f"Deaths in the year, {r['ics_name']}", columns, rows,
        _notes(r, "Deaths in the year to the index date, age-standardised to the European "
               "Standard Population 2013, with 95% confidence intervals; the denominator is "
               "the people registered at the start of that year.",
               f"The year to {r['index_date']} (data to {r['extract_date']})"),
    )  # fmt: skip


def _slope_index(board: Dashboard, r: dict[str, Any]) -> Table:
    rows = [
        {"measure": x["measure_label"], "unit": x["unit"],
         **{k: x[k] for k in ("sii", "sii_lower", "sii_upper", "rii", "rii_lower", "rii_upper")}}
        for x in board._table("phm_inequality_index")
    ]  # fmt: skip
    return Table(
        "slope-index-of-inequality",
        "Slope and relative index of inequality across IMD quintiles, system",
        [Column("measure", "Measure"), Column("unit", "Unit of the SII"),
         Column("sii", "Slope index of inequality (SII)"),
         Column("sii_lower", "SII lower 95% limit"), Column("sii_upper", "SII upper 95% limit"),
         Column("rii", "Relative index of inequality (RII)", "ratio"),
         Column("rii_lower", "RII lower 95% limit", "ratio"),
         Column("rii_upper", "RII upper 95% limit", "ratio")],
        rows,
        _notes(r, "The slope index (SII) is the modelled gap in the age-standardised rate "
               "between the most and least deprived ends of the system's population, in the "
               "measure's own unit (positive: higher among the more deprived); the relative "
               "index (RII) is the SII divided by the average rate. 95% confidence intervals by "
               "simulation."),
    )  # fmt: skip


#: The two groups of a Core20PLUS5 row, by the prefix of their columns.
_CORE20_GROUPS = (("core20plus", "Core20PLUS"), ("rest", "Everyone else"))


def _core20plus5(board: Dashboard, r: dict[str, Any]) -> Table:
    rows = []
    for x in board._table("phm_core20plus5"):
        row: dict[str, Any] = {"area": x["area"], "indicator": x["indicator"]}
        for prefix, _ in _CORE20_GROUPS:
            for part in ("numerator_count", "denominator_count", "percent", "lower", "upper"):
                row[f"{prefix}_{part}"] = _published(x, f"{prefix}_{part}")
        row["gap_points"] = _published(x, "gap_points")
        row["note"] = x["note"] or ""
        rows.append(row)
    columns = [Column("area", "Clinical area"), Column("indicator", "Indicator")]
    for prefix, words in _CORE20_GROUPS:
        columns += [
            Column(f"{prefix}_numerator_count", f"{words}: numerator", "people"),
            Column(f"{prefix}_denominator_count", f"{words}: denominator", "people"),
            Column(f"{prefix}_percent", f"{words}", "%"),
            Column(f"{prefix}_lower", f"{words}: lower 95% limit", "%"),
            Column(f"{prefix}_upper", f"{words}: upper 95% limit", "%"),
        ]
    columns += [Column("gap_points", "Gap", "percentage points"), Column("note", "Note")]
    return Table(
        "core20plus5", "Core20PLUS5 indicators, system", columns, rows,
        _notes(r, "Each Core20PLUS5 indicator for the Core20PLUS population (the most deprived "
               "20% and the system's PLUS groups) and for everyone else, with 95% confidence "
               "intervals; the gap is Core20PLUS minus everyone else, in percentage points."),
    )  # fmt: skip


def _transitions(board: Dashboard, r: dict[str, Any]) -> Table:
    order = sorted(SEGMENTS, key=lambda s: s.lynn_number)
    found = {(x["from_segment"], x["to_segment"]): x
             for x in board._table("phm_segment_transitions")}  # fmt: skip
    rows = []
    for s in order:
        row: dict[str, Any] = {"from_segment": f"{s.lynn_number}. {s.label}"}
        for t in order:
            x = found.get((s.key, t.key))
            # No row: nobody made that move (the page shows 0); suppressed: empty.
            row[t.key] = 0 if x is None else _published(x, "people_count")
        rows.append(row)
    columns = [Column("from_segment", "Segment a year ago")] + [
        Column(t.key, f"Now {t.lynn_number}. {t.label}", "people") for t in order
    ]
    return Table(
        "segment-transitions",
        "People by segment a year ago (rows) and on the index date (columns), system",
        columns,
        rows if found else [],
        _notes(r, "People registered on both dates by their Bridges to Health segment a year "
               "before the index date (rows) and on it (columns); the diagonal is people who "
               "stayed.", f"The year to {r['index_date']} (data to {r['extract_date']})"),
    )  # fmt: skip


def _rates_by_area(board: Dashboard, r: dict[str, Any]) -> Table:
    names = board.place_names()
    rows = []
    for x in board._table("phm_inequalities"):
        if x["dimension"] not in ("system", "place_code"):
            continue
        code = "system" if x["dimension"] == "system" else str(x["group_value"])
        area = "System" if code == "system" else names.get(code, code)
        rows.append({"measure": x["measure_label"], "unit": x["unit"], "area_code": code,
                     "area": area, **_rates(x)})  # fmt: skip
    order = list(dict.fromkeys(x["measure"] for x in rows))
    rows.sort(key=lambda d: (order.index(d["measure"]), d["area_code"] != "system", d["area"]))
    return Table(
        "rates-by-area", f"Age-standardised rates by place and for the system, {r['ics_name']}",
        [Column("measure", "Measure"), Column("unit", "Unit of the rate"),
         Column("area_code", "Area code"), Column("area", "Area"), *RATE_COLUMNS], rows,
        _notes(r, "Each measure's age-standardised rate (European Standard Population 2013) "
               "with its 95% confidence interval for the system and each place (a place page: "
               "the place against the system); each rate in its measure's unit."),
    )  # fmt: skip


#: The overview's tables by the name their download route takes.
OVERVIEW_TABLES: dict[str, Callable[[Dashboard, dict[str, Any]], Table]] = {
    "population-by-place": _by_place,
    "population-by-age-and-sex": _age_sex,
    "segments": _segments,
    "risk-tiers": _tiers,
    "inequality-gaps": _inequality_gaps,
    "rates-by-area": _rates_by_area,
    "slope-index-of-inequality": _slope_index,
    "core20plus5": _core20plus5,
    "segment-transitions": _transitions,
    "deaths": _deaths,
}
#: Tables a place page shows at place level (`?place=`); the others are the system's on
#: every page.
PLACE_TABLES = ("population-by-age-and-sex", "segments", "risk-tiers", "rates-by-area", "deaths")


@router.get(
    "/api/v1/overview/{table}", response_model=TableOut, tags=["population health"],
    responses={
        200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument"
                          ".spreadsheetml.sheet": {}}},
        404: {"description": "No such table"},
    },
)  # fmt: skip
async def api_overview_table(
    request: Request,
    table: str,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
    place: Annotated[
        str | None,
        Query(description="A place's own figures, as its page shows them (population-by-age-"
              "and-sex, segments, risk-tiers, rates-by-area, deaths); the system's when "
              "omitted."),
    ] = None,
) -> Response:  # fmt: skip
    """One of the overview's tables (population-by-place, population-by-age-and-sex, segments,
    risk-tiers, inequality-gaps, rates-by-area, slope-index-of-inequality, core20plus5,
    segment-transitions, deaths) with its definition, period and disclosure note: as JSON, or
    as a CSV or Excel download; `place` gives a place page's own version of the tables it
    shows by place."""
    allowed(user, "overview")
    make = OVERVIEW_TABLES.get(table)
    if make is None:
        raise HTTPException(404, f"no overview table {table[:60]!r}; choose from "
                            + ", ".join(OVERVIEW_TABLES))  # fmt: skip
    board = dashboard(request)
    if place is not None:
        if table not in PLACE_TABLES:
            raise HTTPException(422, f"place: the {table} table is the system's only; by place: "
                                + ", ".join(PLACE_TABLES))  # fmt: skip
        if place not in board.place_names():
            raise HTTPException(404, f"place {place[:20]!r}: no such place in this footprint")

    def build() -> Table:
        if place is None:
            return make(board, board.overview())
        found = make(board, board.place(place))
        if table in ("deaths", "rates-by-area"):  # the page's rows: the place and the system
            keep = [r for r in found.rows if r["area_code"] in (place, "system")]
            found = Table(found.name, found.title, found.columns, keep, found.notes)
        return Table(f"{found.name}-{place}", found.title, found.columns, found.rows, found.notes)

    key = ("overview-table", table, place or "")
    if format == "json":
        return await cached_json(request, key, lambda: as_json(build()))
    return await cached_download(request, key, build, format)


# --- places ----------------------------------------------------------------------------------


@router.get("/api/v1/places", response_model=list[PlaceOut], tags=["places"])
async def api_places(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """Every place with its registered people (disclosure-controlled) and PCNs."""
    allowed(user, "places")
    board = dashboard(request)
    if format != "json":
        return await cached_download(
            request, ("places",), lambda: _by_place(board, board.overview()), format
        )
    return await cached_json(request, ("places",), board.places)


@router.get(
    "/api/v1/places/{place_code}", response_model=dict[str, Any], tags=["places"],
    responses={404: {"description": "No such place"}},
)  # fmt: skip
async def api_place(
    request: Request, place_code: str, user: Annotated[User, Depends(api_user)]
) -> Response:
    """One place's profile: the overview at place level, its PCNs, against the system."""
    allowed(user, "places")
    board = dashboard(request)
    return await cached_json(request, ("place", place_code), lambda: board.place(place_code))


@router.get("/api/v1/pcns", response_model=list[PcnOut], tags=["places"])
async def api_pcns(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    place: Annotated[str | None, Query(description="Only this place's PCNs.")] = None,
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """PCNs with their registered people (disclosure-controlled)."""
    allowed(user, "places")
    board = dashboard(request)
    if place is not None and place not in board.place_names():
        if format != "json":  # no such place: no PCNs (and nothing kept for it)
            return respond(_pcns(board, place, []), format)
        return JSONResponse([])
    if format != "json":
        return await cached_download(
            request, ("pcns", place or ""), lambda: _pcns(board, place, board.pcns(place)), format
        )
    return await cached_json(request, ("pcns", place or ""), lambda: board.pcns(place))


def _pcns(board: Dashboard, place: str | None, rows: list[dict[str, Any]]) -> Table:
    r = board.overview()
    where = board.place_names().get(place or "", place) if place else r["ics_name"]
    return Table(
        "pcns" + (f"-{place}" if place else ""), f"People registered by PCN, {where}",
        [Column("pcn_code", "PCN code"), Column("pcn_name", "PCN"),
         Column("place_code", "Place code"), Column("place_name", "Place"), PEOPLE,
         Column("practices", "Practices")],
        rows,
        _notes(r, "People registered with a practice in each primary care network (PCN) on the "
               "index date, national data opt-outs excluded."),
    )  # fmt: skip


@router.get("/places", response_class=HTMLResponse, include_in_schema=False)
def places_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "places")
    board = dashboard(request)
    return render(request, "places.html.j2", user, places=board.places(), map=board.map(None))


@router.get("/places/{place_code}", response_class=HTMLResponse, include_in_schema=False)
def place_page(
    request: Request, place_code: str, user: Annotated[User, Depends(page_user)]
) -> Response:
    allowed(user, "places")
    board = dashboard(request)
    r = figures(lambda: board.place(place_code))
    h = headlines.for_page(request, "place", place_code)
    p = profiles.profile(board, "place", place_code)  # the place exists: `r` was found
    return render(request, "place.html.j2", user, r=r, system=board.overview(), h=h, p=p)
