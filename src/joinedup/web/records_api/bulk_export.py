"""SMART/HL7 FHIR Bulk Data `$export` on the records API (issue 16).

`GET /fhir/R4/$export` (every type) or `GET /fhir/R4/Patient/$export` (the types of the Patient
compartment), with `Prefer: respond-async`, `_type`, `_since` and `_outputFormat`, starts an
export in the background (records.exports) and answers 202 with the status URL in
Content-Location. Polling it answers 202 with X-Progress while the export runs, then 200 with
the manifest; the manifest's NDJSON files are downloaded with the same bearer token; DELETE on
the status URL cancels the export and removes its files. Only the system and admin roles may
export (a bulk copy of everyone's record is not direct care), one export at a time per user;
only whoever started an export, or an admin, may poll, download or cancel it. Every request,
answered or refused, is in the audit log (never a patient's identifier: there are none here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from joinedup.fhir.validate import R4_RESOURCE_TYPES
from joinedup.records.exports import ExportBusyError, ExportJob, Exports
from joinedup.web.access import Role, User
from joinedup.web.records_api.audit_events import audit_context
from joinedup.web.records_api.gate import UNRESTRICTED, in_compartment
from joinedup.web.records_api.interactions import Answer
from joinedup.web.records_api.outcome import FHIR_JSON, FhirError
from joinedup.web.site import access, client, token_of

PREFIX = "/fhir/R4"
NDJSON = "application/fhir+ndjson"
#: `_outputFormat` values meaning FHIR NDJSON (the Bulk Data spec's abbreviations included).
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
#: The kick-off parameters this server supports; any other is refused by name.
KICK_OFF_PARAMETERS = ("_outputFormat", "_since", "_type")
#: The types `Patient/$export` writes: Patient and the types the store indexes by patient.
PATIENT_TYPES = frozenset(k for k in R4_RESOURCE_TYPES if in_compartment(k) and k != "AuditEvent")

router = APIRouter(prefix=PREFIX, tags=["records (FHIR R4)"])


def exports(request: Request) -> Exports:
    found: Exports = request.app.state.records_exports
    return found


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _outcome_response(err: FhirError) -> Response:
    body = json.dumps(err.outcome(), ensure_ascii=False).encode()
    return Response(body, status_code=err.status, headers=err.headers, media_type=FHIR_JSON)


def _detail(response: Response, summary: str) -> str:
    """The audit detail: the status, what was done, and a refusal's issue codes and elements
    (never its diagnostics, which may quote the request)."""
    text = str(response.status_code) + (f"; {summary}" if summary else "")
    if response.status_code >= 400 and response.media_type == FHIR_JSON:
        body = json.loads(bytes(response.body))
        for issue in body.get("issue", [])[:5]:
            text += f"; {issue.get('code')}"
            if issue.get("expression"):
                text += f" {issue['expression'][0]}"
    return text


async def _serve(
    request: Request,
    interaction: str,
    target: str,
    work: Callable[[User], tuple[Response, str]],
) -> Response:
    """Sign the request in, allow only the system and admin roles, run `work` (a response and
    a summary for the audit log) off the event loop and audit what happened."""
    log = access(request)
    token = token_of(request)
    user: User | None = await run_in_threadpool(log.session_user, token)
    if user is None:
        response = _outcome_response(
            FhirError.one(
                401, "login", "sign in first: a bearer token from POST /api/v1/token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        )  # fmt: skip
        summary = "no token" if not token else "token unknown, expired or signed out"
        reason = ""
    elif user.role not in UNRESTRICTED:
        response = _outcome_response(
            FhirError.one(
                403, "forbidden",
                f"bulk export: the {user.role.value} role may not export (only the system and "
                "admin roles: a copy of everyone's record is not direct care)",
            )
        )  # fmt: skip
        summary, reason = "", "bulk export: role not allowed"
    else:
        try:
            response, summary = await run_in_threadpool(work, user)
        except FhirError as err:
            response, summary = _outcome_response(err), ""
        reason = f"bulk export: {user.role.value} role"
    answer = Answer(response.status_code, None)
    await run_in_threadpool(
        lambda: log.audit(
            user,
            f"fhir {interaction}",
            f"fhir/{target}",
            detail=_detail(response, summary),
            reason=reason,
            client=client(request),
            **audit_context(user, None, target, b"", answer),
        )
    )
    return response


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _kick_off_parameters(
    request: Request, allowed: frozenset[str]
) -> tuple[list[str], datetime | None]:
    """The `_type` list and `_since` instant of a kick-off, or a 400 naming the parameter."""
    prefer = request.headers.get("prefer", "")
    if "respond-async" not in [p.strip().lower() for p in prefer.split(",")]:
        raise FhirError.one(
            400, "required", "a bulk export runs asynchronously: send Prefer: respond-async",
            "Prefer",
        )  # fmt: skip
    pairs = request.query_params.multi_items()
    for name, _ in pairs:
        if name not in KICK_OFF_PARAMETERS:
            raise FhirError.one(
                400, "not-supported",
                f"{name}: not a parameter this server's $export supports "
                f"({', '.join(KICK_OFF_PARAMETERS)})",
                name,
            )  # fmt: skip
    for name, value in pairs:
        if name == "_outputFormat" and value not in OUTPUT_FORMATS:
            raise FhirError.one(
                400, "not-supported",
                f"_outputFormat: {value[:80]!r} is not supported (only {NDJSON})",
                "_outputFormat",
            )  # fmt: skip
    types: list[str] = []
    for name, value in pairs:
        if name != "_type":
            continue
        for kind in (v.strip() for v in value.split(",")):
            if kind not in R4_RESOURCE_TYPES:
                raise FhirError.one(
                    400, "invalid", f"_type: {kind[:80]!r} is not a FHIR R4 resource type",
                    "_type",
                )  # fmt: skip
            if kind not in allowed:
                raise FhirError.one(
                    400, "invalid",
                    f"_type: {kind} is not in the Patient compartment (Patient/$export)", "_type",
                )  # fmt: skip
            types.append(kind)
    sinces = [value for name, value in pairs if name == "_since"]
    if len(sinces) > 1:
        raise FhirError.one(400, "invalid", "_since: give it once", "_since")
    since = None
    if sinces:
        try:
            since = datetime.fromisoformat(sinces[0].replace("Z", "+00:00"))
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            raise FhirError.one(
                400, "invalid",
                "_since: not a FHIR instant (e.g. 2024-01-31T09:00:00Z, with its time zone)",
                "_since",
            )  # fmt: skip
    return types, since


async def _kick_off(request: Request, target: str, allowed: frozenset[str] | None) -> Response:
    base = _base(request)

    def work(user: User) -> tuple[Response, str]:
        types, since = _kick_off_parameters(request, allowed or frozenset(R4_RESOURCE_TYPES))
        if allowed is not None and not types:
            types = sorted(allowed)
        try:
            job = exports(request).start(user.username, str(request.url), types, since)
        except ExportBusyError as err:
            raise FhirError.one(
                429, "throttled",
                f"one export at a time: yours ({base}/$export-status/{err.job.job_id}) is still "
                "running; wait for it to finish or cancel it with DELETE",
                headers={"Retry-After": "10"},
            ) from None  # fmt: skip
        status_url = f"{base}/$export-status/{job.job_id}"
        return Response(status_code=202, headers={"Content-Location": status_url}), (
            f"export {job.job_id} started"
        )

    return await _serve(request, "export", target, work)


@router.get("/$export")
async def export_everything(request: Request) -> Response:
    """Kick off a system-level export: every type's current resources (or `_type`'s)."""
    return await _kick_off(request, "$export", None)


@router.get("/Patient/$export")
async def export_patients(request: Request) -> Response:
    """Kick off a Patient-level export: Patient and every type indexed by patient."""
    return await _kick_off(request, "Patient/$export", PATIENT_TYPES)


def _job_of(request: Request, user: User, job_id: str) -> ExportJob:
    """The job `job_id` if `user` started it or is an admin; 404 alike for one that is
    unknown, expired or cancelled and, to anyone else, for someone else's."""
    job = exports(request).get(job_id)
    if job is None or (job.owner != user.username and user.role is not Role.ADMIN):
        raise FhirError.one(
            404, "not-found",
            f"no export {job_id[:40]!r} of yours: unknown, cancelled, or its files expired",
        )  # fmt: skip
    return job


def manifest(job: ExportJob, base: str) -> dict[str, Any]:
    """The Bulk Data manifest of a finished export."""
    return {
        "transactionTime": _instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": [
            {"type": kind, "url": f"{base}/$export-file/{job.job_id}/{kind}.ndjson", "count": n}
            for kind, n in job.counts.items()
        ],
        "error": [],
    }


@router.get("/$export-status/{job_id}")
async def export_status(request: Request, job_id: str) -> Response:
    """202 with X-Progress while the export runs; 200 and the manifest when it is done; 500
    with an OperationOutcome if it failed."""
    base = _base(request)

    def work(user: User) -> tuple[Response, str]:
        job = _job_of(request, user, job_id)
        if job.state == "running":
            progress = f"{job.written:,} resources written"
            return Response(
                status_code=202, headers={"X-Progress": progress, "Retry-After": "1"}
            ), f"export {job_id} running"
        if job.state == "failed":
            raise FhirError.one(500, "exception", job.error or "the export failed")
        body = json.dumps(manifest(job, base), ensure_ascii=False).encode()
        total = sum(job.counts.values())
        summary = f"export {job_id} done: {len(job.counts)} files, {total} resources"
        return Response(body, media_type="application/json"), summary

    return await _serve(request, "export-status", f"$export-status/{job_id}", work)


@router.delete("/$export-status/{job_id}")
async def export_cancel(request: Request, job_id: str) -> Response:
    """Cancel the export (if it is still running) and remove its files: 202."""

    def work(user: User) -> tuple[Response, str]:
        _job_of(request, user, job_id)
        exports(request).cancel(job_id)
        return Response(status_code=202), f"export {job_id} cancelled, its files removed"

    return await _serve(request, "export-cancel", f"$export-status/{job_id}", work)


@router.get("/$export-file/{job_id}/{name}")
async def export_file(request: Request, job_id: str, name: str) -> Response:
    """One NDJSON file of a finished export."""

    def work(user: User) -> tuple[Response, str]:
        job = _job_of(request, user, job_id)
        kind = name.removesuffix(".ndjson")
        path = job.file(kind) if name.endswith(".ndjson") else None
        if path is None or not path.is_file():
            raise FhirError.one(404, "not-found", f"{name[:80]!r}: not a file of this export")
        summary = f"export {job_id}: {kind}.ndjson, {job.counts[kind]} resources"
        return FileResponse(path, media_type=NDJSON), summary

    return await _serve(request, "export-file", f"$export-file/{job_id}/{name}", work)
