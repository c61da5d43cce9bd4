"""The audit log for admins: its entries, newest first, with the hash chain checked, and the
users."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from joinedup.web.access import PURPOSES, User
from joinedup.web.downloads import Column, Format, Table, respond
from joinedup.web.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    access,
    allowed,
    api_user,
    client,
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


AUDIT_COLUMNS = [
    Column("seq", "Entry"),
    Column("at", "When", "UTC"),
    Column("username", "Who"),
    Column("role", "Role"),
    Column("action", "Action"),
    Column("resource", "Resource"),
    Column("detail", "Detail"),
    Column("reason", "Why"),
    Column("client", "From"),
]


def audit_table(data: dict[str, Any]) -> Table:
    """A page of the audit log as the page's table (the JSON's entries, field for field)."""
    entries = data["entries"]
    seqs = [e["seq"] for e in entries]
    span = f"entries {min(seqs)} to {max(seqs)}" if seqs else "no entries"
    chain = (
        f"chain intact, checked through entry {data['verified_through']}"
        if data["chain_intact"]
        else f"CHAIN BROKEN: {data['chain_problem']}"
    )
    return Table(
        name=f"audit-log-{data['offset'] + 1}-{data['offset'] + len(entries)}",
        title="Audit log of identifiable views and downloads, newest first",
        columns=AUDIT_COLUMNS,
        rows=[{k: e[k] for k in AuditEntry.model_fields} for e in entries],
        notes=[
            ("Definition", "Every view and download of identifiable data and every refused or "
             "unauthenticated request: who (user and role), what (action and resource), when "
             "(UTC), why (the purpose given: " + "; ".join(PURPOSES) + ") and from where. "
             f"Append-only, each entry chained to the one before by a keyed hash: {chain}."),
            ("Period", f"{span} of {data['total']:,}, newest first (offset {data['offset']}, "
             f"limit {data['limit']})"),
            ("Disclosure", "Not an aggregate, so no disclosure rule applies and nothing is "
             "suppressed: an admin-only record of access. It names staff and FHIR resource "
             "ids, never a patient's NHS number or name; the download itself is audited."),
            ("Source", "joinedup access store's audit log"),
        ],
    )  # fmt: skip


@router.get("/api/v1/audit", response_model=AuditOut, tags=["access"])
def api_audit(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Annotated[
        Format, Query(description="json, or csv or xlsx to download these entries (audited).")
    ] = "json",
) -> Any:
    """The audit log of identifiable views and downloads, newest first (admins only); as CSV
    or Excel, the same entries with the log's notes, the download itself audited."""
    allowed(user, "audit")
    data = audit_page_data(request, limit, offset)
    if format == "json":
        return data
    table = audit_table(data)
    # Audited after reading, so the file is the entries asked for; the entry names only the
    # range and format, never an entry's content.
    access(request).audit(
        user, "download", "audit", reason="",
        detail=f"{len(data['entries'])} entries from offset {offset} as {format}",
        client=client(request),
    )  # fmt: skip
    return respond(table, format)


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
        download=f"/api/v1/audit?limit={PAGE_SIZE}&offset={(page - 1) * PAGE_SIZE}",
    )  # fmt: skip
