"""The joined-up record in the dashboard (issue 16, item 6), served beside the FHIR API by
`joinedup serve --records`:

- `/records`: find a person by NHS number (clinicians, care workers and admins);
- `/records/patient/{id}`: their record across settings, allowed exactly as the records API
  allows `Patient/{id}/$everything` for the same user (the API's gate and records.policy:
  a legitimate relationship, or a break-glass grant), with nothing withheld by consent or a
  sensitive category shown (a care worker: only the types records.policy.CARE_WORKER_TYPES
  names); a refusal shows no clinical content and, to a clinician or care worker, a
  break-glass form that grants through the same policy as `POST /fhir/R4/$break-glass`;
- `/privacy/break-glass`: the privacy officer's list of break-glass grants, with an alert for
  those of the last 7 days.

Every view, search, grant and refusal is audited as the records API audits it (`fhir
everything`, `fhir search`, `fhir break-glass`, with the rule that allowed it, the purpose of
use and the Patient ids), so each appears in `GET /fhir/R4/AuditEvent`; never a name or an NHS
number.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM, is_valid_nhs_number
from joinedup.records import BreakGlassError, RecordsError, RecordStore
from joinedup.records.linked_access import PersonAccess
from joinedup.records.policy import MIN_REASON_LENGTH
from joinedup.web.access import Role, User
from joinedup.web.record_timeline import (
    RECORD_TYPES,
    Record,
    build_record,
    organisation_ids,
    trend_svg,
)
from joinedup.web.records_api import interactions as fhir
from joinedup.web.records_api.audit_events import audit_context
from joinedup.web.records_api.gate import RELATIONSHIP_ROLES, Gate
from joinedup.web.records_api.interactions import Answer
from joinedup.web.records_api.linked import index_systems, linked_audit
from joinedup.web.records_api.outcome import FhirError, from_records
from joinedup.web.records_api.privacy import break_glass_grants
from joinedup.web.records_api.routes import PREFIX, policy
from joinedup.web.site import Site, access, client, csrf_token, page_user, render

router = APIRouter()

#: Who opens records in the dashboard: clinicians (by relationship) and admins (unrestricted);
#: the system role is a feed with no pages.
PAGE_ROLES = frozenset({*RELATIONSHIP_ROLES, Role.ADMIN})
#: Grants this recent are raised as an alert on the privacy officer's page.
ALERT_DAYS = 7
MAX_RESOURCES = 1000  # $everything's largest page: the record is read in pages of this
#: The policy's rules (records.policy.RULES) as the page words them.
RULE_WORDS = {
    "registered": "the person is registered with your practice",
    "episode": "an open episode of care with your organisation",
    "encounter": "a current or recent encounter with your organisation",
    "referral": "an active referral to your organisation",
    "care-team": "a care team you or your organisation are on",
    "break-glass": "your break-glass grant",
}


def shown_by(gate: Gate) -> str:
    """Why the user may see the record, in words (the audit log keeps the rule's name)."""
    if gate.unrestricted:
        return f"your {gate.user.role.value} role, which sees every record"
    return "; ".join(RULE_WORDS[r] for r in sorted(gate.rules) if r in RULE_WORDS)


def mount_records_pages(app: FastAPI) -> None:
    """Serve the record pages from `app`, which `mount_records` has given a records store;
    the navigation offers them only in an application that serves them."""
    app.include_router(router)
    site: Site = app.state.site
    site.env.globals["records_pages"] = True
    site.env.globals["records_page_roles"] = sorted(r.value for r in PAGE_ROLES)


def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.records
    return store


def _audit(
    request: Request, user: User, interaction: str, target: str, answer: Answer,
    gate: Gate | None, detail: str, reason: str,
) -> None:  # fmt: skip
    """One entry in the records API's audit trail (so an AuditEvent) for a page's access."""
    if gate is not None and gate.break_glass:
        reason = "BREAK-GLASS; " + reason
        detail += "; break-glass"
    access(request).audit(
        user, f"fhir {interaction}", f"fhir/{target}", detail=detail, reason=reason,
        client=client(request), **audit_context(user, gate, target, b"", answer),
    )  # fmt: skip


def _page_roles(request: Request, user: User, target: str) -> None:
    """403, audited, for a role that does not open records in the dashboard."""
    if user.role in PAGE_ROLES:
        return
    message = (
        f"Your role ({user.role.value}) may not open a person's record: records are for "
        "clinicians and care workers with a legitimate relationship (and administrators)"
    )
    access(request).audit(
        user, "denied", f"records/{target}", detail="403", reason="records page: role not allowed",
        client=client(request),
    )  # fmt: skip
    raise HTTPException(403, message)


# --- finding a person ------------------------------------------------------------------------


@router.get("/records", response_class=HTMLResponse, include_in_schema=False)
def find_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    nhs_number: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The search form; with `nhs_number`, the person's record (one found) or why not."""
    _page_roles(request, user, "search")
    if nhs_number is None:
        return _find(request, user, "", None, [], 200)
    digits = "".join(c for c in nhs_number if not c.isspace() and c != "-")
    if not (len(digits) == 10 and digits.isdigit()):
        return _find(request, user, nhs_number, "Enter an NHS number of 10 digits", [], 422)
    if not is_valid_nhs_number(digits):
        wrong = "This is not a valid NHS number: its check digit is wrong. Check it and try again"
        return _find(request, user, nhs_number, wrong, [], 422)
    store = _store(request)
    page = store.search("Patient", [("identifier", f"{NHS_NUMBER_SYSTEM}|{digits}")])
    ids = [str(p["id"]) for p in page.resources]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": p} for p in page.resources]}
    _audit(
        request, user, "search", "Patient?identifier", Answer(200, bundle), None,
        detail=f"200; {len(ids)} found; dashboard find by NHS number",
        reason="records page: find a person by NHS number to open their record",
    )  # fmt: skip
    if len(ids) == 1:
        return RedirectResponse(f"/records/patient/{ids[0]}", status_code=303)
    error = None if ids else "No one with this NHS number is in the shared care record"
    return _find(request, user, nhs_number, error, ids, 200 if ids else 404)


def _find(
    request: Request, user: User, given: str, error: str | None, ids: list[str], status: int
) -> Response:
    response = render(request, "records_find.html.j2", user, given=given, error=error, ids=ids)
    response.status_code = status
    return response


# --- one person's record ---------------------------------------------------------------------


def _everything(
    store: RecordStore, base: str, pid: str, gate: Gate, systems: Mapping[str, str]
) -> tuple[list[dict[str, Any]], PersonAccess]:
    """The person's resources the user may see, as `Patient/{pid}/$everything?linked=true`
    gives them (the same gate: relationship or break-glass, consent and sensitive
    categories; the same person's other Patients by the person index, `systems` giving its
    sources' identifier systems, each decided on its own), page by page, and the decisions
    on those Patients. FhirError or RecordsError when refused or not there."""
    gate.stored(store, "Patient", pid)
    person = gate.linked(store, pid, systems)
    shown = person.shown
    found: list[dict[str, Any]] = []
    while True:
        pairs = [
            ("_type", ",".join(RECORD_TYPES)), ("_count", str(MAX_RESOURCES)),
            ("_offset", str(len(found))),
        ]  # fmt: skip
        answer = fhir.everything(store, base, pid, pairs, gate.search_scope, shown)
        body = answer.body or {}
        page = [e["resource"] for e in body.get("entry") or []]
        found += page
        if not page or len(found) >= int(body.get("total", 0)):
            break
    gate.shown(found)
    return found, person


def _record(
    request: Request, user: User, pid: str
) -> tuple[Record | None, Gate, Answer, PersonAccess | None]:
    """The record page's view of `pid`, following the person index whenever the store holds
    one (the page is the joined-up record; docs/records.md says why the API asks)."""
    store = _store(request)
    gate = Gate(user, policy(request), getattr(request.app.state, "pcn_practices", None))
    base = str(request.base_url).rstrip("/") + PREFIX
    try:
        resources, person = _everything(store, base, pid, gate, index_systems(request))
    except FhirError as err:
        return None, gate, Answer(err.status, err.outcome()), None
    except RecordsError as err:
        refusal = from_records(err)
        return None, gate, Answer(refusal.status, refusal.outcome()), None
    names = {
        str(o.get("id")): str(o.get("name") or "")
        for o in store.resources_by_id("Organization", sorted(organisation_ids(resources)))
    }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    return build_record(pid, resources, names), gate, Answer(200, bundle), person


@router.get("/records/patient/{pid}", response_class=HTMLResponse, include_in_schema=False)
async def record_page(
    request: Request, pid: str, user: Annotated[User, Depends(page_user)]
) -> Response:
    """One person's joined-up record, or the refusal (with break-glass for a clinician)."""
    _page_roles(request, user, f"patient/{pid}")
    record, gate, answer, person = await run_in_threadpool(_record, request, user, pid)
    target = f"Patient/{pid}/$everything"
    shown = "; dashboard record page"
    if record is None:
        await run_in_threadpool(
            _audit, request, user, "everything", target, answer, gate,
            f"{answer.status}; refused{shown}", gate.reason,
        )  # fmt: skip
        if answer.status != 403:
            raise HTTPException(answer.status, "No record with this id in the shared care record")
        return _refusal(request, user, pid, None, "")
    await run_in_threadpool(
        _audit, request, user, "everything", target, answer, gate,
        f"200; {len(record.timeline) + 1} resources{shown}", gate.reason,
    )  # fmt: skip
    linked = person.shown if person is not None else []
    if person is not None and person.linked:
        events = linked_audit(user, gate, pid, person, answer, client(request))
        await run_in_threadpool(access(request).audit_all, events)
    charts = [trend_svg(t) for t in record.trends]
    return render(
        request, "records_patient.html.j2", user, record=record, charts=charts,
        break_glass=gate.break_glass, rule=shown_by(gate), linked=linked,
    )  # fmt: skip


def _refusal(request: Request, user: User, pid: str, error: str | None, reason: str) -> Response:
    response = render(
        request, "records_refused.html.j2", user, pid=pid, error=error, reason=reason,
        may_break_glass=user.role in RELATIONSHIP_ROLES, min_reason=MIN_REASON_LENGTH,
    )  # fmt: skip
    response.status_code = 403 if error is None else 400
    return response


@router.post("/records/patient/{pid}/break-glass", include_in_schema=False)
def break_glass(
    request: Request,
    pid: str,
    user: Annotated[User, Depends(page_user)],
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The refusal page's break-glass form: the same grant as `POST /fhir/R4/$break-glass`
    (records.policy), audited as BREAK-GLASS; then the record."""
    if not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "This form has expired: open the record again")
    _page_roles(request, user, f"patient/{pid}/break-glass")
    if user.role not in RELATIONSHIP_ROLES:
        raise HTTPException(403, "Only clinicians and care workers break glass")
    gate = Gate(user, policy(request), getattr(request.app.state, "pcn_practices", None))
    try:
        grant = gate.policy.break_glass(gate.who, pid, reason)
    except BreakGlassError as err:
        refused = Answer(400, FhirError.one(400, "invalid", str(err)).outcome())
        _audit(
            request, user, "break-glass", "$break-glass", refused, gate,
            "400; invalid; dashboard break-glass form", "break-glass refused",
        )  # fmt: skip
        return _refusal(request, user, pid, str(err), reason)
    gate.rules.add("break-glass")
    gate.break_glass = True
    gate.patients.add(pid)
    granted = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}],
    }
    _audit(
        request, user, "break-glass", f"$break-glass/{grant.grant_id}", Answer(201, granted),
        gate, "201; dashboard break-glass form", gate.reason,
    )  # fmt: skip
    return RedirectResponse(f"/records/patient/{pid}", status_code=303)


# --- the privacy officer ---------------------------------------------------------------------


@router.get("/privacy/break-glass", response_class=HTMLResponse, include_in_schema=False)
def privacy_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> Response:
    """Break-glass grants of the last `days` days (the privacy officer's API's answer), with
    an alert for those of the last week."""
    listed = break_glass_grants(request, user, days)  # 403 and audited for other roles
    recent_since = _store(request).now() - timedelta(days=ALERT_DAYS)
    recent = [g for g in listed.grants if g.granted_at >= recent_since]
    return render(
        request, "records_privacy.html.j2", user, listed=listed, recent=recent, days=days,
        alert_days=ALERT_DAYS,
    )  # fmt: skip


__all__ = ["mount_records_pages", "router"]
