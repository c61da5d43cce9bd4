"""Finance: need, targets, pace of change, MHIS, budgets, the control total and risk share."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from joinedup.web.access import User
from joinedup.web.site import allowed, api_user, cached_json, dashboard, figures, page_user, render

router = APIRouter()


@router.get("/api/v1/finance", response_model=dict[str, Any], tags=["finance"])
async def api_finance(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Need indices, targets against baselines, distance from target, the pace-of-change
    path, MHIS and guarantees, the control total and forecast, and the risk share."""
    allowed(user, "finance")
    return await cached_json(request, ("finance",), dashboard(request).finance)


@router.get("/finance", response_class=HTMLResponse, include_in_schema=False)
def finance_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
    allowed(user, "finance")
    return render(request, "finance.html.j2", user, r=figures(dashboard(request).finance))
