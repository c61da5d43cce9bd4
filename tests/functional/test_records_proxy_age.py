"""A parent's or guardian's proxy access ends on the child's 16th birthday, read from their
Patient's birthDate in the records store when each request arrives (NHS England: at 16 a
person is presumed able to decide, and parent and guardian access stops); a carer's or an
attorney's does not end by age. Through the FHIR API and `joinedup users proxy`, on SQLite and
PostgreSQL: allowed the day before the birthday, refused on it with a 403 saying why and an
audit entry with the rule; a 29 February birthday in a year without one taken as 28 February;
no birthDate, no parent's access; a grant for someone already 16 refused when recorded."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir_calls import fhir_request
from typer.testing import CliRunner, Result

from joinedup.cli.main import app as cli
from joinedup.errors import ConfigurationError, InputError
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
ENDED = "withheld: parent's proxy access ended at the person's 16th birthday"
NO_BIRTH_DATE = "withheld: parent's proxy access: the person has no birthDate"


def patient(pid: str, born: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": "unknown"}
    return found | ({"birthDate": born} if born else {})


def asthma(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
    }


@dataclass
class World:
    client: TestClient
    access: AccessStore
    token: str
    clock: list[datetime]
    calls: int = 0
    births: list[str] = field(default_factory=list)

    def get(self, path: str, **params: str) -> Any:
        self.calls += 1
        return fhir_request(self.client, self.token, "GET", path, params=params)

    def status(self, path: str) -> int:
        code: int = self.get(path).status_code
        return code

    def refused_patients(self, action: str = "fhir %") -> list[str]:
        """The Patient ids of the proxy's refused entries (`action` LIKE), oldest first."""
        with sqlite3.connect(self.access.path) as con:
            rows = con.execute(
                "SELECT patients FROM audit WHERE username = 'mum' AND action LIKE ? "
                "AND detail LIKE '403%' ORDER BY seq",
                (action,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def entries(self) -> list[dict[str, Any]]:
        """The proxy's API entries, oldest first."""
        found = self.access.audit_entries(limit=100000)[1]
        return [e for e in reversed(found) if e["username"] == "mum" and "fhir" in e["action"]]


@contextmanager
def open_world(
    records_url: str, tmp_path: Path, births: dict[str, str | None], now: datetime
) -> Iterator[World]:
    """A mother (citizen) recorded as parent of each of `births` but `gran`, whose carer she
    is, over a records store whose clock the test moves (it is the policy's today)."""
    clock = [now]
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb")
    with (
        RecordStore(records_url, clock=lambda: clock[0]) as store,
        TestClient(create_records_app(settings, store)) as client,
    ):
        store.update(patient("mum", "1985-01-01"))
        for pid, born in births.items():
            store.update(patient(pid, born))
            store.create(asthma(pid))
        access: AccessStore = client.app.state.access  # type: ignore[attr-defined]
        access.add_user("mum", PASSWORD, "citizen", patient_id="mum")
        for pid in births:  # recorded when they were younger
            access.set_proxy("mum", pid, "carer" if pid == "gran" else "parent")
        # and renewed by their practice after the review at 11 (records.proxy_age): the
        # review is tested in tests/security/test_proxy_refusals.py
        access.add_user("practice", PASSWORD, "admin")
        policy = client.app.state.records_policy  # type: ignore[attr-defined]
        for pid in births:
            end = None if pid == "gran" else policy.proxy_age_end(pid, "parent")
            if end is not None and end.reviews is not None and not end.ended(policy.today()):
                access.renew_proxy(
                    "mum", pid, "practice", registered=frozenset(), at=clock[0],
                    age_check=lambda end=end: end,
                )  # fmt: skip
        answer = client.post("/api/v1/token", json={"username": "mum", "password": PASSWORD})
        yield World(
            client, access, answer.json()["access_token"], clock, 0,
            [b for b in births.values() if b],
        )  # fmt: skip


@pytest.fixture
def world(records_url: str, tmp_path: Path) -> Iterator[World]:
    births = {
        "young": "2010-06-02",  # 16 tomorrow: 15 years and 364 days old today
        "sixteen": "2010-06-01",  # 16 today
        "nobirth": None,
        "gran": "1950-03-04",  # an adult, whose carer she is
    }
    with open_world(records_url, tmp_path, births, datetime(2026, 6, 1, 12, tzinfo=UTC)) as w:
        yield w


def _diagnostics(answer: Any) -> str:
    assert answer.status_code == 403, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["diagnostics"])


def test_a_parents_access_lasts_to_the_day_before_the_16th_birthday(world: World) -> None:
    """The allowed side and the day it turns; each route's refusal past the birthday, with no
    birthDate, under review and revoked, is in tests/security/test_proxy_refusals.py."""
    # 15 years and 364 days: every route open, as before
    assert world.status("/Patient/young") == 200
    assert world.get("/Condition", patient="young").json()["total"] == 1
    assert world.status("/Patient/young/$everything") == 200
    assert world.status("/AuditEvent?patient=young") == 200
    everyone = world.get("/Patient").json()
    shown = sorted(e["resource"]["id"] for e in everyone["entry"])
    assert shown == ["gran", "mum", "young"]  # not "sixteen" (16 today), nor "nobirth"
    # a carer's access does not end by age: her own mother is 76
    assert world.status("/Patient/gran") == 200

    # the next day the younger one is 16 too: refused at the next request, no new sign-in
    world.clock[0] += timedelta(days=1)
    assert "ended on 2026-06-02" in _diagnostics(world.get("/Patient/young"))
    assert world.get("/Condition", patient="young").json()["total"] == 0
    assert world.status("/Patient/gran") == 200

    # every request audited; the refusal with its rule, and no birth date in the log
    entries = world.entries()
    assert len(entries) == world.calls
    refused = [(e["resource"], e["reason"]) for e in entries if e["detail"].startswith("403")]
    assert refused == [("fhir/Patient/young", ENDED)]
    assert world.refused_patients() == ["young"]
    logged = json.dumps(world.access.audit_entries(limit=100000)[1])
    assert not any(born in logged for born in world.births)


def test_a_guardians_access_ends_alike_and_an_attorneys_does_not(world: World) -> None:
    world.access.set_proxy("mum", "sixteen", "guardian")
    world.access.set_proxy("mum", "nobirth", "attorney")
    assert "a guardian's proxy access" in _diagnostics(world.get("/Patient/sixteen"))
    assert world.status("/Patient/nobirth") == 200  # no birthDate needed: not by age
    assert world.entries()[0]["reason"] == (
        "withheld: guardian's proxy access ended at the person's 16th birthday"
    )


def test_a_practices_earlier_age_and_a_29_february_birthday(
    records_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JOINEDUP_RECORDS_PROXY_END_AGE=13 (NHS England's review age; a practice may end it
    earlier than 16, never later): born 29 February 2012, 13 in 2025, which has no 29
    February, so on 28 February."""
    monkeypatch.setenv("JOINEDUP_RECORDS_PROXY_END_AGE", "13")
    now = datetime(2025, 2, 27, 23, 59, tzinfo=UTC)
    with open_world(records_url, tmp_path, {"leap": "2012-02-29"}, now) as world:
        assert world.status("/Patient/leap") == 200
        world.clock[0] = datetime(2025, 2, 28, 0, 0, tzinfo=UTC)
        why = _diagnostics(world.get("/Patient/leap"))
        assert "ended on 2025-02-28, the person's 13th birthday" in why
        assert world.entries()[-1]["reason"] == ENDED.replace("16th", "13th")
    monkeypatch.setenv("JOINEDUP_RECORDS_PROXY_END_AGE", "18")  # later than 16: refused
    with pytest.raises(ConfigurationError, match="JOINEDUP_RECORDS_PROXY_END_AGE"):
        create_records_app(WebSettings(warehouse=tmp_path / "w.duckdb"), RecordStore(records_url))


# --- recording the access at the command line ------------------------------------------------

ENV = {
    "JOINEDUP_NEW_PASSWORD": PASSWORD, "COLUMNS": "200", "NO_COLOR": "1",
    "JOINEDUP_RECORDS": "",
}  # fmt: skip


_PROXY_PATIENTS = "SELECT patients FROM audit WHERE action LIKE 'proxy %' ORDER BY seq"


def joinedup(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February: a year with it is 16 years before one with it too
        return date(day.year - years, 3, 1)


def test_users_proxy_records_a_parent_only_for_a_child_under_16(
    records_url: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    young = _years_before(today + timedelta(days=1), 16)  # 16 tomorrow
    sixteen = _years_before(today, 16)
    with RecordStore(records_url) as store:
        store.update(patient("young", young.isoformat()))
        store.update(patient("sixteen", sixteen.isoformat()))
        store.update(patient("nobirth", None))
        store.update(patient("gran", "1950-03-04"))
    w = ("-w", str(tmp_path / "warehouse.duckdb"))
    r = ("--records", records_url)
    assert (
        joinedup("users", "add", "mum", "--role", "citizen", "--patient", "mum", *w).exit_code == 0
    )

    def proxy(pid: str, relationship: str, *more: str) -> Result:
        return joinedup(
            "users", "proxy", "mum", "--patient", pid, "--relationship", relationship, *w,
            *more,
        )  # fmt: skip

    # refused, in one line naming --patient, the Patient and the rule: 16 today, or no date
    for pid, relationship, says in (
        ("sixteen", "parent", f"Patient/sixteen is 16 or over (16 on {today.isoformat()}): "
         "a parent's proxy access ends at the person's 16th birthday"),
        ("sixteen", "guardian", "a guardian's proxy access ends"),
        ("nobirth", "parent", "Patient/nobirth has no birthDate"),
    ):  # fmt: skip
        bad = proxy(pid, relationship, *r)
        assert isinstance(bad.exception, InputError), bad.output
        assert bad.exception.where == "--patient" and says in str(bad.exception)
        assert "\n" not in str(bad.exception)
    # without the records store to read the birthDate in, a parent's is not recorded
    unread = proxy("young", "parent")
    assert isinstance(unread.exception, InputError) and unread.exception.where == "--records"
    missing = proxy("nobody", "parent", *r)
    assert isinstance(missing.exception, InputError) and missing.exception.where == "--patient"

    # 15 years and 364 days: past the review at 11, so recording it is its review (--by)
    unreviewed = proxy("young", "parent", *r)
    assert isinstance(unreviewed.exception, InputError), unreviewed.output
    assert unreviewed.exception.where == "--by"
    assert joinedup("users", "add", "practice", "--role", "admin", *w).exit_code == 0
    # recorded through today, the day before the 16th birthday
    made = proxy(
        "young", "parent", *r, "--until", (today + timedelta(days=90)).isoformat(),
        "--by", "practice",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert f"as parent through {today.isoformat()}," in " ".join(made.stdout.split())
    # a carer of an adult needs no birth date, and no records store
    assert proxy("gran", "carer").exit_code == 0

    access = AccessStore(
        WebSettings(warehouse=Path(w[1])).access_path,
        audit_key_path=WebSettings(warehouse=Path(w[1])).audit_key_path,
    )
    try:
        listed = {p.patient_id: (p.until_date, p.until_reason, p.status) for p in access.proxies()}
        entries = [
            e for e in reversed(access.audit_entries(limit=1000)[1]) if "proxy" in e["action"]
        ]
    finally:
        access.close()
    assert listed == {
        "young": (today.isoformat(), "the day before the person's 16th birthday", "active"),
        "gran": (None, None, "active"),
    }
    # every refusal the age rule made is audited, naming the Patient, never the birth date
    with sqlite3.connect(access.path) as con:
        patients = [str(r[0]) for r in con.execute(_PROXY_PATIENTS).fetchall()]
    assert [(e["action"], e["reason"]) for e in entries] == [
        ("proxy refused", ENDED),
        ("proxy refused", ENDED.replace("parent", "guardian")),
        ("proxy refused", NO_BIRTH_DATE),
        (
            "proxy refused",
            "withheld: grant at or after the person's 11th birthday with no reviewer",
        ),
        ("proxy granted", "proxy access review"),
        ("proxy granted", "proxy access"),
    ]
    assert patients == ["sixteen", "sixteen", "nobirth", "young", "young", "gran"]
    assert entries[4]["detail"] == (
        "as parent until the day before the person's 16th birthday; reviewed at the person's "
        "11th birthday by practice"
    )
    assert entries[4]["username"] == "practice"
    logged = json.dumps(entries)
    assert young.isoformat() not in logged and sixteen.isoformat() not in logged
