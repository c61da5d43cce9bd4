"""Who may read which person's record: a legitimate relationship, or break-glass (issue 16).

A clinician or care worker sees a patient's record when one of these holds, each found through
the store's search index (never by reading bodies):

- `registered`: the patient's `Patient.generalPractitioner` is an Organization that is the
  user's practice or one of the practices of the user's PCN (or the PCN itself);
- `episode`: an open EpisodeOfCare (planned, waitlist, active, onhold) managed by one of the
  user's organisations;
- `encounter`: an Encounter whose serviceProvider is one of the user's organisations, either
  under way (in-progress, arrived, triaged) or with a period reaching into the recent window;
- `referral`: an active ServiceRequest whose performer is one of the user's organisations;
- `care-team`: an active or proposed CareTeam with the user (Practitioner/<username>) or one
  of their organisations among its participants;
- `break-glass`: otherwise, a time-limited grant the user asked for with a stated reason.

A citizen (a Requester with `patient_id`) sees their own record and nobody else's, by the rule
`self`: every other patient is refused as if there were no relationship, and nothing of their
own is withheld from them (neither their objection to sharing nor a sensitive category).
Through a proxy relationship (a parent's child, a carer's person: `proxy_for`) they see that
person's record by the rule `proxy`, but not what is withheld from anyone outside the recording
organisation: a sensitive category, or the whole record when that person objects to sharing.

Consent and sensitive categories (records.consent) come before the rules and after them: a
person's active objection to sharing withholds their whole record from every user outside the
organisations that recorded it, whatever the relationship, and a resource coded in a sensitive
category is withheld from users outside the organisation that recorded it; break-glass shows
both. A withheld record is refused like one without a relationship, with the reason recorded.
The objection follows the person: one recorded against another Patient the master person index
links to this one (confirmed links only, store.person_links) withholds this one alike, in
every decision and search (PERSON_OBJECTION), but from the organisations that recorded it.

A care worker (social care staff, a council's say) is a Requester with their organisation and
no practices: the `registered` rule never holds for them, only their organisation's open
episode, encounter, referral or care team, or break-glass. Of a record they may see, they see
only CARE_WORKER_TYPES (the API's gate keeps them to it). They write only
CARE_WORKER_WRITE_TYPES, recorded by their own organisation, for a person they have one of
CARE_WORKER_WRITE_RULES with (care_worker_write_refusal, care_worker_rule_refusal).

Plain logic over a RecordStore: no HTTP, no audit writing (the caller audits the decision).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from joinedup.records.consent import (
    SensitiveCodes,
    configured_sensitive_codes,
    recording_organisations,
)
from joinedup.records.errors import RecordsError
from joinedup.records.proxy_age import (
    AGE_LIMITED_RELATIONSHIPS,
    DEFAULT_PROXY_END_AGE,
    DEFAULT_PROXY_NOTICE_DAYS,
    DEFAULT_PROXY_REVIEW_AGE,
    ProxyAgeEnd,
    ProxyHold,
    ProxyReview,
    proxy_age_end,
)
from joinedup.records.store import Grant, RecordStore
from joinedup.records.store.withholding import Permitted, Withholding

Rule = Literal[
    "registered", "episode", "encounter", "referral", "care-team", "break-glass", "self", "proxy"
]

#: The rules in the order they are tried (the first that holds is the one recorded).
RULES: tuple[Rule, ...] = (
    "registered",
    "episode",
    "encounter",
    "referral",
    "care-team",
    "break-glass",
)
OPEN_EPISODE = "planned,waitlist,active,onhold"
UNDER_WAY_ENCOUNTER = "in-progress,arrived,triaged"
#: Encounters in the recent window count in any status but cancelled and entered-in-error:
#: an encounter that never happened makes no relationship, however recent.
REAL_ENCOUNTER = "planned,arrived,triaged,in-progress,onleave,finished,unknown"
ACTIVE_REFERRAL = "active"
ACTIVE_CARE_TEAM = "active,proposed"
#: What a care worker sees of a record they have a relationship with: who the person is
#: (Patient), what could harm them (AllergyIntolerance), their problems (Condition) and
#: medicines (MedicationStatement, MedicationRequest), the care they are under and who gives it
#: (EpisodeOfCare, Encounter, ServiceRequest, CarePlan, CareTeam) and their sharing choices
#: (Consent). Not results, observations, procedures, immunisations, diagnostic reports or
#: documents: the clinical detail behind a problem is for clinicians. Resources in a sensitive
#: category stay withheld as from anyone outside the recording organisation.
CARE_WORKER_TYPES = frozenset(
    {"Patient", "AllergyIntolerance", "Condition", "MedicationStatement", "MedicationRequest",
     "EpisodeOfCare", "Encounter", "ServiceRequest", "CarePlan", "CareTeam", "Consent"}
)  # fmt: skip
DEFAULT_RECENT_DAYS = 30.0
DEFAULT_BREAK_GLASS_HOURS = 4.0
MIN_REASON_LENGTH = 20


class BreakGlassError(RecordsError):
    """A break-glass request that cannot be granted (no reason, too short, no such patient)."""


@dataclass(frozen=True)
class Requester:
    """Who is asking: their username (as a care team's `Practitioner/<username>`), the ODS
    codes of their organisations (practice, PCN, trust or council), and the practices whose
    registered patients they care for (their practice, or their PCN's practices). A
    citizen's `patient_id` is their own record's, and `proxy_for` the records they see as a
    proxy, each with its relationship in `proxy_relationships` (a parent's or guardian's
    ends at the person's 16th birthday and is suspended for review before, records.proxy_age)
    and what the access database keeps of its review in `proxy_reviews`; they may see no
    other."""

    username: str
    organisations: frozenset[str]
    practices: frozenset[str]
    patient_id: str | None = None
    proxy_for: frozenset[str] = frozenset()
    #: (Patient id, relationship) for each of `proxy_for`; one missing counts as a parent's.
    proxy_relationships: tuple[tuple[str, str], ...] = ()
    #: (Patient id, its review as kept) for each of `proxy_for` their practice renewed after
    #: review, or recorded before the review rule.
    proxy_reviews: tuple[tuple[str, ProxyReview], ...] = ()

    def proxy_relationship(self, patient_id: str) -> str:
        """How they are related to `patient_id` as a proxy: with none recorded, `parent`, so
        that the age rule is never skipped for want of it."""
        return next((r for p, r in self.proxy_relationships if p == patient_id), "parent")

    def proxy_review(self, patient_id: str) -> ProxyReview | None:
        """What is kept of their access to `patient_id`'s review (None: nothing)."""
        return next((r for p, r in self.proxy_reviews if p == patient_id), None)


@dataclass(frozen=True)
class Decision:
    """Whether access is allowed and by which rule; `grant` when by break-glass. `withheld`
    says what consent rule refused it, or what a break-glass grant overrode."""

    allowed: bool
    rule: Rule | None
    grant: Grant | None = None
    withheld: str | None = None
    #: What the requester is told of a refusal, when it is more than "no relationship" (a
    #: parent's proxy access ended by the person's age).
    refusal: str | None = None

    @property
    def label(self) -> str:
        """The decision as the audit log records it."""
        if self.allowed:
            overrode = f"; {self.withheld} overridden by break-glass" if self.withheld else ""
            return f"legitimate relationship: {self.rule}{overrode}"
        return f"withheld: {self.withheld}" if self.withheld else "no relationship"


REFUSED = Decision(False, None)
OBJECTION = "objection to sharing recorded by another organisation"
#: Why a Patient is withheld when another of the person's Patients carries the objection.
PERSON_OBJECTION = "objection to sharing recorded against another of this person's records"


class Policy:
    """Relationship checks over `store`. `recent_days` is how far back an Encounter still
    counts; `break_glass_hours` how long a grant lasts; `clock` defaults to the store's;
    `sensitive` the sensitive code lists (default: the configured ones, else those shipped);
    `index_systems` gives each master person index source's identifier system when asked (as
    `$everything?linked=true` follows it; default: none, sources compared as named);
    `proxy_end_age` the birthday on which a parent's or guardian's proxy access ends
    (records.proxy_age, default 16), `proxy_review_age` the one from which it is suspended
    until the practice renews it (default 11, as the server's JOINEDUP_RECORDS_PROXY_REVIEW_AGE:
    both are records.proxy_age.DEFAULT_PROXY_REVIEW_AGE; None: no review) and
    `proxy_notice_days` how long ahead the proxy and the person are told."""

    def __init__(
        self,
        store: RecordStore,
        *,
        recent_days: float = DEFAULT_RECENT_DAYS,
        break_glass_hours: float = DEFAULT_BREAK_GLASS_HOURS,
        clock: Callable[[], datetime] | None = None,
        sensitive: SensitiveCodes | None = None,
        index_systems: Callable[[], Mapping[str, str]] | None = None,
        proxy_end_age: int = DEFAULT_PROXY_END_AGE,
        proxy_review_age: int | None = DEFAULT_PROXY_REVIEW_AGE,
        proxy_notice_days: int = DEFAULT_PROXY_NOTICE_DAYS,
    ) -> None:
        self._store = store
        self.proxy_end_age = proxy_end_age
        self.proxy_review_age = proxy_review_age
        self.proxy_notice_days = proxy_notice_days
        self._recent = timedelta(days=recent_days)
        self._hours = break_glass_hours
        self._clock = clock or store.now
        self.sensitive = sensitive or configured_sensitive_codes()
        self._index_systems = index_systems or dict

    def today(self) -> date:
        """Today in UTC, by the policy's clock (the store's unless given)."""
        return self._clock().date()

    def proxy_age_end(
        self, patient_id: str, relationship: str, review: ProxyReview | None = None
    ) -> ProxyAgeEnd | None:
        """When `relationship`'s proxy access to `patient_id` ends by the person's age, and
        when it comes up for review (with `review`, what is kept of it), from their Patient's
        birthDate now (None: a relationship age does not end, and no read). One read of the
        Patient gives both."""
        if relationship not in AGE_LIMITED_RELATIONSHIPS:
            return None
        try:
            patient: dict[str, Any] | None = self._store.read("Patient", patient_id)
        except RecordsError:
            patient = None
        return self.proxy_age_end_of(patient_id, patient, relationship, review)

    def proxy_age_end_of(
        self,
        patient_id: str,
        patient: dict[str, Any] | None,
        relationship: str,
        review: ProxyReview | None = None,
    ) -> ProxyAgeEnd | None:
        """As proxy_age_end, for a Patient already read (None: not in the store)."""
        return proxy_age_end(
            patient_id, patient, relationship, self.proxy_end_age,
            review_age=self.proxy_review_age, review=review,
            notice_days=self.proxy_notice_days,
        )  # fmt: skip

    def _age_end(self, who: Requester, patient_id: str) -> ProxyAgeEnd | None:
        return self.proxy_age_end(
            patient_id, who.proxy_relationship(patient_id), who.proxy_review(patient_id)
        )

    def held_proxies(self, who: Requester) -> dict[str, ProxyHold]:
        """The people `who` is recorded as a proxy for whose age has ended that access (or
        who have no birth date to show it has not), or whose review has suspended it until
        the practice renews it, each with why."""
        today = self.today()
        held: dict[str, ProxyHold] = {}
        for patient in sorted(who.proxy_for):
            end = self._age_end(who, patient)
            hold = None if end is None else end.hold(today)
            if hold is not None:
                held[patient] = hold
        return held

    def _objections(
        self, patient_id: str
    ) -> tuple[list[frozenset[str]], list[list[frozenset[str]]]]:
        """The objections to sharing of `patient_id`, and of each other Patient of the same
        person in the master person index (one statement)."""
        found = self._store.person_objections(patient_id, self._index_systems())
        own = found.pop(patient_id, [])
        return own, list(found.values())

    def _queries(self, who: Requester) -> list[tuple[Rule, str, list[tuple[str, str]]]]:
        """The searches whose patients each rule covers."""
        found: list[tuple[Rule, str, list[tuple[str, str]]]] = []
        practices = ",".join(f"Organization/{p}" for p in sorted(who.practices))
        organisations = ",".join(f"Organization/{o}" for o in sorted(who.organisations))
        if practices:
            found.append(("registered", "Patient", [("general-practitioner", practices)]))
        if organisations:
            since = (self._clock() - self._recent).strftime("%Y-%m-%dT%H:%M:%SZ")
            found += [
                ("episode", "EpisodeOfCare", [
                    ("organization", organisations), ("status", OPEN_EPISODE)]),
                ("encounter", "Encounter", [
                    ("service-provider", organisations), ("status", UNDER_WAY_ENCOUNTER)]),
                ("encounter", "Encounter", [
                    ("service-provider", organisations), ("date", f"ge{since}"),
                    ("status", REAL_ENCOUNTER)]),
                ("referral", "ServiceRequest", [
                    ("performer", organisations), ("status", ACTIVE_REFERRAL)]),
            ]  # fmt: skip
        members = ",".join(filter(None, [f"Practitioner/{who.username}", organisations]))
        found.append(
            ("care-team", "CareTeam", [("participant", members), ("status", ACTIVE_CARE_TEAM)])
        )
        return found

    def decide(self, who: Requester, patient_id: str) -> Decision:
        """Whether `who` may see patient `patient_id`'s record, and why: never, but by
        break-glass, when the patient objects to sharing and no objection of theirs was
        recorded by one of `who`'s organisations. A citizen: their own record only."""
        if who.patient_id is not None:
            if patient_id == who.patient_id:
                return Decision(True, "self")
            if patient_id not in who.proxy_for:
                return REFUSED
            end = self._age_end(who, patient_id)
            hold = None if end is None else end.hold(self.today())
            if hold is not None:
                return Decision(False, None, withheld=hold.label, refusal=hold.refusal)
            own, others = self._objections(patient_id)
            if _objected(own, others):
                return Decision(False, None, withheld=OBJECTION if own else PERSON_OBJECTION)
            return Decision(True, "proxy")
        own, others = self._objections(patient_id)
        why = (
            OBJECTION
            if _withholds(own, who)
            else PERSON_OBJECTION
            if any(_withholds(o, who) for o in others)
            else None
        )
        if why is not None:
            grant = self.grant_for(who, patient_id)
            if grant is None:
                return Decision(False, None, withheld=why)
            overridden = "objection to sharing" if why == OBJECTION else why
            return Decision(True, "break-glass", grant, withheld=overridden)
        for rule, kind, query in self._queries(who):
            key = "_id" if kind == "Patient" else "patient"
            value = patient_id if kind == "Patient" else f"Patient/{patient_id}"
            if self._store.patient_ids(kind, [*query, (key, value)]):
                return Decision(True, rule)
        grant = self.grant_for(who, patient_id)
        return REFUSED if grant is None else Decision(True, "break-glass", grant)

    def grant_for(self, who: Requester, patient_id: str) -> Grant | None:
        """`who`'s active break-glass grant for `patient_id`, if they hold one."""
        for grant in self._store.active_grants(who.username, self._clock()):
            if grant.patient_id == patient_id:
                return grant
        return None

    def withheld(self, who: Requester, resource: dict[str, Any]) -> str | None:
        """Why `resource` is withheld from `who` even with a relationship: coded in a
        sensitive category and recorded by none of their organisations (only a break-glass
        grant for its patient shows it). None when it is not (and never for a citizen: only
        their own record reaches them)."""
        if who.patient_id is not None and _belongs_to(resource, who.patient_id):
            return None
        categories = self.sensitive.categories_of(resource)
        if not categories:
            return None
        if recording_organisations(resource) & who.organisations:
            return None
        return f"sensitive category {','.join(categories)} recorded by another organisation"

    def permitted(self, who: Requester) -> dict[str, Rule]:
        """Every patient `who` may see now, with the first rule that allows each (none whose
        objection to sharing withholds them, but by break-glass)."""
        if who.patient_id is not None:
            proxied_now = who.proxy_for - set(self.held_proxies(who))
            objected = {p for p in proxied_now if _objected(*self._objections(p))}
            seen: dict[str, Rule] = {who.patient_id: "self"}
            for proxied in proxied_now - objected:
                seen[proxied] = "proxy"
            return seen
        found: dict[str, Rule] = {}
        for rule, kind, query in self._queries(who):
            for patient in self._store.patient_ids(kind, query):
                found.setdefault(patient, rule)
        withheld = self._store.objected_patients(who.organisations, self._index_systems())
        found = {p: r for p, r in found.items() if p not in withheld}
        for grant in self._store.active_grants(who.username, self._clock()):
            found.setdefault(grant.patient_id, "break-glass")
        return found

    def scope(self, who: Requester) -> tuple[Permitted, set[str]]:
        """The searches (type, query) whose patients `who` may see now, for the store to keep
        a search to inside its query, carrying what is withheld from them (objections to
        sharing and sensitive categories recorded elsewhere, but for break-glass grants); and
        the patients of their break-glass grants. A citizen: their own record, all of it,
        and those they are a proxy for (less those whose age has ended or suspended it),
        less what is withheld from outsiders."""
        if who.patient_id is not None:
            own = frozenset({who.patient_id})
            ids = ",".join(sorted(own | (who.proxy_for - set(self.held_proxies(who)))))
            withholding = Withholding(frozenset(), own, self.sensitive.pairs, self._sources())
            return Permitted([("Patient", [("_id", ids)])], withholding), set()
        searches = [(kind, query) for _, kind, query in self._queries(who)]
        granted = {g.patient_id for g in self._store.active_grants(who.username, self._clock())}
        if granted:
            searches.append(("Patient", [("_id", ",".join(sorted(granted)))]))
        withholding = Withholding(
            who.organisations, frozenset(granted), self.sensitive.pairs, self._sources()
        )
        return Permitted(searches, withholding), granted

    def _sources(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self._index_systems().items()))

    def break_glass(self, who: Requester, patient_id: str, reason: str) -> Grant:
        """Grant `who` access to `patient_id` for the configured hours, for `reason` (at
        least MIN_REASON_LENGTH characters); BreakGlassError when it cannot be given."""
        stated = " ".join(reason.split())
        if len(stated) < MIN_REASON_LENGTH:
            raise BreakGlassError(
                f"reason: state why you need this record, in at least {MIN_REASON_LENGTH} "
                "characters"
            )
        try:
            self._store.read("Patient", patient_id)
        except RecordsError:
            raise BreakGlassError(f"patient: no Patient/{patient_id} in the records") from None
        return self._store.grant(who.username, patient_id, stated, self._hours)


def _objected(own: list[frozenset[str]], others: list[list[frozenset[str]]]) -> bool:
    """Whether the Patient or another of the person's has an objection to sharing."""
    return bool(own) or any(others)


def _withholds(objections: list[frozenset[str]], who: Requester) -> bool:
    """Whether `objections` (of one Patient) withhold it from `who`: there is one and none
    was recorded by one of their organisations."""
    return bool(objections) and not any(orgs & who.organisations for orgs in objections)


# --- a care worker's writes ---------------------------------------------------------------

#: What a care worker may write, each with the element that must name their own organisation
#: (and only it) as the one recording it: a care and support plan (CarePlan.author), who gives
#: the care (CareTeam.managingOrganization), a social care episode, opened and closed
#: (EpisodeOfCare.managingOrganization), a visit or assessment (Encounter.serviceProvider)
#: and a referral they make (ServiceRequest.requester). Never the person (Patient: from the
#: feeds), their problems, medicines, allergies or results (the clinicians' record), nor their
#: sharing choices (Consent: the person's own, or their GP's).
CARE_WORKER_WRITE_TYPES: dict[str, str] = {
    "CarePlan": "author",
    "CareTeam": "managingOrganization",
    "EpisodeOfCare": "managingOrganization",
    "Encounter": "serviceProvider",
    "ServiceRequest": "requester",
}
#: The relationships a care worker writes under: their organisation's open episode, recent
#: encounter, active referral or care team. Not break-glass: that shows a record in an
#: emergency, it does not make the care worker one of those who keep it.
CARE_WORKER_WRITE_RULES: frozenset[Rule] = frozenset(
    {"episode", "encounter", "referral", "care-team"}
)


def care_worker_write_refusal(who: Requester, kind: str, resource: dict[str, Any]) -> str | None:
    """Why care worker `who` may not write `resource` (a `kind`, as created or as the version
    it replaces), in words for the refusal; None when its type and recording organisation
    allow it. The person's record is decided apart (Policy.decide, care_worker_rule_refusal)."""
    element = CARE_WORKER_WRITE_TYPES.get(kind)
    if element is None:
        allowed = ", ".join(sorted(CARE_WORKER_WRITE_TYPES))
        return f"{kind}: not written by the care-worker role (a care worker writes {allowed})"
    named = recording_organisations(
        {
            "resourceType": kind,
            element: resource.get(element),
            "contained": resource.get("contained"),
        }
    )
    ours = ", ".join(f"Organization/{o}" for o in sorted(who.organisations)) or "none"
    if (
        not named
        or not named <= who.organisations
        or not (recording_organisations(resource) & who.organisations)
    ):
        return (
            f"{kind}.{element}: a care worker writes only what their own organisation records "
            f"({ours}), naming it there"
        )
    return None


def care_worker_rule_refusal(decision: Decision) -> str | None:
    """Why an allowed `decision` still does not let a care worker write (None: it does)."""
    if decision.allowed and decision.rule not in CARE_WORKER_WRITE_RULES:
        rules = ", ".join(sorted(CARE_WORKER_WRITE_RULES))
        return (
            f"a care worker writes only for a person their organisation has a relationship "
            f"with ({rules}), not by {decision.rule}"
        )
    return None


def _belongs_to(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether `resource` is Patient `patient_id` or names them as its patient or subject."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id")) == patient_id
    wanted = f"Patient/{patient_id}"
    return any(
        isinstance(resource.get(k), dict) and resource[k].get("reference") == wanted
        for k in ("patient", "subject", "beneficiary")
    )


__all__ = [
    "CARE_WORKER_TYPES",
    "CARE_WORKER_WRITE_RULES",
    "CARE_WORKER_WRITE_TYPES",
    "DEFAULT_BREAK_GLASS_HOURS",
    "DEFAULT_RECENT_DAYS",
    "MIN_REASON_LENGTH",
    "RULES",
    "BreakGlassError",
    "Decision",
    "Policy",
    "Requester",
    "Rule",
    "care_worker_rule_refusal",
    "care_worker_write_refusal",
]
