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

Plain logic over a RecordStore: no HTTP, no audit writing (the caller audits the decision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from joinedup.records.errors import RecordsError
from joinedup.records.store import Grant, RecordStore

Rule = Literal["registered", "episode", "encounter", "referral", "care-team", "break-glass"]

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
DEFAULT_RECENT_DAYS = 30.0
DEFAULT_BREAK_GLASS_HOURS = 4.0
MIN_REASON_LENGTH = 20


class BreakGlassError(RecordsError):
    """A break-glass request that cannot be granted (no reason, too short, no such patient)."""


@dataclass(frozen=True)
class Requester:
    """Who is asking: their username (as a care team's `Practitioner/<username>`), the ODS
    codes of their organisations (practice, PCN, trust or council), and the practices whose
    registered patients they care for (their practice, or their PCN's practices)."""

    username: str
    organisations: frozenset[str]
    practices: frozenset[str]


@dataclass(frozen=True)
class Decision:
    """Whether access is allowed and by which rule; `grant` when by break-glass."""

    allowed: bool
    rule: Rule | None
    grant: Grant | None = None

    @property
    def label(self) -> str:
        """The decision as the audit log records it."""
        return f"legitimate relationship: {self.rule}" if self.allowed else "no relationship"


REFUSED = Decision(False, None)


class Policy:
    """Relationship checks over `store`. `recent_days` is how far back an Encounter still
    counts; `break_glass_hours` how long a grant lasts; `clock` defaults to the store's."""

    def __init__(
        self,
        store: RecordStore,
        *,
        recent_days: float = DEFAULT_RECENT_DAYS,
        break_glass_hours: float = DEFAULT_BREAK_GLASS_HOURS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._recent = timedelta(days=recent_days)
        self._hours = break_glass_hours
        self._clock = clock or store.now

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
        """Whether `who` may see patient `patient_id`'s record, and why."""
        for rule, kind, query in self._queries(who):
            key = "_id" if kind == "Patient" else "patient"
            value = patient_id if kind == "Patient" else f"Patient/{patient_id}"
            if self._store.patient_ids(kind, [*query, (key, value)]):
                return Decision(True, rule)
        for grant in self._store.active_grants(who.username, self._clock()):
            if grant.patient_id == patient_id:
                return Decision(True, "break-glass", grant)
        return REFUSED

    def permitted(self, who: Requester) -> dict[str, Rule]:
        """Every patient `who` may see now, with the first rule that allows each."""
        found: dict[str, Rule] = {}
        for rule, kind, query in self._queries(who):
            for patient in self._store.patient_ids(kind, query):
                found.setdefault(patient, rule)
        for grant in self._store.active_grants(who.username, self._clock()):
            found.setdefault(grant.patient_id, "break-glass")
        return found

    def scope(self, who: Requester) -> tuple[list[tuple[str, list[tuple[str, str]]]], set[str]]:
        """The searches (type, query) whose patients `who` may see now, for the store to keep
        a search to inside its query, and the patients of their break-glass grants."""
        searches = [(kind, query) for _, kind, query in self._queries(who)]
        granted = {g.patient_id for g in self._store.active_grants(who.username, self._clock())}
        if granted:
            searches.append(("Patient", [("_id", ",".join(sorted(granted)))]))
        return searches, granted

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


__all__ = [
    "DEFAULT_BREAK_GLASS_HOURS",
    "DEFAULT_RECENT_DAYS",
    "MIN_REASON_LENGTH",
    "RULES",
    "BreakGlassError",
    "Decision",
    "Policy",
    "Requester",
    "Rule",
]
