"""PCN worklists, the only identifiable data: for clinicians of that PCN (or practice) only,
opened with a reason, and every view or download written to the audit log."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, Field

from joinedup.errors import InputError
from joinedup.web.access import PURPOSES, WORKLIST_STATUSES, User, WorklistStatus
from joinedup.web.dashboard import TIERS, Dashboard, WorklistPage
from joinedup.web.downloads import Column, Format, Table, TableOut, as_json, respond
from joinedup.web.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    access,
    api_user,
    client,
    csrf_token,
    dashboard,
    page_user,
    pages,
    render,
)

router = APIRouter()


class Cohort(BaseModel):
    id: str
    title: str
    purpose: str
    people: int


class WorklistRow(BaseModel):
    worklist_id: str
    cohort: str
    pcn_code: str
    practice_code: str | None
    practice_name: str | None = None
    person_id: int | None = None
    nhs_number: str | None
    given_name: str | None = None
    family_name: str | None = None
    birth_date: str | None = None
    age: int | None
    sex: str | None
    risk_tier: str | None
    risk_score: float | None
    reasons: str | None
    status: str = "to-contact"
    status_note: str = ""
    status_by: str | None = None
    status_at: str | None = None


class WorklistOut(BaseModel):
    pcn_code: str
    total: int
    limit: int
    offset: int
    cohorts: list[Cohort]
    rows: list[WorklistRow]


class WorklistQuery(BaseModel):
    """Why a worklist is opened, and which of its rows: every worklist route takes these."""

    reason: str | None = Field(None, description="Why: " + ", ".join(PURPOSES) + " (required).")
    cohort: str | None = Field(None, description="Only this cohort (its id).")
    risk_tier: str | None = Field(None, description="Only this tier: " + ", ".join(TIERS) + ".")
    practice: str | None = Field(None, description="Only this practice (its ODS code).")
    status: str | None = Field(
        None, description="Only this status: " + ", ".join(WORKLIST_STATUSES)
    )
    sort: str | None = Field(None, description="Sort by this column (default: risk score).")
    order: str | None = Field(None, description="asc or desc.")


#: Columns a worklist page sorts by, and each row's key for it (None sorts last).
SORT_KEYS: dict[str, str] = {
    "name": "Name", "nhs_number": "NHS number", "birth_date": "Date of birth",
    "cohort": "Cohort", "practice": "Practice", "age": "Age", "sex": "Sex",
    "risk_tier": "Risk tier", "risk_score": "Risk score", "reasons": "Why they qualified",
    "status": "Status",
}  # fmt: skip
_TIER_ORDER = {t: i for i, t in enumerate(TIERS)}
_STATUS_ORDER = {s: i for i, s in enumerate(WORKLIST_STATUSES)}


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key == "name":
        return (str(row.get("family_name") or "").lower(), str(row.get("given_name") or "").lower())
    if key == "practice":
        return str(row.get("practice_name") or row.get("practice_code") or "").lower()
    if key == "risk_tier":
        return _TIER_ORDER.get(row.get("risk_tier") or "", len(TIERS))
    if key == "status":
        return _STATUS_ORDER.get(row["status"], 0)
    value = row.get(key)
    return value.lower() if isinstance(value, str) else value


def sorted_rows(rows: list[dict[str, Any]], sort: str, descending: bool) -> list[dict[str, Any]]:
    """`rows` by one column (missing values last either way), then by NHS number."""
    present = [r for r in rows if _sort_value(r, sort) is not None]
    missing = [r for r in rows if _sort_value(r, sort) is None]
    present.sort(key=lambda r: str(r.get("nhs_number") or ""))
    present.sort(key=lambda r: _sort_value(r, sort), reverse=descending)
    return present + missing


#: Sorts a page is cut by in Arrow before any row becomes Python: all of them (emptied, every
#: request takes the whole-list path, as benchmarks/worklist_route.py does to compare).
ARROW_SORTS = frozenset(SORT_KEYS)
#: Sorts by a person's identity row (ranked once per person, `Dashboard.worklist_person_ranks`).
_IDENTITY_SORTS = frozenset({"name", "birth_date"})
#: The worklist table's column each of those sorts reads, where it is not the sort's name.
_SORT_COLUMNS = {"cohort": "worklist_id", "practice": "practice_code"}
#: Scores beyond this are not probabilities: their rounding is left to Python (see _rounded).
_MAX_ARROW_SCORE = 1_000.0


class _ArrowOrderError(Exception):
    """The rows hold values whose Python order Arrow cannot reproduce: scores that are NaN,
    over _MAX_ARROW_SCORE or not floating point."""


def _ranks(column: pa.Array, key: Callable[[Any], Any]) -> pa.Array:
    """Each value's dense rank by `key` (None where `key` gives None: a missing value), from
    the column's distinct values only: codes, tiers, ages and reasons are few."""
    distinct = pc.unique(column)
    keys = [key(v) for v in distinct.to_pylist()]
    rank = {k: i for i, k in enumerate(sorted({k for k in keys if k is not None}))}
    ranked = pa.array([None if k is None else rank[k] for k in keys], pa.int64())
    return pc.take(ranked, pc.index_in(column, value_set=distinct, skip_nulls=False))


def _rounded(scores: pa.Array) -> pa.Array:
    """Risk scores as the page shows and sorts them, `round(score, 4)`, computed in Arrow:
    round(score * 10^4) / 10^4 is Python's answer except within rounding error of a half-way
    point, and those few scores are rounded by Python itself."""
    if not pa.types.is_floating(scores.type):
        raise _ArrowOrderError
    if pc.any(pc.is_nan(scores)).as_py() or (pc.max(pc.abs(scores)).as_py() or 0) > (
        _MAX_ARROW_SCORE
    ):
        raise _ArrowOrderError
    scaled = pc.multiply(scores, 10_000.0)
    rounded = pc.divide(pc.round(scaled, round_mode="half_to_even"), 10_000.0)
    from_half = pc.abs(pc.subtract(pc.subtract(scaled, pc.floor(scaled)), 0.5))
    near = pc.fill_null(pc.less(from_half, 1e-6), False)
    if pc.any(near).as_py():
        exact = [round(float(v), 4) for v in pc.filter(scores, near).to_pylist()]
        rounded = pc.replace_with_mask(rounded, near, pa.array(exact, pa.float64()))
    return rounded


def _row_statuses(table: pa.Table, statuses: Mapping[tuple[str, int], WorklistStatus]) -> pa.Array:
    """Each row's status, as `_with_people_and_status` gives it ("to-contact" where none is
    recorded), looked up in Python only for the rows of people with a status recorded."""
    shown = pa.repeat(pa.scalar("to-contact", pa.string()), table.num_rows)
    people = pa.array(sorted({person for _, person in statuses}), pa.int64())
    if not len(people):
        return shown
    marked = pc.fill_null(pc.is_in(table["person_id"].combine_chunks(), value_set=people), False)
    if not pc.any(marked).as_py():
        return shown
    found = []
    for r in table.filter(marked).select(["worklist_id", "person_id"]).to_pylist():
        kept = statuses.get((r["worklist_id"], int(r["person_id"])))
        found.append(kept.status if kept else "to-contact")
    return pc.replace_with_mask(shown, marked, pa.array(found, pa.string()))


def arrow_order(
    board: Dashboard, sort: str, descending: bool,
    statuses: Mapping[tuple[str, int], WorklistStatus], status: str | None,
) -> Callable[[pa.Table], pa.Array]:  # fmt: skip
    """The rows `sorted_rows` gives of the enriched rows of `status` (all, when None), as
    indices of the filtered worklist table computed in Arrow: by `sort`'s values (missing last,
    in the table's order), then NHS number, then the table's order (Python's sorts are
    stable)."""

    def order(table: pa.Table) -> pa.Array:
        nhs = table["nhs_number"].combine_chunks()
        kept = _row_statuses(table, statuses) if status or sort == "status" else None
        if sort == "status":
            column = kept
        elif sort in _IDENTITY_SORTS:
            column = table["person_id"]
        else:
            column = table[_SORT_COLUMNS.get(sort, sort)]
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if sort in _IDENTITY_SORTS:
            ids, ranks, nobody = board.worklist_person_ranks(
                sort, lambda who: _sort_value(_identity_fields(who), sort)
            )
            found = pc.index_in(column, value_set=ids)
            values = pc.take(ranks, found)
            if nobody is not None:  # no identity row: the key of an empty one
                values = pc.if_else(pc.is_null(found), nobody, values)
        elif sort == "risk_score":
            values = _rounded(column)
        elif sort == "nhs_number" and pc.all(pc.string_is_ascii(nhs)).as_py() is not False:
            values = pc.ascii_lower(nhs)  # str.lower() on ASCII, without a Python string each
        elif sort == "practice":
            names = {c: (p or {}).get("practice_name") for c, p in board.practices().items()}
            values = _ranks(
                column,
                lambda v: _sort_value({"practice_code": v, "practice_name": names.get(v)}, sort),
            )
        elif sort == "cohort":
            titles = board.worklist_titles()
            values = _ranks(
                column,
                lambda v: _sort_value({"cohort": titles.get(v, {}).get("title", v)}, sort),
            )
        else:
            values = _ranks(column, lambda v: _sort_value({sort: v}, sort))
        missing = pc.is_null(values)
        keys = pa.table(
            {
                "missing": pc.cast(missing, pa.int8()),
                "value": values,
                "nhs": pc.if_else(missing, "", pc.fill_null(nhs, "")),
                "at": pa.array(range(table.num_rows), pa.int64()),
            }
        )
        ordered = pc.sort_indices(
            keys,
            sort_keys=[
                ("missing", "ascending"),
                ("value", "descending" if descending else "ascending"),
                ("nhs", "ascending"),
                ("at", "ascending"),
            ],
        )
        if status and kept is not None:
            ordered = pc.filter(ordered, pc.take(pc.equal(kept, status), ordered))
        return ordered

    return order


def _identity_fields(who: Mapping[str, Any]) -> dict[str, Any]:
    """A row's name and date of birth from the person's identity row (empty: none)."""
    born = who.get("birth_date")
    return {
        "given_name": who.get("given_name"),
        "family_name": who.get("family_name"),
        "birth_date": born.isoformat() if isinstance(born, date) else born,
    }


def _with_people_and_status(
    board: Dashboard, statuses: Mapping[tuple[str, int], WorklistStatus],
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Each row with its name and date of birth (identity), practice name and status."""
    people = board.worklist_people()
    practices = board.practices()
    for r in rows:
        r.update(_identity_fields(people.get(int(r["person_id"]), {})))
        r["practice_name"] = (practices.get(r["practice_code"]) or {}).get("practice_name")
        found = statuses.get((r["worklist_id"], int(r["person_id"])))
        r["status"] = found.status if found else "to-contact"
        r["status_note"] = found.note if found else ""
        r["status_by"] = found.username if found else None
        r["status_at"] = found.at[:16].replace("T", " ") if found else None
    return rows


#: Why someone without a PCN or practice is refused every worklist.
NO_WORKLISTS = "Worklists are only for the clinicians of a PCN or a GP practice."


def worklist_scope(request: Request, user: User, pcn: str, board: Dashboard) -> str | None:
    """The practice a clinician is limited to (None: the whole PCN); 403 if not theirs, and
    the refusal is audited too, so an admin sees attempts on identifiable data."""
    message = None
    if not user.has_worklists:
        message = NO_WORKLISTS
    else:
        own = user.pcn_code
        if user.practice_code and not own:
            own = (board.practices().get(user.practice_code) or {}).get("pcn_code")
        if own != pcn:
            message = f"You may open the worklists of {user.scope} only"
    if message is not None:
        access(request).audit(
            user, "denied", f"worklist/{pcn}"[:100], detail=message,
            reason=str(request.query_params.get("reason", ""))[:100],
            client=client(request),
        )  # fmt: skip
        raise HTTPException(403, message)
    return user.practice_code


def checked_reason(reason: str | None) -> str:
    if reason not in PURPOSES:
        raise HTTPException(
            422, "Say why you are opening this worklist: reason must be one of "
            + ", ".join(PURPOSES)
        )  # fmt: skip
    return reason


def worklist_filters(
    cohort: str | None, risk_tier: str | None, practice: str | None
) -> dict[str, str | None]:
    if risk_tier and risk_tier not in TIERS:
        raise HTTPException(422, f"risk_tier must be one of {', '.join(TIERS)}")
    return {
        "cohort": cohort or None,
        "risk_tier": risk_tier or None,
        "practice": practice or None,
    }


def worklist_result(
    request: Request, board: Dashboard, pcn_code: str, filters: dict[str, str | None],
    q: WorklistQuery, limit: int, offset: int,
) -> tuple[WorklistPage, str, bool]:  # fmt: skip
    """One page of the filtered worklist with names, practice names and statuses, filtered by
    status and sorted by `q.sort` (risk score, highest first, by default); with the sort used."""
    if q.status and q.status not in WORKLIST_STATUSES:
        raise HTTPException(422, f"status must be one of {', '.join(WORKLIST_STATUSES)}")
    sort = q.sort or "risk_score"
    if sort not in SORT_KEYS:
        raise HTTPException(422, f"sort must be one of {', '.join(SORT_KEYS)}")
    if q.order not in (None, "", "asc", "desc"):
        raise HTTPException(422, "order must be asc or desc")
    descending = q.order == "desc" if q.order else sort == "risk_score"
    statuses = access(request).worklist_statuses(pcn_code)
    page = worklist_rows(
        board, statuses, pcn_code, filters, q.status, sort, descending, limit, offset
    )
    return page, sort, descending


def worklist_rows(
    board: Dashboard, statuses: Mapping[tuple[str, int], WorklistStatus], pcn_code: str,
    filters: dict[str, str | None], status: str | None, sort: str, descending: bool,
    limit: int, offset: int, *, whole_list: bool = False,
) -> WorklistPage:  # fmt: skip
    """One page of the filtered worklist, enriched. The page is cut in Arrow (`arrow_order`)
    and only its rows are enriched; with `whole_list`, or where Arrow cannot give Python's
    order, every row is enriched, filtered by status and sorted in Python (the reference the
    Arrow path is tested against). Both give the same page."""
    practice, cohort, risk_tier = filters["practice"], filters["cohort"], filters["risk_tier"]
    if not whole_list and sort in ARROW_SORTS:
        try:
            page = board.worklist(
                pcn_code, practice=practice, cohort=cohort, risk_tier=risk_tier, limit=limit,
                offset=offset,
                order=arrow_order(board, sort, descending, statuses, status),
            )  # fmt: skip
        except _ArrowOrderError:
            pass
        else:
            rows = _with_people_and_status(board, statuses, page.rows)
            return WorklistPage(pcn_code, page.total, limit, offset, page.cohorts, rows)
    every = board.worklist(
        pcn_code, practice=practice, cohort=cohort, risk_tier=risk_tier, limit=10_000_000,
        offset=0,
    )  # fmt: skip
    rows = _with_people_and_status(board, statuses, every.rows)
    if status:
        rows = [r for r in rows if r["status"] == status]
    rows = sorted_rows(rows, sort, descending)
    return WorklistPage(
        pcn_code, len(rows), limit, offset, every.cohorts, rows[offset : offset + limit]
    )


def audit_worklist(
    request: Request, user: User, action: str, page: WorklistPage | None, pcn: str,
    filters: dict[str, str | None], reason: str, rows: int,
) -> None:  # fmt: skip
    detail = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "no filter"
    detail += f"; {rows} rows" + (f" from offset {page.offset}" if page else "")
    access(request).audit(
        user, action, f"worklist/{pcn}", detail=detail, reason=reason, client=client(request)
    )


def download_response(
    request: Request, user: User, pcn_code: str, q: WorklistQuery, fmt: Literal["csv", "xlsx"]
) -> Response:
    """The whole filtered worklist (every page, the JSON's rows and columns) as CSV or Excel;
    the same access checks as the JSON, and audited as a download."""
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    why = checked_reason(q.reason)
    filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
    result, sort, descending = worklist_result(request, board, pcn_code, filters, q, 10_000_000, 0)
    shown = {**filters, "status": q.status or None}
    chosen = "; ".join(f"{k} {v}" for k, v in shown.items() if v) or "none"
    titles = {c["id"]: c["title"] for c in result.cohorts}
    table = Table(
        f"worklist-{pcn_code}", f"Worklist of PCN {pcn_code}",
        [Column(key, key) for key in WorklistRow.model_fields], result.rows,
        [
            ("Definition", "People of this PCN on its case-finding worklists ("
             + "; ".join(f"{k}: {t}" for k, t in titles.items()) + f"); filters: {chosen}; "
             f"sorted by {sort} {'descending' if descending else 'ascending'}."),
            ("Period", f"As served at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"),
            ("Disclosure", "Identifiable: for the PCN's clinicians only, for the reason given "
             f"({why}); this download is recorded in the audit log. Not for onward sharing."),
            ("Source", "joinedup worklists"),
        ],
    )  # fmt: skip
    audit_worklist(request, user, "download", None, pcn_code, filters, why, len(result.rows))
    answer = respond(table, fmt)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@router.get(
    "/api/v1/worklists/{pcn_code}", response_model=WorklistOut, tags=["worklists"],
    responses={403: {"description": "Not a clinician of this PCN"}},
)  # fmt: skip
def api_worklist(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(api_user)],
    q: Annotated[WorklistQuery, Query()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Annotated[
        Format,
        Query(
            description="json, or csv or xlsx (Excel): the whole "
            "filtered list, limit and offset aside."
        ),
    ] = "json",
) -> WorklistPage | Response:
    """A PCN's case-finding worklists: identifiable, for its clinicians only; audited."""
    if format != "json":
        return download_response(request, user, pcn_code, q, format)
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    why = checked_reason(q.reason)
    filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
    page, _, _ = worklist_result(request, board, pcn_code, filters, q, limit, offset)
    audit_worklist(request, user, "view", page, pcn_code, filters, why, len(page.rows))
    return page


COHORT_COLUMNS = [
    Column("id", "Cohort id"),
    Column("title", "Cohort"),
    Column("purpose", "Why it exists"),
    Column("people", "People", "people"),
]


@router.get(
    "/api/v1/worklists/{pcn_code}/cohorts", response_model=TableOut, tags=["worklists"],
    responses={403: {"description": "Not a clinician of this PCN"}},
)  # fmt: skip
def api_worklist_cohorts(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(api_user)],
    reason: Annotated[
        str | None, Query(description="Why: " + ", ".join(PURPOSES) + " (required).")
    ] = None,
    practice: Annotated[str | None, Query(description="Only this practice (ODS code).")] = None,
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Any:
    """The worklist page's cohort table: each cohort, why it exists and how many of the PCN's
    (or the practice's) people are on it; the worklist's access checks, audited."""
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    why = checked_reason(reason)
    where = limited or practice or None
    cohorts = board.worklist(pcn_code, practice=where, limit=1).cohorts
    table = Table(
        f"worklist-cohorts-{pcn_code}", f"Worklist cohorts of PCN {pcn_code}", COHORT_COLUMNS,
        cohorts,
        [
            ("Definition", "People of this PCN" + (f" (practice {where})" if where else "")
             + " who meet each case-finding cohort's rules, as the worklist page counts them; "
             "a person may be in more than one cohort."),
            ("Period", f"As served at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"),
            ("Disclosure", "Counts of the PCN's own patients for direct care, not a published "
             "aggregate: not suppressed, for the PCN's clinicians only, for the reason given "
             f"({why}); recorded in the audit log. Not for onward sharing."),
            ("Source", "joinedup worklists"),
        ],
    )  # fmt: skip
    access(request).audit(
        user, "view" if format == "json" else "download", f"worklist/{pcn_code}/cohorts",
        detail=f"cohort counts{f', practice={where}' if where else ''}; {len(cohorts)} rows",
        reason=why, client=client(request),
    )  # fmt: skip
    if format == "json":
        return as_json(table)
    answer = respond(table, format)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@router.get(
    "/api/v1/worklists/{pcn_code}/csv", tags=["worklists"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}, 403: {"description": "Not yours"}},
)  # fmt: skip
def api_worklist_csv(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(api_user)],
    q: Annotated[WorklistQuery, Query()],
) -> Response:
    """The whole filtered worklist as CSV (as `?format=csv`); audited as a download."""
    return download_response(request, user, pcn_code, q, "csv")


@router.get("/worklists", include_in_schema=False)
def worklists_home(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    board = dashboard(request)
    if not user.has_worklists:
        worklist_scope(request, user, "", board)  # refused, audited, saying why
    pcn = user.pcn_code or (board.practices().get(user.practice_code or "") or {}).get("pcn_code")
    return RedirectResponse(f"/worklists/{pcn}", status_code=303)


@router.get("/worklists/{pcn_code}", response_class=HTMLResponse, include_in_schema=False)
def worklist_page(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(page_user)],
    q: Annotated[WorklistQuery, Query()],
    page: Annotated[int, Query(ge=1, le=200_000)] = 1,
) -> Response:
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    pcn = next((p for p in board.pcns() if p["pcn_code"] == pcn_code), None)
    if q.reason is None:
        return render(request, "worklist_reason.html.j2", user, pcn=pcn, pcn_code=pcn_code)
    why = checked_reason(q.reason)
    filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
    result, sort, descending = worklist_result(
        request, board, pcn_code, filters, q, PAGE_SIZE, (page - 1) * PAGE_SIZE
    )
    shown = {**filters, "status": q.status or None}
    audit_worklist(request, user, "view", result, pcn_code, shown, why, len(result.rows))
    unsorted = {"reason": why, **{k: v for k, v in shown.items() if v}}
    if limited:
        unsorted.pop("practice", None)
    query = {**unsorted, "sort": sort, "order": "desc" if descending else "asc"}
    practices = sorted(
        (p for p in board.practices().values() if p["pcn_code"] == pcn_code),
        key=lambda p: str(p["practice_code"]),
    )
    return render(
        request, "worklist.html.j2", user, pcn=pcn, pcn_code=pcn_code, result=result,
        filters=shown, reason=why, page=page, page_size=PAGE_SIZE, tiers=TIERS,
        practices=[] if limited else practices, query=urlencode(query),
        unsorted=urlencode(unsorted), sort=sort, descending=descending, sort_keys=SORT_KEYS,
        statuses=WORKLIST_STATUSES, pages=pages(result.total),
        cohorts_download=f"/api/v1/worklists/{pcn_code}/cohorts?" + urlencode(
            {"reason": why} | ({"practice": q.practice} if q.practice and not limited else {})
        ),
    )  # fmt: skip


@router.post("/worklists/{pcn_code}/status", include_in_schema=False)
def worklist_status(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(page_user)],
    csrf: Annotated[str, Form()] = "",
    worklist_id: Annotated[str, Form()] = "",
    person_id: Annotated[int, Form()] = 0,
    status: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Record where the PCN team is with one person: same-PCN clinicians only (403, audited,
    for anyone else), with the CSRF token; audited by pseudonymous person_id."""
    if not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "This form has expired: open the worklist again")
    board = dashboard(request)
    worklist_scope(request, user, pcn_code, board)
    on_list = any(
        r["worklist_id"] == worklist_id and int(r["person_id"]) == person_id
        for r in board.worklist_csv_rows(
            pcn_code, practice=user.practice_code, cohort=worklist_id, risk_tier=None
        )
        .select(["worklist_id", "person_id"])
        .to_pylist()
    )
    if not on_list:
        raise HTTPException(404, "That person is not on this worklist")
    try:
        access(request).set_worklist_status(
            user, pcn_code, worklist_id, person_id, status, note.strip(), client=client(request)
        )
    except InputError as err:
        raise HTTPException(422, str(err)) from err
    # Back to the same view: only the list's own parameters, re-encoded, on this page's path.
    kept = {k: v for k, v in parse_qsl(back) if k in WorklistQuery.model_fields}
    target = f"/worklists/{pcn_code}" + (f"?{urlencode(kept)}" if kept else "")
    return RedirectResponse(target, status_code=303)


@router.get("/worklists/{pcn_code}/download", include_in_schema=False)
def worklist_download(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(page_user)],
    q: Annotated[WorklistQuery, Query()],
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
) -> Response:
    return download_response(request, user, pcn_code, q, format)
