"""The headline summary of an area ("in brief": worse and better than England, and what has
changed), shown first on the overview and every profile page and served as JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from joinedup.errors import InputError
from joinedup.web.access import User
from joinedup.web.site import allowed, api_user, cached_json, dashboard

router = APIRouter()


class HeadlineOut(BaseModel):
    indicator_id: str
    title: str
    text: str = Field(description="The sentence shown, with the figures behind it.")
    kind: str = Field(description="worse or better (than England), or the trend in words.")


class HeadlinesOut(BaseModel):
    level: str
    area_code: str
    area_name: str
    period: str | None = Field(description="The latest period (ISO 8601 interval).")
    summary: str
    worse: list[HeadlineOut] = Field(
        description="Significantly worse than England, furthest first."
    )
    better: list[HeadlineOut]
    changes: list[HeadlineOut] = Field(description="Significant recent trends, worse first.")
    published: int
    compared: int
    differ: int
    periods: int


@router.get(
    "/api/v1/headlines/{level}/{area_code}", response_model=HeadlinesOut, tags=["indicators"],
    responses={404: {"description": "No values for this area"}},
)  # fmt: skip
async def api_headlines(
    request: Request,
    level: Literal["system", "place", "pcn", "practice"],
    area_code: str,
    user: Annotated[User, Depends(api_user)],
) -> Response:
    """One area's headline summary: indicators significantly worse and better than England
    in the latest period, and those with a significant recent trend, in sentences."""
    allowed(user, "overview")
    board = dashboard(request)
    return await cached_json(
        request, ("headlines", level, area_code), lambda: board.headlines(level, area_code)
    )


def for_page(request: Request, level: str, code: str | None = None) -> dict[str, Any] | None:
    """The headline summary for a page (`code` None: the system's), or None when the
    warehouse has no indicator values for the area, so the page simply shows none."""
    board = dashboard(request)
    area = code if code is not None else str(board.ics().get("ics_code", ""))
    try:
        return board.headlines(level, area)
    except InputError:
        return None
