"""The master person index's review queue (issue 17): pairs of records linkage was unsure of,
with the evidence in words and both records side by side, for a reviewer (the admin role,
`person_index` in web/access.py) to accept or reject with a reason. Decisions go to the
records store's decision log and are applied by the next `joinedup link index --records` run.

The records are identifiable, so only the reviewer's role sees them; every view, decision and
refusal is audited by the store's own ids: each pair by its records' person_ids, a decision by
its number in the store's decision log. Never a name, an NHS number or a source system's local
record id (a hospital number is an identifier too); the decision log, behind the same access,
says which records a decision was about.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from joinedup.errors import InputError
from joinedup.linkage.mpi import Decision, RecordKey, ReviewItem, effective_decisions
from joinedup.records import PersonIndexStore, ReviewPair
from joinedup.web.access import User
from joinedup.web.site import Site, access, api_user, client, csrf_token, page_user, render

router = APIRouter()

AREA = "person_index"
REVIEW_PAGE_SIZE = 20
MAX_REASON_LENGTH = 500


class ReviewRecordOut(BaseModel):
    source: str
    record_id: str
    person_id: str
    given_name: str | None = None
    family_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    postcode: str | None = None
    nhs_number: str | None = None


class PendingDecision(BaseModel):
    decision: Literal["accept", "reject"]
    decided_by: str
    decided_at: datetime
    reason: str


class ReviewPairOut(BaseModel):
    pair: str = Field(
        description="The pair by its records' sources and local ids (source:id~source:id), "
        "for the reviewer; the audit log names it by person_id (`people`)."
    )
    people: str = Field(description="The pair as the audit log names it: person_id~person_id.")
    queued_for: str
    match_probability: float | None
    match_weight: float | None
    evidence: str
    left: ReviewRecordOut
    right: ReviewRecordOut
    decision: PendingDecision | None = Field(
        None, description="The decision in force, applied by the next `link index` run."
    )


class ReviewQueueOut(BaseModel):
    total: int
    limit: int
    offset: int
    pairs: list[ReviewPairOut]


class DecisionIn(BaseModel):
    left_source: str = Field(min_length=1, max_length=64)
    left_record_id: str = Field(min_length=1, max_length=128)
    right_source: str = Field(min_length=1, max_length=64)
    right_record_id: str = Field(min_length=1, max_length=128)
    decision: Literal["accept", "reject"]
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class DecisionOut(BaseModel):
    pair: str
    decision_id: int = Field(
        description="The decision's number in the store's log, as the audit log names it."
    )
    decision: Literal["accept", "reject"]
    decided_by: str
    decided_at: datetime
    reason: str
    applied: str = "on the next `joinedup link index --records` run"


def mount_person_index(app: FastAPI, store: PersonIndexStore) -> None:
    """Serve the review queue of the index in `store` from `app`; the caller closes `store`
    when the server stops. The navigation offers the queue (to whoever may open it) only in
    an application that serves it."""
    app.state.person_index = store
    app.include_router(router)
    site: Site = app.state.site
    site.env.globals["person_index_review"] = True


def _store(request: Request) -> PersonIndexStore:
    store: PersonIndexStore = request.app.state.person_index
    return store


def pair_ref(left: RecordKey, right: RecordKey) -> str:
    """A pair as the reviewer names it: its sources and local record ids, in order (never
    in the audit log: see `people_ref`)."""
    a, b = sorted((left, right))
    return f"{a[0]}:{a[1]}~{b[0]}:{b[1]}"


def people_ref(item: ReviewItem) -> str:
    """A queued pair as the audit log names it: its records' person_ids, in the store's own
    ids rather than the source systems' local record ids."""
    a, b = sorted((item.left_person_id, item.right_person_id))
    return f"{a}~{b}"


def _reviewer(request: Request, user: User, resource: str) -> None:
    """403 for anyone but a reviewer, and the refusal audited."""
    if user.may(AREA):
        return
    message = "The person index's review queue is for administrators and data engineers only"
    access(request).audit(
        user, "denied", resource, detail=message, reason="", client=client(request)
    )
    raise HTTPException(403, message)


def _pairs_out(store: PersonIndexStore, pairs: list[ReviewPair]) -> list[ReviewPairOut]:
    in_force = effective_decisions(store.decisions())
    out = []
    for p in pairs:
        found = in_force.get(frozenset((p.item.left, p.item.right)))
        out.append(
            ReviewPairOut(
                pair=pair_ref(p.item.left, p.item.right),
                people=people_ref(p.item),
                queued_for=p.item.queued_for,
                match_probability=p.item.match_probability,
                match_weight=p.item.match_weight,
                evidence=p.item.evidence,
                left=ReviewRecordOut(
                    source=p.left.source,
                    record_id=p.left.record_id,
                    person_id=p.left.person_id,
                    **p.left.fields,
                ),
                right=ReviewRecordOut(
                    source=p.right.source,
                    record_id=p.right.record_id,
                    person_id=p.right.person_id,
                    **p.right.fields,
                ),
                decision=None
                if found is None
                else PendingDecision(
                    decision=found.decision,
                    decided_by=found.decided_by,
                    decided_at=found.decided_at,
                    reason=found.reason,
                ),
            )
        )
    return out


def _queue(request: Request, user: User, limit: int, offset: int) -> ReviewQueueOut:
    store = _store(request)
    total, pairs = store.review_pairs(limit=limit, offset=offset)
    shown = _pairs_out(store, pairs)
    access(request).audit(
        user, "view", "person-index/review",
        detail=f"{len(shown)} of {total} pairs from offset {offset}: "
        + ", ".join(p.people for p in shown),
        reason="review", client=client(request),
    )  # fmt: skip
    return ReviewQueueOut(total=total, limit=limit, offset=offset, pairs=shown)


def _decide(request: Request, user: User, given: DecisionIn) -> DecisionOut:
    """Save a decision on a queued pair (404 if the pair is not in the queue) and audit it."""
    left = (given.left_source, given.left_record_id)
    right = (given.right_source, given.right_record_id)
    ref = pair_ref(left, right)
    store = _store(request)
    queued = None if left == right else store.queued(left, right)
    if queued is None:
        raise HTTPException(404, f"Pair {ref} is not in the review queue")
    reason = given.reason.strip()
    if not reason:
        raise HTTPException(422, "Give a reason for the decision")
    decision = Decision(left, right, given.decision, user.username, datetime.now(UTC), reason)
    try:
        number = store.decide(decision)
    except InputError as err:
        raise HTTPException(422, str(err)) from err
    access(request).audit(
        user, "decide", f"person-index/decision/{number}",
        detail=f"{given.decision}: {people_ref(queued)}", reason=reason, client=client(request),
    )  # fmt: skip
    return DecisionOut(
        pair=ref, decision_id=number, decision=given.decision, decided_by=user.username,
        decided_at=decision.decided_at, reason=reason,
    )  # fmt: skip


# --- the JSON API -------------------------------------------------------------------------


@router.get(
    "/api/v1/person-index/review", response_model=ReviewQueueOut, tags=["person index"],
    responses={403: {"description": "Not an administrator"}},
)  # fmt: skip
def api_review_queue(
    request: Request,
    user: Annotated[User, Depends(api_user)],
    limit: Annotated[int, Query(ge=1, le=200)] = REVIEW_PAGE_SIZE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReviewQueueOut:
    """Pairs waiting for a decision, with their evidence and both records (identifiable:
    administrators and data engineers only; audited)."""
    _reviewer(request, user, "person-index/review")
    return _queue(request, user, limit, offset)


@router.post(
    "/api/v1/person-index/decisions", response_model=DecisionOut, status_code=201,
    tags=["person index"],
    responses={403: {"description": "Not an administrator"},
               404: {"description": "Not a pair in the review queue"}},
)  # fmt: skip
def api_decide(
    request: Request, user: Annotated[User, Depends(api_user)], given: DecisionIn
) -> DecisionOut:
    """Accept (link) or reject (never link) a pair in the review queue, with a reason; the
    next `joinedup link index --records` run applies it. Audited."""
    _reviewer(request, user, "person-index/decisions")
    return _decide(request, user, given)


# --- the pages ----------------------------------------------------------------------------


@router.get("/person-index/review", response_class=HTMLResponse, include_in_schema=False)
def review_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    _reviewer(request, user, "person-index/review")
    queue = _queue(request, user, REVIEW_PAGE_SIZE, (page - 1) * REVIEW_PAGE_SIZE)
    response = render(
        request, "person_index_review.html.j2", user, queue=queue, page=page,
        pages=max(1, -(-queue.total // REVIEW_PAGE_SIZE)), fields=_FIELDS,
        max_reason=MAX_REASON_LENGTH,
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/person-index/review/decide", include_in_schema=False)
def review_decide(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    csrf: Annotated[str, Form()] = "",
    left_source: Annotated[str, Form()] = "",
    left_record_id: Annotated[str, Form()] = "",
    right_source: Annotated[str, Form()] = "",
    right_record_id: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    page: Annotated[int, Form(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The page's accept / reject form (no JavaScript needed): with the CSRF token; back to
    the same page of the queue."""
    if not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "This form has expired: open the review queue again")
    _reviewer(request, user, "person-index/decisions")
    if decision not in ("accept", "reject"):
        raise HTTPException(422, "Choose accept or reject")
    if not reason.strip():
        raise HTTPException(422, "Give a reason for the decision")
    try:
        given = DecisionIn(
            left_source=left_source, left_record_id=left_record_id,
            right_source=right_source, right_record_id=right_record_id,
            decision=decision, reason=reason.strip(),
        )  # fmt: skip
    except ValueError as err:
        raise HTTPException(422, "The pair or reason is not valid (a reason is at most "
                            f"{MAX_REASON_LENGTH} characters)") from err  # fmt: skip
    _decide(request, user, given)
    return RedirectResponse(f"/person-index/review?page={page}", status_code=303)


#: The identity fields shown side by side, with their labels.
_FIELDS = (
    ("nhs_number", "NHS number"),
    ("family_name", "Family name"),
    ("given_name", "Given name"),
    ("birth_date", "Date of birth"),
    ("sex", "Sex"),
    ("postcode", "Postcode"),
    ("person_id", "person_id now"),
)
