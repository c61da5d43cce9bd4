"""The person index's review queue end to end, on SQLite and PostgreSQL: `joinedup link index
--records` fills the store, an administrator sees the uncertain pairs with both records and
decides them in the dashboard (a form without JavaScript, and the JSON API), every view and
decision is audited by the store's own ids, without names, NHS numbers or local record ids, a
clinician is refused, and the next
`link index --records` run applies the decisions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pyarrow as pa
import pytest
from cli_run import PhmWarehouse, flat, joinedup
from fastapi.testclient import TestClient
from test_cli_link_index import _sources

from joinedup.records import PersonIndexStore
from joinedup.web.access import AccessStore
from joinedup.web.app import create_app
from joinedup.web.person_index import mount_person_index
from joinedup.web.settings import WebSettings
from joinedup.web.site import SESSION_COOKIE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> PhmWarehouse:
    folder = tmp_path_factory.mktemp("person_index")
    path = folder / "ics.duckdb"
    run = None
    for step in (
        ("synth", "--people", "1500", "--seed", "5", "--workers", "1", "-w", str(path)),
        ("phm", "run", "-w", str(path)),
        ("users", "demo", "-w", str(path)),
    ):
        run = joinedup(*step, cwd=folder)
        assert run.returncode == 0, f"joinedup {' '.join(step)}: {run.stdout}{run.stderr}"
    assert run is not None
    return PhmWarehouse(path, folder, run)


@pytest.fixture
def site(world: PhmWarehouse, records_url: str) -> Iterator[tuple[TestClient, PersonIndexStore]]:
    settings = WebSettings(warehouse=world.path)
    app = create_app(settings, warm=False)
    with PersonIndexStore(records_url) as store:
        mount_person_index(app, store)
        with TestClient(app) as client:
            yield client, store


def _people(table: pa.Table) -> dict[tuple[str, str], str]:
    return {(r["source"], r["record_id"]): r["person_id"] for r in table.to_pylist()}


def _token(client: TestClient, user: str) -> str:
    answer = client.post("/api/v1/token", json={"username": user, "password": f"{user}-demo-2026"})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _audit(client: TestClient, since: int = 0) -> list[dict[str, str]]:
    """The audit entries after the first `since` (the module's tests share one log)."""
    store: AccessStore = client.app.state.access  # type: ignore[attr-defined]
    total, newest_first = store.audit_entries(limit=100_000)
    return newest_first[: total - since]


def test_a_reviewer_decides_in_the_dashboard_and_the_next_run_applies_it(
    site: tuple[TestClient, PersonIndexStore], records_url: str, tmp_path: Path
) -> None:
    client, store = site
    start = len(_audit(client))
    people = _sources(tmp_path)
    run = joinedup(
        "link", "index", "gp.csv", "acute.csv", "--records", records_url, "-o", "mpi",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "212 records from 2 sources are 152 people" in flat(run.stdout)
    assert "wrote mpi, the records store" in flat(run.stdout)
    assert "password" not in flat(run.stdout)
    before = store.read_previous()
    assert before is not None
    first = _people(before.people)
    assert len(set(first.values())) == 152
    assert (tmp_path / "mpi" / "person_index.csv").is_file()  # the folder is written too

    # A clinician is refused, on the page and the API, and the refusal is audited.
    clinician = _token(client, "clinician")
    client.cookies.set(SESSION_COOKIE, clinician)
    assert client.get("/person-index/review").status_code == 403
    client.cookies.delete(SESSION_COOKIE)
    refused = client.get(
        "/api/v1/person-index/review", headers={"Authorization": f"Bearer {clinician}"}
    )
    assert refused.status_code == 403
    analyst = {"Authorization": f"Bearer {_token(client, 'analyst')}"}
    assert client.get("/api/v1/person-index/review", headers=analyst).status_code == 403
    denied = [e for e in _audit(client, start) if e["action"] == "denied"]
    assert [e["username"] for e in denied] == ["analyst", "clinician", "clinician"]  # newest first

    # The administrator sees both uncertain pairs, the evidence and both records.
    admin = _token(client, "admin")
    client.cookies.set(SESSION_COOKIE, admin)
    page = client.get("/person-index/review")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert 'href="/person-index/review" aria-current="page">Person index' in page.text
    text = unescape(page.text)
    assert "2 pairs to review" in text
    p100, p101 = people[100], people[101]
    assert p100[2].upper() in text and p101[1].upper() in text  # family and given names
    assert p100[6] in text  # p100's NHS number, beside u1 which has none
    assert "Exact match on family_name" in text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf is not None

    # Accept u1 ~ p100 with the form (no JavaScript): saved, audited, back to the queue.
    answer = client.post(
        "/person-index/review/decide",
        data={"csrf": csrf[1], "left_source": "acute", "left_record_id": "u1",
              "right_source": "gp", "right_record_id": "p100", "decision": "accept",
              "reason": "same discharge letter", "page": "1"},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/person-index/review?page=1"
    no_reason = client.post(
        "/person-index/review/decide",
        data={"csrf": csrf[1], "left_source": "acute", "left_record_id": "u1",
              "right_source": "gp", "right_record_id": "p100", "decision": "accept",
              "reason": " "},
    )  # fmt: skip
    assert no_reason.status_code == 422
    forged = client.post(
        "/person-index/review/decide",
        data={"csrf": "0" * 64, "left_source": "acute", "left_record_id": "u1",
              "right_source": "gp", "right_record_id": "p100", "decision": "reject",
              "reason": "forged"},
    )  # fmt: skip
    assert forged.status_code == 403
    assert "Accepted</strong> by admin" in client.get("/person-index/review").text
    client.cookies.delete(SESSION_COOKIE)

    # A data engineer rejects u2 ~ p101 through the JSON API; a pair not in the queue is 404.
    bearer = {"Authorization": f"Bearer {_token(client, 'data-engineer')}"}
    queue = client.get("/api/v1/person-index/review", headers=bearer).json()
    assert queue["total"] == 2
    (u2,) = [p for p in queue["pairs"] if "u2" in p["pair"]]
    assert u2["left"]["family_name"] == u2["right"]["family_name"] == p101[2].upper()
    assert u2["decision"] is None
    decided = client.post(
        "/api/v1/person-index/decisions", headers=bearer,
        json={"left_source": "gp", "left_record_id": "p101", "right_source": "acute",
              "right_record_id": "u2", "decision": "reject", "reason": "different mothers"},
    )  # fmt: skip
    assert decided.status_code == 201, decided.text
    assert decided.json()["pair"] == "acute:u2~gp:p101"
    assert decided.json()["decision_id"] == 2  # the store's own number for it
    missing = client.post(
        "/api/v1/person-index/decisions", headers=bearer,
        json={"left_source": "gp", "left_record_id": "p1", "right_source": "gp",
              "right_record_id": "p2", "decision": "accept", "reason": "no"},
    )  # fmt: skip
    assert missing.status_code == 404
    assert [(d.decision, d.decided_by, d.reason) for d in store.decisions()] == [
        ("accept", "admin", "same discharge letter"),
        ("reject", "data-engineer", "different mothers"),
    ]

    # Audited: who, the decision by its number in the store's log, the pair by its records'
    # person_ids, the reason; never a name, an NHS number or a source's local record id.
    entries = _audit(client, start)
    decisions = sorted(
        (e["resource"], e["detail"], e["reason"], e["username"])
        for e in entries
        if e["action"] == "decide"
    )

    def people_of(*keys: tuple[str, str]) -> str:
        return "~".join(sorted(first[k] for k in keys))

    u1_p100 = people_of(("acute", "u1"), ("gp", "p100"))
    u2_p101 = people_of(("acute", "u2"), ("gp", "p101"))
    assert decisions == [
        ("person-index/decision/1", f"accept: {u1_p100}", "same discharge letter", "admin"),
        ("person-index/decision/2", f"reject: {u2_p101}", "different mothers", "data-engineer"),
    ]
    views = [e for e in entries if e["action"] == "view" and e["resource"] == "person-index/review"]
    assert len(views) == 3 and u1_p100 in views[0]["detail"]
    logged = " ".join(" ".join(str(v) for v in e.values()) for e in entries)
    for person in (p100, p101):
        assert person[1].upper() not in logged.upper() and person[2].upper() not in logged.upper()
        assert person[6] not in logged
    for local in ("u1", "u2", "p100", "p101"):  # the PAS's and the practice's record ids
        assert not re.search(rf"\b{local}\b", logged), local

    # The next run, from the store alone, applies both decisions and keeps every other id.
    again = joinedup("link", "index", "gp.csv", "acute.csv", "--records", records_url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 pairs to review; 2 decisions applied" in flat(again.stdout)
    after = store.read_previous()
    assert after is not None
    people = _people(after.people)
    assert people[("acute", "u1")] == people[("gp", "p100")]
    assert people[("acute", "u2")] != people[("gp", "p101")]
    merged = {("acute", "u1"), ("gp", "p100")}
    assert all(people[k] == v for k, v in first.items() if k not in merged)
    assert client.get("/api/v1/person-index/review", headers=bearer).json()["total"] == 0

    # The store's index is the previous one: --previous beside it is refused.
    both = joinedup(
        "link", "index", "gp.csv", "acute.csv", "--records", records_url, "--previous", "mpi",
        cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode != 0
    assert "leave out --previous" in flat(both.stderr)


def test_a_dashboard_without_a_records_store_offers_no_review_queue(world: PhmWarehouse) -> None:
    with TestClient(create_app(WebSettings(warehouse=world.path), warm=False)) as client:
        client.cookies.set(SESSION_COOKIE, _token(client, "admin"))
        about = client.get("/about")
        assert about.status_code == 200 and "Audit log" in about.text
        assert "/person-index/review" not in about.text
        assert client.get("/person-index/review").status_code == 404
