"""The audit log for admins: its entries, newest first, with the hash chain checked, and the
users."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from joinedup.web.access import PURPOSES, ROLE_LABELS, AccountReview, AuditSpan, User
from joinedup.web.audit import AuditCheck
from joinedup.web.downloads import (
    Column,
    Format,
    Table,
    TableOut,
    as_json,
    csv_chunks,
    respond,
    streamed,
    write_xlsx,
)
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
    return _audit_log_table(
        f"audit-log-{data['offset'] + 1}-{data['offset'] + len(entries)}",
        [{k: e[k] for k in AuditEntry.model_fields} for e in entries],
        chain,
        f"{span} of {data['total']:,}, newest first (offset {data['offset']}, "
        f"limit {data['limit']})",
        "download",
    )


def _audit_log_table(
    name: str, rows: list[dict[str, Any]], chain: str, period: str, made_by: str
) -> Table:
    """The audit log's table with its notes: what an entry records and the state of the
    chain, the period covered, and why no disclosure rule applies (`made_by` the download or
    the export, which is audited itself)."""
    return Table(
        name=name,
        title="Audit log of identifiable views and downloads, newest first",
        columns=AUDIT_COLUMNS,
        rows=rows,
        notes=[
            ("Definition", "Every view and download of identifiable data and every refused or "
             "unauthenticated request: who (user and role), what (action and resource), when "
             "(UTC), why (the purpose given: " + "; ".join(PURPOSES) + ") and from where. "
             f"Append-only, each entry chained to the one before by a keyed hash: {chain}."),
            ("Period", period),
            ("Disclosure", "Not an aggregate, so no disclosure rule applies and nothing is "
             "suppressed: an admin-only record of access. It names staff and FHIR resource "
             f"ids, never a patient's NHS number or name; the {made_by} itself is audited."),
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


# --- the whole log, or a period of it, as one file -------------------------------------------


def _instant(name: str, text: str | None, *, end: bool) -> datetime | None:
    """`since` or `until` as an instant in UTC: a date is that whole UTC day (from its start
    for `since`, to its end for `until`, so the bound returned for `until` is the next day's
    start, exclusive); a date-time without an offset is taken as UTC. None when not given."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None:
        raise HTTPException(
            422,
            f"{name}: {text[:40]!r} is not a date (YYYY-MM-DD) or a date and time "
            "(YYYY-MM-DDTHH:MM:SS, UTC unless it gives an offset)",
        )
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # A date-time `until` includes its own instant: entries before the next microsecond.
    return moment + timedelta(microseconds=1) if end else moment


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _period_text(since: str | None, until: str | None) -> str:
    start = f"from {since.strip()}" if since and since.strip() else "from the first entry"
    end = f"until {until.strip()}" if until and until.strip() else "to the newest"
    return f"{start} {end} (UTC)"


def audit_export_table(check: AuditCheck, span: AuditSpan, through: int, period: str) -> Table:
    """The head of a whole-log export: the page's columns, and notes naming the period, the
    entries in it and how far the hash chain was checked (the rows are streamed)."""
    chain = (
        f"chain intact: every entry from the first to {check.verified_through} was checked "
        "when this file was made"
        if check.intact
        else f"CHAIN BROKEN: {check.problem}"
    )
    if check.legacy_entries:
        chain += f"; the first {check.legacy_entries:,} are unkeyed legacy entries (plain SHA-256)"
    span_text = (
        f"{span.entries_count:,} entries, numbers {span.first} to {span.last}"
        if span.entries_count
        else "no entries"
    )
    name = f"audit-log-{span.first}-{span.last}" if span.entries_count else "audit-log-empty"
    return _audit_log_table(
        name,
        [],
        chain,
        f"{span_text}, newest first, written {period}; the log up to entry {through} when "
        "this file was made (later entries, this export's own among them, are not in it)",
        "export",
    )


def _xlsx_chunks(table: Table, rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """The workbook written (write-only) to an unnamed temporary file, then sent from it in
    pieces: a zip cannot be sent before it is finished, but it need not sit in memory."""
    with tempfile.TemporaryFile() as spool:
        write_xlsx(spool, table, rows)
        spool.seek(0)
        while chunk := spool.read(1 << 16):
            yield chunk


@router.get("/api/v1/audit/export", tags=["access"], response_class=StreamingResponse)
async def api_audit_export(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[
        Literal["csv", "xlsx"], Query(description="csv (streamed) or xlsx (Excel).")
    ] = "csv",
    since: Annotated[
        str | None,
        Query(description="Entries written from this UTC date (YYYY-MM-DD) or date-time on."),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="Entries written up to this UTC date (the whole day) or date-time."),
    ] = None,
) -> Response:
    """The whole audit log, or the entries written from `since` until `until`, newest first,
    as one CSV (streamed) or Excel file, with the page's columns and notes naming the period
    and the hash chain's check (every entry checked first). Admins only, as the page is; the
    export is itself audited (how many entries, their numbers, the period and the format)."""
    allowed(user, "audit")
    start, before = _instant("since", since, end=False), _instant("until", until, end=True)
    if start is not None and before is not None and start >= before:
        raise HTTPException(422, "until: must be after since")
    store = access(request)
    # Every entry is checked before any is sent, so the notes vouch for the whole file.
    check = await run_in_threadpool(store.verify_audit, full=True)
    through = check.verified_through if check.intact else store.newest_entry()
    span = await run_in_threadpool(store.audit_span, through, start, before)
    period = _period_text(since, until)
    table = audit_export_table(check, span, through, period)
    # Audited before the file is sent, so an export broken off part-way is still recorded;
    # the entry names how many entries, their numbers and the period, never their content.
    await run_in_threadpool(
        partial(
            store.audit, user, "export", "audit", reason="", client=client(request),
            detail=f"{span.entries_count} entries ({span.first} to {span.last}) {period} "
            f"as {format}",
        )
    )  # fmt: skip
    rows = store.iter_audit(through, start, before)
    if format == "csv":
        return streamed(csv_chunks(table, rows), table.name, "csv")
    return streamed(_xlsx_chunks(table, rows), table.name, "xlsx")


# --- the accounts, for an access review ----------------------------------------------------

ACCOUNT_COLUMNS = [
    Column("username", "Username"),
    Column("name", "Name"),
    Column("role", "Role"),
    Column("organisation", "Organisation", "ODS code"),
    Column("practice", "Practice", "ODS code"),
    Column("pcn", "PCN", "ODS code"),
    Column("sees", "Sees"),
    Column("demo", "Demo account"),
    Column("created_at", "Created", "UTC"),
    Column("last_sign_in_at", "Last signed in", "UTC"),
    Column("proxies_count", "Proxy for", "people"),
    Column("live_sessions_count", "Live sessions and tokens"),
]


def accounts_table(accounts: list[AccountReview]) -> Table:
    """Every active account with what a periodic access review asks (who, what they may see,
    since when, last sign-in): the page's users table, and more, as a downloadable table."""
    rows = [
        {
            "username": a.user.username,
            "name": a.user.display_name,
            "role": ROLE_LABELS[a.user.role],
            "organisation": a.user.organisation_code,
            "practice": a.user.practice_code,
            "pcn": a.user.pcn_code,
            "sees": a.user.scope,
            "demo": "yes" if a.user.demo else "no",
            "created_at": a.created_at,
            "last_sign_in_at": a.last_sign_in_at,
            "proxies_count": a.proxies_count,
            "live_sessions_count": a.live_sessions_count,
        }
        for a in accounts
    ]
    return Table(
        name="accounts",
        title="Who may sign in: active accounts for an access review",
        columns=ACCOUNT_COLUMNS,
        rows=rows,
        notes=[
            ("Definition", "Every active account of the dashboard and the records API: its "
             "role and the population whose records it may see, when it was made, when it "
             "last signed in with a password (empty: never, or not since the access store "
             "began recording sign-ins), how many people a citizen acts for as a proxy, and "
             "how many sessions and tokens are live now. Review accounts not signed in for "
             "a long time and roles that no longer fit the person's work."),
            ("Disclosure", "Not an aggregate, so no disclosure rule applies: an admin-only "
             "list of accounts. A citizen's account names the person who holds it but not "
             "their record: no Patient id, NHS number or proxy's Patient leaves the access "
             "store this way, only counts. The download itself is audited."),
            ("Source", "joinedup access store's users, proxies and sessions"),
        ],
    )  # fmt: skip


@router.get("/api/v1/accounts", response_model=TableOut, tags=["access"])
def api_accounts(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[
        Format, Query(description="json, or csv or xlsx to download the accounts (audited).")
    ] = "json",
) -> Any:
    """Every active account for an access review (admins only): role, what it may see,
    created, last sign-in, proxies and live sessions; every answer is audited, naming only
    how many accounts and the format."""
    allowed(user, "audit")
    table = accounts_table(access(request).account_review())
    access(request).audit(
        user, "download" if format != "json" else "view", "accounts", reason="",
        detail=f"{len(table.rows)} accounts as {format}", client=client(request),
    )  # fmt: skip
    if format == "json":
        return as_json(table)
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
        accounts=access(request).account_review(),
        download=f"/api/v1/audit?limit={PAGE_SIZE}&offset={(page - 1) * PAGE_SIZE}",
    )  # fmt: skip
