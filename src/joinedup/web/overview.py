"""Population health in aggregate: the system overview, places and PCNs (pages and API)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from joinedup.web import headlines
from joinedup.web.access import User
from joinedup.web.site import allowed, api_user, cached_json, dashboard, figures, page_user, render

router = APIRouter()


class PlaceOut(BaseModel):
    place_code: str
    place_name: str
    people: int | None = Field(
        description="Registered people, opt-outs excluded; null when suppressed."
    )
    people_text: str
    share: str
    pcns: int
    practices: int


class PcnOut(BaseModel):
    pcn_code: str
    pcn_name: str
    place_code: str
    place_name: str
    people: int | None
    people_text: str
    practices: int


# --- system overview -------------------------------------------------------------------------


@router.get("/api/v1/overview", response_model=dict[str, Any], tags=["population health"])
async def api_overview(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """The system overview: population by place, pyramid, segments, risk tiers,
    inequality gaps with 95% confidence intervals, and deaths."""
    allowed(user, "overview")
    return await cached_json(request, ("overview",), dashboard(request).overview)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def overview_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "overview")
    r = figures(dashboard(request).overview)
    return render(request, "overview.html.j2", user, r=r, h=headlines.for_page(request, "system"))


# --- places ----------------------------------------------------------------------------------


@router.get("/api/v1/places", response_model=list[PlaceOut], tags=["places"])
async def api_places(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Every place with its registered people (disclosure-controlled) and PCNs."""
    allowed(user, "places")
    return await cached_json(request, ("places",), dashboard(request).places)


@router.get(
    "/api/v1/places/{place_code}", response_model=dict[str, Any], tags=["places"],
    responses={404: {"description": "No such place"}},
)  # fmt: skip
async def api_place(
    request: Request, place_code: str, user: Annotated[User, Depends(api_user)]
) -> Response:
    """One place's profile: the overview at place level, its PCNs, against the system."""
    allowed(user, "places")
    board = dashboard(request)
    return await cached_json(request, ("place", place_code), lambda: board.place(place_code))


@router.get("/api/v1/pcns", response_model=list[PcnOut], tags=["places"])
async def api_pcns(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    place: Annotated[str | None, Query(description="Only this place's PCNs.")] = None,
) -> Response:
    """PCNs with their registered people (disclosure-controlled)."""
    allowed(user, "places")
    board = dashboard(request)
    if place is not None and place not in board.place_names():
        return JSONResponse([])  # no such place: no PCNs (and nothing kept for it)
    return await cached_json(request, ("pcns", place or ""), lambda: board.pcns(place))


@router.get("/places", response_class=HTMLResponse, include_in_schema=False)
def places_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "places")
    board = dashboard(request)
    return render(request, "places.html.j2", user, places=board.places(), map=board.map(None))


@router.get("/places/{place_code}", response_class=HTMLResponse, include_in_schema=False)
def place_page(
    request: Request, place_code: str, user: Annotated[User, Depends(page_user)]
) -> Response:
    allowed(user, "places")
    board = dashboard(request)
    r = figures(lambda: board.place(place_code))
    h = headlines.for_page(request, "place", place_code)
    return render(request, "place.html.j2", user, r=r, system=board.overview(), h=h)
