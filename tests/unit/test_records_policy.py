"""The access policy (records.policy) rule by rule over a small SQLite store with a clock the
test moves: registration at the practice or a PCN practice, open episodes, encounters under
way or recent, active referrals, care teams, break-glass grants that expire, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from joinedup.records import BreakGlassError, Policy, RecordStore, Requester

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GP = Requester("gp", frozenset({"A11111"}), frozenset({"A11111"}))
PCN = Requester("pcn", frozenset({"U12345"}), frozenset({"A11111", "A22222"}))
TRUST = Requester("nurse", frozenset({"RXX"}), frozenset())


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> tuple[RecordStore, Policy, Clock]:
    clock = Clock()
    store = RecordStore(tmp_path / "records.sqlite", clock=clock)
    return store, Policy(store), clock


def _patient(store: RecordStore, practice: str) -> str:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    }
    return store.create(resource).resource_id


def _add(store: RecordStore, resource: dict[str, Any]) -> None:
    store.create(resource)


def test_registered_at_the_practice_or_a_pcn_practice(world: Any) -> None:
    store, policy, _ = world
    mine, other, elsewhere = (_patient(store, p) for p in ("A11111", "A22222", "B99999"))
    assert policy.decide(GP, mine).rule == "registered"
    assert not policy.decide(GP, other).allowed
    assert policy.decide(PCN, other).rule == "registered"
    assert not policy.decide(PCN, elsewhere).allowed
    assert policy.permitted(PCN) == {mine: "registered", other: "registered"}
    assert policy.decide(GP, "no-such-patient").label == "no relationship"


def test_encounter_under_way_or_recent_and_never_a_cancelled_one(world: Any) -> None:
    store, policy, clock = world
    pid = _patient(store, "B99999")
    here = {"reference": "Organization/RXX"}
    subject = {"reference": f"Patient/{pid}"}
    _add(store, {"resourceType": "Encounter", "status": "cancelled", "class": {"code": "AMB"},
                 "subject": subject, "serviceProvider": here,
                 "period": {"start": "2026-05-30T09:00:00Z"}})  # fmt: skip
    assert not policy.decide(TRUST, pid).allowed
    _add(store, {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                 "subject": subject, "serviceProvider": here,
                 "period": {"start": "2026-05-20T09:00:00Z",
                            "end": "2026-05-20T10:00:00Z"}})  # fmt: skip
    assert policy.decide(TRUST, pid).rule == "encounter"
    clock.now = NOW + timedelta(days=30)  # the finished encounter falls out of the window
    assert not policy.decide(TRUST, pid).allowed
    _add(store, {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
                 "subject": subject, "serviceProvider": here,
                 "period": {"start": "2025-01-01T09:00:00Z"}})  # fmt: skip
    assert policy.decide(TRUST, pid).rule == "encounter"
    assert not policy.decide(GP, pid).allowed


def test_open_episode_active_referral_and_care_team(world: Any) -> None:
    store, policy, _ = world
    a, b, c, d = (_patient(store, "B99999") for _ in range(4))
    _add(store, {"resourceType": "EpisodeOfCare", "status": "active",
                 "patient": {"reference": f"Patient/{a}"},
                 "managingOrganization": {"reference": "Organization/RXX"}})  # fmt: skip
    _add(store, {"resourceType": "EpisodeOfCare", "status": "finished",
                 "patient": {"reference": f"Patient/{d}"},
                 "managingOrganization": {"reference": "Organization/RXX"}})  # fmt: skip
    _add(store, {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                 "subject": {"reference": f"Patient/{b}"},
                 "performer": [{"reference": "Organization/RXX"}]})  # fmt: skip
    _add(store, {"resourceType": "CareTeam", "status": "active",
                 "subject": {"reference": f"Patient/{c}"},
                 "participant": [{"member": {"reference": "Practitioner/nurse"}}]})  # fmt: skip
    assert policy.decide(TRUST, a).rule == "episode"
    assert policy.decide(TRUST, b).rule == "referral"
    assert policy.decide(TRUST, c).rule == "care-team"
    assert not policy.decide(TRUST, d).allowed  # a finished episode is no relationship
    assert policy.permitted(TRUST) == {a: "episode", b: "referral", c: "care-team"}


def test_break_glass_needs_a_reason_and_expires(world: Any) -> None:
    store, policy, clock = world
    pid = _patient(store, "B99999")
    with pytest.raises(BreakGlassError, match="at least 20 characters"):
        policy.break_glass(GP, pid, "   because   ")
    with pytest.raises(BreakGlassError, match="no Patient/nobody"):
        policy.break_glass(GP, "nobody", "Unconscious in the emergency department")
    grant = policy.break_glass(GP, pid, "Unconscious in the emergency department")
    assert grant.expires_at == NOW + timedelta(hours=4)
    decision = policy.decide(GP, pid)
    assert decision.rule == "break-glass" and decision.grant == grant
    assert not policy.decide(TRUST, pid).allowed  # the grant is the GP's alone
    clock.now = NOW + timedelta(hours=4)
    assert not policy.decide(GP, pid).allowed
    assert policy.permitted(GP) == {}
    assert store.grants() == [grant]


def test_a_search_is_kept_to_the_patients_in_scope(world: Any) -> None:
    store, policy, _ = world
    mine, other, granted = (_patient(store, p) for p in ("A11111", "B99999", "B99999"))
    for pid in (mine, other, granted):
        subject = {"reference": f"Patient/{pid}"}
        _add(store, {"resourceType": "Observation", "status": "final",
                     "code": {"text": "weight"}, "subject": subject})  # fmt: skip
    policy.break_glass(GP, granted, "Unconscious in the emergency department")
    searches, held = policy.scope(GP)
    assert held == {granted}
    page = store.search("Observation", [], patients_of=searches)
    assert page.total == 2
    assert {r["subject"]["reference"] for r in page.resources} == {
        f"Patient/{mine}",
        f"Patient/{granted}",
    }
    assert store.search("Patient", [], patients_of=searches).total == 2
    assert store.search("Observation", [], patients_of=[]).total == 0
    assert store.search("Observation").total == 3
