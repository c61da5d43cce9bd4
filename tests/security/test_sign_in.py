"""Sign-in limits under attack, against the real server: many guesses at once, and a client
that rotates X-Forwarded-For to look like many."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def admin(security_server: str) -> Iterator[httpx.Client]:
    """An administrator signed in before any test here locks the loopback address out."""
    client = httpx.Client(base_url=security_server, timeout=60)
    answer = client.post("/api/v1/token", json={"username": "admin", "password": "admin-demo-2026"})
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    yield client
    client.close()


def token_requests(
    server: str, bodies: list[dict[str, str]], headers: list[dict[str, str]] | None = None
) -> list[httpx.Response]:
    """POST /api/v1/token once per body, all released at the same moment."""
    start = threading.Barrier(len(bodies))

    def post(i: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=120) as client:
            start.wait()
            return client.post(
                "/api/v1/token", json=bodies[i], headers=headers[i] if headers else None
            )

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_a_hundred_simultaneous_guesses_check_only_five_passwords(
    security_server: str, admin: httpx.Client
) -> None:
    guesses = [{"username": "finance", "password": f"guess number {i}"} for i in range(100)]
    answers = token_requests(security_server, guesses)
    # A 401 is a password checked and found wrong; a 429 was refused before any check.
    assert Counter(a.status_code for a in answers) == {401: 5, 429: 95}
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
    right = httpx.post(
        f"{security_server}/api/v1/token",
        json={"username": "finance", "password": "finance-demo-2026"},
    )
    assert right.status_code == 429  # still locked: the limit held


def test_a_spoofed_forwarded_for_changes_neither_the_limit_nor_the_audit(
    security_server: str, admin: httpx.Client, security_settings: WebSettings
) -> None:
    # No proxy is trusted (the default), so a client that invents a new X-Forwarded-For for
    # each guess is still one client: 20 failures from one address lock that address, over
    # every name. (5 were spent above, on "finance".)
    names = [f"nobody{i}" for i in range(15)]
    wrong = [
        httpx.post(
            f"{security_server}/api/v1/token",
            json={"username": name, "password": "guess"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i, name in enumerate(names)
    ]
    assert wrong == [401] * 15
    locked = httpx.post(
        f"{security_server}/api/v1/token",
        json={"username": "board", "password": "board-demo-2026"},
        headers={"X-Forwarded-For": "198.51.100.77"},
    )
    assert locked.status_code == 429
    # The audit log names the address that connected, never the one the client claimed.
    me = admin.get("/api/v1/me").json()
    assert me["role"] == "admin"
    clinician_denied = admin.get(
        "/api/v1/worklists/U99001", params={"reason": "mdt"},
        headers={"X-Forwarded-For": "198.51.100.78"},
    )  # fmt: skip
    assert clinician_denied.status_code == 403  # an admin is refused, and that is audited
    with sqlite3.connect(security_settings.access_path) as con:
        clients = {row[0] for row in con.execute("SELECT client FROM audit")}
        spoofed = con.execute("SELECT count(*) FROM login_failures WHERE client LIKE '2%'")
        assert spoofed.fetchone()[0] == 0
    assert clients == {"127.0.0.1"}
