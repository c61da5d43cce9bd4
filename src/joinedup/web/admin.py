"""The audit log for admins: its entries, newest first, with the hash chain checked, and the
users."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from joinedup.web.access import User
from joinedup.web.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    access,
    allowed,
    api_user,
    page_user,
    pages,
    render,
)

router = APIRouter()


class AuditEntry(BaseModel):
    seq: int
    at: str
    username: str
    role: str
    action: str
    resource: str
    detail: str
    reason: str
    client: str


class AuditOut(BaseModel):
    total: int
    limit: int
    offset: int
    chain_intact: bool = Field(
        description="No entry changed, removed or rewritten (HMAC chain, signed head)."
    )
    chain_problem: str | None = Field(description="What is wrong, naming the entry.")
    verified_through: int = Field(description="The newest entry checked.")
    legacy_entries: int = Field(
        description="Entries from before the log had a key: plain SHA-256, which anyone with "
        "the file could recompute."
    )
    entries: list[AuditEntry]


def audit_page_data(request: Request, limit: int, offset: int) -> dict[str, Any]:
    store = access(request)
    check = store.verify_audit()
    total, entries = store.audit_entries(limit, offset)
    return {
        "total": total, "limit": limit, "offset": offset, "chain_intact": check.intact,
        "chain_problem": check.problem, "verified_through": check.verified_through,
        "legacy_entries": check.legacy_entries, "entries": entries,
    }  # fmt: skip


@router.get("/api/v1/audit", response_model=AuditOut, tags=["access"])
def api_audit(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """The audit log of identifiable views and downloads, newest first (admins only)."""
    allowed(user, "audit")
    return audit_page_data(request, limit, offset)


@router.get("/admin/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    page: Annotated[int, Query(ge=1, le=200_000)] = 1,
) -> Response:
    allowed(user, "audit")
    data = audit_page_data(request, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(
        request, "audit.html.j2", user, audit=data, page=page, pages=pages(data["total"]),
        users=access(request).users(),
    )  # fmt: skip
