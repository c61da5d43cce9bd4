"""When a parent's or guardian's proxy access to a child's record ends: on the child's 16th
birthday, read from the child's `Patient.birthDate` (docs/records.md, Proxy access).

NHS England's specification for proxy access (DAPB3051, Authorisation use case - Proxy, 7.2):
at 16 a patient is presumed to have capacity (Mental Capacity Act 2005) and clinical systems
must suspend proxy access; the NHS website tells under-16s that when they are 16 parent and
guardian access stops and the practice must then get their consent. A carer or an attorney
acts with the person's consent or legal authority, not for a child: their access does not end
by age. The age is configurable (`JOINEDUP_RECORDS_PROXY_END_AGE`), never later than 16.

A person born on 29 February has, in a year without one, their birthday taken as 28 February:
the earlier of the two days in use, so that a parent's access never outlasts the day the young
person is 16 on either reading. A birthDate of a year or a month only is taken as its first
day, for the same reason. A Patient with no birthDate gets no parent's or guardian's access:
nothing shows that they are under 16.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

#: The relationships whose access ends at the person's END_AGE-th birthday (a child's).
AGE_LIMITED_RELATIONSHIPS = frozenset({"parent", "guardian"})
#: The age at which a parent's or guardian's access ends, by default and at the latest.
DEFAULT_PROXY_END_AGE = 16
#: A FHIR `date`: a year, a year and month, or a full date.
_FHIR_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def birthday(born: date, age: int) -> date:
    """The day a person born on `born` is `age` years old: the same day and month `age` years
    on, and for 29 February in a year without one, 28 February (see the module's note)."""
    try:
        return born.replace(year=born.year + age)
    except ValueError:  # 29 February, and the year is not a leap year
        return date(born.year + age, 2, 28)


def earliest_birth_date(value: object) -> date | None:
    """The earliest day a FHIR `birthDate` can mean (`2011`: 1 January 2011; `2011-05`: 1 May);
    None when there is none or it is not a date."""
    match = _FHIR_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day = (int(part) if part else 1 for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10)
    return f"{number}{suffix or 'th'}"


@dataclass(frozen=True)
class ProxyAgeEnd:
    """When `relationship`'s access to Patient `patient_id` ends by the person's age: on
    `ends`, their `end_age`-th birthday (None: no birth date, so never in force)."""

    patient_id: str
    relationship: str
    end_age: int
    ends: date | None

    def in_force(self, today: date) -> bool:
        """Whether the access is still allowed on `today` (the day before the birthday is the
        last)."""
        return self.ends is not None and today < self.ends

    @property
    def last_day(self) -> date | None:
        """The last day the access is in force."""
        return None if self.ends is None else self.ends - timedelta(days=1)

    @property
    def rule(self) -> str:
        """Why it ends, in words with no value from the record (for the audit log and
        `users proxies`)."""
        return f"the person's {_ordinal(self.end_age)} birthday"

    @property
    def label(self) -> str:
        """The refusal as the audit log records it (no date: nothing from the record)."""
        if self.ends is None:
            return f"{self.relationship}'s proxy access: the person has no birthDate"
        return f"{self.relationship}'s proxy access ended at {self.rule}"

    def grant_refusal(self) -> str:
        """Why the access is not recorded now, for whoever records it (`users proxy`)."""
        if self.ends is None:
            return self.refusal()
        return (
            f"Patient/{self.patient_id} is {self.end_age} or over ({self.end_age} on "
            f"{self.ends.isoformat()}): a {self.relationship}'s proxy access ends at "
            f"{self.rule} (NHS England's proxy access rules); from then the person decides, "
            "and access they agree to is recorded as --relationship carer"
        )

    def refusal(self) -> str:
        """What the proxy is told when a request is refused, with the rule's source."""
        if self.ends is None:
            return (
                f"Patient/{self.patient_id} has no birthDate: a {self.relationship}'s proxy "
                f"access lasts until the person is {self.end_age}, so it is not given without "
                "a date of birth on their record (their GP practice can record it)"
            )
        return (
            f"a {self.relationship}'s proxy access to Patient/{self.patient_id} ended on "
            f"{self.ends.isoformat()}, {self.rule}: from {self.end_age} a person decides who "
            "sees their record (NHS England's proxy access rules); with their consent their "
            "GP practice can record access again"
        )


def proxy_age_end(
    patient_id: str,
    patient: Mapping[str, Any] | None,
    relationship: str,
    end_age: int = DEFAULT_PROXY_END_AGE,
) -> ProxyAgeEnd | None:
    """When `relationship`'s access to `patient` (its Patient resource; None: not in the
    store) ends by age; None when the relationship does not end by age (carer, attorney)."""
    if relationship not in AGE_LIMITED_RELATIONSHIPS:
        return None
    born = earliest_birth_date(patient.get("birthDate")) if patient is not None else None
    ends = None if born is None else birthday(born, end_age)
    return ProxyAgeEnd(patient_id, relationship, end_age, ends)


__all__ = [
    "AGE_LIMITED_RELATIONSHIPS",
    "DEFAULT_PROXY_END_AGE",
    "ProxyAgeEnd",
    "birthday",
    "earliest_birth_date",
    "proxy_age_end",
]
