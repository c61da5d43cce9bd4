"""A citizen's own record (`/my-record`, issue 16): what the records store holds about them
across settings, grouped by type with each item's source organisation, and who has looked at
it, from the records API's audit trail (newest first), and their sharing choices: an objection
to sharing their record outside their GP practice, made and withdrawn here
(`POST /my-record/sharing`). Only the citizen role sees the page, and only their own record
(the Patient their account is linked to) or one they are a proxy for; the view and every
change are audited. Needs the dashboard served with a records store
(`joinedup serve --records`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from joinedup.records import Policy, RecordsError, RecordStore, VersionConflictError
from joinedup.records.consent import (
    citizen_objection,
    is_objection,
    recording_organisations,
    registered_practices,
)
from joinedup.records.policy import Requester
from joinedup.records.proxy_age import ProxyNotice
from joinedup.web.access import (
    ROLE_LABELS,
    AccessStore,
    ProxyRecord,
    RecordsAuditQuery,
    Role,
    User,
)
from joinedup.web.records_api.audit_events import organisation_of, purpose_of
from joinedup.web.records_api.gate import in_force
from joinedup.web.site import (
    PAGE_SIZE,
    access,
    allowed,
    client,
    csrf_token,
    page_user,
    pages,
    render,
)

router = APIRouter()

#: The groups of the page: a heading and the resource types shown under it.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Conditions", ("Condition",)),
    ("Medicines", ("MedicationRequest", "MedicationStatement")),
    ("Allergies", ("AllergyIntolerance",)),
    ("Observations and results", ("Observation",)),
    ("Appointments and stays", ("Encounter",)),
)
#: The most items of one type shown (the newest first); the page says how many there are.
MAX_ITEMS = 200
#: Where each type keeps the date an item is shown with, in order of preference.
DATE_ELEMENTS = (
    "onsetDateTime", "recordedDate", "effectiveDateTime", "issued", "authoredOn",
    "dateAsserted", "assertedDate",
)  # fmt: skip
#: What each interaction of the records API is, in plain English.
DID = {
    "read": "looked at part of your record",
    "vread": "looked at an earlier version of part of your record",
    "history-instance": "looked at the history of part of your record",
    "search": "searched records including yours",
    "everything": "opened your whole record",
    "create": "added to your record",
    "update": "changed your record",
    "delete": "removed part of your record",
    "break-glass": "asked for emergency access to your record",
    "bundle": "sent several changes including your record",
}
WHY = {
    "TREAT": "Your care",
    "BTG": "Emergency access (break-glass), reviewed by the privacy officer",
    "HOPERAT": "Keeping records up to date (a system feed)",
    "HSYSADMIN": "Running the system",
    "HCOMPL": "Checking who has looked at records (privacy review)",
    "PATRQT": "You asked to see it",
    "FAMRQT": "Your parent or guardian, with access to your record, looked at it for you",
    "PWATRNY": "Your attorney looked at it for you",
    "SUPNWK": "Your carer looked at it for you",
    "COC": "Your social care",
}
#: What `detail` of an audit entry starts its sharing-choice part with.
SHARING = "sharing choice"


@dataclass(frozen=True)
class Item:
    """One thing in the record: what, when, its status and who recorded it."""

    text: str
    date: str
    status: str
    source: str


@dataclass(frozen=True)
class Look:
    """One entry of who has looked: when, who (name, role, organisation), what and why, and
    whether they were let in."""

    at: str
    who: str
    role: str
    organisation: str
    did: str
    why: str
    allowed: bool


def _text(resource: dict[str, Any]) -> str:
    """What an item is: its code's text or first display, else its type."""
    for key in ("code", "medicationCodeableConcept", "type"):
        concept = resource.get(key)
        if isinstance(concept, list):
            concept = concept[0] if concept else None
        if isinstance(concept, dict):
            if concept.get("text"):
                return str(concept["text"])
            for coding in concept.get("coding") or []:
                if coding.get("display"):
                    return str(coding["display"])
            for coding in concept.get("coding") or []:
                if coding.get("code"):
                    return f"code {coding['code']}"
    reference = (resource.get("medicationReference") or {}).get("display")
    return str(reference) if reference else str(resource.get("resourceType"))


def _date(resource: dict[str, Any]) -> str:
    for key in DATE_ELEMENTS:
        if resource.get(key):
            return str(resource[key])[:10]
    for key in ("period", "effectivePeriod", "onsetPeriod"):
        start = (resource.get(key) or {}).get("start")
        if start:
            return str(start)[:10]
    return ""


def _status(resource: dict[str, Any]) -> str:
    for key in ("clinicalStatus", "verificationStatus"):
        concept = resource.get(key) or {}
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return str(resource.get("status") or "")


class _Organisations:
    """Organisation names by ODS code, read once each from the store (the code when the store
    has no Organization of that id)."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._names: dict[str, str] = {}

    def name(self, code: str) -> str:
        if code not in self._names:
            try:
                found = self._store.read("Organization", code).get("name")
            except RecordsError:
                found = None
            self._names[code] = f"{found} ({code})" if found else code
        return self._names[code]


def record_groups(
    store: RecordStore, patient_id: str, shown: Callable[[dict[str, Any]], bool] = bool
) -> list[tuple[str, int, list[Item]]]:
    """The person's record by group: its heading, how many items there are, and the newest
    MAX_ITEMS of them with their source organisations; only resources `shown` allows (what
    the policy withholds from a proxy is neither listed nor counted)."""
    names = _Organisations(store)
    groups = []
    for heading, kinds in GROUPS:
        total, items = 0, []
        for kind in kinds:
            page = store.search(
                kind, [("patient", f"Patient/{patient_id}"), ("_count", str(MAX_ITEMS))]
            )
            kept = [r for r in page.resources if shown(r)]
            total += page.total - (len(page.resources) - len(kept))
            for resource in kept:
                sources = sorted(recording_organisations(resource))
                items.append(
                    Item(
                        _text(resource),
                        _date(resource),
                        _status(resource),
                        ", ".join(names.name(s) for s in sources) or "not recorded",
                    )
                )
        items.sort(key=lambda i: i.date, reverse=True)
        groups.append((heading, total, items[:MAX_ITEMS]))
    return groups


def _person(store: RecordStore, patient_id: str) -> dict[str, str]:
    """The person's name, date of birth and GP practice, as the record has them."""
    try:
        patient = store.read("Patient", patient_id)
    except RecordsError:
        return {}
    name = (patient.get("name") or [{}])[0]
    given = " ".join(name.get("given") or [])
    gps = registered_practices(patient)
    names = _Organisations(store)
    return {
        "name": name.get("text") or " ".join(filter(None, [given, name.get("family")])),
        "birth_date": str(patient.get("birthDate") or ""),
        "practice": ", ".join(names.name(g) for g in gps),
    }


def looks(
    request: Request, user: User, patient_id: str, page: int, names: _Organisations
) -> tuple[int, list[Look], bool]:
    """Who has looked at `patient_id`'s record (`user`'s own, or one they are a proxy for)
    through the records API, newest first (a page of PAGE_SIZE), their organisations named
    by `names`: how many entries in all, the page, and whether the audit log's hash chain
    checks (when it does not, no entry is shown)."""
    log = access(request)
    check = log.verify_audit()
    if not check.intact:
        return 0, [], False
    query = RecordsAuditQuery(through=check.verified_through, patients=(frozenset({patient_id}),))
    total, rows = log.records_audit(query, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    people = {u.username: u for u in log.users()}
    found = []
    for row in rows:
        username, role = str(row["username"]), str(row["role"])
        known = people.get(username)
        who = "You" if username == user.username else known.display_name if known else username
        label = ROLE_LABELS[Role(role)] if role in Role._value2member_map_ else role
        interaction = str(row["action"]).removeprefix("fhir ")
        sharing = SHARING in str(row["detail"])
        found.append(
            Look(
                at=str(row["at"])[:16].replace("T", " "),
                who=who,
                role=label,
                organisation=names.name(str(row["organisation"])) if row["organisation"] else "-",
                did="changed the sharing choices" if sharing else DID.get(interaction, interaction),
                why="A sharing choice made on this page"
                if sharing
                else WHY.get(str(row["purpose"]), str(row["purpose"]) or "-"),
                allowed=str(row["detail"])[:1] in ("1", "2", "3"),
            )
        )
    return total, found, True


@router.get("/my-record", response_class=HTMLResponse, include_in_schema=False)
def my_record_page(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    patient: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """A citizen's own record and who has looked at it (the citizen role only); with
    `patient`, the record of someone they are a proxy for, less what the policy withholds."""
    log = access(request)
    if not user.may("my_record"):
        log.audit(
            user, "my-record view", "my-record", detail="403", reason="role not allowed",
            client=client(request),
        )  # fmt: skip
    allowed(user, "my_record")
    own = str(user.patient_id)
    patient_id = patient or own
    relationship = user.proxy_relationship(patient_id)
    reason = (
        "own record"
        if patient_id == own
        else f"proxy access as {relationship}"
        if relationship
        else "proxy access"
    )
    if patient_id not in {own} | user.proxy_for:
        log.audit(
            user, "my-record view", "my-record", detail="403; not theirs", reason=reason,
            client=client(request),
        )  # fmt: skip
        raise HTTPException(403, "That is not your record, nor one you are a proxy for.")
    store: RecordStore | None = getattr(request.app.state, "records", None)
    if store is None:
        log.audit(
            user, "my-record view", "my-record", detail="409; no records store",
            reason=reason, client=client(request), patients=[patient_id],
        )  # fmt: skip
        response = render(request, "my_record.html.j2", user, served=False)
        response.status_code = 409
        return response
    policy: Policy = request.app.state.records_policy
    who = Requester(  # a citizen
        user.username, frozenset(), frozenset(), own, user.proxy_for, user.proxy_relationships,
        user.proxy_reviews,
    )  # fmt: skip
    decision = policy.decide(who, patient_id)
    if not decision.allowed:
        log.audit(
            user, "my-record view", "my-record", detail="403; withheld", reason=decision.label,
            client=client(request), patients=[patient_id],
        )  # fmt: skip
        raise HTTPException(
            403,
            decision.refusal
            or "This person has asked for their record not to be shared, so it is not shown.",
        )
    # a parent's or guardian's access: the day it ends, and why (records.proxy_age)
    age_end = (
        None
        if patient_id == own
        else policy.proxy_age_end(patient_id, str(relationship), who.proxy_review(patient_id))
    )
    groups = record_groups(store, patient_id, lambda r: policy.withheld(who, r) is None)
    total, found, intact = looks(request, user, patient_id, page, _Organisations(store))
    log.audit(
        user, "my-record view", "my-record",
        detail=f"200; {sum(g[1] for g in groups)} items, {total} audit entries",
        reason=f"{reason}; {decision.label}", client=client(request), patients=[patient_id],
    )  # fmt: skip
    now = in_force(user, policy)
    others = [(p, _person(store, p).get("name") or p) for p in sorted(now.proxy_for)]
    # why each is held back, which names the Patient id: not their name, as their record is
    # no longer theirs to read (from 16 the person decides who sees it)
    held = [h.refusal for h in now.proxies_ended] if patient_id == own else []
    notices = _notices(log, policy, user, patient_id, own, store)
    return render(
        request, "my_record.html.j2", user, served=True, person=_person(store, patient_id),
        sharing=sharing_choice(store, patient_id), nhs_opt_out=NATIONAL_OPT_OUT_SERVICE,
        groups=groups, looks=found, looks_total=total, intact=intact, page=page,
        access_ends=age_end.last_day if age_end is not None else None,
        access_ends_why=age_end.rule if age_end is not None else "",
        relationship=relationship or "", notices=notices, held=held,
        pages=pages(total), own=patient_id == own, others=others, chosen=patient_id,
        base="/my-record?" + ("" if patient_id == own else f"patient={quote(patient_id)}"),
    )  # fmt: skip


def _notices(
    log: AccessStore, policy: Policy, user: User, patient_id: str, own: str, store: RecordStore
) -> list[str]:
    """What the page tells ahead of time (NHS England's DAPB3051 7.2 and 7.3: proxies and
    patients are told before proxy access is suspended for review or ends): to a proxy on the
    person's page, and to the person on their own, each proxy access to that record that ends
    or comes up for review within the notice period (JOINEDUP_RECORDS_PROXY_NOTICE_DAYS),
    with the day and why. Only a citizen's page reads this; the API's requests never do."""
    today = policy.today()
    horizon = today + timedelta(days=policy.proxy_notice_days)
    if patient_id != own:  # the proxy, on the person's page
        mine = [p for p in log.proxies(user.username) if p.patient_id == patient_id]
        name = _person(store, patient_id).get("name") or "this person"
        return [
            _notice_text(n, proxy=True, person=name, relationship=p.relationship)
            for p in mine
            for n in _upcoming(policy, p.patient_id, p.relationship, p, today, horizon)
        ]
    return [
        _notice_text(n, proxy=False, person=p.display_name or p.username,
                     relationship=p.relationship)
        for p in log.proxies_for(own)
        for n in _upcoming(policy, own, p.relationship, p, today, horizon)
    ]  # fmt: skip


def _upcoming(
    policy: Policy,
    patient_id: str,
    relationship: str,
    record: ProxyRecord,
    today: date,
    horizon: date,
) -> list[ProxyNotice]:
    """The nearest of a proxy access's review or end (by age or by its --until day) within
    the notice period, if any."""
    found: list[ProxyNotice] = []
    end = policy.proxy_age_end(patient_id, relationship, record.review)
    if end is not None and (by_age := end.notice(today)) is not None:
        found.append(by_age)
    # a day typed with --until (before reasons were kept, every day was one)
    if record.until_reason in (None, "--until") and record.until_date:
        last = date.fromisoformat(record.until_date)
        if today <= last <= horizon:
            found.append(ProxyNotice("end", last, "the last day recorded for it"))
    return sorted(found, key=lambda n: n.day)[:1]


def _notice_text(notice: ProxyNotice, *, proxy: bool, person: str, relationship: str) -> str:
    """A notice in words, to the proxy (`proxy`) or to the person."""
    day = notice.day.isoformat()
    if proxy:
        whose = f"Your access to {person}'s record as their {relationship}"
        if notice.kind == "review":
            return (
                f"{whose} comes up for review on {day} ({notice.why}): from then it is "
                "suspended until their GP practice reviews it and renews it. If you need it to "
                "continue, ask the practice before then."
            )
        return (
            f"{whose} ends after {day} ({notice.why}). Their GP practice can tell you what "
            "happens next; from 16 the person decides who sees their record."
        )
    whose = f"{person}'s access to your record as your {relationship}"
    if notice.kind == "review":
        return (
            f"{whose} comes up for review on {day} ({notice.why}): from then it is suspended "
            "until your GP practice reviews it. The practice may ask what you think."
        )
    return f"{whose} ends after {day} ({notice.why})."


# --- sharing choices -------------------------------------------------------------------------

#: Where a person makes (or changes) their national data opt-out: NHS England's service, not
#: this page (it is about secondary use, research and planning, not their care).
NATIONAL_OPT_OUT_SERVICE = "https://www.nhs.uk/your-nhs-data-matters/"


@dataclass(frozen=True)
class SharingChoice:
    """A person's current choice: whether they object to sharing their record (an active
    objection, whoever recorded it), since when, which organisations may still see it (by
    name), and their registered GP practice (by name; empty when the record names none, and
    then an objection cannot be made here)."""

    objected: bool
    since: str
    within: str
    practice: str


def _objections(store: RecordStore, patient_id: str) -> list[dict[str, Any]]:
    page = store.search(
        "Consent",
        [("patient", f"Patient/{patient_id}"), ("status", "active"), ("_count", "100")],
    )
    return [r for r in page.resources if is_objection(r)]


def sharing_choice(store: RecordStore, patient_id: str) -> SharingChoice:
    """`patient_id`'s sharing choice as the records store has it."""
    names = _Organisations(store)
    objections = _objections(store, patient_id)
    within = sorted({o for r in objections for o in recording_organisations(r)})
    dates = sorted(str(r.get("dateTime") or "")[:10] for r in objections)
    try:
        practices = registered_practices(store.read("Patient", patient_id))
    except RecordsError:
        practices = []
    return SharingChoice(
        objected=bool(objections),
        since=dates[0] if dates else "",
        within=", ".join(names.name(o) for o in within),
        practice=", ".join(names.name(p) for p in practices),
    )


def _sharing_refused(
    request: Request, user: User, status: int, detail: str, message: str, patient: str
) -> HTTPException:
    access(request).audit(
        user, "sharing choice", "my-record/sharing", detail=f"{status}; {detail}",
        reason="sharing choice refused", client=client(request),
        patients=[patient] if patient else [],
    )  # fmt: skip
    return HTTPException(status, message)


@router.post("/my-record/sharing", include_in_schema=False)
def sharing_choice_form(
    request: Request,
    user: Annotated[User, Depends(page_user)],
    csrf: Annotated[str, Form()] = "",
    choice: Annotated[str, Form(max_length=16)] = "",
    patient: Annotated[str, Form(max_length=64)] = "",
) -> RedirectResponse:
    """The citizen's own sharing choice: `choice` `object` records an objection to sharing
    their record outside their GP practice (a Consent, records.consent.citizen_objection);
    `withdraw` makes each active objection inactive (a new version of it). Only for their own
    record: a proxy (`patient` another person's) is refused, 403. Each write is audited as a
    records API entry with their Patient id, so it is in their "who has looked"; then back to
    the page."""
    if not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "This form has expired: open your record again")
    log = access(request)
    if not user.may("my_record"):
        raise _sharing_refused(request, user, 403, "role not allowed", "Citizens only", "")
    own = str(user.patient_id)
    if patient and patient != own:
        raise _sharing_refused(
            request, user, 403, "not their own record",
            "Only the person themselves can change who their record is shared with: as their "
            "proxy you can see it, not change its sharing. They can do it here, or ask their GP "
            "practice to record it.",
            patient if patient in user.proxy_for else "",
        )  # fmt: skip
    if choice not in ("object", "withdraw"):
        raise _sharing_refused(
            request, user, 400, "bad choice", "choice must be object or withdraw", own
        )
    store: RecordStore | None = getattr(request.app.state, "records", None)
    if store is None:
        raise _sharing_refused(
            request, user, 409, "no records store",
            "This dashboard is not connected to the shared care record.", own,
        )  # fmt: skip
    current = _objections(store, own)
    context = {"organisation": organisation_of(user), "purpose": purpose_of(user)}
    if choice == "object" and not current:
        try:
            practices = registered_practices(store.read("Patient", own))
        except RecordsError:
            practices = []
        if not practices:
            raise _sharing_refused(
                request, user, 409, "no registered practice",
                "Your record names no GP practice, so an objection to sharing outside it "
                "cannot be made here: ask your GP practice to record it.", own,
            )  # fmt: skip
        at = store.now().isoformat(timespec="seconds").replace("+00:00", "Z")
        made = store.create(citizen_objection(own, practices, at)).resource or {}
        log.audit(
            user, "fhir create", f"fhir/Consent/{made.get('id')}",
            detail=f"201; {SHARING}: objected to sharing outside the GP practice",
            reason="self; sharing choice", client=client(request), patients=[own], **context,
        )  # fmt: skip
    elif choice == "withdraw" and current:
        for objection in current:
            try:
                store.update(
                    {**objection, "status": "inactive"},
                    if_match=int(objection["meta"]["versionId"]),
                )
            except VersionConflictError:
                raise _sharing_refused(
                    request, user, 409, "changed meanwhile",
                    "Your sharing choice was changed at the same time: open your record and "
                    "try again.", own,
                ) from None  # fmt: skip
            log.audit(
                user, "fhir update", f"fhir/Consent/{objection['id']}",
                detail=f"200; {SHARING}: withdrew the objection to sharing",
                reason="self; sharing choice", client=client(request), patients=[own],
                **context,
            )  # fmt: skip
    else:  # objecting again, or withdrawing nothing: nothing changes
        log.audit(
            user, "sharing choice", "my-record/sharing", detail=f"303; {choice}: unchanged",
            reason="self; sharing choice", client=client(request), patients=[own],
        )  # fmt: skip
    return RedirectResponse("/my-record#sharing", status_code=303)
