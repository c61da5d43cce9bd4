"""Data quality: the latest FHIR loads, rejected records (file, line and reason, never their
content), unmapped codes and field completeness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from joinedup.web.access import User
from joinedup.web.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    allowed,
    api_user,
    cached_json,
    dashboard,
    page_user,
    pages,
    render,
)

router = APIRouter()


class QuarantineRow(BaseModel):
    load_id: str | None
    source_file: str | None
    source_line: int | None
    resource_type: str | None
    resource_id: str | None
    reason: str | None


class QuarantineOut(BaseModel):
    total: int
    limit: int
    offset: int
    rows: list[QuarantineRow]


@router.get("/api/v1/data-quality", response_model=dict[str, Any], tags=["data quality"])
async def api_data_quality(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """The latest loads, quarantine reasons, unmapped codes and field completeness."""
    allowed(user, "data_quality")
    return await cached_json(request, ("data_quality",), dashboard(request).data_quality)


@router.get("/api/v1/data-quality/quarantine", response_model=QuarantineOut, tags=["data quality"])
def api_quarantine(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Rejected records with file, line and reason (never their content)."""
    allowed(user, "data_quality")
    total, rows = dashboard(request).quarantine(limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "rows": rows}


@router.get("/data-quality", response_class=HTMLResponse, include_in_schema=False)
def data_quality_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    page: Annotated[int, Query(ge=1, le=200_000)] = 1,
) -> Response:
    allowed(user, "data_quality")
    board = dashboard(request)
    total, rows = board.quarantine(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(
        request, "data_quality.html.j2", user, dq=board.data_quality(), quarantine=rows,
        quarantine_total=total, page=page, pages=pages(total),
    )  # fmt: skip
