"""The records API's audit trail as FHIR AuditEvents (IHE Basic Audit Log Patterns style),
rendered from the dashboard's append-only, keyed hash-chained audit log: no second store.

Every request to `/fhir/R4` is one log entry (routes.py writes it, with the user's
organisation, the purpose of use and the FHIR Patient ids it touched from `audit_context`
here). `GET /fhir/R4/AuditEvent` shows those entries to the privacy officer and admin: the
chain is checked first (a broken chain is an OperationOutcome, not an answer), each AuditEvent
carries its entry's number and hashes, and the search is itself audited. AuditEvents are never
created, changed or deleted through the API (405, or 403 inside a Bundle).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from joinedup import __version__
from joinedup.fhir.ukcore import JOINEDUP_BASE
from joinedup.records.parameters import SEARCH_PARAMETERS as SEARCH_PARAMETERS_OF
from joinedup.records.parameters import date_range, split_reference
from joinedup.web.access import ROLE_LABELS, AccessStore, RecordsAuditQuery, Role, User
from joinedup.web.records_api.gate import Gate, in_force
from joinedup.web.records_api.interactions import Answer
from joinedup.web.records_api.outcome import FHIR_JSON, FhirError
from joinedup.web.site import access, client, token_of

PREFIX = "/fhir/R4"
router = APIRouter(prefix=PREFIX, tags=["records (FHIR R4)"])

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#: Purpose of use (v3 ActReason) by role; break-glass is BTG whatever the role.
PURPOSE_OF_ROLE: dict[Role, str] = {
    Role.CLINICIAN: "TREAT",
    Role.SYSTEM: "HOPERAT",
    Role.ADMIN: "HSYSADMIN",
    Role.PRIVACY_OFFICER: "HCOMPL",
    Role.CITIZEN: "PATRQT",
    Role.CARE_WORKER: "COC",
}
PURPOSE_LABELS = {
    "TREAT": "treatment",
    "BTG": "break the glass",
    "HOPERAT": "healthcare operations",
    "HSYSADMIN": "health system administration",
    "HCOMPL": "health compliance",
    "PATRQT": "requested by the patient",
    "COC": "coordination of care",
    "FAMRQT": "family requested",
    "PWATRNY": "power of attorney",
    "SUPNWK": "support network",
}
#: Purpose of use (v3 ActReason) of a citizen acting as a proxy, by their relationship: a
#: parent or guardian is family (FAMRQT), an attorney acts by power of attorney (PWATRNY), a
#: carer is the person's support network (SUPNWK).
PURPOSE_OF_PROXY: dict[str, str] = {
    "parent": "FAMRQT",
    "guardian": "FAMRQT",
    "attorney": "PWATRNY",
    "carer": "SUPNWK",
}
#: FHIR AuditEvent.action of each interaction as the log names it (`fhir <interaction>`);
#: anything else (search, bundle, operations such as $validate or $break-glass) is E.
ACTIONS: dict[str, str] = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "capabilities": "R",
    "update": "U",
    "delete": "D",
}
ACTION_CODES = ("C", "R", "U", "D", "E")
#: The RESTful interaction (http://hl7.org/fhir/restful-interaction) where one fits exactly.
RESTFUL = {
    "read": "read", "vread": "vread", "update": "update", "delete": "delete",
    "history-instance": "history-instance", "history-type": "history-type",
    "create": "create", "search": "search-type", "capabilities": "capabilities",
    "validate": "operation", "break-glass": "operation", "everything": "operation",
    "export": "operation",
}  # fmt: skip
RESTFUL_SYSTEM = "http://hl7.org/fhir/restful-interaction"
INTERACTION_SYSTEM = f"{JOINEDUP_BASE}/CodeSystem/records-interaction"
ROLE_SYSTEM = f"{JOINEDUP_BASE}/CodeSystem/user-role"
USER_SYSTEM = f"{JOINEDUP_BASE}/Id/username"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
CHAIN_EXTENSION = f"{JOINEDUP_BASE}/StructureDefinition/audit-chain"
EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
#: Outcome (0 success, 4 minor failure, 8 serious failure) by the first digit of the status.
OUTCOME_OF_STATUS = {"1": "0", "2": "0", "3": "0", "4": "4", "5": "8"}
DEFAULT_COUNT = 50
MAX_COUNT = 1000
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PATIENT_TARGET = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(?:[/?]|$)")
_DATE = re.compile(r"(eq|ne|lt|gt|le|ge|sa|eb|ap)?(.+)")

SEARCH_PARAMETERS: tuple[tuple[str, str, str], ...] = (
    ("patient", "reference", "Patient/id or id: entries that touched that patient's record."),
    ("date", "date", "When the entry was recorded: eq, ge, gt, le, lt (sa, eb); ISO dates."),
    ("agent", "token", "The username of who made the request (agent.who.identifier)."),
    ("altid", "token", "The same as agent: the username."),
    ("agent-role", "token", "The user's role: clinician, system, admin, privacy-officer, ..."),
    ("action", "token", "C create, R read, U update, D delete, E execute (search, operations)."),
    ("type", "token", "rest (every entry is a RESTful operation)."),
    ("subtype", "token", "The interaction: read, vread, search, create, update, delete, ..."),
    ("outcome", "token", "0 success, 4 refused or invalid (4xx), 8 server error (5xx)."),
    ("purpose", "token", "Purpose of use (v3 ActReason): TREAT, BTG, HOPERAT, HSYSADMIN, ..."),
    ("_id", "token", "The entry's number in the audit log."),
)
PAGING = ("_count", "_offset", "_sort", "_format")


class AuditContext(TypedDict):
    """What routes.py adds to each log entry for its AuditEvent."""

    organisation: str
    purpose: str
    patients: list[str]


# --- what each request's entry records ------------------------------------------------------


def organisation_of(user: User | None) -> str:
    """The user's organisation: their practice, else their PCN, else the organisation they
    work for (a trust, a council; "" for none)."""
    if user is None:
        return ""
    return user.practice_code or user.pcn_code or user.organisation_code or ""


def purpose_of(user: User | None, break_glass: bool = False) -> str:
    if user is None:
        return ""
    return "BTG" if break_glass else PURPOSE_OF_ROLE.get(user.role, "")


def patients_in(resource: Any) -> set[str]:
    """The Patient ids `resource` belongs to; for a Bundle, its entries' (their resources and
    the Patients their responses locate); for Parameters, a `patient` reference."""
    if not isinstance(resource, dict):
        return set()
    kind = resource.get("resourceType")
    if kind == "Bundle":
        found: set[str] = set()
        for entry in resource.get("entry") or []:
            if not isinstance(entry, dict):
                continue
            found |= patients_in(entry.get("resource"))
            location = str((entry.get("response") or {}).get("location") or "")
            matched = _PATIENT_TARGET.match(location)
            if matched:
                found.add(matched.group(1))
        return found
    if kind == "Parameters":
        found = set()
        for parameter in resource.get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name") == "patient":
                reference = (parameter.get("valueReference") or {}).get("reference")
                matched = _PATIENT_TARGET.match(str(reference))
                if matched:
                    found.add(matched.group(1))
        return found
    if kind == "Patient":
        rid = str(resource.get("id") or "")
        return {rid} if _ID.fullmatch(rid) else set()
    return _compartment(resource, kind)


def _compartment(resource: dict[str, Any], kind: Any) -> set[str]:
    """The Patients `resource` belongs to: where its `patient` search parameter points (what
    gate.patients_of finds, without indexing the whole resource)."""
    parameter = SEARCH_PARAMETERS_OF.get(kind, {}).get("patient") if isinstance(kind, str) else None
    found: set[str] = set()
    for path in parameter.paths if parameter else ():
        nodes: list[Any] = [resource]
        for step in path.split("."):
            nodes = [
                value
                for node in nodes
                for item in (node if isinstance(node, list) else [node])
                if isinstance(item, dict)
                for value in [item.get(step)]
                if value is not None
            ]
        for node in nodes:
            for item in node if isinstance(node, list) else [node]:
                reference = item.get("reference") if isinstance(item, dict) else None
                target = split_reference(reference) if isinstance(reference, str) else None
                if target and target[0] == "Patient":
                    found.add(target[1])
    return found


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def audit_context(
    user: User | None, gate: Gate | None, target: str, body: bytes, answer: Answer
) -> AuditContext:
    """The organisation, purpose of use and Patient ids of one request to the records API:
    the patient a `Patient/id` URL names, the patients the access checks were about (allowed
    or refused), those in what was answered (a resource, a Bundle's entries, a break-glass
    grant) and, for a write that succeeded, those the written resources belong to. Ids only:
    the log holds no NHS number or name."""
    patients: set[str] = set()
    matched = _PATIENT_TARGET.match(target)
    if matched:
        patients.add(matched.group(1))
    if gate is not None:
        patients |= {p for p in getattr(gate, "patients", set()) if _ID.fullmatch(p)}
    if answer.status < 400 and answer.body is not None:
        patients |= patients_in(answer.body)
    if answer.status < 400 and body:
        patients |= patients_in(_json(body))
    return AuditContext(
        organisation=organisation_of(user),
        purpose=_proxy_purpose(gate) or purpose_of(user, bool(gate and gate.break_glass)),
        patients=sorted(patients),
    )


def _proxy_purpose(gate: Gate | None) -> str | None:
    """The purpose of a request a proxy relationship allowed (one relationship; several, as
    in a search across two people they act for: the first by name)."""
    relationships = sorted(getattr(gate, "proxy_relationships", ()) or ())
    return PURPOSE_OF_PROXY.get(relationships[0]) if relationships else None


def refuse_audit_writes(bundle: dict[str, Any]) -> None:
    """Refuse a transaction or batch Bundle with an entry for AuditEvent (403): the audit
    trail is written by the server and read at `GET /fhir/R4/AuditEvent` only."""
    for index, entry in enumerate(bundle.get("entry") or []):
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        url = str((entry.get("request") or {}).get("url") or "")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind == "AuditEvent" or url.split("?", 1)[0].split("/", 1)[0] == "AuditEvent":
            raise FhirError.one(
                403,
                "forbidden",
                "AuditEvent is append-only and written by the server: it is read with GET "
                f"{PREFIX}/AuditEvent, never created, changed or deleted, nor in a Bundle",
                f"Bundle.entry[{index}]",
            )


# --- an entry as an AuditEvent --------------------------------------------------------------


def interaction_of(action: str) -> str:
    return action.removeprefix("fhir ")


def action_code(interaction: str) -> str:
    return ACTIONS.get(interaction, "E")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _entity_of_target(resource: str) -> dict[str, Any]:
    """The entity the request was about, from the log's `fhir/<target>`."""
    target = resource.removeprefix("fhir/")
    object_type = _coding(
        "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"
    )
    if "?" in target:
        kind, names = target.split("?", 1)
        return {
            "type": object_type,
            "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "24", "Query"),
            "name": kind,
            "description": (
                f"search of {kind} by " + (names.replace(",", ", ") or "no parameters")
                + " (parameter names only: values are never logged)"
            ),
        }  # fmt: skip
    parts = target.split("/")
    if len(parts) >= 2 and _ID.fullmatch(parts[1]) and parts[0][:1].isupper():
        return {"what": {"reference": target}, "type": object_type}
    return {"type": object_type, "name": target}


def _patient_entities(patients: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for token in patients.split():
        if token.startswith("+"):
            found.append({"description": f"and {token[1:]} more patients, not listed"})
            continue
        found.append(
            {
                "what": {"reference": f"Patient/{token}"},
                "type": _coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"
                ),
                "role": _coding(
                    "http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"
                ),
            }
        )
    return found


def _agents(entry: dict[str, Any]) -> list[dict[str, Any]]:
    username, role = str(entry["username"]), str(entry["role"])
    purpose = str(entry["purpose"])
    person = role not in (Role.SYSTEM.value, "-")
    user: dict[str, Any] = {
        "type": {
            "coding": [
                _coding(
                    "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "humanuser" if person else "datacollector",
                    "human user" if person else "data collector",
                )
            ]
        },
        "who": {
            "identifier": {"system": USER_SYSTEM, "value": username},
            "display": username if username != "-" else "not signed in",
        },
        "altId": username,
        "requestor": True,
        "network": {"address": str(entry["client"]), "type": "2"},
    }
    if role != "-":
        label = ROLE_LABELS.get(Role(role)) if role in Role._value2member_map_ else None
        user["role"] = [{"coding": [_coding(ROLE_SYSTEM, role, label)]}]
    if purpose:
        user["purposeOfUse"] = [
            {"coding": [_coding(ACT_REASON, purpose, PURPOSE_LABELS.get(purpose))]}
        ]
    agents = [user]
    if entry["organisation"]:
        agents.append(
            {
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                            "PROV",
                            "healthcare provider",
                        )
                    ],
                    "text": "the user's organisation",
                },
                "who": {"identifier": {"system": ODS_SYSTEM, "value": entry["organisation"]}},
                "requestor": False,
            }
        )
    agents.append(
        {
            "type": {
                "coding": [
                    _coding("http://dicom.nema.org/resources/ontology/DCM", "110152",
                            "Destination Role ID")
                ]
            },
            "who": {"display": "joinedup records API (FHIR R4)"},
            "requestor": False,
        }
    )  # fmt: skip
    return agents


def audit_event(entry: dict[str, Any]) -> dict[str, Any]:
    """One entry of the log (a row of AccessStore.records_audit) as an AuditEvent. The
    `audit-chain` extension gives the entry's number, the hash of the entry before and its
    own hash (HMAC-SHA256 under the audit key), so consecutive AuditEvents can be checked to
    follow each other; the server checks every hash before it answers."""
    interaction = interaction_of(str(entry["action"]))
    detail = str(entry["detail"])
    subtype = [_coding(INTERACTION_SYSTEM, interaction)]
    if interaction in RESTFUL:
        subtype.insert(0, _coding(RESTFUL_SYSTEM, RESTFUL[interaction]))
    purpose = str(entry["purpose"])
    reason = str(entry["reason"])
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry["seq"]),
        "meta": {"versionId": "1", "lastUpdated": entry["at"]},
        "extension": [
            {
                "url": CHAIN_EXTENSION,
                "extension": [
                    {"url": "sequence", "valueInteger": int(entry["seq"])},
                    {"url": "previousHash", "valueString": entry["prev_hash"]},
                    {"url": "hash", "valueString": entry["hash"]},
                ],
            }
        ],
        "type": EVENT_TYPE,
        "subtype": subtype,
        "action": action_code(interaction),
        "recorded": entry["at"],
        "outcome": OUTCOME_OF_STATUS.get(detail[:1], "8"),
        "outcomeDesc": detail,
    }
    if purpose or reason:
        concept: dict[str, Any] = {"text": reason} if reason else {}
        if purpose:
            concept["coding"] = [_coding(ACT_REASON, purpose, PURPOSE_LABELS.get(purpose))]
        event["purposeOfEvent"] = [concept]
    event["agent"] = _agents(entry)
    event["source"] = {
        "site": "joinedup",
        "observer": {"display": f"joinedup {__version__} records API"},
        "type": [
            _coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                "Application Server",
            )
        ],
    }
    event["entity"] = [
        _entity_of_target(str(entry["resource"])),
        *_patient_entities(str(entry["patients"])),
    ]
    return event


# --- search parameters -----------------------------------------------------------------------


def _bad(name: str, reason: str) -> FhirError:
    return FhirError.one(400, "invalid", reason, name)


def _tokens(name: str, value: str, systems: Iterable[str] = ()) -> frozenset[str]:
    """A token parameter's values (comma for any of them), each `code` or `system|code`."""
    found = set()
    for one in value.split(","):
        system, bar, code = one.rpartition("|")
        if bar and system and system not in systems:
            return frozenset()  # another system: nothing matches
        if not code:
            raise _bad(name, "give a code, or system|code")
        found.add(code)
    return frozenset(found)


def _both(old: frozenset[str] | None, new: frozenset[str]) -> frozenset[str]:
    """Two uses of one parameter: entries must match both."""
    return new if old is None else old & new


def _patients(value: str) -> frozenset[str]:
    ids = set()
    for one in value.split(","):
        rid = one.removeprefix("Patient/")
        if not _ID.fullmatch(rid):
            raise _bad("patient", "give Patient/id or id (a FHIR id, not an NHS number or name)")
        ids.add(rid)
    return frozenset(ids)


def _instant(moment: datetime) -> str:
    """An instant as the log writes it (UTC, to the microsecond), to compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dates(query: RecordsAuditQuery, value: str) -> RecordsAuditQuery:
    match = _DATE.fullmatch(value)
    prefix = (match.group(1) if match else None) or "eq"
    try:
        low, high = date_range(match.group(2) if match else value)
    except ValueError as err:
        raise _bad("date", str(err)) from None
    since, before = {
        "eq": (low, high), "ge": (low, None), "gt": (high, None), "sa": (high, None),
        "le": (None, high), "lt": (None, low), "eb": (None, low),
    }.get(prefix, (None, None))  # fmt: skip
    if since is None and before is None:
        raise _bad("date", f"prefix {prefix} is not supported here (eq, ge, gt, le, lt, sa, eb)")
    if since is not None:
        text = _instant(since)
        query = replace(query, since=max(query.since or text, text))
    if before is not None:
        text = _instant(before)
        query = replace(query, before=min(query.before or text, text))
    return query


def _actions(query: RecordsAuditQuery, codes: frozenset[str]) -> RecordsAuditQuery:
    """Keep entries whose interaction has one of the action `codes`."""
    unknown = codes - set(ACTION_CODES)
    if unknown:
        raise _bad("action", "one of C, R, U, D, E")
    named = {f"fhir {i}" for i, code in ACTIONS.items() if code in codes}
    if "E" in codes:  # everything but the interactions of the codes not asked for
        left_out = frozenset(f"fhir {i}" for i, code in ACTIONS.items() if code not in codes)
        return replace(query, not_actions=(query.not_actions or frozenset()) | left_out)
    return replace(query, actions=_both(query.actions, frozenset(named)))


def _patient(query: RecordsAuditQuery, _: str, value: str) -> RecordsAuditQuery:
    return replace(query, patients=(*(query.patients or ()), _patients(value)))


def _agent(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    return replace(query, usernames=_both(query.usernames, _tokens(name, value, [USER_SYSTEM])))


def _role(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    return replace(query, roles=_both(query.roles, _tokens(name, value, [ROLE_SYSTEM])))


def _purpose(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    return replace(query, purposes=_both(query.purposes, _tokens(name, value, [ACT_REASON])))


def _action(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    return _actions(query, _tokens(name, value))


def _subtype(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    codes = _tokens(name, value, [INTERACTION_SYSTEM, RESTFUL_SYSTEM])
    names = frozenset(f"fhir {'search' if c == 'search-type' else c}" for c in codes)
    return replace(query, actions=_both(query.actions, names))


def _type(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    if _tokens(name, value, [EVENT_TYPE["system"]]) & {"rest"}:
        return query  # every entry is a RESTful operation
    return replace(query, actions=frozenset())


def _outcome(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    codes = _tokens(name, value, ["http://hl7.org/fhir/audit-event-outcome"])
    if codes - {"0", "4", "8", "12"}:
        raise _bad(name, "0, 4, 8 or 12")
    digits = frozenset(d for d, o in OUTCOME_OF_STATUS.items() if o in codes)
    return replace(query, outcomes=_both(query.outcomes, digits))


def _seq(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    if not value.isdigit():
        raise _bad(name, "an AuditEvent's id is its entry's number")
    return replace(query, seq=int(value))


def _date(query: RecordsAuditQuery, _: str, value: str) -> RecordsAuditQuery:
    return _dates(query, value)


def _sort(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    if value not in ("date", "-date", "_lastUpdated", "-_lastUpdated"):
        raise _bad(name, "date (oldest first) or -date (newest first, the default)")
    return replace(query, oldest_first=not value.startswith("-"))


def _format(query: RecordsAuditQuery, name: str, value: str) -> RecordsAuditQuery:
    if value not in ("json", FHIR_JSON, "application/json"):
        raise _bad(name, "this server answers in JSON only")
    return query


_PARSERS: dict[str, Callable[[RecordsAuditQuery, str, str], RecordsAuditQuery]] = {
    "patient": _patient, "date": _date, "agent": _agent, "altid": _agent,
    "agent-role": _role, "purpose": _purpose, "action": _action, "subtype": _subtype,
    "type": _type, "outcome": _outcome, "_id": _seq, "_sort": _sort, "_format": _format,
}  # fmt: skip


def _number(name: str, value: str, most: int | None = None) -> int:
    if not value.isdigit() or (most is not None and int(value) > most):
        raise _bad(name, "a whole number from 0" + (f" to {most}" if most is not None else ""))
    return int(value)


def parse_search(pairs: list[tuple[str, str]]) -> tuple[RecordsAuditQuery, int, int]:
    """The log query, `_count` and `_offset` of an AuditEvent search; FhirError (400) naming
    the parameter for anything it cannot do."""
    query = RecordsAuditQuery()
    count, offset = DEFAULT_COUNT, 0
    for name, value in pairs:
        if name == "_count":
            count = _number(name, value, MAX_COUNT)
        elif name == "_offset":
            offset = _number(name, value)
        elif name not in _PARSERS:
            known = ", ".join(n for n, _, _ in SEARCH_PARAMETERS)
            raise _bad(
                name, f"not a search parameter of AuditEvent here ({known}, {', '.join(PAGING)})"
            )
        elif not value:
            raise _bad(name, "give a value")
        else:
            query = _PARSERS[name](query, name, value)
    return query, count, offset


# --- the routes ----------------------------------------------------------------------------


def _send(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        headers=headers,
        media_type=FHIR_JSON,
    )


def _detail(status: int, body: dict[str, Any]) -> str:
    """The log's detail of an answer: status, and a refusal's issue codes and elements (never
    the diagnostics) or a searchset's counts."""
    text = str(status)
    if body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue", [])[:5]:
            text += f"; {issue.get('code')}" + (
                f" {issue['expression'][0]}" if issue.get("expression") else ""
            )
    elif body.get("resourceType") == "Bundle":
        text += f"; {body.get('total')} in all, {len(body.get('entry', []))} sent"
    return text


Work = Callable[[AccessStore, User, str], tuple[int, dict[str, Any], list[str]]]


async def _serve(request: Request, interaction: str, target: str, work: Work | None) -> Response:
    """Sign in (401), check the role (403: the privacy officer and admin read the audit;
    writes are refused to everyone, 405), check the chain and run `work` (which answers
    status, body and the patients it concerned), then audit the request itself."""
    log = access(request)
    where = client(request)
    token = token_of(request)
    user: User | None = await run_in_threadpool(log.session_user, token)
    patients: list[str] = []
    headers: dict[str, str] = {}
    if user is None:
        status, body = (
            401,
            FhirError.one(
                401, "login", "sign in first: a bearer token from POST /api/v1/token"
            ).outcome(),
        )
        headers = {"WWW-Authenticate": "Bearer"}
        reason = ""
    elif work is None:
        status, body = 405, FhirError.one(
            405, "not-supported",
            f"AuditEvent is append-only: the server writes one for every request to {PREFIX}, "
            f"and they are read with GET {PREFIX}/AuditEvent; none is created, changed or "
            "deleted through the API", "AuditEvent",
        ).outcome()  # fmt: skip
        headers = {"Allow": "GET"}
        reason = "records audit: append-only"
    elif not user.may("records_audit"):
        status, body = 403, FhirError.one(
            403, "forbidden",
            f"the {user.role.value} role may not read the audit trail (the privacy officer "
            "and admin may)",
        ).outcome()  # fmt: skip
        reason = "records audit: role not allowed"
    else:
        reason = "records audit: own record" if user.patient_id else "records audit review"
        policy = getattr(request.app.state, "records_policy", None)
        try:
            status, body, patients = await run_in_threadpool(
                lambda: work(log, in_force(user, policy), str(request.base_url))
            )
        except FhirError as err:
            status, body = err.status, err.outcome()
            if isinstance(err, ProxyEndedError):
                reason, patients = f"withheld: {err.label}", [err.patient_id]
    await run_in_threadpool(
        lambda: log.audit(
            user, f"fhir {interaction}", f"fhir/{target}", detail=_detail(status, body),
            reason=reason, client=where, organisation=organisation_of(user),
            purpose=purpose_of(user), patients=patients,
        )
    )  # fmt: skip
    return _send(status, body, headers)


def _verified(log: AccessStore) -> int:
    """Check the chain up to its newest entry; the number of the last entry checked. A broken
    chain is a 500 OperationOutcome saying what is wrong, never an answer."""
    check = log.verify_audit()
    if not check.intact:
        raise FhirError.one(
            500,
            "exception",
            f"the audit log's hash chain is broken ({check.problem}): no AuditEvent is given "
            "until an administrator has looked into it (docs/records.md, The audit trail)",
        )
    return check.verified_through


def _page_link(base: str, pairs: list[tuple[str, str]], offset: int, count: int) -> str:
    kept = [(n, v) for n, v in pairs if n not in ("_offset", "_count")]
    return f"{base}/AuditEvent?" + urlencode(
        [*kept, ("_count", str(count)), ("_offset", str(offset))]
    )


class ProxyEndedError(FhirError):
    """A proxy's search of the audit of a person whose age has ended their access: 403 saying
    why, audited with `label` as the reason."""

    def __init__(self, patient_id: str, label: str, reason: str) -> None:
        super().__init__(403, [("forbidden", None, reason)])
        self.patient_id = patient_id
        self.label = label


def own_record(query: RecordsAuditQuery, user: User) -> RecordsAuditQuery:
    """A citizen's search kept to the entries naming their own record or one they are a proxy
    for: a `patient` they give must be one of those (403 otherwise, as reading another's
    record is), and all of them are asked for when they give none."""
    if user.patient_id is None:
        return query
    theirs = {user.patient_id} | user.proxy_for
    asked = {p for ids in query.patients or () for p in ids}
    ended = [e for e in user.proxies_ended if e.patient_id in asked]
    if ended:  # a proxy the person's age has ended or suspended (records.proxy_age): say so
        raise ProxyEndedError(ended[0].patient_id, ended[0].label, ended[0].refusal)
    if asked - theirs:
        raise FhirError.one(
            403, "forbidden", "not your record: a citizen sees only their own record's audit"
        )
    return replace(query, patients=(frozenset(asked or theirs),))


def _search(pairs: list[tuple[str, str]]) -> Work:
    def work(log: AccessStore, user: User, root: str) -> tuple[int, dict[str, Any], list[str]]:
        query, count, offset = parse_search(pairs)
        query = own_record(query, user)
        through = _verified(log)
        total, rows = log.records_audit(replace(query, through=through), count, offset)
        base = root.rstrip("/") + PREFIX
        links = [{"relation": "self", "url": _page_link(base, pairs, offset, count)}]
        if count and offset + count < total:
            links.append(
                {"relation": "next", "url": _page_link(base, pairs, offset + count, count)}
            )
        if count and offset > 0:
            links.append(
                {
                    "relation": "previous",
                    "url": _page_link(base, pairs, max(0, offset - count), count),
                }
            )
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/AuditEvent/{row['seq']}",
                    "resource": audit_event(row),
                    "search": {"mode": "match"},
                }
                for row in rows
            ],
        }
        # The patients searched for, when the log holds them (so an id typed by mistake,
        # found nowhere, is not written).
        asked = {p for ids in query.patients or () for p in ids}
        shown = {p for row in rows for p in str(row["patients"]).split()}
        return 200, bundle, sorted(asked & shown)

    return work


def _read(seq: str, version: str | None = None) -> Work:
    def work(log: AccessStore, user: User, __: str) -> tuple[int, dict[str, Any], list[str]]:
        if version is not None and version != "1":
            raise FhirError.one(404, "not-found", "an AuditEvent has one version, 1")
        through = _verified(log)
        rows = (
            log.records_audit(RecordsAuditQuery(seq=int(seq), through=through), 1)[1]
            if seq.isdigit()
            else []
        )
        if user.patient_id is not None and rows:  # a citizen: entries naming theirs only
            theirs = {user.patient_id} | user.proxy_for
            if not theirs & set(str(rows[0]["patients"]).split()):
                rows = []
        if not rows:
            raise FhirError.one(404, "not-found", f"AuditEvent/{seq}: no such entry")
        row = rows[0]
        return 200, audit_event(row), [p for p in str(row["patients"]).split() if _ID.fullmatch(p)]

    return work


def _names(pairs: list[tuple[str, str]]) -> str:
    return ",".join(dict.fromkeys(name for name, _ in pairs))


@router.get("/AuditEvent")
async def search_audit(request: Request) -> Response:
    """Search the records API's audit trail (privacy officer and admin)."""
    pairs = list(request.query_params.multi_items())
    return await _serve(request, "search", f"AuditEvent?{_names(pairs)}", _search(pairs))


@router.post("/AuditEvent/_search")
async def search_audit_by_post(request: Request) -> Response:
    body = await request.body()
    pairs = list(request.query_params.multi_items()) + parse_qsl(
        body.decode("utf-8", "replace"), keep_blank_values=True
    )
    return await _serve(request, "search", f"AuditEvent?{_names(pairs)}", _search(pairs))


@router.api_route("/AuditEvent/{rid}/_history", methods=["GET"])
@router.api_route("/AuditEvent/_history", methods=["GET"])
async def audit_history(request: Request) -> Response:
    """No history: an AuditEvent has one version, never changed."""

    def work(_: AccessStore, __: User, ___: str) -> tuple[int, dict[str, Any], list[str]]:
        raise FhirError.one(
            404, "not-supported",
            "AuditEvents have no history (one version each, never changed): read or search "
            "them",
        )  # fmt: skip

    target = request.url.path.removeprefix(PREFIX + "/")
    return await _serve(request, "history", target, work)


@router.get("/AuditEvent/{rid}")
async def read_audit(request: Request, rid: str) -> Response:
    return await _serve(request, "read", f"AuditEvent/{rid}", _read(rid))


@router.get("/AuditEvent/{rid}/_history/{version}")
async def vread_audit(request: Request, rid: str, version: str) -> Response:
    return await _serve(
        request, "vread", f"AuditEvent/{rid}/_history/{version}", _read(rid, version)
    )


@router.post("/AuditEvent")
async def create_audit(request: Request) -> Response:
    return await _serve(request, "create", "AuditEvent", None)


@router.put("/AuditEvent")
async def conditional_update_audit(request: Request) -> Response:
    return await _serve(request, "update", "AuditEvent", None)


@router.api_route("/AuditEvent/{rid}", methods=["PUT", "DELETE", "PATCH"])
async def change_audit(request: Request, rid: str) -> Response:
    interaction = {"PUT": "update", "DELETE": "delete"}.get(request.method, "patch")
    return await _serve(request, interaction, f"AuditEvent/{rid}", None)


# --- the CapabilityStatement -------------------------------------------------------------------


def capability() -> dict[str, Any]:
    """AuditEvent's entry in the CapabilityStatement: read and search, nothing written."""
    return {
        "type": "AuditEvent",
        "documentation": (
            "The records API's own audit trail, one AuditEvent per request (IHE Basic Audit "
            "Log Patterns style), rendered from the append-only, hash-chained audit log; "
            "for the privacy officer and admin, and for a citizen the entries naming their own "
            "record (their `patient` only). The chain is checked before every answer; "
            f"the {CHAIN_EXTENSION} extension gives each entry's number and hashes. Never "
            "created, changed or deleted through the API (405)."
        ),
        "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {"name": name, "type": kind, "documentation": text}
            for name, kind, text in SEARCH_PARAMETERS
        ],
    }
