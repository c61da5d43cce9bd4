"""Who may call what, probed against the real server: every API route in the OpenAPI document
× every role × the ways of not being signed in (no session, an expired token, a forged token,
a tampered cookie); a clinician's attempts on another PCN's worklist by every spelling of its
path and query; and a corpus of injection and malformed parameters against every route that
takes one. Nothing may answer 500 or show a stack trace, and nothing may give data the
caller is not allowed."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from joinedup.indicators import shipped_definitions
from joinedup.web.access import PERMISSIONS, AccessStore, Role
from joinedup.web.app import SESSION_COOKIE
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.security

ROLES = tuple(r.value for r in Role)
#: Which area of PERMISSIONS guards each API route (by path prefix); None: any signed-in user.
AREA_OF: dict[str, str | None] = {
    "/api/v1/overview": "overview",
    "/api/v1/places": "places",
    "/api/v1/pcns": "places",
    "/api/v1/finance": "finance",
    "/api/v1/data-quality": "data_quality",
    "/api/v1/about": "about",
    "/api/v1/audit": "audit",
    "/api/v1/accounts": "audit",
    "/api/v1/worklists": "worklists",
    "/api/v1/indicators": "overview",
    "/api/v1/headlines": "overview",
    "/api/v1/profiles": "places",
    "/api/v1/me": None,
}
PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("POST", "/api/v1/token")}
SIGN_OUT = ("DELETE", "/api/v1/token")  # probed without a session only: it would sign out
#: A valid body for each route that needs one, so an allowed role gets 200.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/finance/what-if"): {"change_percent": -10},
}
#: Query parameters each route needs, so an allowed role gets 200.
QUERIES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/v1/finance/what-if"): {"change": "-10"},
}


def query_of(method: str, path: str) -> dict[str, Any]:
    base = {"reason": "mdt"} if "worklists" in path else {}
    return {**base, **QUERIES.get((method, path), {})}


LEAKS = ("Traceback", 'File "', "sqlite3.", "duckdb.", "Exception")


def clean(answer: httpx.Response, what: str) -> None:
    """No server error and no stack trace or internals in the body."""
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
    assert not any(s in answer.text for s in LEAKS), f"{what}: {answer.text[:300]}"


@dataclass
class World:
    server: str
    clients: dict[str, httpx.Client]
    own_pcn: str
    other_pcn: str
    place_code: str
    other_practice: str
    other_numbers: set[str]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def token(server: str, user: str) -> str:
    answer = httpx.post(
        f"{server}/api/v1/token", json={"username": user, "password": f"{user}-demo-2026"}
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


@pytest.fixture(scope="module")
def world(security_server: str, security_settings: WebSettings) -> Iterator[World]:
    # A citizen, as `users demo` makes one only beside a records store (this server has none):
    # every route but /api/v1/me is closed to them, as PERMISSIONS says.
    users = AccessStore(
        security_settings.access_path, audit_key_path=security_settings.audit_key_path
    )
    users.add_user(
        "citizen", "citizen-demo-2026", Role.CITIZEN, patient_id="demo-citizen", demo=True,
        replace=True,
    )  # fmt: skip
    users.close()
    clients = {}
    for user in (*ROLES, "clinician2"):
        client = httpx.Client(base_url=security_server, timeout=60)
        client.headers["Authorization"] = f"Bearer {token(security_server, user)}"
        clients[user] = client
    # An expired token: a real session of the admin's whose time is up.
    expired = secrets.token_urlsafe(32)
    past = datetime.now(UTC) - timedelta(hours=1)
    with sqlite3.connect(security_settings.access_path) as con:
        con.execute(
            "INSERT INTO sessions VALUES (?, 'admin', 'token', ?, ?)",
            (hashlib.sha256(expired.encode()).hexdigest(), (past - timedelta(hours=8)).isoformat(),
             past.isoformat()),
        )  # fmt: skip
    # A tampered cookie: a real session cookie with one character changed.
    browser = httpx.Client(base_url=security_server, timeout=60)
    browser.post("/login", data={"username": "board", "password": "board-demo-2026"})
    cookie = browser.cookies[SESSION_COOKIE]
    browser.close()
    tampered = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    identities = {
        "none": {},
        "expired": {"Authorization": f"Bearer {expired}"},
        "forged": {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        "tampered-cookie": {"Cookie": f"{SESSION_COOKIE}={tampered}"},
    }
    for name, headers in identities.items():
        clients[f"anon:{name}"] = httpx.Client(
            base_url=security_server, timeout=60, headers=headers
        )
    own = clients["clinician"].get("/api/v1/me").json()["pcn_code"]
    other = clients["clinician2"].get("/api/v1/me").json()["pcn_code"]
    assert own != other
    page = (
        clients["clinician2"]
        .get(f"/api/v1/worklists/{other}", params={"reason": "mdt", "limit": 500})
        .json()
    )
    numbers = {r["nhs_number"] for r in page["rows"] if r["nhs_number"]}
    assert numbers, "the other PCN needs a worklist for the probe to mean anything"
    practice = next(r["practice_code"] for r in page["rows"] if r["practice_code"])
    place = clients["analyst"].get("/api/v1/places").json()[0]["place_code"]
    w = World(security_server, clients, own, other, place, practice, numbers)
    yield w
    w.close()


def routes(server: str) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(f"{server}/api/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


#: A table of each `{table}` route (the overview's otherwise).
TABLE_OF = {"/api/v1/data-quality/{table}": "completeness"}


def concrete(path: str, w: World) -> str:
    indicator = next(iter(shipped_definitions())).id
    return (
        path.replace("{pcn_code}", w.own_pcn)
        .replace("{place_code}", w.place_code)
        .replace("{indicator_id}", indicator)
        .replace("{level}/{area_code}", f"place/{w.place_code}")
        .replace("{table}", TABLE_OF.get(path, "segments"))
    )


def area_of(path: str) -> str | None:
    for prefix, area in AREA_OF.items():
        if path == prefix or path.startswith(prefix + "/"):
            return area
    raise AssertionError(f"{path} is guarded by no area in this test: add it to AREA_OF")


def test_every_route_answers_each_role_and_identity_as_permissions_say(world: World) -> None:
    checked = 0
    for method, path, _ in routes(world.server):
        if (method, path) in PUBLIC:
            continue
        url = concrete(path, world)
        params = query_of(method, path)
        body = BODIES.get((method, path))
        for identity in ("none", "expired", "forged", "tampered-cookie"):
            answer = world.clients[f"anon:{identity}"].request(
                method, url, params=params, json=body
            )
            clean(answer, f"{identity} {method} {url}")
            assert answer.status_code == 401, (identity, method, url, answer.status_code)
            checked += 1
        if (method, path) == SIGN_OUT:
            continue
        area = area_of(path)
        for role in ROLES:
            answer = world.clients[role].request(method, url, params=params, json=body)
            clean(answer, f"{role} {method} {url}")
            may = area is None or Role(role) in PERMISSIONS[area]
            assert answer.status_code == (200 if may else 403), (role, url, answer.status_code)
            checked += 1
    assert checked >= 100  # every route was probed, not skipped


def test_every_download_answers_each_role_as_its_json_does(world: World) -> None:
    """Every route taking `format` gives CSV and Excel to exactly the roles it gives JSON,
    and nothing without a session."""
    media = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument"}
    probed = set()
    for method, path, op in routes(world.server):
        if method != "GET" or "format" not in [p["name"] for p in op.get("parameters", [])]:
            continue
        url = concrete(path, world)
        params = query_of(method, path)
        area = area_of(path)
        for fmt in ("csv", "xlsx"):
            asked = {**params, "format": fmt}
            for identity in ("none", "forged"):
                answer = world.clients[f"anon:{identity}"].get(url, params=asked)
                assert answer.status_code == 401, (identity, url, fmt, answer.status_code)
            for role in ROLES:
                answer = world.clients[role].get(url, params=asked)
                clean(answer, f"{role} {url} {fmt}")
                may = area is None or Role(role) in PERMISSIONS[area]
                assert answer.status_code == (200 if may else 403), (role, url, fmt)
                if may:
                    assert answer.headers["content-type"].startswith(media[fmt]), (url, fmt)
                    assert answer.headers["content-disposition"].startswith("attachment;")
        probed.add(path)
    # places, pcns, indicators and one indicator, the overview's and data quality's tables,
    # quarantined records, a worklist: none may be left out of the probe.
    assert len(probed) >= 8, probed


def cross_pcn_variants(w: World) -> list[tuple[str, dict[str, str]]]:
    q, p = w.other_pcn, w.own_pcn
    mdt = {"reason": "mdt"}
    paths = [
        q, q.lower(), q.upper() + "/", quote(q, safe=""), "".join(f"%{ord(c):02X}" for c in q),
        f"{q}%00", f" {q}", f"{q} ", f"{p}/../{q}", f"{p}%2F..%2F{q}", f"{q}%2F", f"{q}/csv/",
        f"{q.lower()}/csv", f"{p},{q}", f"{p}%20{q}", f"{q};{p}", f"{q}?x=1", f"{q}%3F",
    ]  # fmt: skip
    variants = [(f"/api/v1/worklists/{v}", mdt) for v in paths]
    variants += [(f"/api/v1/worklists/{q}/csv", mdt), (f"//api/v1/worklists/{q}", mdt)]
    variants += [(f"/api/v1/worklists/{q}", {**mdt, "format": f}) for f in ("csv", "xlsx")]
    # Their own PCN, asking for a practice of the other PCN, or the other PCN by query.
    for extra in (
        {"practice": w.other_practice}, {"practice": w.other_practice.lower()},
        {"pcn_code": q}, {"practice": f"{w.other_practice}' OR '1'='1"},
    ):  # fmt: skip
        variants.append((f"/api/v1/worklists/{p}", {**mdt, **extra}))
        variants.append((f"/api/v1/worklists/{p}/csv", {**mdt, **extra}))
    return variants


def test_a_clinician_cannot_reach_another_pcns_worklist_by_any_spelling(world: World) -> None:
    client = world.clients["clinician"]
    for path, params in cross_pcn_variants(world):
        answer = client.get(path, params=params, follow_redirects=True)
        clean(answer, path)
        leaked = [n for n in world.other_numbers if n in answer.text]
        assert not leaked, f"{path} {params}: another PCN's NHS numbers"
        if answer.status_code == 200 and "application/json" in answer.headers["content-type"]:
            rows = answer.json().get("rows", [])
            assert {r["pcn_code"] for r in rows} <= {world.own_pcn}, path
            assert not any(r["practice_code"] == world.other_practice for r in rows), path


CORPUS = [
    "' OR '1'='1", "1; DROP TABLE audit; --", "\" OR \"\"=\"", "1 UNION SELECT * FROM users",
    "../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%00", "\x00", "a\x00b", "A" * 4000,
    "☃💥ＵＮＩＣＯＤＥ", "\u202e\u200b", "<script>alert(1)</script>", "${7*7}{{7*7}}", "-1",
    "99999999999999999999999", "1e400", "NaN", "", " ", "\r\nX-Injected: 1", "%", "\\",
]  # fmt: skip


def test_injection_and_malformed_parameters_break_nothing(world: World) -> None:
    probes = 0
    for method, path, op in routes(world.server):
        if method != "GET":
            continue
        names = [p["name"] for p in op.get("parameters", [])]
        if not names:
            continue
        worklist = "worklists" in path
        user = "clinician" if worklist else "admin"
        client = world.clients[user]
        base = {"reason": "mdt"} if worklist else {}
        for value in CORPUS:
            for name in names:
                if "{" + name + "}" in path:
                    url = concrete(path.replace("{" + name + "}", quote(value, safe="")), world)
                    params = base
                else:
                    url, params = concrete(path, world), {**base, name: value}
                answer = client.get(url, params=params)
                clean(answer, f"{url} {name}={value[:20]!r}")
                assert not [n for n in world.other_numbers if n in answer.text], url
                if answer.status_code == 200 and worklist:
                    rows = answer.json()["rows"] if path.endswith("}") else []
                    assert {r["pcn_code"] for r in rows} <= {world.own_pcn}
                probes += 1
    assert probes >= 200
