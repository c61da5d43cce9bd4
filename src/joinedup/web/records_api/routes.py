"""The FHIR R4 REST API at `/fhir/R4` over the records store.

Every request is signed in with the dashboard's bearer tokens. The `admin` and `system` roles
are unrestricted; a clinician sees and writes a patient's record only with a legitimate
relationship or a break-glass grant (gate.py, records.policy); other roles get 403. Every
request, answered or refused, is written to the audit log: who, role, interaction, type and id,
the rule that allowed it (or its refusal) and the outcome (status, issue codes and elements;
`break-glass` when a grant allowed it) - never a search value, a name or an NHS number.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.types import Scope

from joinedup.records import BreakGlassError, Policy, RecordsError, RecordStore
from joinedup.web.access import AccessStore, User
from joinedup.web.records_api import interactions as fhir
from joinedup.web.records_api.audit_events import audit_context, refuse_audit_writes
from joinedup.web.records_api.capability import capability_statement
from joinedup.web.records_api.gate import RELATIONSHIP_ROLES, Gate
from joinedup.web.records_api.interactions import Answer
from joinedup.web.records_api.linked import index_systems, linked_audit
from joinedup.web.records_api.outcome import FHIR_JSON, FhirError, from_records
from joinedup.web.site import access, client, token_of

PREFIX = "/fhir/R4"

router = APIRouter(prefix=PREFIX, tags=["records (FHIR R4)"])

#: Threads for the blocking part of requests (the access store, the records store), a pool
#: of our own: handing a call to it costs the event loop about a sixth of AnyIO's thread
#: hand-off under load (13 against 83 µs of CPU, 20 at a time). 16 a process, not AnyIO's 40:
#: with 50 clients on two workers, fewer threads contending for each interpreter gave read p95
#: 41-50 ms at 1,836-1,961 requests/s against 53-55 ms at 1,626-1,820 with 40, and 48-54 ms
#: at 1,526-1,752 with 8 (benchmarks/records.py, 7 December 2026, docs/benchmarks.md).
THREADS = 16
_threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="records-api")
_T = TypeVar("_T")


async def _in_thread(call: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_threads, call)


def records(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.records
    return store


def policy(request: Request) -> Policy:
    found: Policy | None = getattr(request.app.state, "records_policy", None)
    return found or Policy(records(request))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _send(answer: Answer) -> Response:
    # Compact (no spaces after separators): less to encode and to send, the same JSON.
    body = (
        b""
        if answer.body is None
        else json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
    )
    return Response(
        body if answer.status != 204 else None,
        status_code=answer.status,
        headers=answer.headers,
        media_type=FHIR_JSON if answer.status != 204 else None,
    )


def has_body(scope: Scope) -> bool:
    """Whether a request says it has a body, from its raw headers (the short path asks
    before there is a Request, and a Headers look-up of a missing name raises inside)."""
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


def _refusal(err: FhirError) -> Answer:
    return Answer(err.status, err.outcome(), dict(err.headers))


def _summary(answer: Answer) -> str:
    """The audit detail of an answer: its status and, for a refusal or a `$validate` that
    found errors, the issue codes and the elements they name (never their diagnostics, which
    may quote a request)."""
    text = str(answer.status)
    body = answer.body or {}
    issues = body.get("issue", []) if body.get("resourceType") == "OperationOutcome" else []
    if issues and (answer.status >= 400 or issues[0].get("severity") == "error"):
        for issue in issues[:5]:
            text += f"; {issue.get('code')}"
            if issue.get("expression"):
                text += f" {issue['expression'][0]}"
    elif body.get("resourceType") == "Bundle" and "total" in body:
        modes = [e.get("search", {}).get("mode") for e in body.get("entry", [])]
        text += f"; {body['total']} in all, {modes.count('match')} sent"
        if "include" in modes:
            text += f", {modes.count('include')} included"
    elif body.get("resourceType") == "Bundle":
        text += f"; {len(body.get('entry', []))} entries"
    return text


async def _serve(
    request: Request,
    interaction: str,
    target: str,
    work: Callable[[RecordStore, str, bytes, Gate], Answer],
    *,
    if_match: bool = False,
) -> Response:
    """Sign the request in, check the role, run `work` off the event loop, turn refusals into
    OperationOutcomes and audit what happened. `target` is `Type`, `Type/id` or `Type?names`.

    A request without a body (every read and search by GET) is signed in, answered and
    audited in one thread hand-off; one with a body is signed in first, so that nobody's
    body is read before their token is checked."""
    store = access(request)
    where = client(request)
    token = token_of(request)
    policy_now = policy(request)
    practices = getattr(request.app.state, "pcn_practices", None)
    base = base_url(request)
    with_body = has_body(request.scope)
    checked: User | None = None
    body = b""
    if with_body:
        checked = await _in_thread(lambda: store.session_user(token))
        if checked is not None and checked.may("records"):
            body = await request.body()

    def answer_and_audit() -> Answer:
        user = checked if with_body else store.session_user(token)
        if user is None:
            return _unauthenticated(store, interaction, target, token, where)
        gate: Gate | None = None
        if not user.may("records"):
            answer = _refusal(
                FhirError.one(
                    403,
                    "forbidden",
                    f"the {user.role.value} role may not use the records API (admin, system, "
                    "and clinicians and care workers with a legitimate relationship may)",
                )
            )
            reason = "records API: role not allowed"
        else:
            gate = Gate(user, policy_now, practices)
            answer = _attempt(work, records(request), base, body, if_match, gate)
            reason = gate.reason
            if gate.break_glass:
                reason = "BREAK-GLASS; " + reason
        audited = answer.resource_id if answer.resource_id and "/" not in target else None
        store.audit(
            user,
            f"fhir {interaction}",
            f"fhir/{target}" + (f"/{audited}" if audited else ""),
            detail=_summary(answer) + ("; break-glass" if "BREAK-GLASS" in reason else ""),
            reason=reason,
            client=where,
            **audit_context(user, gate, target, body, answer),
        )
        return answer

    return _send(await _in_thread(answer_and_audit))


def _unauthenticated(
    store: AccessStore, interaction: str, target: str, token: str | None, where: str
) -> Answer:
    """The 401 for a request with no valid token, audited."""
    answer = _refusal(
        FhirError.one(
            401,
            "login",
            "sign in first: a bearer token from POST /api/v1/token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    )
    detail = "no token" if not token else "token unknown, expired or signed out"
    store.audit(
        None,
        f"fhir {interaction}",
        f"fhir/{target}",
        detail=f"401; {detail}",
        reason="",
        client=where,
        **audit_context(None, None, target, b"", answer),
    )
    return answer


def _attempt(
    work: Callable[[RecordStore, str, bytes, Gate], Answer],
    store: RecordStore,
    base: str,
    body: bytes,
    if_match: bool,
    gate: Gate,
) -> Answer:
    try:
        return work(store, base, body, gate)
    except FhirError as err:
        return _refusal(err)
    except RecordsError as err:
        return _refusal(from_records(err, if_match=if_match))


def _query(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _names(pairs: list[tuple[str, str]]) -> str:
    """The parameter names of a search, for the audit log (the values may identify someone)."""
    return ",".join(dict.fromkeys(name for name, _ in pairs))


# --- the server --------------------------------------------------------------------------------


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (signed in, like every other request)."""

    def work(_: RecordStore, base: str, __: bytes, ___: Gate) -> Answer:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Answer(200, capability_statement(base, now))

    return await _serve(request, "capabilities", "metadata", work)


@router.post("")
@router.post("/", include_in_schema=False)
async def bundle(request: Request) -> Response:
    """A transaction (all or nothing) or batch (each entry on its own) Bundle, posted to the
    base with or without its closing slash (fhirpy posts a Bundle to `[base]/`)."""

    def work(store: RecordStore, base: str, body: bytes, gate: Gate) -> Answer:
        gate.only_unrestricted("a transaction or batch Bundle")
        given = fhir.parse_json(body)
        if given.get("resourceType") != "Bundle":
            raise FhirError.one(400, "invalid", "the base takes a Bundle", "resourceType")
        refuse_audit_writes(given)
        if given.get("type") == "transaction":
            return fhir.transaction(store, base, given)
        if given.get("type") == "batch":
            return fhir.batch(store, base, given)
        raise FhirError.one(400, "not-supported", "must be transaction or batch", "Bundle.type")

    return await _serve(request, "bundle", "Bundle", work, if_match=True)


@router.post("/$break-glass")
async def break_glass(request: Request) -> Response:
    """Break glass: a clinician with no legitimate relationship states why they must see a
    patient's record (Parameters: `patient` as a reference, `reason` as a string) and gets a
    time-limited grant, audited as BREAK-GLASS and listed for the privacy officer."""

    def work(_: RecordStore, __: str, body: bytes, gate: Gate) -> Answer:
        if gate.user.role not in RELATIONSHIP_ROLES:
            raise FhirError.one(403, "forbidden", "only clinicians and care workers break glass")
        given = fhir.parse_json(body)
        if given.get("resourceType") != "Parameters":
            raise FhirError.one(400, "invalid", "$break-glass takes Parameters", "resourceType")
        values = {p.get("name"): p for p in given.get("parameter", []) if isinstance(p, dict)}
        reference = str(values.get("patient", {}).get("valueReference", {}).get("reference", ""))
        reason = values.get("reason", {}).get("valueString")
        if not reference.startswith("Patient/"):
            raise FhirError.one(
                400, "required", "name the patient as a reference Patient/id", "Parameters.patient"
            )
        if not isinstance(reason, str):
            raise FhirError.one(400, "required", "state your reason", "Parameters.reason")
        try:
            grant = gate.policy.break_glass(gate.who, reference.split("/", 1)[1], reason)
        except BreakGlassError as err:
            where = "Parameters.reason" if str(err).startswith("reason") else "Parameters.patient"
            raise FhirError.one(400, "invalid", str(err), where) from None
        gate.rules.add("break-glass")
        gate.break_glass = True
        expires = grant.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "grant", "valueString": grant.grant_id},
                {"name": "patient", "valueReference": {"reference": reference}},
                {"name": "expires", "valueInstant": expires},
            ],
        }
        return Answer(201, answer, resource_id=grant.grant_id)

    return await _serve(request, "break-glass", "$break-glass", work)


# --- types ---------------------------------------------------------------------------------------


@router.get("/{kind}/_history")
async def type_history(request: Request, kind: str) -> Response:
    pairs = _query(request)

    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        gate.only_unrestricted("the history of a whole type")
        return fhir.type_history(store, base, fhir.check_type(kind), pairs)

    return await _serve(request, "history-type", kind, work)


@router.get("/{kind}")
async def search(request: Request, kind: str) -> Response:
    """Search by the parameters the store indexes; `_count`/`_offset` pages, `_sort`."""
    pairs = _query(request)

    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        checked = fhir.check_type(kind)
        answer = fhir.search(
            store, base, checked, pairs, gate.search_scope(checked), gate.search_scope
        )
        gate.shown([e["resource"] for e in (answer.body or {}).get("entry", [])])
        return answer

    return await _serve(request, "search", f"{kind}?{_names(pairs)}", work)


@router.post("/{kind}/_search")
async def search_by_post(request: Request, kind: str) -> Response:
    """Search with the parameters in a form body (and the URL's), so they stay out of logs of
    URLs."""
    body = await request.body()
    pairs = _query(request) + parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)

    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        checked = fhir.check_type(kind)
        answer = fhir.search(
            store, base, checked, pairs, gate.search_scope(checked), gate.search_scope
        )
        gate.shown([e["resource"] for e in (answer.body or {}).get("entry", [])])
        return answer

    return await _serve(request, "search", f"{kind}?{_names(pairs)}", work)


@router.post("/{kind}/$validate")
async def validate(request: Request, kind: str) -> Response:
    code_systems = getattr(request.app.state, "records_code_systems", None)

    def work(_: RecordStore, __: str, body: bytes, ___: Gate) -> Answer:
        return fhir.validate(fhir.check_type(kind), body, code_systems)

    return await _serve(request, "validate", kind, work)


@router.post("/{kind}/{rid}/$validate")
async def validate_instance(request: Request, kind: str, rid: str) -> Response:
    """Resource-validate at instance level: the resource checked as an update of `rid`,
    without writing (nothing is read either, so it reveals nothing stored)."""
    code_systems = getattr(request.app.state, "records_code_systems", None)
    mode = request.query_params.get("mode")

    def work(_: RecordStore, __: str, body: bytes, ___: Gate) -> Answer:
        return fhir.validate_instance(fhir.check_type(kind), rid, body, mode, code_systems)

    return await _serve(request, "validate", f"{kind}/{rid}", work)


@router.post("/{kind}")
async def create(request: Request, kind: str) -> Response:
    """Create; with `If-None-Exist`, only when nothing matches that search."""
    condition = request.headers.get("if-none-exist")

    def work(store: RecordStore, base: str, body: bytes, gate: Gate) -> Answer:
        checked = fhir.check_type(kind)
        if condition:
            gate.only_unrestricted("a conditional create")
        gate.writing(checked, fhir.resource_of(body, checked), store)
        return fhir.create(store, base, checked, body, condition)

    return await _serve(request, "create", kind, work)


@router.put("/{kind}")
async def conditional_update(request: Request, kind: str) -> Response:
    """Update the one resource the URL's search finds, or create it when none does."""
    criteria = request.url.query

    def work(store: RecordStore, base: str, body: bytes, gate: Gate) -> Answer:
        gate.only_unrestricted("a conditional update")
        if not criteria:
            raise FhirError.one(400, "required", "an update needs Type/id or Type?search", "url")
        return fhir.conditional_update(store, base, fhir.check_type(kind), criteria, body)

    names = _names(parse_qsl(criteria, keep_blank_values=True))
    return await _serve(request, "update", f"{kind}?{names}", work)


# --- instances ---------------------------------------------------------------------------------


@router.get("/{kind}/{rid}")
async def read(request: Request, kind: str, rid: str) -> Response:
    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        gate.stored(store, fhir.check_type(kind), rid)
        return fhir.read(store, base, kind, rid)

    return await _serve(request, "read", f"{kind}/{rid}", work)


@router.put("/{kind}/{rid}")
async def update(request: Request, kind: str, rid: str) -> Response:
    """Update (or create at this id); with `If-Match`, only from that version (else 412)."""
    if_match = request.headers.get("if-match")

    def work(store: RecordStore, base: str, body: bytes, gate: Gate) -> Answer:
        checked = fhir.check_type(kind)
        gate.writing(checked, {"id": rid, **fhir.resource_of(body, checked)}, store)
        gate.replacing(store, checked, rid)
        return fhir.update(store, base, checked, rid, body, if_match)

    return await _serve(request, "update", f"{kind}/{rid}", work, if_match=if_match is not None)


@router.delete("/{kind}/{rid}")
async def delete(request: Request, kind: str, rid: str) -> Response:
    def work(store: RecordStore, _: str, __: bytes, gate: Gate) -> Answer:
        checked = fhir.check_type(kind)
        gate.stored(store, checked, rid)
        current = store.read(checked, rid) if not gate.unrestricted else {}
        gate.writing(checked, current, store, deleting=True)
        return fhir.delete(store, checked, rid)

    return await _serve(request, "delete", f"{kind}/{rid}", work)


@router.get("/Patient/{rid}/$everything")
async def everything(request: Request, rid: str) -> Response:
    """`Patient/$everything`: the patient and every resource pointing to them, paged; allowed
    as reading the patient is, each resource kept to the patients the user may see. With
    `linked=true`, also the same person's other Patients through the person index, each
    decided and audited as its own access (linked.py)."""
    pairs = _query(request)
    systems = index_systems(request)
    users, where = access(request), client(request)

    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        gate.stored(store, "Patient", rid)
        person = gate.linked(store, rid, systems) if fhir.follows_index(pairs) else None
        shown = person.shown if person is not None else []
        answer = fhir.everything(store, base, rid, pairs, gate.search_scope, shown)
        gate.shown([e["resource"] for e in (answer.body or {}).get("entry", [])])
        if person is not None:
            users.audit_all(linked_audit(gate.user, gate, rid, person, answer, where))
        return answer

    return await _serve(request, "everything", f"Patient/{rid}/$everything", work)


@router.get("/{kind}/{rid}/_history")
async def history(request: Request, kind: str, rid: str) -> Response:
    pairs = _query(request)

    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        gate.stored(store, fhir.check_type(kind), rid, versions=True)
        return fhir.instance_history(store, base, fhir.check_type(kind), rid, pairs)

    return await _serve(request, "history-instance", f"{kind}/{rid}", work)


@router.get("/{kind}/{rid}/_history/{version}")
async def vread(request: Request, kind: str, rid: str, version: str) -> Response:
    def work(store: RecordStore, base: str, _: bytes, gate: Gate) -> Answer:
        gate.stored(store, fhir.check_type(kind), rid, versions=True)
        return fhir.vread(store, base, fhir.check_type(kind), rid, version)

    return await _serve(request, "vread", f"{kind}/{rid}/_history/{version}", work)


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def unsupported(request: Request, rest: str) -> Response:
    """Anything else under the base: an OperationOutcome (and an audit entry), not the
    dashboard's JSON error."""
    method = request.method

    def work(_: RecordStore, __: str, ___: bytes, ____: Gate) -> Answer:
        raise FhirError.one(
            404 if method in ("GET", "HEAD") else 405, "not-supported",
            f"{method} {PREFIX}/{rest}: not an interaction this server supports "
            f"(see {PREFIX}/metadata)",
        )  # fmt: skip

    kind = rest.split("/", 1)[0] or "-"
    return await _serve(request, "unsupported", kind, work)
