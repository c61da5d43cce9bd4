"""About this data: synthetic or real, when and how it was built, the disclosure rule."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from joinedup.web.access import User
from joinedup.web.site import allowed, api_user, cached_json, dashboard, page_user, render

router = APIRouter()


@router.get("/api/v1/about", response_model=dict[str, Any], tags=["about"])
async def api_about(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Where the data came from: synthetic or real, when built, seed, version, rules."""
    allowed(user, "about")
    return await cached_json(request, ("about",), dashboard(request).about)


@router.get("/about", response_class=HTMLResponse, include_in_schema=False)
def about_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "about")
    return render(request, "about.html.j2", user, about=dashboard(request).about())
