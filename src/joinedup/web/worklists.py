"""PCN worklists, the only identifiable data: for clinicians of that PCN (or practice) only,
opened with a reason, and every view or download written to the audit log."""

from __future__ import annotations

import csv
import io
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, Field

from joinedup.web.access import PURPOSES, User
from joinedup.web.dashboard import TIERS, Dashboard, WorklistPage
from joinedup.web.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    access,
    allowed,
    api_user,
    client,
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
    nhs_number: str | None
    age: int | None
    sex: str | None
    risk_tier: str | None
    risk_score: float | None
    reasons: str | None


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


def worklist_scope(request: Request, user: User, pcn: str, board: Dashboard) -> str | None:
    """The practice a clinician is limited to (None: the whole PCN); 403 if not theirs, and
    the refusal is audited too, so an admin sees attempts on identifiable data."""
    message = None
    if not user.is_clinical:
        message = "Worklists are for clinicians of that PCN only"
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


def audit_worklist(
    request: Request, user: User, action: str, page: WorklistPage | None, pcn: str,
    filters: dict[str, str | None], reason: str, rows: int,
) -> None:  # fmt: skip
    detail = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "no filter"
    detail += f"; {rows} rows" + (f" from offset {page.offset}" if page else "")
    access(request).audit(
        user, action, f"worklist/{pcn}", detail=detail, reason=reason, client=client(request)
    )


def csv_response(request: Request, user: User, pcn_code: str, q: WorklistQuery) -> Response:
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    why = checked_reason(q.reason)
    filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
    table = board.worklist_csv_rows(
        pcn_code, practice=filters["practice"], cohort=filters["cohort"],
        risk_tier=filters["risk_tier"],
    )  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if v is None else v for v in row.values()])
    audit_worklist(request, user, "download", None, pcn_code, filters, why, table.num_rows)
    return Response(
        out.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="worklist-{pcn_code}.csv"'},
    )  # fmt: skip


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
) -> WorklistPage:
    """A PCN's case-finding worklists: identifiable, for its clinicians only; audited."""
    board = dashboard(request)
    limited = worklist_scope(request, user, pcn_code, board)
    why = checked_reason(q.reason)
    filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
    page = board.worklist(
        pcn_code, practice=filters["practice"], cohort=filters["cohort"],
        risk_tier=filters["risk_tier"], limit=limit, offset=offset,
    )  # fmt: skip
    audit_worklist(request, user, "view", page, pcn_code, filters, why, len(page.rows))
    return page


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
    """The whole filtered worklist as CSV; audited as a download."""
    return csv_response(request, user, pcn_code, q)


@router.get("/worklists", include_in_schema=False)
def worklists_home(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "worklists")
    board = dashboard(request)
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
    result = board.worklist(
        pcn_code, practice=filters["practice"], cohort=filters["cohort"],
        risk_tier=filters["risk_tier"], limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
    )  # fmt: skip
    audit_worklist(request, user, "view", result, pcn_code, filters, why, len(result.rows))
    query = {"reason": why, **{k: v for k, v in filters.items() if v}}
    if limited:
        query.pop("practice", None)
    practices = sorted(
        (p for p in board.practices().values() if p["pcn_code"] == pcn_code),
        key=lambda p: str(p["practice_code"]),
    )
    return render(
        request, "worklist.html.j2", user, pcn=pcn, pcn_code=pcn_code, result=result,
        filters=filters, reason=why, page=page, page_size=PAGE_SIZE, tiers=TIERS,
        practices=[] if limited else practices, query=urlencode(query),
        pages=pages(result.total),
    )  # fmt: skip


@router.get("/worklists/{pcn_code}/download", include_in_schema=False)
def worklist_download(
    request: Request,
    pcn_code: str,
    user: Annotated[User, Depends(page_user)],
    q: Annotated[WorklistQuery, Query()],
) -> Response:
    return csv_response(request, user, pcn_code, q)
