"""Feeds retrying conditional writes through the FHIR API against two servers at once (each
its own records store over one database, as `records serve --workers 2` processes are), on
SQLite and PostgreSQL: the loser of a conditional create's race is answered 200 with the
winner's Patient, never a second Patient nor an error."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from joinedup.fhir.validate import NHS_NUMBER_SYSTEM, is_valid_nhs_number
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.records_api import create_records_app
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
CLIENTS = 8


@contextmanager
def _server(settings: WebSettings, records_url: str) -> Iterator[str]:
    """The FHIR API over a store of its own on `records_url`, under Uvicorn on a free
    loopback port; yields its address."""
    app = create_records_app(settings, RecordStore(records_url), close_store=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _nhs_numbers(count: int) -> list[str]:
    candidates = (f"96{n:08d}" for n in itertools.count(1))
    return list(itertools.islice((c for c in candidates if is_valid_nhs_number(c)), count))


def _patient(nhs_number: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": f"Feed{n}"}],
    }


def _criteria(nhs_number: str) -> str:
    return f"identifier={NHS_NUMBER_SYSTEM}|{nhs_number}"


def test_racing_conditional_writes_over_two_servers_make_one_patient(
    records_url: str, tmp_path: Path
) -> None:
    """Eight clients at once, alternating between the servers: conditional creates of one NHS
    number make one Patient (one 201, seven 200 naming it); conditional updates of another
    make one Patient of eight versions; transaction Bundles each writing two people
    conditionally, half in each order, all succeed and name the same two Patients."""
    settings = WebSettings(warehouse=tmp_path / "warehouse.duckdb", secret_key="s" * 32)
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.close()
    created, updated, first, second = _nhs_numbers(4)
    with ExitStack() as servers:
        addresses = [servers.enter_context(_server(settings, records_url)) for _ in range(2)]
        signed_in = httpx.post(
            f"{addresses[0]}/api/v1/token", json={"username": "feed", "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        headers = {
            "Authorization": f"Bearer {signed_in.json()['access_token']}",
            "Content-Type": "application/fhir+json",
        }

        def race(write: Callable[[httpx.Client, int], httpx.Response]) -> list[httpx.Response]:
            start = threading.Barrier(CLIENTS)

            def client(n: int) -> httpx.Response:
                base = f"{addresses[n % 2]}/fhir/R4"
                with httpx.Client(base_url=base, headers=headers, timeout=40) as c:
                    c.get("/metadata")  # its connection open before the race
                    start.wait(timeout=30)
                    return write(c, n)

            with ThreadPoolExecutor(CLIENTS) as pool:
                return list(pool.map(client, range(CLIENTS)))

        def ids(nhs_number: str) -> list[str]:
            found = httpx.get(
                f"{addresses[1]}/fhir/R4/Patient",
                params={"identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}"},
                headers=headers,
            )
            return [e["resource"]["id"] for e in found.json().get("entry", [])]

        posts = race(
            lambda c, n: c.post(
                "/Patient",
                json=_patient(created, n),
                headers={"If-None-Exist": _criteria(created)},
            )
        )
        statuses = sorted(p.status_code for p in posts)
        assert statuses == [200] * (CLIENTS - 1) + [201], [p.text for p in posts]
        assert len(ids(created)) == 1
        assert {p.json()["id"] for p in posts} == set(ids(created))

        puts = race(
            lambda c, n: c.put(
                "/Patient",
                params={"identifier": f"{NHS_NUMBER_SYSTEM}|{updated}"},
                json=_patient(updated, n),
            )
        )
        statuses = sorted(p.status_code for p in puts)
        assert statuses == [200] * (CLIENTS - 1) + [201], [p.text for p in puts]
        assert len(ids(updated)) == 1
        versions = sorted(int(p.json()["meta"]["versionId"]) for p in puts)
        assert versions == list(range(1, CLIENTS + 1))

        def bundle(c: httpx.Client, n: int) -> httpx.Response:
            a, b = (first, second) if n % 2 else (second, first)
            entries = [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": _patient(a, n),
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": _criteria(a)},
                },
                {
                    "resource": _patient(b, n),
                    "request": {"method": "PUT", "url": f"Patient?{_criteria(b)}"},
                },
            ]
            return c.post("", json={"resourceType": "Bundle", "type": "transaction",
                                    "entry": entries})  # fmt: skip

        bundles = race(bundle)
        assert [b.status_code for b in bundles] == [200] * CLIENTS, [b.text for b in bundles]
        assert len(ids(first)) == 1 and len(ids(second)) == 1
        named = {frozenset(e["resource"]["id"] for e in b.json()["entry"]) for b in bundles}
        assert named == {frozenset(ids(first) + ids(second))}
