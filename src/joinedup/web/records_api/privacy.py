"""The privacy officer's list of break-glass grants (`GET /api/v1/privacy/break-glass`): who
broke glass for which patient (by id), when, until when, and the reason they stated. Every
view and refusal is audited (the reasons are shown, never written to the log)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from joinedup.records import RecordStore
from joinedup.web.access import User
from joinedup.web.site import access, api_user, client

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"])


class GrantOut(BaseModel):
    grant_id: str
    username: str
    patient: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    active: bool


class GrantsOut(BaseModel):
    since: datetime
    grants: list[GrantOut]


@router.get("/break-glass", response_model=GrantsOut)
def break_glass_grants(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> GrantsOut:
    """Break-glass grants of the last `days` days, newest first (privacy officer only)."""
    log = access(request)
    if not user.may("privacy"):
        log.audit(
            user, "privacy break-glass list", "privacy/break-glass", detail="403",
            reason="role not allowed", client=client(request),
        )  # fmt: skip
        raise HTTPException(403, "only the privacy officer sees break-glass grants")
    store: RecordStore = request.app.state.records
    now = store.now()
    since = now - timedelta(days=days)
    grants = [
        GrantOut(
            grant_id=g.grant_id,
            username=g.username,
            patient=f"Patient/{g.patient_id}",
            reason=g.reason,
            granted_at=g.granted_at,
            expires_at=g.expires_at,
            active=g.granted_at <= now < g.expires_at,
        )
        for g in store.grants(since)
    ]
    log.audit(
        user, "privacy break-glass list", "privacy/break-glass",
        detail=f"200; {len(grants)} grants in {days} days", reason="privacy review",
        client=client(request),
    )  # fmt: skip
    return GrantsOut(since=since, grants=grants)
