"""About this data: synthetic or real, when and how it was built, the disclosure rule, and
the warehouse's tables with their rows (a page, its JSON, and the table as CSV or Excel)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from joinedup.web.access import User
from joinedup.web.dashboard import Dashboard
from joinedup.web.downloads import Column, Format, Table, TableOut, as_json, cached_download
from joinedup.web.site import allowed, api_user, cached_json, dashboard, page_user, render

router = APIRouter()


@router.get("/api/v1/about", response_model=dict[str, Any], tags=["about"])
async def api_about(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Where the data came from: synthetic or real, when built, seed, version, rules."""
    allowed(user, "about")
    return await cached_json(request, ("about",), dashboard(request).about)


def tables_table(board: Dashboard) -> Table:
    """About's "Tables in the warehouse": each table's name and rows, as the page lists them."""
    about = board.about()
    build = about["build"]
    rule = str(about["disclosure_rule"])
    rows = [{"table": name, "rows": count} for name, count in about["tables"].items()]
    covers = (
        f"Records cover {build.get('start_date')} to {build.get('end_date')}; warehouse built "
        f"at {build.get('built_at')}"
        if build
        else "The warehouse's build period is not recorded"
    )
    run = about["phm_run"]
    return Table(
        name="warehouse-tables",
        title=f"Tables in the warehouse, {about['ics_name']}",
        columns=[Column("table", "Table"), Column("rows", "Rows", "rows")],
        rows=rows,
        notes=[
            ("Definition", "The rows held in each table of the warehouse the dashboard serves "
             "(the previous year's population tables left out), counted when it was opened; "
             "each table is described in docs/warehouse.md."),
            ("Period", f"{covers}; population health run {run.get('run_id')}, index date "
             f"{run.get('index_date')}."),
            ("Disclosure", "Whole tables' row counts, not counts of people in an area, so "
             f"nothing is suppressed here; every aggregate elsewhere follows the rule: {rule}."),
            ("Source", f"joinedup {about['version']} warehouse of {about['ics_name']} "
             f"({about['ics_code']}), "
             + ("synthetic: generated people, no real patients" if about["synthetic"]
                else "real records")),
        ],
    )  # fmt: skip


@router.get("/api/v1/about/tables", response_model=TableOut, tags=["about"])
async def api_about_tables(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    format: Annotated[Format, Query(description="json, csv or xlsx (Excel).")] = "json",
) -> Response:
    """The warehouse's tables with their rows, as About lists them, with the notes."""
    allowed(user, "about")
    board = dashboard(request)
    if format == "json":
        return await cached_json(request, ("about-tables",), lambda: as_json(tables_table(board)))
    return await cached_download(request, ("about-tables",), lambda: tables_table(board), format)


@router.get("/about", response_class=HTMLResponse, include_in_schema=False)
def about_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "about")
    return render(request, "about.html.j2", user, about=dashboard(request).about())
