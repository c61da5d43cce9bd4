"""`Patient/$everything` following the master person index (docs/records.md): where the
index's sources' identifier systems come from, and the audit entry of each linked Patient.

Each linked Patient's access is its own entry in the audit trail, beside the request's own:
the interaction `everything` on `Patient/<linked id>`, that Patient's rule (or why it was
withheld; `BREAK-GLASS` and the purpose BTG when a grant showed it; a proxy's relationship and
its purpose, `proxy as parent` and FAMRQT, as on the request's own), how the index linked it,
and how many of its resources the page held. Ids only: no NHS number or name.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from joinedup.records.linked_access import PersonAccess
from joinedup.web.access import AuditEvent, User
from joinedup.web.records_api.audit_events import PURPOSE_OF_PROXY, organisation_of, purpose_of
from joinedup.web.records_api.gate import Gate, patients_of
from joinedup.web.records_api.interactions import Answer


def index_systems(request: Request) -> Mapping[str, str]:
    """Each person index source's identifier system, as the server was started with
    (`JOINEDUP_RECORDS_INDEX_SOURCES`; none: sources compared as named)."""
    found: Mapping[str, str] = getattr(request.app.state, "records_index_systems", None) or {}
    return found


def linked_audit(
    user: User, gate: Gate, rid: str, access: PersonAccess, answer: Answer, where: str
) -> list[AuditEvent]:
    """One audit entry per linked Patient of `Patient/{rid}/$everything` (see the module)."""
    entries = (answer.body or {}).get("entry") or [] if answer.status < 400 else []
    events = []
    for linked in access.linked:
        patient = linked.patient.patient_id
        decision = linked.decision
        break_glass = decision.rule == "break-glass"
        purpose = purpose_of(user, break_glass)
        if gate.unrestricted:
            reason = f"records API: {user.role.value} role (unrestricted)"
        elif decision.allowed and decision.rule == "proxy":
            reason = f"legitimate relationship: {gate.rule_label(decision, patient)}"
            purpose = PURPOSE_OF_PROXY.get(gate.proxy_relationship(patient), purpose)
        else:
            reason = ("BREAK-GLASS; " if break_glass else "") + decision.label
        how = linked.patient.linked_by or "no link of its own"
        detail = f"linked to Patient/{rid} by the person index ({how})"
        if decision.allowed and answer.status < 400:
            shown = sum(1 for e in entries if patient in patients_of(e.get("resource") or {}))
            detail = f"{answer.status}; {detail}; {shown} on this page"
        else:
            detail = f"403; {detail}; not shown"
        events.append(
            AuditEvent(
                username=user.username, role=user.role.value, action="fhir everything",
                resource=f"fhir/Patient/{patient}",
                detail=detail + ("; break-glass" if break_glass else ""), reason=reason,
                client=where, organisation=organisation_of(user),
                purpose=purpose, patients=(patient,),
            )
        )  # fmt: skip
    return events
