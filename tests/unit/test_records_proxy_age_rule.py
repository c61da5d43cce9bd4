"""The age rule for a parent's or guardian's proxy access (records.proxy_age): the birthday
it ends on, 29 February in a year without one, birth dates of a year or a month only, and the
relationships it does not apply to."""

from __future__ import annotations

from datetime import date

import pytest

from joinedup.records.proxy_age import (
    DEFAULT_PROXY_REVIEW_AGE,
    ProxyAgeEnd,
    ProxyNotice,
    ProxyReview,
    birthday,
    earliest_birth_date,
    proxy_age_end,
)


@pytest.mark.parametrize(
    ("born", "age", "on"),
    [
        (date(2010, 6, 2), 16, date(2026, 6, 2)),
        (date(2012, 2, 29), 13, date(2025, 2, 28)),  # 2025 has no 29 February: the 28th
        (date(2008, 2, 29), 16, date(2024, 2, 29)),  # 2024 has one
        (date(2084, 2, 29), 16, date(2100, 2, 28)),  # 2100 is not a leap year
    ],
)
def test_the_birthday_an_age_is_reached_on(born: date, age: int, on: date) -> None:
    assert birthday(born, age) == on


@pytest.mark.parametrize(
    ("value", "earliest"),
    [
        ("2010-06-02", date(2010, 6, 2)),
        ("2010-06", date(2010, 6, 1)),  # the earliest it can mean: access ends no later
        ("2010", date(2010, 1, 1)),
        ("2010-02-30", None),
        ("02/06/2010", None),
        (None, None),
        (20100602, None),
    ],
)
def test_a_birth_date_is_read_as_its_earliest_day(value: object, earliest: date | None) -> None:
    assert earliest_birth_date(value) == earliest


def test_the_day_before_the_birthday_is_the_last() -> None:
    end = proxy_age_end("c1", {"birthDate": "2010-06-02"}, "parent", review_age=None)
    assert end is not None and end.last_day == date(2026, 6, 1)
    assert end.in_force(date(2026, 6, 1)) and not end.in_force(date(2026, 6, 2))
    nobody = proxy_age_end("c2", {"resourceType": "Patient"}, "guardian")
    assert nobody is not None and not nobody.in_force(date(1900, 1, 1))
    assert "has no birthDate" in nobody.refusal()
    for relationship in ("carer", "attorney"):
        assert proxy_age_end("c1", {"birthDate": "2010-06-02"}, relationship) is None


def test_a_parents_access_is_suspended_at_the_review_birthday_until_renewed() -> None:
    """Review at 11 (DAPB3051 7.2; the RCGP's review point): suspended from the 11th
    birthday; a renewal counts from 30 days before it; one from the child's early years does
    not skip the review; the end at 16 stands whatever the renewal."""
    child = {"birthDate": "2015-06-02"}  # 11 on 2026-06-02, 16 on 2031-06-02

    def rule(renewed_at: str | None = None) -> ProxyAgeEnd:
        end = proxy_age_end("c1", child, "parent", review_age=11, review=ProxyReview(renewed_at))
        assert end is not None
        return end

    never = rule()
    assert never.reviews == date(2026, 6, 2) and never.renewal_from == date(2026, 5, 3)
    assert never.in_force(date(2026, 6, 1)) and not never.in_force(date(2026, 6, 2))
    hold = never.hold(date(2026, 6, 2))
    assert hold is not None and hold.suspended
    assert hold.label == "parent's proxy access suspended for review at the person's 11th birthday"
    assert "under review since 2026-06-02" in hold.refusal and "DAPB3051" in hold.refusal
    assert "2015" not in hold.label  # nothing from the record in what the audit keeps

    assert rule("2026-05-03T09:00:00+00:00").in_force(date(2026, 6, 2))  # inside the notice
    assert not rule("2026-05-02T23:59:59+00:00").in_force(date(2026, 6, 2))  # too early
    assert not rule("2016-01-01T00:00:00+00:00").in_force(date(2029, 1, 1))  # years before
    renewed = rule("2026-07-01T10:00:00+00:00")
    assert not renewed.in_force(date(2026, 6, 30)) and renewed.in_force(date(2026, 7, 1))
    assert not renewed.in_force(date(2031, 6, 2))  # 16: ended, renewal or not
    ended = renewed.hold(date(2031, 6, 2))
    assert ended is not None and not ended.suspended and "ended on 2031-06-02" in ended.refusal


def test_the_notice_names_the_nearer_of_the_review_and_the_end() -> None:
    end = proxy_age_end("c1", {"birthDate": "2015-06-02"}, "guardian", review_age=11)
    assert end is not None
    assert end.notice(date(2026, 5, 2)) is None  # 31 days ahead: not yet
    notice = end.notice(date(2026, 5, 3))
    assert notice == ProxyNotice("review", date(2026, 6, 2), "the person's 11th birthday")
    assert end.notice(date(2026, 6, 2)) is None  # suspended: not in force, nothing to tell
    renewed = proxy_age_end(
        "c1", {"birthDate": "2015-06-02"}, "guardian", review_age=11,
        review=ProxyReview("2026-06-10T00:00:00+00:00"),
    )  # fmt: skip
    assert renewed is not None and renewed.notice(date(2031, 5, 1)) is None
    assert renewed.notice(date(2031, 5, 2)) == ProxyNotice(
        "end", date(2031, 6, 1), "the day before the person's 16th birthday"
    )
    # a review age at or above the end age gives no review: the end comes first
    late = proxy_age_end("c1", {"birthDate": "2015-06-02"}, "parent", 11, review_age=11)
    assert late is not None and late.reviews is None and late.in_force(date(2026, 6, 1))


def test_the_rule_reviews_at_11_unless_told_otherwise() -> None:
    """One default for the review age, the server's and the rule's (and Policy's)."""
    assert DEFAULT_PROXY_REVIEW_AGE == 11
    end = proxy_age_end("c1", {"birthDate": "2015-06-02"}, "parent")
    assert end is not None and end.reviews == date(2026, 6, 2)
    assert not end.in_force(date(2026, 6, 2))


def test_a_renewal_counts_by_the_review_day_it_was_recorded_for() -> None:
    """Kept with the review day it was for, a renewal counts whatever the notice period is
    later: recorded 30 days ahead under a 30-day period, it still counts with 10 days set.
    One recorded for an earlier review (the review age raised from 11 to 13 since) does not
    count for the later one; one for a later review counts for an earlier one."""
    child = {"birthDate": "2015-06-02"}  # 11 on 2026-06-02, 13 on 2028-06-02
    early = ProxyReview("2026-05-03T09:00:00+00:00", "2026-06-02")

    def rule(review: ProxyReview, notice_days: int, review_age: int = 11) -> ProxyAgeEnd:
        end = proxy_age_end(
            "c1", child, "parent", review_age=review_age, review=review, notice_days=notice_days
        )
        assert end is not None
        return end

    assert rule(early, 30).in_force(date(2026, 6, 2))
    assert rule(early, 10).in_force(date(2026, 6, 2))  # the period shortened since: counts
    # without the review day (renewed before it was kept), today's period judges it
    assert not rule(ProxyReview(early.renewed_at), 10).in_force(date(2026, 6, 2))
    assert not rule(early, 30, review_age=13).in_force(date(2028, 6, 2))  # an earlier review
    later = ProxyReview("2028-05-20T09:00:00+00:00", "2028-06-02")
    assert rule(later, 30, review_age=11).in_force(date(2028, 6, 2))


def test_a_grant_from_before_the_review_rule_is_told_before_it_is_suspended() -> None:
    """A grant recorded before the review rule reached the access database (notice_from) is
    suspended no sooner than the notice period after: a child already 12 then is told for 30
    days, with the day; one whose review birthday is further off than that is suspended on
    it, as any other."""
    twelve = {"birthDate": "2014-03-01"}  # 11 on 2025-03-01: the review had passed
    told = ProxyReview(notice_from="2026-12-07T15:00:00+00:00")
    end = proxy_age_end("c1", twelve, "parent", review_age=11, review=told)
    assert end is not None and end.suspends == date(2027, 1, 6)
    assert end.in_force(date(2026, 12, 7)) and end.in_force(date(2027, 1, 5))
    assert not end.in_force(date(2027, 1, 6))
    notice = end.notice(date(2026, 12, 7))
    assert notice == ProxyNotice(
        "review", date(2027, 1, 6), "the review due from the person's 11th birthday, after notice"
    )
    hold = end.hold(date(2027, 1, 6))
    assert hold is not None and hold.suspended and "under review since 2027-01-06" in hold.refusal
    assert hold.label == "parent's proxy access suspended for review at the person's 11th birthday"
    # without the notice (recorded under the rule) it was suspended on the birthday
    plain = proxy_age_end("c1", twelve, "parent", review_age=11)
    assert plain is not None and not plain.in_force(date(2026, 12, 7))
    # a renewal for the review ends the wait either way
    renewed = ProxyReview("2026-12-10T00:00:00+00:00", "2025-03-01", told.notice_from)
    after = proxy_age_end("c1", twelve, "parent", review_age=11, review=renewed)
    assert (
        after is not None
        and after.in_force(date(2027, 2, 1))
        and after.notice(date(2026, 12, 10)) is None
    )
    # a review birthday beyond the notice: suspended on it, as for any grant
    nine = {"birthDate": "2016-06-02"}  # 11 on 2027-06-02
    far = proxy_age_end("c1", nine, "parent", review_age=11, review=told)
    assert far is not None and far.suspends == date(2027, 6, 2)
    assert far.in_force(date(2027, 6, 1)) and not far.in_force(date(2027, 6, 2))
