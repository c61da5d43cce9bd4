"""Who may do what through the FHIR API, request by request (records.policy decides).

Admin and system roles (feeds) are unrestricted. A clinician reads, searches, vreads and
writes patient-compartment resources only for patients they have a legitimate relationship
with (or a break-glass grant); searches are kept to those patients in the store's query, so
neither the total nor the pages show anyone else. A care worker likewise, through their
organisation only (never registration), reads and searches only CARE_WORKER_TYPES, and writes
only what records.policy's care_worker_write_refusal allows (CARE_WORKER_WRITE_TYPES their
organisation records, under its relationship, never by break-glass; no deletions). A citizen
reads their own record (and those they are a proxy for, each access audited with the
relationship) and writes only their own sharing choices (a Consent objecting to sharing, or
withdrawing that objection: records.consent's rules).
Types that hold no one's record (Organization, Practitioner, ...) are open to read;
everything else - AuditEvent, types the store does not index by patient, Bundles, conditional
and type-wide interactions - is refused. A refusal never says whether the record exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from joinedup.records import RecordsError, RecordStore
from joinedup.records.consent import (
    citizen_choice_problem,
    is_sharing_choice,
    registered_practices,
)
from joinedup.records.linked_access import LinkedAccess, PersonAccess, person_access
from joinedup.records.parameters import SEARCH_PARAMETERS, entries
from joinedup.records.policy import (
    CARE_WORKER_TYPES,
    CARE_WORKER_WRITE_TYPES,
    Decision,
    Policy,
    Requester,
    care_worker_rule_refusal,
    care_worker_write_refusal,
)
from joinedup.web.access import Role, User
from joinedup.web.records_api.outcome import FhirError

#: Roles the policy does not restrict (feeds and administrators).
UNRESTRICTED = frozenset({Role.ADMIN, Role.SYSTEM})
#: Roles that see records by legitimate relationship (and may break glass).
RELATIONSHIP_ROLES = frozenset({Role.CLINICIAN, Role.CARE_WORKER})
#: Roles that write records by legitimate relationship (a care worker too, within the narrower
#: rules of Gate._care_worker_writing; social care systems' bulk feeds write as the system role).
WRITING_ROLES = frozenset({Role.CLINICIAN})
#: Types that hold no person's record, open to read and search for the roles above.
DIRECTORY_TYPES = frozenset(
    {"Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService",
     "Medication", "Endpoint"}
)  # fmt: skip
#: Types with a patient parameter that are still not for clinicians (the audit trail).
CLOSED_TYPES = frozenset({"AuditEvent"})
BREAK_GLASS_HINT = (
    "no legitimate relationship with this patient: if you must see the record, break glass "
    "with POST /fhir/R4/$break-glass (Parameters: patient, reason), which is audited and "
    "reported to the privacy officer"
)
#: A citizen's refusal: only their own record is theirs to see (no break-glass for them).
NOT_YOURS = "not your record: a citizen sees only their own record"

PcnPractices = Callable[[str], frozenset[str]]


def requester(user: User, pcn_practices: PcnPractices | None = None) -> Requester:
    """The policy's view of a user: their practice, PCN and organisation (a trust, a council)
    as organisations, and the practices whose registered patients they care for (a
    citizen: their own record and those they are a proxy for)."""
    codes = (user.practice_code, user.pcn_code, user.organisation_code)
    organisations = frozenset(c for c in codes if c)
    practices = {user.practice_code} if user.practice_code else set()
    if user.pcn_code and not user.practice_code and pcn_practices is not None:
        practices |= pcn_practices(user.pcn_code)
    if user.role is Role.CARE_WORKER:
        practices = set()  # never by registration at a practice
    return Requester(
        user.username, organisations, frozenset(practices), user.patient_id, user.proxy_for,
        user.proxy_relationships, user.proxy_reviews,
    )  # fmt: skip


def in_force(user: User, policy: Policy | None) -> User:
    """`user` with only the proxy relationships in force now: those a person's age has ended
    (a parent's or guardian's at 16, records.proxy_age) or suspended for review moved to
    `proxies_ended`. For the routes that read `proxy_for` themselves (the AuditEvent search,
    the citizen's pages); the policy applies the same rule to every decision and search of
    its own."""
    if policy is None or not user.proxy_for:
        return user
    ended = policy.held_proxies(requester(user))
    if not ended:
        return user
    kept = tuple((p, r) for p, r in user.proxy_relationships if p not in ended)
    return replace(
        user,
        proxy_for=user.proxy_for - set(ended),
        proxy_relationships=kept,
        proxies_ended=tuple(ended.values()),
    )


def in_compartment(kind: str) -> bool:
    return kind == "Patient" or "patient" in SEARCH_PARAMETERS.get(kind, {})


def patients_of(resource: dict[str, Any]) -> set[str]:
    """The Patient ids a resource belongs to (its own id for a Patient)."""
    if resource.get("resourceType") == "Patient":
        return {str(resource.get("id"))}
    return {tid for name, ttype, tid in entries(resource).references
            if name == "patient" and ttype == "Patient"}  # fmt: skip


def _forbidden(text: str) -> FhirError:
    return FhirError.one(403, "forbidden", text)


class Gate:
    """One request's access checks; `rules` and `break_glass` say what allowed it, for the
    audit entry."""

    def __init__(self, user: User, policy: Policy, pcn_practices: PcnPractices | None) -> None:
        self.user = user
        self.policy = policy
        self.who = requester(user, pcn_practices)
        self.rules: set[str] = set()
        self.break_glass = False
        #: The patients the request's checks were about (allowed or not), for its AuditEvent.
        self.patients: set[str] = set()
        self.refused = False
        self.withheld: str | None = None  # the consent rule that refused the request
        self.notes: set[str] = set()  # what a break-glass grant overrode
        #: The proxy relationships (parent, carer, ...) the request was allowed by, if any.
        self.proxy_relationships: set[str] = set()
        self._granted: set[str] = set()
        self._hint = NOT_YOURS if user.patient_id is not None else BREAK_GLASS_HINT
        self._searches: list[tuple[str, list[tuple[str, str]]]] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.user.role in UNRESTRICTED

    @property
    def reason(self) -> str:
        """Why the request was allowed or refused, for the audit log."""
        if self.unrestricted:
            return f"records API: {self.user.role.value} role (unrestricted)"
        if self.refused:
            return f"withheld: {self.withheld}" if self.withheld else "no legitimate relationship"
        if self.rules:
            overrode = "".join(f"; {n}" for n in sorted(self.notes))
            return "legitimate relationship: " + ",".join(sorted(self.rules)) + overrode
        return "records API: no patient's record involved"

    def only_unrestricted(self, what: str) -> None:
        if not self.unrestricted:
            raise _forbidden(f"{what}: only the admin and system roles may do this")

    def _type(self, kind: str) -> None:
        if kind in CLOSED_TYPES or not (kind in DIRECTORY_TYPES or in_compartment(kind)):
            raise _forbidden(
                f"{kind}: not open to the {self.user.role.value} role (only patient-compartment "
                "resources the store indexes by patient, and directory resources)"
            )
        if (
            self.user.role is Role.CARE_WORKER
            and kind not in CARE_WORKER_TYPES
            and kind not in DIRECTORY_TYPES
        ):
            raise _forbidden(
                f"{kind}: not open to the care-worker role (a care worker sees "
                f"{', '.join(sorted(CARE_WORKER_TYPES))}, and directory resources)"
            )

    def _decide(self, patients: set[str]) -> None:
        self.patients |= patients
        if not patients:
            self.refused = True
            raise _forbidden(self._hint)
        for patient in patients:
            decision: Decision = self.policy.decide(self.who, patient)
            if not decision.allowed:
                self.refused = True
                self.withheld = decision.withheld
                raise _forbidden(decision.refusal or self._hint)
            self.rules.add(self._rule_label(decision, patient))
            self.break_glass |= decision.rule == "break-glass"
            if decision.withheld:
                self.notes.add(f"{decision.withheld} overridden by break-glass")

    def rule_label(self, decision: Decision, patient: str) -> str:
        """The rule as the audit names it: a proxy's with the relationship recorded for them
        (`proxy as parent`)."""
        if decision.rule != "proxy":
            return str(decision.rule)
        return f"proxy as {self.proxy_relationship(patient)}"

    def proxy_relationship(self, patient: str) -> str:
        """The user's relationship to `patient` as their proxy (`unrecorded`: none)."""
        return self.user.proxy_relationship(patient) or "unrecorded"

    def _rule_label(self, decision: Decision, patient: str) -> str:
        """`rule_label`, keeping a proxy's relationship for the request's purpose of use."""
        if decision.rule == "proxy":
            self.proxy_relationships.add(self.proxy_relationship(patient))
        return self.rule_label(decision, patient)

    def _sensitive(self, resource: dict[str, Any]) -> None:
        """Refuse a resource coded in a sensitive category that none of the user's
        organisations recorded (as if there were no relationship), unless by break-glass."""
        why = self.policy.withheld(self.who, resource)
        if why is None:
            return
        for patient in patients_of(resource):
            if self.policy.grant_for(self.who, patient) is None:
                self.refused = True
                self.withheld = why
                raise _forbidden(self._hint)
        self.rules.add("break-glass")
        self.break_glass = True
        self.notes.add("sensitive category shown by break-glass")

    def stored(self, store: RecordStore, kind: str, rid: str, *, versions: bool = False) -> None:
        """Allow reading (or changing) `kind/rid` only for a patient the user may see, and
        not when it is withheld (sensitive, recorded elsewhere; with `versions`, any of its
        versions is, for history and vread); what is missing or deleted is refused alike, so
        a refusal says nothing of existence."""
        if self.unrestricted:
            return
        self._type(kind)
        if kind in DIRECTORY_TYPES:
            return
        try:
            resource = store.read(kind, rid)
        except RecordsError:
            self.refused = True
            raise _forbidden(self._hint) from None
        self._decide(patients_of(resource))
        self._sensitive(resource)
        if versions:
            for version in store.history(kind, rid):
                if version.resource is not None:
                    self._decide(patients_of(version.resource))
                    self._sensitive(version.resource)

    def writing(
        self,
        kind: str,
        resource: dict[str, Any],
        store: RecordStore | None = None,
        *,
        deleting: bool = False,
    ) -> None:
        """Allow writing `resource` only for patients the user may see (never a new Patient:
        registration comes from the feeds); a citizen only their own sharing choice (`store`
        gives their registered practices), never a deletion."""
        if self.unrestricted:
            return
        if self.user.role is Role.CITIZEN and kind == "Consent":
            self._citizen_choice(resource, store, deleting)
            return
        if self.user.role is Role.CARE_WORKER:
            self._care_worker_writing(kind, resource, deleting)
            return
        if self.user.role not in WRITING_ROLES or kind in DIRECTORY_TYPES:
            raise _forbidden(f"{kind}: the {self.user.role.value} role may not write this")
        self._type(kind)
        if kind == "Patient" and "id" not in resource:
            raise _forbidden("Patient: new patients come from the feeds (admin or system)")
        self._decide(patients_of(resource))

    def _care_worker_refused(self, label: str, text: str) -> FhirError:
        self.refused = True
        self.withheld = f"care worker write: {label}"
        return _forbidden(text)

    def _care_worker_writing(self, kind: str, resource: dict[str, Any], deleting: bool) -> None:
        """A care worker writes (or replaces the current version of) only what
        records.policy allows: CARE_WORKER_WRITE_TYPES recorded by their own organisation, for
        a person whose record they see by one of CARE_WORKER_WRITE_RULES (not break-glass);
        they delete nothing (a mistaken entry is corrected by an update)."""
        patients = patients_of(resource)
        self.patients |= patients
        if deleting:
            raise self._care_worker_refused(
                "deletion",
                f"{kind}: a care worker deletes nothing; correct an entry by updating it "
                "(for example with status entered-in-error)",
            )
        why = care_worker_write_refusal(self.who, kind, resource)
        if why is not None:
            theirs = kind in CARE_WORKER_WRITE_TYPES
            label = "not recorded by their organisation" if theirs else f"{kind} not theirs"
            raise self._care_worker_refused(label, why)
        if not patients:
            self.refused = True
            raise _forbidden(self._hint)
        for patient in patients:
            decision = self.policy.decide(self.who, patient)
            if not decision.allowed:
                self.refused = True
                self.withheld = decision.withheld
                raise _forbidden(self._hint)
            rule_refusal = care_worker_rule_refusal(decision)
            if rule_refusal is not None:
                raise self._care_worker_refused(f"not by {decision.rule}", rule_refusal)
            self.rules.add(str(decision.rule))

    def _citizen_choice(
        self, resource: dict[str, Any], store: RecordStore | None, deleting: bool
    ) -> None:
        own = str(self.user.patient_id)
        self.patients.add(own)
        if deleting or store is None:
            raise _forbidden(
                "Consent: a citizen withdraws a sharing choice by updating it with status "
                "inactive, never by deleting it"
            )
        try:
            practices = registered_practices(store.read("Patient", own))
        except RecordsError:
            practices = []
        problem = citizen_choice_problem(resource, own, practices)
        if problem is not None:
            element, reason = problem
            raise FhirError.one(422, "business-rule", reason, element)
        self._decide({own})

    def replacing(self, store: RecordStore, kind: str, rid: str) -> None:
        """Allow replacing or deleting `kind/rid` only when its current version is for a
        patient the user may see (nothing there: nothing to check); a citizen only their own
        sharing choice."""
        if self.unrestricted:
            return
        try:
            current = store.read(kind, rid)
        except RecordsError:
            return
        if self.user.role is Role.CITIZEN and not (
            is_sharing_choice(current) and patients_of(current) == {self.user.patient_id}
        ):
            self.refused = True
            raise _forbidden(self._hint)
        if self.user.role is Role.CARE_WORKER:
            self._care_worker_writing(kind, current, deleting=False)
            return
        self._decide(patients_of(current))
        self._sensitive(current)

    def search_scope(self, kind: str) -> list[tuple[str, list[tuple[str, str]]]] | None:
        """The searches whose patients a search is kept to (None: no restriction)."""
        if self.unrestricted:
            return None
        self._type(kind)
        if kind in DIRECTORY_TYPES:
            return None
        if self._searches is None:  # once a request: a search's includes ask again
            self._searches, self._granted = self.policy.scope(self.who)
        self.rules.add("search kept to permitted patients")
        return self._searches

    def shown(self, resources: list[dict[str, Any]]) -> None:
        """Note a search's page: a resource of a patient seen by break-glass makes the
        request a break-glass access."""
        # no grant (an unrestricted user has none): no page to scan for one
        if self._granted and any(patients_of(r) & self._granted for r in resources):
            self.rules.add("break-glass")
            self.break_glass = True
        if self.user.proxy_for:  # a proxy's search: name each relationship it showed
            for patient in {p for r in resources for p in patients_of(r)} & self.user.proxy_for:
                self.rules.add(self._rule_label(Decision(True, "proxy"), patient))

    def linked(self, store: RecordStore, rid: str, systems: Mapping[str, str]) -> PersonAccess:
        """The same person's other Patients through the person index, each decided on its own
        (records.linked_access; the unrestricted roles: all of them); refused (403) when an
        objection to sharing recorded against another of the person's Patients withholds
        `rid` too, unless a break-glass grant for `rid` shows it."""
        if self.unrestricted:
            found = store.linked_patients(rid, systems)
            allowed = Decision(True, None)
            return PersonAccess(None, tuple(LinkedAccess(p, allowed) for p in found))
        access = person_access(store, self.policy, self.who, rid, systems)
        if access.asked is not None:
            if not access.asked.allowed:
                self.refused = True
                self.withheld = access.asked.withheld
                raise _forbidden(access.asked.refusal or self._hint)
            self.rules.add("break-glass")
            self.break_glass = True
            self.notes.add(f"{access.asked.withheld} overridden by break-glass")
        return access
