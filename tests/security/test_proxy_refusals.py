"""Every way a parent's or guardian's proxy access is refused, route by route over the records
API and the citizen's pages, on SQLite and PostgreSQL: past the child's 16th birthday, no
birthDate on the Patient, suspended for review from the child's 11th birthday (DAPB3051 7.2),
renewed by their practice and then allowed, a renewal by someone outside the child's
registered practice refused, and revoked. Each refusal is a 403 the parent can read (why, and
since when), is audited (an AuditEvent the privacy officer finds, or the pages' audit entry),
and no patient identifier (NHS number, name, birth date) reaches the logs or the audit
log's text. The rule's days are in tests/unit/test_records_proxy_age_rule.py; what is allowed
before the end in tests/functional/test_records_proxy_age.py."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_run import PhmWarehouse
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from joinedup.cli.main import app as cli
from joinedup.errors import InputError
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.app import SESSION_COOKIE, create_app
from joinedup.web.records_api import mount_records
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.security

PASSWORD = "a long enough password"
BASE = "/fhir/R4"
PRACTICE, ELSEWHERE = "A11111", "B22222"
TODAY = datetime.now(UTC).date()


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one: the day after, still that age
        return date(day.year - years, 3, 1)


#: The children the mother is recorded as parent of: Patient id, NHS number, birth date.
CHILDREN: dict[str, tuple[str, date | None]] = {
    "c-sixteen": ("9434765919", years_before(TODAY, 16)),  # 16 today: ended
    "c-nobirth": ("9434765870", None),  # nothing shows they are under 16
    "c-twelve": ("9449306060", years_before(TODAY - timedelta(days=40), 12)),  # review passed
    "c-eleven": ("9449304130", years_before(TODAY, 11)),  # 11 today: review today
    "c-young": ("9449305552", years_before(TODAY, 7)),  # 7: in force, then revoked
}
MUM_NHS = "9000000009"
IDENTIFIERS = [MUM_NHS, *(n for n, _ in CHILDREN.values())]
BIRTHS = [b.isoformat() for _, b in CHILDREN.values() if b]
NAMES = ["Zebedee", "Quintavius"]  # the family and the mother's given name


def patient(pid: str, nhs: str, born: date | None, given: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "name": [{"family": "Zebedee", "given": [given]}],
        "gender": "unknown",
        "generalPractitioner": [{"reference": f"Organization/{PRACTICE}"}],
    }
    return found | ({"birthDate": born.isoformat()} if born else {})


@dataclass
class World:
    client: TestClient
    access: AccessStore
    records: str
    settings: WebSettings
    tokens: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)

    def api(self, path: str, user: str = "mum", **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return self.client.get(BASE + path, headers=headers, params=params)

    def page(self, path: str, **params: str) -> Any:
        self.client.cookies.clear()
        signed = self.client.post(
            "/login", data={"username": "mum", "password": PASSWORD}, follow_redirects=False
        )
        self.client.cookies.set(SESSION_COOKIE, signed.cookies[SESSION_COOKIE])
        return self.client.get(path, params=params, headers={"accept": "text/html"})

    def last_entry(self, username: str = "mum") -> dict[str, Any]:
        """The newest audit entry of `username`, with its patients column."""
        with sqlite3.connect(self.access.path) as con:
            con.row_factory = sqlite3.Row
            row = con.execute(
                "SELECT action, resource, detail, reason, patients FROM audit "
                "WHERE username = ? ORDER BY seq DESC LIMIT 1",
                (username,),
            ).fetchone()
        return dict(row)

    def audit_events(self, pid: str) -> list[dict[str, Any]]:
        """The AuditEvents the privacy officer finds for Patient `pid`."""
        found = self.api("/AuditEvent", "po", patient=pid, _count="500")
        assert found.status_code == 200, found.text
        return [e["resource"] for e in found.json().get("entry", [])]


@pytest.fixture
def world(
    small_web_warehouse: PhmWarehouse,
    records_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The dashboard with the records API over a store holding a mother and five children
    (registered at PRACTICE), the mother recorded as parent of each; a practice GP, a GP
    elsewhere, the practice's care worker, an admin and the privacy officer."""
    for name in ("JOINEDUP_RECORDS_PROXY_REVIEW_AGE", "JOINEDUP_RECORDS_PROXY_END_AGE"):
        monkeypatch.delenv(name, raising=False)  # the defaults: review at 11, end at 16
    settings = WebSettings(warehouse=small_web_warehouse.path, access_db=tmp_path / "a.sqlite")
    app = create_app(settings, warm=False)
    with RecordStore(records_url) as store:
        mount_records(app, store)
        store.update(patient("mum", MUM_NHS, date(1985, 1, 1), "Quintavius"))
        conditions = {}
        for pid, (nhs, born) in CHILDREN.items():
            store.update(patient(pid, nhs, born, "Child"))
            made = store.create({
                "resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
            })  # fmt: skip
            conditions[pid] = str((made.resource or {})["id"])
        with TestClient(app) as client:
            access: AccessStore = client.app.state.access  # type: ignore[attr-defined]
            access.add_user("mum", PASSWORD, "citizen", patient_id="mum")
            access.add_user("gp", PASSWORD, "clinician", practice_code=PRACTICE, pcn_code="U1")
            access.add_user("gp-away", PASSWORD, "clinician", practice_code=ELSEWHERE)
            access.add_user("pcn-gp", PASSWORD, "clinician", pcn_code="U1")
            access.add_user("carer", PASSWORD, "care-worker", organisation_code=PRACTICE)
            access.add_user("admin1", PASSWORD, "admin")
            access.add_user("po", PASSWORD, "privacy-officer")
            for pid in CHILDREN:  # recorded when each was younger (the age rule reads now)
                with sqlite3.connect(access.path) as con:
                    con.execute(
                        "INSERT INTO proxies (username, patient_id, relationship, granted_at) "
                        "VALUES ('mum', ?, 'parent', '2019-01-01T00:00:00.000000+00:00')",
                        (pid,),
                    )
            w = World(client, access, records_url, settings, conditions=conditions)
            for name in ("mum", "po"):
                token = client.post("/api/v1/token", json={"username": name, "password": PASSWORD})
                w.tokens[name] = token.json()["access_token"]
            yield w


def routes(w: World, pid: str) -> list[tuple[str, str, dict[str, str]]]:
    """The records API routes that name one patient: (path, audited resource, params)."""
    cond = w.conditions[pid]
    return [
        (f"/Patient/{pid}", f"fhir/Patient/{pid}", {}),
        (f"/Patient/{pid}/_history/1", f"fhir/Patient/{pid}/_history/1", {}),
        (f"/Patient/{pid}/_history", f"fhir/Patient/{pid}", {}),  # audited as the instance
        (f"/Condition/{cond}", f"fhir/Condition/{cond}", {}),
        (f"/Patient/{pid}/$everything", f"fhir/Patient/{pid}/$everything", {}),
        ("/AuditEvent", "fhir/AuditEvent?patient", {"patient": pid}),
    ]


def refused_everywhere(w: World, pid: str, says: str, label: str) -> None:
    """Every route refuses `pid` to the mother with `says` in the answer, each audited with
    `label` (or, where the route names no patient the proxy may see, as a refusal), and
    searches neither find nor count them."""
    before = {e["id"] for e in w.audit_events(pid)}
    for path, resource, params in routes(w, pid):
        answer = w.api(path, **params)
        assert answer.status_code == 403, (path, answer.text)
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome", path
        assert says in outcome["issue"][0]["diagnostics"], (path, outcome)
        entry = w.last_entry()
        assert entry["resource"] == resource and entry["detail"].startswith("403"), entry
        assert (entry["reason"], entry["patients"]) == (label, pid), (path, entry)
    # searches are kept to those in force: nothing found or counted, and audited
    for kind, params in (("Condition", {"patient": pid}), ("Patient", {"_id": pid})):
        found = w.api(f"/{kind}", **params).json()
        assert found["total"] == 0 and not found.get("entry"), (kind, found)
        assert w.last_entry()["action"] == "fhir search"
    # each refusal is an AuditEvent the privacy officer finds, with its reason
    events = [e for e in w.audit_events(pid) if e["id"] not in before]
    refusals = [e for e in events if e["outcomeDesc"].startswith("403")]
    assert len(refusals) == len(routes(w, pid)), events
    assert {e["purposeOfEvent"][0]["text"] for e in refusals} == {label}
    # the citizen's page for them refuses alike, saying why; audited
    page = w.page("/my-record", patient=pid)
    assert page.status_code == 403 and says in page.text, page.text[:500]
    entry = w.last_entry()
    assert (entry["action"], entry["detail"], entry["reason"], entry["patients"]) == (
        "my-record view", "403; withheld", label, pid
    )  # fmt: skip


def clean_logs(w: World, caplog: pytest.LogCaptureFixture) -> None:
    """No patient identifier, name or birth date in the logs or the audit log's text (only
    Patient ids, in its patients column, by design)."""
    entries = w.access.audit_entries(limit=100_000)[1]
    text = json.dumps(entries) + caplog.text
    for value in (*IDENTIFIERS, *BIRTHS, *NAMES):
        assert value not in text, value


def test_past_the_16th_birthday_every_route_refuses(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ended = CHILDREN["c-sixteen"][1]
    assert ended is not None
    says = f"proxy access to Patient/c-sixteen ended on {TODAY.isoformat()}"
    label = "withheld: parent's proxy access ended at the person's 16th birthday"
    refused_everywhere(world, "c-sixteen", says, label)
    # a practice's renewal does not reopen it: the review is over, the person decides
    with pytest.raises(InputError, match="16 or over"):
        renew(world, "c-sixteen", "gp")
    assert world.last_entry("gp")["action"] == "proxy renewal refused"
    clean_logs(world, caplog)


def test_no_birth_date_every_route_refuses(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    says = "Patient/c-nobirth has no birthDate"
    refused_everywhere(
        world, "c-nobirth", says, "withheld: parent's proxy access: the person has no birthDate"
    )
    clean_logs(world, caplog)


def renew(w: World, pid: str, by: str) -> Any:
    """`users renew-proxy` as the practice runs it, against this world's stores."""
    from joinedup.cli.web import _read_patient

    end, registered = _read_patient(w.records, pid, "parent")
    return w.access.renew_proxy("mum", pid, by, registered=registered, age_check=lambda: end)


def test_suspended_for_review_refuses_with_since_when_then_renewed_is_allowed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    born = CHILDREN["c-twelve"][1]
    assert born is not None
    review = born.replace(year=born.year + 11)
    says = f"proxy access to Patient/c-twelve is under review since {review.isoformat()}"
    label = "withheld: parent's proxy access suspended for review at the person's 11th birthday"
    refused_everywhere(world, "c-twelve", says, label)
    # 11 today: suspended from today, the same way
    eleven = "proxy access to Patient/c-eleven is under review since " + TODAY.isoformat()
    assert eleven in world.api("/Patient/c-eleven").json()["issue"][0]["diagnostics"]
    # the parent's own page says which records are held back, and why
    own = world.page("/my-record")
    assert own.status_code == 200
    held = own.text.split('id="access-held"')[1].split("</div>")[0]
    assert says in held and "c-sixteen" in held and "c-young" not in held
    assert "Zebedee" not in held  # nothing read from records no longer the parent's to see

    # the practice's GP renews it after the review: recorded with who and when, audited
    record = renew(world, "c-twelve", "gp")
    assert (record.renewed_by, record.renewed_at[:10]) == ("gp", TODAY.isoformat())
    entry = world.last_entry("gp")
    assert (entry["action"], entry["reason"], entry["patients"]) == (
        "proxy renewed", "proxy access review", "c-twelve"
    )  # fmt: skip
    assert entry["detail"] == "as parent; renewed after review at the person's 11th birthday"
    for path, _, params in routes(world, "c-twelve"):
        assert world.api(path, **params).status_code == 200, path
    assert world.last_entry()["reason"] == "records audit: own record"
    assert world.api("/Condition", patient="c-twelve").json()["total"] == 1
    assert world.page("/my-record", patient="c-twelve").status_code == 200
    # the admin renews too (the access database's administrator)
    assert renew(world, "c-eleven", "admin1").renewed_by == "admin1"
    assert world.api("/Patient/c-eleven").status_code == 200

    # recording the relationship again is a new grant: it needs a new review
    world.access.set_proxy("mum", "c-twelve", "parent")
    assert world.api("/Patient/c-twelve").status_code == 403
    clean_logs(world, caplog)


def test_a_renewal_by_anyone_outside_the_childs_practice_is_refused(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for by, option in (
        ("gp-away", "--by"),  # a GP of another practice
        ("pcn-gp", "--by"),  # the PCN's, with no practice: not the registered organisation
        ("carer", "--by"),  # the practice's own care worker: not a clinician
        ("mum", "--by"),  # the parent herself
    ):
        with pytest.raises(InputError) as refused:
            renew(world, "c-twelve", by)
        assert refused.value.where == option, by
        assert "not an admin or a clinician of Patient/c-twelve's registered GP" in str(
            refused.value
        )
        entry = world.last_entry(by)
        assert (entry["action"], entry["reason"], entry["patients"]) == (
            "proxy renewal refused",
            "withheld: renewal by someone outside the person's registered practice",
            "c-twelve",
        ), by
        assert world.api("/Patient/c-twelve").status_code == 403  # still suspended
    with pytest.raises(InputError, match="not an active user"):
        renew(world, "c-twelve", "nobody")
    assert [p.renewed_at for p in world.access.proxies("mum") if p.patient_id == "c-twelve"] == [
        None
    ]

    # the command line says the same in one line, naming --by, and exits 2
    env = {
        "JOINEDUP_ACCESS_DB": str(world.settings.access_path),
        "JOINEDUP_RECORDS": world.records, "NO_COLOR": "1", "COLUMNS": "200",
    }  # fmt: skip
    run = CliRunner().invoke(
        cli,
        ["users", "renew-proxy", "mum", "--patient", "c-twelve", "--by", "gp-away",
         "-w", str(world.settings.warehouse)],
        env=env,
    )  # fmt: skip
    assert isinstance(run.exception, InputError) and run.exception.where == "--by", run.output
    ok = CliRunner().invoke(
        cli,
        ["users", "renew-proxy", "mum", "--patient", "c-twelve", "--by", "gp",
         "-w", str(world.settings.warehouse)],
        env=env,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "renewed after review by gp" in " ".join(ok.stdout.split())
    assert world.api("/Patient/c-twelve").status_code == 200
    clean_logs(world, caplog)


def test_revoked_every_route_refuses(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert world.api("/Patient/c-young").status_code == 200  # 7: in force, no review yet
    world.access.set_proxy("mum", "c-young", "parent", revoke=True)
    before = {e["id"] for e in world.audit_events("c-young")}
    for path, resource, params in routes(world, "c-young"):
        answer = world.api(path, **params)
        assert answer.status_code == 403, (path, answer.text)
        assert "not your record" in answer.json()["issue"][0]["diagnostics"], path
        entry = world.last_entry()
        assert entry["resource"] == resource and entry["detail"].startswith("403"), entry
    assert world.api("/Condition", patient="c-young").json()["total"] == 0
    refusals = [
        e for e in world.audit_events("c-young")
        if e["id"] not in before and e["outcomeDesc"].startswith("403")
    ]  # fmt: skip
    assert refusals, "the refusals naming the patient are AuditEvents"
    page = world.page("/my-record", patient="c-young")
    assert page.status_code == 403 and "not your record" in page.text.lower()
    assert world.last_entry()["detail"] == "403; not theirs"
    # nothing to renew once revoked: it is recorded again, after the review
    with pytest.raises(InputError, match="revoked"):
        renew(world, "c-young", "gp")
    assert world.last_entry("gp")["action"] == "proxy renewal refused"
    clean_logs(world, caplog)


def users_cli(w: World, *args: str) -> Any:
    """`joinedup users ...` against this world's access database and records store."""
    env = {
        "JOINEDUP_ACCESS_DB": str(w.settings.access_path),
        "JOINEDUP_RECORDS": w.records, "NO_COLOR": "1", "COLUMNS": "200",
    }  # fmt: skip
    return CliRunner().invoke(
        cli, ["users", *args, "-w", str(w.settings.warehouse)], env=env, catch_exceptions=True
    )


def test_a_grant_past_the_review_birthday_is_its_review_by_the_practice(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording a parent's access for a child past their 11th birthday is the review: it
    names who reviewed it (--by), an admin or a clinician of the child's registered practice,
    and is then in force at once, kept as renewed by them; without --by, or by anyone else,
    it is refused in one line naming --by and audited. Before the review is due, or for a
    carer, --by is refused: there is nothing to review."""
    caplog.set_level(logging.DEBUG)
    grant = ("proxy", "mum", "--patient", "c-twelve", "--relationship", "parent")
    alone = users_cli(world, *grant)
    assert isinstance(alone.exception, InputError) and alone.exception.where == "--by"
    assert "past the person's 11th birthday" in str(alone.exception)
    assert "\n" not in str(alone.exception)
    entry = world.last_entry()
    assert (entry["action"], entry["reason"], entry["patients"]) == (
        "proxy refused",
        "withheld: grant at or after the person's 11th birthday with no reviewer",
        "c-twelve",
    )
    away = users_cli(world, *grant, "--by", "gp-away")
    assert isinstance(away.exception, InputError) and away.exception.where == "--by"
    assert "not an admin or a clinician of Patient/c-twelve's registered GP" in str(away.exception)
    entry = world.last_entry("gp-away")
    assert (entry["action"], entry["reason"]) == (
        "proxy refused", "withheld: someone outside the person's registered practice"
    )  # fmt: skip
    assert world.api("/Patient/c-twelve").status_code == 403  # the old grant, unreviewed

    done = users_cli(world, *grant, "--by", "gp")
    assert done.exit_code == 0, done.output
    assert "Recorded as its review (the person's 11th birthday) by gp" in " ".join(
        done.stdout.split()
    )
    born = CHILDREN["c-twelve"][1]
    assert born is not None
    [record] = [p for p in world.access.proxies("mum") if p.patient_id == "c-twelve"]
    assert (record.renewed_by, record.review_date) == (
        "gp",
        born.replace(year=born.year + 11).isoformat(),
    )
    entry = world.last_entry("gp")
    assert (entry["action"], entry["reason"], entry["patients"]) == (
        "proxy granted", "proxy access review", "c-twelve"
    )  # fmt: skip
    assert entry["detail"] == (
        "as parent until the day before the person's 16th birthday; reviewed at the person's "
        "11th birthday by gp"
    )
    for path, _, params in routes(world, "c-twelve"):
        assert world.api(path, **params).status_code == 200, path
    assert world.page("/my-record", patient="c-twelve").status_code == 200

    # 7 years old: no review due yet, so no reviewer to name
    young = users_cli(world, "proxy", "mum", "--patient", "c-young", "--relationship",
                      "parent", "--by", "gp")  # fmt: skip
    assert isinstance(young.exception, InputError) and young.exception.where == "--by"
    assert "not due for review yet" in str(young.exception)
    carer = users_cli(world, "proxy", "mum", "--patient", "c-young", "--relationship",
                      "carer", "--by", "gp")  # fmt: skip
    assert isinstance(carer.exception, InputError) and carer.exception.where == "--by"
    assert world.api("/Patient/c-young").status_code == 200  # the grant as it was
    clean_logs(world, caplog)


def test_a_grant_from_before_the_review_rule_is_told_then_suspended(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A grant already recorded when the review rule reached the access database (the
    column the file gains then, tests/unit/test_web_access.py) for a child past their 11th
    birthday stays in force for the notice period (30 days) from then, the parent and the
    child are told on their pages with the day, and then it is suspended as any other."""
    caplog.set_level(logging.DEBUG)
    world.access.add_user("twelve", PASSWORD, "citizen", patient_id="c-twelve")
    world.access.add_user("mum2", PASSWORD, "citizen", patient_id="c-nobirth",
                          display_name="Second Parent")  # fmt: skip

    def reached(days_ago: int) -> None:
        at = datetime.now(UTC) - timedelta(days=days_ago)
        with sqlite3.connect(world.access.path) as con:
            con.execute(
                "UPDATE proxies SET review_notice_from = ? WHERE patient_id = 'c-twelve'",
                (at.isoformat(timespec="microseconds"),),
            )

    with sqlite3.connect(world.access.path) as con:  # a second parent, named by display name
        con.execute(
            "INSERT INTO proxies (username, patient_id, relationship, granted_at) "
            "VALUES ('mum2', 'c-twelve', 'parent', '2019-01-01T00:00:00.000000+00:00')"
        )
    reached(25)  # the rule reached it 25 days ago: 5 days' notice left
    due = (TODAY + timedelta(days=5)).isoformat()
    for path, _, params in routes(world, "c-twelve"):
        assert world.api(path, **params).status_code == 200, path
    page = world.page("/my-record", patient="c-twelve")
    assert page.status_code == 200
    notice = page.text.split('id="access-notice"')[1].split("</div>")[0]
    assert f"comes up for review on {due}" in notice
    assert "the review due from the person&#39;s 11th birthday, after notice" in notice
    # the child is told on their own page, each proxy by their display name
    world.client.cookies.clear()
    signed = world.client.post(
        "/login", data={"username": "twelve", "password": PASSWORD}, follow_redirects=False
    )
    world.client.cookies.set(SESSION_COOKIE, signed.cookies[SESSION_COOKIE])
    own = world.client.get("/my-record", headers={"accept": "text/html"}).text
    notice = own.split('id="access-notice"')[1].split("</div>")[0]
    assert "mum&#39;s access to your record as your parent comes up for review on " + due in notice
    assert "Second Parent&#39;s access to your record as your parent comes up" in notice

    reached(30)  # the notice period has run: suspended from today
    says = f"proxy access to Patient/c-twelve is under review since {TODAY.isoformat()}"
    label = "withheld: parent's proxy access suspended for review at the person's 11th birthday"
    refused_everywhere(world, "c-twelve", says, label)
    renew(world, "c-twelve", "gp")
    assert world.api("/Patient/c-twelve").status_code == 200
    clean_logs(world, caplog)


def test_a_renewal_counts_by_its_review_day_when_the_notice_period_changes(
    world: World,
) -> None:
    """A renewal recorded 20 days before the review under a 30-day notice period still
    counts once the period is shortened to 10: it is kept with the review day it was for."""
    born = CHILDREN["c-eleven"][1]
    assert born is not None
    from joinedup.cli.web import _read_patient

    end, registered = _read_patient(world.records, "c-eleven", "parent")
    early = datetime.now(UTC) - timedelta(days=20)
    record = world.access.renew_proxy(
        "mum", "c-eleven", "gp", registered=registered, age_check=lambda: end, at=early
    )
    assert record.review_date == TODAY.isoformat()  # 11 today
    assert world.api("/Patient/c-eleven").status_code == 200
    policy = world.client.app.state.records_policy  # type: ignore[attr-defined]
    policy.proxy_notice_days = 10
    assert world.api("/Patient/c-eleven").status_code == 200
    assert world.page("/my-record", patient="c-eleven").status_code == 200


def test_a_policy_built_without_a_review_age_reviews_at_11_as_the_server_does(
    world: World,
) -> None:
    """`Policy(store)` alone (the records API's own fallback) reviews at the server's
    default, 11: a parent of a 12-year-old not renewed is refused, as by the server."""
    from joinedup.records.policy import Policy, Requester
    from joinedup.records.settings import RecordsSettings

    store = world.client.app.state.records  # type: ignore[attr-defined]
    policy = Policy(store)
    assert policy.proxy_review_age == RecordsSettings().records_proxy_review_age == 11
    mum = Requester("mum", frozenset(), frozenset(), "mum", frozenset({"c-twelve", "c-young"}))
    decision = policy.decide(mum, "c-twelve")
    assert not decision.allowed
    assert decision.label == (
        "withheld: parent's proxy access suspended for review at the person's 11th birthday"
    )
    assert policy.decide(mum, "c-young").allowed
