"""Data quality: the latest FHIR loads, rejected records (file, line and reason, never their
content), unmapped codes and field completeness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from joinedup.web.access import User
from joinedup.web.downloads import (
    Column,
    Format,
    Table,
    TableOut,
    as_json,
    cached_download,
    percent,
    respond,
)
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
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Any:
    """Rejected records with file, line and reason (never their content); a CSV or Excel
    download holds the same page of rows."""
    allowed(user, "data_quality")
    board = dashboard(request)
    total, rows = board.quarantine(limit, offset)
    if format != "json":
        first, last = offset + 1, offset + len(rows)
        table = Table(
            "quarantined-records", "Quarantined records",
            [Column("load_id", "Load"), Column("source_file", "File"),
             Column("source_line", "Line"), Column("resource_type", "Resource type"),
             Column("resource_id", "Resource id"), Column("reason", "Reason")],
            rows,
            _notes(board.data_quality(), "Records a FHIR load set aside, with the file, line "
                   f"and reason (never their content): rows {first:,} to {last:,} of "
                   f"{total:,}, newest load first."),
        )  # fmt: skip
        return respond(table, format)
    return {"total": total, "limit": limit, "offset": offset, "rows": rows}


def _notes(dq: dict[str, Any], definition: str) -> list[tuple[str, str]]:
    rule = str(dq["disclosure_rule"])
    latest = dq["loads"][0] if dq["loads"] else None
    return [
        ("Definition", definition),
        ("Period", f"The warehouse as served; latest FHIR load {latest['load_id']} finished "
         f"{latest['finished_at']}" if latest else "The warehouse as served (no FHIR load)"),
        ("Disclosure", f"{rule[:1].upper()}{rule[1:]}; a suppressed cell is left empty."),
        ("Source", f"joinedup warehouse ({dq['source'] or 'unknown source'})"),
    ]  # fmt: skip


def _loads(dq: dict[str, Any]) -> Table:
    rows = [{**r, "inputs": ", ".join(r["inputs"])} for r in dq["loads"]]
    return Table(
        "fhir-loads", "FHIR loads, newest first",
        [Column("load_seq", "Load number"), Column("load_id", "Load"),
         Column("started_at", "Started"), Column("finished_at", "Finished"),
         Column("inputs", "Files"), Column("resources_in_count", "Read", "resources"),
         Column("stored_count", "Stored", "resources"),
         Column("unchanged_count", "Unchanged", "resources"),
         Column("quarantined_count", "Quarantined", "resources")],
        rows, _notes(dq, "Each FHIR load: the files read, and how many resources were stored, "
                     "unchanged or set aside (quarantined)."),
    )  # fmt: skip


def _reasons(dq: dict[str, Any]) -> Table:
    return Table(
        "quarantine-reasons", "Why records of the latest load were set aside",
        [Column("reason", "Reason"), Column("detail", "Detail"),
         Column("items_count", "Records", "records")],
        dq["quarantine_reasons"],
        _notes(dq, "Why records of the latest FHIR load were set aside, by reason."),
    )  # fmt: skip


def _unmapped(dq: dict[str, Any]) -> Table:
    rows = [{**r, "share_percent": percent(r["share"])} for r in dq["unmapped"]]
    return Table(
        "unmapped-codes", "Most frequent unmapped diagnosis codes",
        [Column("code_system", "Code system"), Column("code", "Code"),
         Column("records", "Records", "records"),
         Column("share_percent", "Share of diagnoses", "%")],
        rows, _notes(dq, "Diagnosis codes in the warehouse that no population health code list "
                     "includes (the 25 most frequent), by how many records carry them."),
    )  # fmt: skip


def _load_unmapped(dq: dict[str, Any]) -> Table:
    return Table(
        "load-unmapped-codes", "Codes the latest FHIR load could not map",
        [Column("item", "Item"), Column("detail", "Detail"), Column("count", "Count")],
        dq["load_unmapped"],
        _notes(dq, "Codes the latest FHIR load could not map, with how often each occurred."),
    )  # fmt: skip


def _completeness(dq: dict[str, Any]) -> Table:
    rows = [{**r, "complete_percent": percent(r["complete"])} for r in dq["completeness"]]
    return Table(
        "completeness", "People with each field recorded",
        [Column("field", "Field"), Column("missing", "Missing", "people"),
         Column("complete_percent", "Complete", "%")],
        rows, _notes(dq, "How many registered people lack each field population health relies "
                     "on, and the share complete (from the published counts)."),
    )  # fmt: skip


#: The data quality page's tables by the name their download route takes.
DATA_QUALITY_TABLES: dict[str, Callable[[dict[str, Any]], Table]] = {
    "loads": _loads,
    "quarantine-reasons": _reasons,
    "unmapped-codes": _unmapped,
    "load-unmapped-codes": _load_unmapped,
    "completeness": _completeness,
}


@router.get(
    "/api/v1/data-quality/{table}", response_model=TableOut, tags=["data quality"],
    responses={404: {"description": "No such table"}},
)  # fmt: skip
async def api_data_quality_table(
    request: Request,
    table: str,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """One of the data quality tables (loads, quarantine-reasons, unmapped-codes,
    load-unmapped-codes, completeness) with its notes: as JSON, or as a CSV or Excel file."""
    allowed(user, "data_quality")
    make = DATA_QUALITY_TABLES.get(table)
    if make is None:
        raise HTTPException(404, f"no data quality table {table[:60]!r}; choose from "
                            + ", ".join(DATA_QUALITY_TABLES))  # fmt: skip
    board = dashboard(request)
    key = ("data-quality-table", table)
    if format == "json":
        return await cached_json(request, key, lambda: as_json(make(board.data_quality())))
    return await cached_download(request, key, lambda: make(board.data_quality()), format)


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
        quarantine_total=total, page=page, pages=pages(total), page_size=PAGE_SIZE,
    )  # fmt: skip
