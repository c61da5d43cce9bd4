"""The dashboard's JSON API against the real application under Uvicorn: who may see what,
disclosure control, worklists and their audit, sign-in limits and production settings."""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from cli_run import PhmWarehouse, flat, joinedup
from fastapi.testclient import TestClient

from joinedup.errors import ConfigurationError
from joinedup.web.access import AccessStore, Role, create_demo_users
from joinedup.web.app import create_app
from joinedup.web.settings import WebSettings, load_settings
from joinedup.web.worklists import NO_WORKLISTS

pytestmark = pytest.mark.slow

AREAS = {
    "/api/v1/overview": "overview",
    "/api/v1/places": "places",
    "/api/v1/pcns": "places",
    "/api/v1/finance": "finance",
    "/api/v1/data-quality": "data_quality",
    "/api/v1/data-quality/quarantine": "data_quality",
    "/api/v1/about": "about",
    "/api/v1/audit": "audit",
}
MAY = {
    "analyst": {"overview", "places", "finance", "data_quality", "about"},
    "clinician": {"overview", "places", "about"},
    "finance": {"overview", "places", "finance", "about"},
    "board": {"overview", "places", "finance", "about"},
    "admin": {"overview", "places", "finance", "data_quality", "about", "audit"},
}


def sign_in(server: str, username: str, password: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=server, timeout=60)
    answer = client.post(
        "/api/v1/token",
        json={"username": username, "password": password or f"{username}-demo-2026"},
    )
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


@pytest.fixture(scope="module")
def api(live_server: str) -> Iterator[dict[str, httpx.Client]]:
    clients = {u: sign_in(live_server, u) for u in (*MAY, "clinician2")}
    yield clients
    for c in clients.values():
        c.close()


def own_pcn(client: httpx.Client) -> str:
    pcn: str = client.get("/api/v1/me").json()["pcn_code"]
    return pcn


def test_health_and_readiness(live_server: str) -> None:
    assert httpx.get(f"{live_server}/health").json() == {"status": "ok", "detail": []}
    assert httpx.get(f"{live_server}/ready").json()["status"] == "ready"


def test_nothing_without_signing_in(live_server: str) -> None:
    for path in AREAS:
        assert httpx.get(f"{live_server}{path}").status_code == 401
    page = httpx.get(f"{live_server}/finance", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/finance"
    wrong = httpx.get(f"{live_server}/api/v1/me", headers={"Authorization": "Bearer forged"})
    assert wrong.status_code == 401


def test_every_role_sees_only_its_areas(api: dict[str, httpx.Client]) -> None:
    for user, areas in MAY.items():
        for path, area in AREAS.items():
            status = api[user].get(path).status_code
            assert status == (200 if area in areas else 403), (user, path, status)


def _counts(rows: list[dict[str, Any]], key: str) -> list[int | None]:
    return [r[key] for r in rows]


def test_about_shows_the_latest_build_and_the_history_it_covers(
    api: dict[str, httpx.Client], phm_warehouse: PhmWarehouse
) -> None:
    build = api["board"].get("/api/v1/about").json()["build"]
    # The served warehouse is a copy of this one (the server holds the copy open).
    con = duckdb.connect(str(phm_warehouse.path), read_only=True)
    start, end, seed, built_at, footprint = con.execute(
        "SELECT history_start_date, history_end_date, seed, built_at, footprint FROM build "
        "ORDER BY built_at DESC LIMIT 1"
    ).fetchone()
    con.close()
    assert (build["start_date"], build["end_date"]) == (start.isoformat(), end.isoformat())
    assert (build["seed"], build["built_at"], build["source"]) == (seed, built_at, "synthetic")
    assert seed == 11 and build["footprint"] == footprint


def test_aggregates_are_disclosure_controlled_and_leave_out_opt_outs(
    api: dict[str, httpx.Client], web_warehouse: PhmWarehouse
) -> None:
    places = api["board"].get("/api/v1/places").json()
    pcns = api["board"].get("/api/v1/pcns").json()
    about = api["board"].get("/api/v1/about").json()
    assert about["disclosure_rule"] == "counts 1–7 suppressed, others rounded to the nearest 5"
    for n in _counts(places, "people") + _counts(pcns, "people"):
        assert n is None or (n >= 8 and n % 5 == 0)
    con = duckdb.connect(str(web_warehouse.path), read_only=True)
    opted_in, everyone = con.execute(
        "SELECT count(*) FILTER (WHERE NOT national_data_opt_out), count(*) FROM phm_person"
    ).fetchone()
    con.close()
    shown = sum(p["people"] or 0 for p in places)
    assert abs(shown - opted_in) <= 3 * len(places)  # rounding to 5 moves each by at most 2
    assert shown < everyone  # the opt-outs are not there
    overview = api["analyst"].get("/api/v1/overview").json()
    assert [p["people_text"] for p in overview["places"]] == [p["people_text"] for p in places]
    segment_people = [r["people"] for r in overview["segments"]["rows"]]
    assert all(s == "*" or int(s.replace(",", "")) % 5 == 0 for s in segment_people)
    assert "svg" not in overview["pyramid"]  # charts are the pages' business, not the API's


def test_a_place_profile_has_its_pcns_and_compares_with_the_system(
    api: dict[str, httpx.Client],
) -> None:
    places = api["analyst"].get("/api/v1/places").json()
    code = places[0]["place_code"]
    profile = api["analyst"].get(f"/api/v1/places/{code}").json()
    assert profile["place_code"] == code
    assert {p["place_code"] for p in profile["pcns"]} == {code}
    assert len(profile["pcns"]) == places[0]["pcns"]
    assert any(m["comparison"] for m in profile["measures"])
    assert api["analyst"].get("/api/v1/places/E00000000").status_code == 404


def test_a_clinician_sees_their_own_pcns_worklist_with_reasons(
    api: dict[str, httpx.Client],
) -> None:
    pcn = own_pcn(api["clinician"])
    page = api["clinician"].get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt"}).json()
    assert page["total"] > 0
    assert {r["pcn_code"] for r in page["rows"]} == {pcn}
    assert all(r["nhs_number"] and r["reasons"] for r in page["rows"])
    assert sum(c["people"] for c in page["cohorts"]) == page["total"]
    second = (
        api["clinician"]
        .get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt", "limit": 10, "offset": 10})
        .json()
    )
    first = (
        api["clinician"]
        .get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt", "limit": 10})
        .json()
    )
    assert first["rows"] == page["rows"][:10] and second["rows"] == page["rows"][10:20]
    cohort = next(c for c in page["cohorts"] if c["people"])
    only = (
        api["clinician"]
        .get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt", "cohort": cohort["id"]})
        .json()
    )
    assert only["total"] == cohort["people"]
    assert {r["worklist_id"] for r in only["rows"]} == {cohort["id"]}


def test_worklists_are_refused_to_everyone_else(api: dict[str, httpx.Client]) -> None:
    pcn = own_pcn(api["clinician"])
    other = own_pcn(api["clinician2"])
    assert pcn != other
    refused = api["clinician"].get(f"/api/v1/worklists/{other}", params={"reason": "mdt"})
    assert refused.status_code == 403
    assert "PCN" in refused.json()["detail"]
    for user in MAY:
        if user != "clinician":
            answer = api[user].get(f"/api/v1/worklists/{pcn}", params={"reason": "mdt"})
            assert answer.status_code == 403, user
    no_reason = api["clinician"].get(f"/api/v1/worklists/{pcn}")
    assert no_reason.status_code == 422
    assert "reason" in no_reason.json()["detail"]
    # Refusals are audited too: an admin sees who tried to open what.
    log = api["admin"].get("/api/v1/audit", params={"limit": 20}).json()["entries"]
    denied = {(e["username"], e["resource"]) for e in log if e["action"] == "denied"}
    assert ("clinician", f"worklist/{other}") in denied
    assert ("analyst", f"worklist/{pcn}") in denied


def test_worklists_are_offered_only_to_a_pcns_or_practices_clinicians(
    web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    # A trust's clinician (an organisation, no PCN or practice) has no worklist: no menu link,
    # and the URLs refuse them saying why, audited like every refusal of a worklist.
    settings = WebSettings(warehouse=web_warehouse.path, access_db=tmp_path / "access.sqlite")
    store = AccessStore(settings.access_path)
    create_demo_users(store, ["U99001", "U99002"])
    store.add_user("consultant", "consultant-pass-2026", Role.CLINICIAN, organisation_code="RXX")
    store.close()

    def menu(client: TestClient) -> str:
        page = client.get("/")
        assert page.status_code == 200, page.text
        return page.text.split('aria-label="Menu"')[1].split("</nav>")[0]

    with TestClient(create_app(settings, warm=False)) as client:
        for username, password, offered in (
            ("clinician", "clinician-demo-2026", True), ("analyst", "analyst-demo-2026", False),
            ("consultant", "consultant-pass-2026", False),
        ):  # fmt: skip
            client.cookies.clear()
            client.post("/login", data={"username": username, "password": password})
            items = menu(client)
            assert 'href="/places"' in items, username  # signed in, the menu is there
            assert ('href="/worklists"' in items) is offered, username
        html = {"accept": "text/html"}
        for path, headers in (
            ("/worklists", html), ("/worklists/U99001?reason=mdt", html),
            ("/api/v1/worklists/U99001?reason=mdt", {}),
        ):  # fmt: skip
            answer = client.get(path, headers=headers)
            assert answer.status_code == 403, path
            assert NO_WORKLISTS in answer.text, path
    store = AccessStore(settings.access_path)
    _, entries = store.audit_entries(limit=50)
    store.close()
    denied = [e for e in entries if (e["username"], e["action"]) == ("consultant", "denied")]
    assert [e["detail"] for e in denied] == [NO_WORKLISTS] * 3


def test_the_csv_download_is_the_whole_filtered_list(api: dict[str, httpx.Client]) -> None:
    pcn = own_pcn(api["clinician"])
    params = {"reason": "case-finding", "risk_tier": "very_high"}
    page = api["clinician"].get(f"/api/v1/worklists/{pcn}", params=params).json()
    answer = api["clinician"].get(f"/api/v1/worklists/{pcn}/csv", params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == page["total"]
    assert {r["risk_tier"] for r in rows} <= {"very_high"}
    assert "nhs_number" in rows[0] if rows else True


def test_every_identifiable_view_and_download_is_audited(api: dict[str, httpx.Client]) -> None:
    pcn = own_pcn(api["clinician"])
    before = api["admin"].get("/api/v1/audit").json()["total"]
    api["clinician"].get(f"/api/v1/worklists/{pcn}", params={"reason": "follow-up", "limit": 7})
    api["clinician"].get(f"/api/v1/worklists/{pcn}/csv", params={"reason": "care-planning"})
    log = api["admin"].get("/api/v1/audit", params={"limit": 2}).json()
    assert log["total"] == before + 2
    assert log["chain_intact"] is True
    download, view = log["entries"]
    assert (view["username"], view["action"], view["reason"]) == ("clinician", "view", "follow-up")
    assert view["resource"] == f"worklist/{pcn}" and "7 rows" in view["detail"]
    assert (download["action"], download["reason"]) == ("download", "care-planning")
    assert download["at"] > view["at"]
    assert api["analyst"].get("/api/v1/audit").status_code == 403


def test_the_audit_log_cannot_be_changed(web_settings: WebSettings, live_server: str) -> None:
    # An entry of its own first (a request without a token is audited): on an empty log the
    # UPDATE and DELETE touch no row, so no trigger would fire and nothing would be tested.
    assert httpx.get(f"{live_server}/api/v1/me", timeout=60).status_code == 401
    con = sqlite3.connect(web_settings.access_path)
    try:
        (before,) = con.execute("SELECT count(*) FROM audit").fetchone()
        assert before > 0
        for statement in ("UPDATE audit SET reason = 'x'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                con.execute(statement)
        con.rollback()
        assert con.execute("SELECT count(*) FROM audit WHERE reason = 'x'").fetchone() == (0,)
    finally:
        con.close()


def test_pages_and_api_refuse_a_signed_out_token(live_server: str) -> None:
    client = sign_in(live_server, "board")
    assert client.get("/api/v1/me").status_code == 200
    assert client.delete("/api/v1/token").status_code == 204
    assert client.get("/api/v1/me").status_code == 401


@pytest.fixture
def own_app(web_warehouse: PhmWarehouse, tmp_path: Path) -> Iterator[TestClient]:
    """The application with an access database of its own, so lock-outs touch nothing else."""
    settings = WebSettings(
        warehouse=web_warehouse.path, access_db=tmp_path / "access.sqlite", login_max_failures=3
    )
    store = AccessStore(settings.access_path)
    create_demo_users(store, ["U99001", "U99002"])
    store.close()
    with TestClient(create_app(settings, warm=False)) as client:
        yield client


def test_signing_in_never_sends_the_browser_to_another_site(own_app: TestClient) -> None:
    for target, landing in (
        ("/finance", "/finance"), ("//evil.example", "/"), ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
    ):  # fmt: skip
        own_app.cookies.clear()
        answer = own_app.post(
            "/login",
            data={"username": "board", "password": "board-demo-2026", "next": target},
            follow_redirects=False,
        )
        assert (answer.status_code, answer.headers["location"]) == (303, landing), target


def test_failed_sign_ins_are_rate_limited(own_app: TestClient) -> None:
    for _ in range(3):
        wrong = own_app.post("/api/v1/token", json={"username": "admin", "password": "guess"})
        assert wrong.status_code == 401
    locked = own_app.post(
        "/api/v1/token", json={"username": "admin", "password": "admin-demo-2026"}
    )
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    form = own_app.post("/login", data={"username": "admin", "password": "admin-demo-2026"})
    assert form.status_code == 429 and "Too many failed sign-ins" in form.text
    other = own_app.post("/api/v1/token", json={"username": "board", "password": "board-demo-2026"})
    assert other.status_code == 200  # one name locked out, not everyone


def test_logs_never_carry_patient_identifiers(
    own_app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = own_app.post(
        "/api/v1/token", json={"username": "clinician", "password": "clinician-demo-2026"}
    ).json()["access_token"]
    page = own_app.get(
        "/api/v1/worklists/U99001",
        params={"reason": "mdt"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    numbers = [r["nhs_number"] for r in page["rows"]]
    assert numbers
    assert not any(n in caplog.text for n in numbers)


def test_production_mode_needs_a_secret_and_refuses_demo_accounts(
    web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="JOINEDUP_SECRET_KEY"):
        load_settings(mode="production", warehouse=web_warehouse.path)
    with pytest.raises(ConfigurationError, match="JOINEDUP_SECRET_KEY"):
        load_settings(mode="production", secret_key="short")
    settings = load_settings(
        mode="production", secret_key="k" * 40, warehouse=web_warehouse.path,
        access_db=tmp_path / "access.sqlite",
    )  # fmt: skip
    assert settings.secure_cookies
    store = AccessStore(settings.access_path)
    create_demo_users(store, ["U99001", "U99002"])
    store.add_user("real.analyst", "a long enough password", "analyst")
    store.close()
    with TestClient(create_app(settings, warm=False)) as client:
        demo = client.post(
            "/api/v1/token", json={"username": "analyst", "password": "analyst-demo-2026"}
        )
        assert demo.status_code == 401
        real = client.post(
            "/api/v1/token",
            json={"username": "real.analyst", "password": "a long enough password"},
        )
        assert real.status_code == 200


def test_users_are_added_from_the_command_line(web_warehouse: PhmWarehouse, tmp_path: Path) -> None:
    env = {"JOINEDUP_ACCESS_DB": str(tmp_path / "access.sqlite")}
    warehouse = str(web_warehouse.path)
    short = joinedup(
        "users", "add", "nurse", "--role", "clinician", "--pcn", "U99001", "-w", warehouse,
        cwd=tmp_path, env={**env, "JOINEDUP_NEW_PASSWORD": "short"},
    )  # fmt: skip
    assert short.returncode == 2 and "at least 12 characters" in flat(short.stderr)
    no_pcn = joinedup(
        "users", "add", "nurse", "--role", "clinician", "-w", warehouse,
        cwd=tmp_path, env={**env, "JOINEDUP_NEW_PASSWORD": "a long enough password"},
    )  # fmt: skip
    assert no_pcn.returncode == 2 and "PCN or practice" in flat(no_pcn.stderr)
    con = duckdb.connect(warehouse, read_only=True)
    practice, pcn = con.execute(
        "SELECT practice_code, pcn_code FROM practice ORDER BY 1 LIMIT 1"
    ).fetchone()
    con.close()
    added = joinedup(
        "users", "add", "gp", "--role", "clinician", "--practice", practice, "-w", warehouse,
        cwd=tmp_path, env={**env, "JOINEDUP_NEW_PASSWORD": "a long enough password"},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"practice {practice} (PCN {pcn})" in flat(added.stdout)
    listed = joinedup("users", "list", "-w", warehouse, cwd=tmp_path, env=env)
    assert "gp" in listed.stdout and "password" not in listed.stdout
    settings = WebSettings(warehouse=web_warehouse.path, access_db=tmp_path / "access.sqlite")
    with TestClient(create_app(settings, warm=False)) as client:
        token = client.post(
            "/api/v1/token", json={"username": "gp", "password": "a long enough password"}
        ).json()["access_token"]
        page = client.get(
            f"/api/v1/worklists/{pcn}",
            params={"reason": "mdt", "practice": "SOMEWHERE-ELSE", "limit": 500},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    # A practice's clinician sees that practice's patients only, whatever filter is asked for.
    assert page["rows"] and {r["practice_code"] for r in page["rows"]} == {practice}


def test_serve_refuses_a_warehouse_without_population_health(tmp_path: Path) -> None:
    built = joinedup("synth", "--people", "2000", "-w", "tiny.duckdb", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    served = joinedup("serve", "-w", "tiny.duckdb", cwd=tmp_path, timeout=60)
    assert served.returncode == 2
    assert "lacks phm_run" in flat(served.stderr) and "joinedup phm run" in flat(served.stderr)
    missing = joinedup("serve", "-w", "nowhere.duckdb", cwd=tmp_path, timeout=60)
    assert missing.returncode == 2 and "does not exist" in flat(missing.stderr)


def test_a_users_organisation_is_found_in_the_warehouse(
    web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    env = {
        "JOINEDUP_ACCESS_DB": str(tmp_path / "access.sqlite"),
        "JOINEDUP_NEW_PASSWORD": "a long enough password",
    }
    warehouse = str(web_warehouse.path)
    con = duckdb.connect(warehouse, read_only=True)
    (trust,) = con.execute(
        "SELECT organisation_code FROM organisation WHERE organisation_type = 'acute_trust' "
        "ORDER BY 1 LIMIT 1"
    ).fetchone()
    (council,) = con.execute(
        "SELECT organisation_code FROM organisation WHERE organisation_type = 'local_authority' "
        "ORDER BY 1 LIMIT 1"
    ).fetchone()
    practice, pcn = con.execute(
        "SELECT practice_code, pcn_code FROM practice ORDER BY 1 LIMIT 1"
    ).fetchone()
    con.close()

    def add(name: str, *options: str) -> Any:
        return joinedup(
            "users", "add", name, "--role", "clinician", *options, "-w", warehouse,
            cwd=tmp_path, env=env,
        )  # fmt: skip

    badly_spelt = add("a", "--organisation", "rxx!")
    assert badly_spelt.returncode == 2
    assert "--organisation: 'rxx!' is not an ODS code" in flat(badly_spelt.stderr)
    unknown = add("b", "--organisation", "QQQ99")
    assert unknown.returncode == 2
    assert "--organisation: QQQ99 is not a practice, PCN or organisation in the warehouse" in (
        flat(unknown.stderr)
    )
    at_trust = add("consultant", "--organisation", trust)
    assert at_trust.returncode == 0, at_trust.stderr
    assert f"organisation {trust}" in flat(at_trust.stdout)
    at_practice = add("gp", "--organisation", practice)  # a practice: registration counts
    assert at_practice.returncode == 0, at_practice.stderr
    assert f"practice {practice} (PCN {pcn})" in flat(at_practice.stdout)

    def care_worker(name: str, *options: str) -> Any:
        return joinedup(
            "users", "add", name, "--role", "care-worker", *options, "-w", warehouse,
            cwd=tmp_path, env=env,
        )  # fmt: skip

    alone = care_worker("c")
    assert alone.returncode == 2
    assert "organisation: a care worker belongs to an organisation" in flat(alone.stderr)
    with_practice = care_worker("d", "--practice", practice, "--organisation", council)
    assert with_practice.returncode == 2 and "only clinicians" in flat(with_practice.stderr)
    social = care_worker("social", "--organisation", council)
    assert social.returncode == 0, social.stderr
    assert f"Care worker, organisation {council}" in flat(social.stdout)
    # a care worker of a practice keeps it as their organisation: no registered patients
    at_gp = care_worker("link-worker", "--organisation", practice)
    assert at_gp.returncode == 0 and f"organisation {practice}" in flat(at_gp.stdout)
