"""Following the master person index in `Patient/$everything` (issue 17): which of the same
person's other Patients a user sees, each judged on its own.

The index says that Patients at several organisations are one person; it gives nobody access.
So each linked Patient (store.person_links: only certain links, none awaiting review) is
decided by `Policy.decide` for that Patient id, by its own relationships or a break-glass grant
for it, and audited as its own access: a clinician with a relationship at one organisation
does not reach another's records through the index alone.

An objection to sharing follows the person: one recorded against any of the person's Patients
(the asked one or a linked one) by none of the user's organisations withholds every one of
them, as an objection withholds one Patient's record (records.policy); only a break-glass
grant for a Patient shows it, noted as an override. Without it the index would carry records
round an objection made at another organisation.

Plain logic over a RecordStore and a Policy; the caller audits each decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from joinedup.records.policy import PERSON_OBJECTION, Decision, Policy, Requester
from joinedup.records.store import LinkedPatient, RecordStore


@dataclass(frozen=True)
class LinkedAccess:
    """One linked Patient and the decision on it (`decision.allowed`: its records are shown)."""

    patient: LinkedPatient
    decision: Decision


@dataclass(frozen=True)
class PersonAccess:
    """The decisions for one `$everything` that follows the index: `asked` when an objection
    of another of the person's Patients bears on the asked Patient (withheld, or shown by a
    break-glass grant; None: the asked Patient's own decision stands), and one decision per
    linked Patient."""

    asked: Decision | None
    linked: tuple[LinkedAccess, ...]

    @property
    def shown(self) -> list[LinkedPatient]:
        """The linked Patients whose records the user sees."""
        return [a.patient for a in self.linked if a.decision.allowed]


def person_access(
    store: RecordStore,
    policy: Policy,
    who: Requester,
    patient_id: str,
    systems: Mapping[str, str],
) -> PersonAccess:
    """Decide, for `who` reading Patient `patient_id`'s record with the person index, each of
    the person's other Patients (`systems`: each index source's identifier system)."""
    linked = store.linked_patients(patient_id, systems)
    if not linked:
        return PersonAccess(None, ())
    everyone = [patient_id, *(p.patient_id for p in linked)]
    objecting = _objecting(store, who, everyone)
    asked = None
    if objecting - {patient_id} and who.patient_id != patient_id:
        asked = _person_decision(policy, who, patient_id, Decision(True, None))
    decisions = []
    for patient in linked:
        own = policy.decide(who, patient.patient_id)
        if own.allowed and objecting - {patient.patient_id}:
            own = _person_decision(policy, who, patient.patient_id, own)
        decisions.append(LinkedAccess(patient, own))
    return PersonAccess(asked, tuple(decisions))


def _objecting(store: RecordStore, who: Requester, patient_ids: Sequence[str]) -> set[str]:
    """Those of `patient_ids` with an active objection to sharing that none of `who`'s
    organisations recorded (a citizen's own: none)."""
    found = set()
    for patient_id in patient_ids:
        if who.patient_id is not None and patient_id == who.patient_id:
            continue
        objections = store.objections(patient_id)
        if objections and not any(orgs & who.organisations for orgs in objections):
            found.add(patient_id)
    return found


def _person_decision(
    policy: Policy, who: Requester, patient_id: str, decision: Decision
) -> Decision:
    """`decision` on a Patient another of whose person's Patients objects: withheld, but by
    a break-glass grant for this Patient."""
    if decision.rule == "break-glass" or who.patient_id is not None:
        grant = decision.grant if decision.rule == "break-glass" else None
    else:
        grant = policy.grant_for(who, patient_id)
    if grant is None:
        return Decision(False, None, withheld=PERSON_OBJECTION)
    return Decision(True, "break-glass", grant, withheld=PERSON_OBJECTION)


__all__ = ["PERSON_OBJECTION", "LinkedAccess", "PersonAccess", "person_access"]
