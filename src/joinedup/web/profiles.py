"""Area profiles: each place, PCN and practice with its parents, its child areas and every
indicator on a spine chart against England (pages `/places/{code}`' indicators section,
`/pcns/{code}`, `/practices/{code}`, and the table as JSON, CSV or Excel at
`/api/v1/profiles/{level}/{area_code}`).

Every figure is a published row of `phm_indicator_values` (disclosure control already applied),
presented here once, so the pages, the API and the downloads show the same numbers; a
suppressed value reads "suppressed (fewer than N)", never a number.
"""

from __future__ import annotations

import statistics
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from joinedup.disclosure import describe
from joinedup.errors import InputError
from joinedup.indicators import Indicator, shipped_definitions
from joinedup.indicators.headlines import figure
from joinedup.reports.charts import SpineRow, spine_chart
from joinedup.web import headlines
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
from joinedup.web.site import allowed, api_user, cached_json, dashboard, figures, page_user, render

router = APIRouter()
T = TypeVar("T")

#: Published aggregates: open to the roles that see places.
AREA = "places"
Level = Literal["system", "place", "pcn", "practice"]
LEVEL_WORDS: dict[str, str] = {"system": "system", "place": "place", "pcn": "PCN",
                               "practice": "practice"}  # fmt: skip
LEVEL_PLURAL: dict[str, str] = {"system": "systems", "place": "places", "pcn": "PCNs",
                                "practice": "practices"}  # fmt: skip
PAGE_OF: dict[str, str] = {"system": "/", "place": "/places/", "pcn": "/pcns/",
                           "practice": "/practices/"}  # fmt: skip
COMPARISON_WORDS: dict[str, str] = {
    "better": "Better",
    "similar": "Similar",
    "worse": "Worse",
    "higher": "Higher",
    "lower": "Lower",
}


def href(level: str, code: str) -> str:
    """The page of an area."""
    return "/" if level == "system" else f"{PAGE_OF[level]}{code}"


# --- published rows, presented once ----------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """The published values of one warehouse, by indicator, period, level and area."""

    latest: dict[str, str]
    periods: dict[str, list[str]]
    rows: dict[tuple[str, str, str, str], dict[str, Any]]
    by_level: dict[tuple[str, str, str], list[dict[str, Any]]]


_INDEXES: weakref.WeakKeyDictionary[Dashboard, Index] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def index(board: Dashboard) -> Index:
    """The dashboard's published indicator values, indexed once."""
    found = _INDEXES.get(board)
    if found is not None:
        return found
    with _INDEX_LOCK:
        if board not in _INDEXES:
            rows = board.indicator_values()
            periods: dict[str, set[str]] = {}
            by_level: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            for r in rows:
                periods.setdefault(r["indicator_id"], set()).add(r["period"])
                key = (r["indicator_id"], r["period"], r["level"])
                by_level.setdefault(key, []).append(r)
            for area_rows in by_level.values():
                area_rows.sort(key=lambda r: str(r["area_code"]))
            _INDEXES[board] = Index(
                latest={i: max(p) for i, p in periods.items()},
                periods={i: sorted(p) for i, p in periods.items()},
                rows={
                    (r["indicator_id"], r["period"], r["level"], r["area_code"]): r for r in rows
                },
                by_level=by_level,
            )
        return _INDEXES[board]


_KEPT: weakref.WeakKeyDictionary[Dashboard, dict[tuple[str, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def kept(board: Dashboard, key: tuple[str, ...], build: Callable[[], T]) -> T:
    """`build()` made once per dashboard and kept (published figures cannot change while
    served; charts take a tenth of a second or more to draw)."""
    with _INDEX_LOCK:
        mine = _KEPT.setdefault(board, {})
    if key not in mine:
        mine[key] = build()
    value: T = mine[key]
    return value


def suppressed_words(board: Dashboard, indicator: Indicator, *, count: bool = False) -> str:
    """What a suppressed cell says instead of a number."""
    smallest = board.policy().suppress_below
    if not count:
        smallest = max(smallest, indicator.disclosure.min_numerator)
    return f"suppressed (fewer than {smallest})"


def _count_text(value: int | None, hidden: bool, board: Dashboard, indicator: Indicator) -> str:
    if hidden or value is None:
        return suppressed_words(board, indicator, count=True)
    return f"{value:,}"


def period_words(period: str) -> str:
    """`2025-04-01/2026-03-31` as "1 Apr 2025 to 31 Mar 2026"."""
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
              "Dec")  # fmt: skip

    def day(text: str) -> str:
        y, m, d = text.split("-")
        return f"{int(d)} {months[int(m) - 1]} {y}"

    start, _, end = period.partition("/")
    return f"{day(start)} to {day(end)}" if end else period


def trend_words(trend: str | None) -> str:
    return trend.capitalize() if trend else "Not tested (fewer than three years)"


def shown(row: dict[str, Any], indicator: Indicator, board: Dashboard) -> dict[str, Any]:
    """One published row as the pages, the API and the downloads present it."""
    hidden = bool(row.get("value_suppressed"))
    value = None if hidden else row["value"]
    if value is not None:
        value_text = figure(value, indicator.unit)
    elif hidden:
        value_text = suppressed_words(board, indicator)
    else:
        value_text = "not computable"
    lower = None if value is None else row["lower"]
    upper = None if value is None else row["upper"]
    ci_text = f"{lower:,.1f} to {upper:,.1f}" if lower is not None and upper is not None else ""
    england = row.get("england_value")
    return {
        "indicator_id": indicator.id,
        "title": indicator.title,
        "unit": indicator.unit,
        "polarity": indicator.polarity,
        "period": row["period"],
        "level": row["level"],
        "area_code": row["area_code"],
        "area_name": row["area_name"],
        "parent_code": row["parent_code"],
        "numerator_count": row["numerator_count"],
        "numerator_text": _count_text(
            row["numerator_count"], bool(row.get("numerator_count_suppressed")), board, indicator
        ),
        "denominator_count": row["denominator_count"],
        "denominator_text": _count_text(
            row["denominator_count"],
            bool(row.get("denominator_count_suppressed")),
            board,
            indicator,
        ),
        "value": value,
        "value_text": value_text,
        # The value alone, for a table whose caption states the unit once.
        "number_text": value_text if value is None else f"{value:,.1f}",
        "suppressed": hidden,
        "lower": lower,
        "upper": upper,
        "ci_text": ci_text,
        "england_value": england,
        "england_text": "" if england is None else figure(england, indicator.unit),
        "england_period": row.get("england_period"),
        "england_comparison": row.get("england_comparison"),
        "england_words": COMPARISON_WORDS.get(row.get("england_comparison") or "", "Not compared"),
        "parent_value": row.get("parent_value"),
        "parent_text": (
            "" if row.get("parent_value") is None else figure(row["parent_value"], indicator.unit)
        ),
        "parent_comparison": row.get("parent_comparison"),
        "parent_words": COMPARISON_WORDS.get(row.get("parent_comparison") or "", "Not compared"),
        "trend": row.get("trend"),
        "trend_text": trend_words(row.get("trend")),
    }


def spread(values: list[float]) -> tuple[float, float, float, float] | None:
    """Lowest, lower quartile, upper quartile and highest of `values` (None when empty)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0], values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return min(values), q1, q3, max(values)


# --- areas and their family ------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    level: str
    code: str
    name: str
    #: Ancestors from the system down: (level, code, name).
    parents: list[tuple[str, str, str]]


def find_area(board: Dashboard, level: str, code: str) -> Area:
    """The area `code` of `level` with its parents; InputError (404) when there is none."""
    ics = board.ics()
    system = ("system", str(ics.get("ics_code", "")), str(ics.get("ics_name", "System")))
    places = board.place_names()
    pcns = {p["pcn_code"]: p for p in board.pcns()}
    practices = board.practices()
    if level == "system" and code == system[1]:
        return Area("system", code, system[2], [])
    if level == "place" and code in places:
        return Area("place", code, places[code], [system])
    if level == "pcn" and code in pcns:
        p = pcns[code]
        return Area("pcn", code, p["pcn_name"], [system, ("place", p["place_code"],
                                                          p["place_name"])])  # fmt: skip
    if level == "practice" and code in practices:
        r = practices[code]
        pcn = pcns.get(r["pcn_code"])
        chain = [system, ("place", r["place_code"], places.get(r["place_code"], r["place_code"]))]
        if pcn is not None:
            chain.append(("pcn", pcn["pcn_code"], pcn["pcn_name"]))
        return Area("practice", code, r["practice_name"], chain)
    raise InputError(f"{LEVEL_WORDS.get(level, level)} {code}", "no such area in this footprint")


def children(board: Dashboard, area: Area) -> list[dict[str, Any]]:
    """The areas one level down, by name, with their codes and registered people."""
    if area.level == "system":
        return [{"level": "place", "code": p["place_code"], "name": p["place_name"],
                 "people": p["people"], "people_text": p["people_text"]}
                for p in board.places()]  # fmt: skip
    if area.level == "place":
        return [{"level": "pcn", "code": p["pcn_code"], "name": p["pcn_name"],
                 "people": p["people"], "people_text": p["people_text"]}
                for p in board.pcns(area.code)]  # fmt: skip
    if area.level == "pcn":
        found = [
            {
                "level": "practice",
                "code": code,
                "name": r["practice_name"],
                "people": None,
                "people_text": "",
            }
            for code, r in board.practices().items()
            if r["pcn_code"] == area.code
        ]
        return sorted(found, key=lambda c: (c["name"], c["code"]))
    return []


# --- one area's indicators -------------------------------------------------------------------


def area_rows(board: Dashboard, level: str, code: str) -> list[dict[str, Any]]:
    """Each indicator's latest published row for the area, presented, with the range across
    the system's areas of the same level (lowest, quartiles, highest) it is placed on."""
    idx = index(board)
    out = []
    for indicator in shipped_definitions():
        period = idx.latest.get(indicator.id)
        if period is None:
            continue
        row = idx.rows.get((indicator.id, period, level, code))
        if row is None:
            continue
        peers = [
            r["value"]
            for r in idx.by_level.get((indicator.id, period, level), [])
            if r["value"] is not None and not r.get("value_suppressed")
        ]
        found = spread(peers)
        presented = shown(row, indicator, board)
        presented |= {
            "peers_count": len(peers),
            "range_lowest": found[0] if found else None,
            "range_q1": found[1] if found else None,
            "range_q3": found[2] if found else None,
            "range_highest": found[3] if found else None,
            "range_text": (
                f"{found[0]:,.1f} to {found[3]:,.1f}" if found and len(peers) > 1 else ""
            ),
        }
        out.append(presented)
    return out


def profile(board: Dashboard, level: str, code: str) -> dict[str, Any]:
    """An area's profile: name, parents, child areas, and every indicator's latest value on
    a spine chart with the table of the same numbers (made once per area)."""
    find_area(board, level, code)  # an unknown area is refused before anything is kept
    return kept(board, ("profile", level, code), lambda: _profile(board, level, code))


def _profile(board: Dashboard, level: str, code: str) -> dict[str, Any]:
    area = find_area(board, level, code)
    rows = area_rows(board, level, code)
    peers = LEVEL_PLURAL[level]
    scale = (
        f"Each line is the range across the system's {len(board_areas(board, level))} {peers} "
        "(light grey: lowest to highest; darker: the middle half), since England's range "
        "across areas is not held; the black line is England's value and the dot is "
        f"{area.name}, coloured by its comparison with England (green better, amber similar, "
        "red worse, dark blue higher, light blue lower, grey not compared)."
    )
    words = "; ".join(
        f"{r['title']}: {r['value_text']}"
        + (
            f" (England {r['england_text']}, {r['england_words'].lower()})"
            if r["england_text"]
            else ""
        )
        for r in rows
    )
    spine = spine_chart(
        [
            SpineRow(
                label=short_title(r["title"]),
                value=r["value"],
                lowest=r["range_lowest"],
                q1=r["range_q1"],
                q3=r["range_q3"],
                highest=r["range_highest"],
                comparator=r["england_value"],
                comparison=r["england_comparison"],
            )
            for r in rows
        ],
        f"spine-{level}-{code}",
        f"{area.name} against England",
        f"Spine chart of {len(rows)} indicators for {area.name}. {scale} Values: {words}.",
    )
    period = rows[0]["period"] if rows else None
    return {
        "level": level,
        "level_words": LEVEL_WORDS[level],
        "code": code,
        "name": area.name,
        "parents": [
            {"level": lv, "code": c, "name": n, "href": href(lv, c)} for lv, c, n in area.parents
        ],
        "children": [c | {"href": href(c["level"], c["code"])} for c in children(board, area)],
        "child_words": LEVEL_PLURAL.get(
            {"system": "place", "place": "pcn", "pcn": "practice"}.get(level, ""), ""
        ),
        "rows": rows,
        "period": period,
        "period_words": period_words(period) if period else "",
        "spine_svg": spine,
        "spine_caption": scale,
        "disclosure": describe(board.policy()),
        "downloads": f"/api/v1/profiles/{level}/{code}",
        "children_downloads": f"/api/v1/profiles/{level}/{code}/children",
    }


def board_areas(board: Dashboard, level: str) -> list[str]:
    if level == "place":
        return list(board.place_names())
    if level == "pcn":
        return [p["pcn_code"] for p in board.pcns()]
    if level == "practice":
        return list(board.practices())
    return [str(board.ics().get("ics_code", ""))]


def short_title(title: str) -> str:
    """A title short enough to label a chart line (the table gives it whole)."""
    return title if len(title) <= 48 else title[:46].rstrip() + "…"


# --- the table as JSON, CSV or Excel ---------------------------------------------------------


class ProfileRowOut(BaseModel):
    indicator_id: str
    title: str
    unit: str
    period: str
    level: str
    area_code: str
    area_name: str
    numerator_count: int | None = Field(description="Null when suppressed.")
    denominator_count: int | None = Field(description="Null when suppressed.")
    value: float | None = Field(description="Null when suppressed or not computable.")
    value_text: str = Field(description="As the page shows it ('suppressed (fewer than 8)').")
    lower: float | None
    upper: float | None
    suppressed: bool
    england_value: float | None
    england_period: str | None
    england_comparison: str | None
    parent_value: float | None
    parent_comparison: str | None
    trend: str | None
    range_lowest: float | None = Field(description="Lowest value among the system's areas of "
                                       "this level (the spine chart's range).")  # fmt: skip
    range_highest: float | None
    peers_count: int = Field(description="Areas of this level with a published value.")


COLUMNS = [
    Column("title", "Indicator"),
    Column("period", "Period"),
    Column("area_name", "Area"),
    Column("area_code", "Area code"),
    Column("numerator_count", "Numerator", "people or events"),
    Column("denominator_count", "Denominator", "people"),
    Column("value", "Value", "unit of the indicator"),
    Column("unit", "Unit"),
    Column("lower", "Lower 95% limit"),
    Column("upper", "Upper 95% limit"),
    Column("england_value", "England"),
    Column("england_period", "England period"),
    Column("england_comparison", "Compared with England"),
    Column("parent_value", "Parent area"),
    Column("parent_comparison", "Compared with parent area"),
    Column("trend", "Recent trend"),
    Column("range_lowest", "Lowest in the system at this level"),
    Column("range_highest", "Highest in the system at this level"),
]


@router.get(
    "/api/v1/profiles/{level}/{area_code}", response_model=list[ProfileRowOut],
    tags=["indicators"], responses={404: {"description": "No such area"}},
)  # fmt: skip
async def api_profile(
    request: Request,
    level: Level,
    area_code: str,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, or csv or xlsx to download.")] = "json",
) -> Response:
    """An area's profile table: every indicator's latest published value with its 95%
    interval, England's value and the parent area's with the comparisons, the recent trend,
    and the range across the system's areas of the same level (the spine chart's numbers)."""
    allowed(user, AREA)
    board = dashboard(request)

    def build() -> list[dict[str, Any]]:
        fields = ProfileRowOut.model_fields
        return [
            ProfileRowOut(**{k: r[k] for k in fields}).model_dump(mode="json")
            for r in profile(board, level, area_code)["rows"]
        ]

    if format == "json":
        return await cached_json(request, ("profile", level, area_code), build)
    rows = figures(build)
    area = figures(lambda: find_area(board, level, area_code))
    table = Table(
        name=f"profile-{level}-{area_code}",
        title=f"{area.name} ({LEVEL_WORDS[level]} {area_code}): indicators against England",
        columns=COLUMNS,
        rows=rows,
        notes=[
            ("Definition", "Each indicator's definition: GET /api/v1/indicators"),
            ("Period", rows[0]["period"] if rows else ""),
            ("Disclosure", "Suppressed values are empty: " + describe(board.policy())),
            ("Source", "joinedup phm_indicator_values; England: each row's England period"),
        ],
    )
    return respond(table, format)


CHILD_LEVEL: dict[str, str] = {"system": "place", "place": "pcn", "pcn": "practice"}


def _heading(level: str) -> str:
    """A level as a column heading: "Place", "PCN", "Practice"."""
    return "PCN" if level == "pcn" else LEVEL_WORDS[level].capitalize()


def children_table(board: Dashboard, level: str, code: str) -> Table:
    """The child areas of an area as its page lists them: code, name and, for places and
    PCNs, the registered people the places and PCNs tables publish (practices' people are
    not published, so a PCN's practices table has names and codes only, as on the page)."""
    area = find_area(board, level, code)
    child = CHILD_LEVEL.get(level)
    if child is None:
        raise InputError(f"{LEVEL_WORDS[level]} {code}", "a practice has no child areas")
    r = board.overview()
    rows = [
        {"code": c["code"], "name": c["name"], "level": LEVEL_WORDS[child],
         "parent_code": code, "parent_name": area.name, "people": c["people"]}
        for c in children(board, area)
    ]  # fmt: skip
    child_word, parent_word = _heading(child), _heading(level)
    columns = [
        Column("code", f"{child_word} code"),
        Column("name", child_word),
        Column("parent_code", f"{parent_word} code"),
        Column("parent_name", parent_word),
    ]
    rule = describe(board.policy())
    if child == "practice":
        definition = (f"The GP practices in {area.name} (PCN {code}), by name, from the "
                      "warehouse's practice table (NHS ODS codes).")  # fmt: skip
        disclosure = ("No people are counted in this table, so nothing is suppressed; "
                      f"counts elsewhere follow the disclosure rule: {rule}.")  # fmt: skip
    else:
        columns.append(Column("people", "People", "people"))
        definition = (f"The {LEVEL_PLURAL[child]} in {area.name} with the people registered "
                      "with their practices on the index date, national data opt-outs "
                      "excluded.")  # fmt: skip
        disclosure = f"{rule[:1].upper()}{rule[1:]}; a suppressed cell is left empty."
    return Table(
        name=f"{LEVEL_PLURAL[child].lower()}-in-{level}-{code}",
        title=f"{LEVEL_PLURAL[child]} in {area.name}",
        columns=columns,
        rows=rows,
        notes=[
            ("Definition", definition),
            ("Period", f"Areas as held on the index date {r['index_date']} (data to "
             f"{r['extract_date']})"),
            ("Disclosure", disclosure),
            ("Source", f"joinedup population health run {r['run_id']}, {r['ics_name']}"),
        ],
    )  # fmt: skip


@router.get(
    "/api/v1/profiles/{level}/{area_code}/children", response_model=TableOut,
    tags=["places"], responses={404: {"description": "No such area, or a practice"}},
)  # fmt: skip
async def api_profile_children(
    request: Request,
    level: Level,
    area_code: str,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, or csv or xlsx to download.")] = "json",
) -> Response:
    """The child areas an area's page lists (a system's places, a place's PCNs with their
    people, a PCN's practices) with the table's definition, period and disclosure note."""
    allowed(user, AREA)
    board = dashboard(request)
    figures(lambda: find_area(board, level, area_code))  # unknown: 404, nothing kept

    def build() -> Table:
        return children_table(board, level, area_code)

    key = ("profile-children", level, area_code)
    if format == "json":
        return await cached_json(request, key, lambda: as_json(build()))
    return await cached_download(request, key, build, format)


# --- pages -----------------------------------------------------------------------------------


def _page(request: Request, user: User, level: str, code: str) -> Response:
    allowed(user, AREA)
    board = dashboard(request)
    p = figures(lambda: profile(board, level, code))
    h = headlines.for_page(request, level, code)
    return render(request, "profile.html.j2", user, p=p, h=h)


@router.get("/pcns/{pcn_code}", response_class=HTMLResponse, include_in_schema=False)
def pcn_page(
    request: Request, pcn_code: str, user: Annotated[User, Depends(page_user)]
) -> Response:
    return _page(request, user, "pcn", pcn_code)


@router.get("/practices/{practice_code}", response_class=HTMLResponse, include_in_schema=False)
def practice_page(
    request: Request, practice_code: str, user: Annotated[User, Depends(page_user)]
) -> Response:
    return _page(request, user, "practice", practice_code)
