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

Before the end, a review (DAPB3051 7.2: access "should be reviewed" when the child is between 11
and 13, and clinical systems "should be programmed to suspend access for review at age 13 or
earlier, configurable by the health and care organisation's local policy"; the RCGP's guidance
for children and young people recommends 11 in general practice): from the child's review
birthday (`JOINEDUP_RECORDS_PROXY_REVIEW_AGE`, default 11, at most 13) a parent's or guardian's
access is suspended until their GP practice renews it after reviewing it. A renewal counts for
the review when recorded no earlier than the notice period (`JOINEDUP_RECORDS_PROXY_NOTICE_DAYS`,
default 30) before that birthday: a practice can review when the proxy and the person are told
(DAPB3051 7.2: "informed of this suspension ahead of time so that they have an opportunity to
extend access"), and a renewal from the child's early years does not skip the review.
Whether a renewal counts is judged by the review day it was recorded for (`review_date`), not
by the notice period in force later, so that changing the period does not undo a review done
under the one before; recording a grant on or after the review birthday is its review (the
access database keeps it as a renewal). A grant recorded before the review rule reached its
access database (`notice_from`, set when the database gained the rule's columns) is not
suspended before the notice period has run from then: the proxy and the person are told
first, as for any review.
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
#: The birthday on which a parent's or guardian's access is suspended for review, by default
#: (the RCGP's review point for general practice) and at the latest (DAPB3051 7.2: 13 or earlier).
DEFAULT_PROXY_REVIEW_AGE = 11
MAX_PROXY_REVIEW_AGE = 13
#: How many days ahead the proxy and the person are told of an end or a review, by default.
DEFAULT_PROXY_NOTICE_DAYS = 30
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


def _day(instant: str | None) -> date | None:
    """The UTC day of an ISO instant the access database wrote (None: none, or not one)."""
    try:
        return date.fromisoformat(instant[:10]) if instant else None
    except ValueError:
        return None


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10)
    return f"{number}{suffix or 'th'}"


@dataclass(frozen=True)
class ProxyReview:
    """What the access database keeps of a proxy relationship's review: when the person's
    practice renewed it (`renewed_at`, an ISO instant; None: not since it was granted), the
    review day that renewal was for (`review_date`, an ISO day; None: renewed before these
    were kept), and, for a grant recorded before the review rule reached that database, when
    it did (`notice_from`, an ISO instant; None: recorded under the rule)."""

    renewed_at: str | None = None
    review_date: str | None = None
    notice_from: str | None = None


@dataclass(frozen=True)
class ProxyHold:
    """A proxy relationship recorded but not in force today by the person's age: ended (a
    parent's at 16, or no birth date) or suspended for review. `label` is the reason as the
    audit log records it (no value from the record), `refusal` what the proxy is told."""

    patient_id: str
    label: str
    refusal: str
    suspended: bool = False


@dataclass(frozen=True)
class ProxyNotice:
    """What a proxy and the person are told ahead: on `day` the access ends (`kind` "end",
    `day` its last day) or comes up for review (`kind` "review", `day` the review birthday,
    from which it is suspended until renewed), and why, in words."""

    kind: str
    day: date
    why: str


@dataclass(frozen=True)
class ProxyAgeEnd:
    """When `relationship`'s access to Patient `patient_id` ends by the person's age: on
    `ends`, their `end_age`-th birthday (None: no birth date, so never in force). With a
    review (`reviews`, their `review_age`-th birthday, before `ends`), it is suspended from
    then unless `renewed_on` (a renewal that counts for this review), or, for a grant
    recorded before the review rule, from `suspends` (the notice period after the rule reached
    it) when that is later."""

    patient_id: str
    relationship: str
    end_age: int
    ends: date | None
    review_age: int | None = None
    reviews: date | None = None
    renewed_on: date | None = None
    notice_days: int = DEFAULT_PROXY_NOTICE_DAYS
    #: The first day of the suspension (None: `reviews`): later for a grant recorded before
    #: the review rule, which is told for the notice period first.
    suspends_on: date | None = None

    @property
    def suspends(self) -> date | None:
        """The first day the access is suspended for review, unless renewed (None: no review)."""
        if self.reviews is None:
            return None
        return max(self.reviews, self.suspends_on or self.reviews)

    def ended(self, today: date) -> bool:
        """Whether the access has ended by age on `today` (or never began: no birth date)."""
        return self.ends is None or today >= self.ends

    def suspended(self, today: date) -> bool:
        """Whether, on `today`, the access waits for the practice to renew it after the
        review (and has not ended)."""
        return (
            self.suspends is not None
            and (self.renewed_on is None or self.renewed_on > today)
            and self.suspends <= today
            and not self.ended(today)
        )

    def in_force(self, today: date) -> bool:
        """Whether the access is allowed on `today` (the day before the end birthday is the
        last; from the review birthday, only once renewed)."""
        return not self.ended(today) and not self.suspended(today)

    @property
    def last_day(self) -> date | None:
        """The last day the access is in force."""
        return None if self.ends is None else self.ends - timedelta(days=1)

    @property
    def renewal_from(self) -> date | None:
        """The first day a renewal counts for the review (None: no review)."""
        return None if self.reviews is None else self.reviews - timedelta(days=self.notice_days)

    @property
    def rule(self) -> str:
        """Why it ends, in words with no value from the record (for the audit log and
        `users proxies`)."""
        return f"the person's {_ordinal(self.end_age)} birthday"

    @property
    def review_rule(self) -> str:
        """When it comes up for review, in words with no value from the record."""
        return f"the person's {_ordinal(self.review_age or 0)} birthday"

    @property
    def review_why(self) -> str:
        """Why the suspension starts on its day, in words with no value from the record: the
        review birthday, or, for a grant recorded before the rule, the notice after it."""
        if self.suspends == self.reviews:
            return self.review_rule
        return f"the review due from {self.review_rule}, after notice"

    @property
    def label(self) -> str:
        """The end as the audit log records it (no date: nothing from the record)."""
        if self.ends is None:
            return f"{self.relationship}'s proxy access: the person has no birthDate"
        return f"{self.relationship}'s proxy access ended at {self.rule}"

    @property
    def review_label(self) -> str:
        """A suspension for review as the audit log records it (no date)."""
        return f"{self.relationship}'s proxy access suspended for review at {self.review_rule}"

    def hold(self, today: date) -> ProxyHold | None:
        """Why the access is not in force on `today` (None: it is)."""
        if self.ended(today):
            return ProxyHold(self.patient_id, self.label, self.refusal())
        if self.suspended(today):
            return ProxyHold(self.patient_id, self.review_label, self.review_refusal(), True)
        return None

    def notice(self, today: date) -> ProxyNotice | None:
        """The review or the end coming within `notice_days` of `today`, the nearer first
        (None: neither, or the access is not in force)."""
        if not self.in_force(today):
            return None
        horizon = today + timedelta(days=self.notice_days)
        suspends = self.suspends
        if suspends is not None and self.renewed_on is None and suspends <= horizon:
            return ProxyNotice("review", suspends, self.review_why)
        if self.last_day is not None and self.last_day <= horizon:
            return ProxyNotice("end", self.last_day, f"the day before {self.rule}")
        return None

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

    def review_refusal(self) -> str:
        """What the proxy is told while the access is suspended for review."""
        return (
            f"a {self.relationship}'s proxy access to Patient/{self.patient_id} is under review "
            f"since {self.suspends}, {self.review_why}: as a child grows up their GP practice "
            "reviews who sees their record, and the access is suspended until the practice "
            "renews it (NHS England's proxy access standard, DAPB3051 7.2); ask the practice"
        )


def proxy_age_end(
    patient_id: str,
    patient: Mapping[str, Any] | None,
    relationship: str,
    end_age: int = DEFAULT_PROXY_END_AGE,
    *,
    review_age: int | None = DEFAULT_PROXY_REVIEW_AGE,
    review: ProxyReview | None = None,
    notice_days: int = DEFAULT_PROXY_NOTICE_DAYS,
) -> ProxyAgeEnd | None:
    """When `relationship`'s access to `patient` (its Patient resource; None: not in the
    store) ends by age, and, with `review_age` below `end_age` (None: no review), when it
    comes up for review and whether the renewal in `review` counts for it: one recorded for
    this review day or a later one (`review_date`), or, recorded before review days were
    kept, from `notice_days` before it; None when the relationship does not end by age
    (carer, attorney). A grant recorded before the review rule (`review.notice_from`) is not
    suspended before `notice_days` after the rule reached it."""
    if relationship not in AGE_LIMITED_RELATIONSHIPS:
        return None
    review = review or ProxyReview()
    born = earliest_birth_date(patient.get("birthDate")) if patient is not None else None
    ends = None if born is None else birthday(born, end_age)
    reviewed = review_age is not None and review_age < end_age and born is not None
    reviews = birthday(born, review_age) if reviewed and born and review_age else None
    renewed = _day(review.renewed_at)
    renewed_for = _day(review.review_date)
    if renewed is None or reviews is None:
        counts = None
    elif renewed_for is not None:  # judged by the review it was recorded for
        counts = renewed if renewed_for >= reviews else None
    else:  # recorded before review days were kept: by the notice period, as then
        counts = renewed if renewed >= reviews - timedelta(days=notice_days) else None
    told = _day(review.notice_from)
    suspends_on = None if told is None else told + timedelta(days=notice_days)
    return ProxyAgeEnd(
        patient_id, relationship, end_age, ends, review_age if reviews else None, reviews,
        counts, notice_days, suspends_on if reviews else None,
    )  # fmt: skip


__all__ = [
    "AGE_LIMITED_RELATIONSHIPS",
    "DEFAULT_PROXY_END_AGE",
    "DEFAULT_PROXY_NOTICE_DAYS",
    "DEFAULT_PROXY_REVIEW_AGE",
    "MAX_PROXY_REVIEW_AGE",
    "ProxyAgeEnd",
    "ProxyHold",
    "ProxyNotice",
    "ProxyReview",
    "birthday",
    "earliest_birth_date",
    "proxy_age_end",
]
