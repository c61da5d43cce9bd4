"""Benchmark: server CPU a request of the worklist API route, the page cut in Arrow against the
whole-list path (every row enriched and sorted in Python), in one process and one run.

The application runs in process under Starlette's TestClient over a warehouse (the default
demo: 1.2 million people, seed 42), with a temporary access database holding the demo users;
the demo clinician's PCN is the warehouse's largest worklist. Each view is asked for `repeat`
times by each path (a tenth of that for the download) after a warm-up, the two paths in turn in
five rounds, and the median round's process CPU time (time.process_time: server and TestClient
alike) per request is reported, beside `/api/v1/me` (the same sign-in and client, no worklist)
as the floor. The whole-list figures are the same route with the Arrow sorts switched off
(`ARROW_SORTS` emptied), which is what every request did before. Each call writes an audit
entry, as in production. `service_*_ms` time the page alone (`worklist_rows`: no HTTP, no
audit entry, no JSON). A status is recorded for one row in ten, as a PCN team part way through
its list would have.

    .venv/bin/python benchmarks/worklist_route.py --warehouse data/joinedup.duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
from fastapi.testclient import TestClient

from joinedup.web import worklists
from joinedup.web.access import AccessStore, WorklistStatus, create_demo_users, demo_password
from joinedup.web.app import create_app
from joinedup.web.settings import WebSettings

#: Views asked for: the default (risk score, highest first), a later page, other sorts (by the
#: practice's name, the status, the person's name from identity), a status filter, and the
#: download (the whole list either way).
VIEWS = {
    "default, page 1": {},
    "default, page 3": {"offset": "100"},
    "sort=age": {"sort": "age"},
    "sort=practice desc": {"sort": "practice", "order": "desc"},
    "status=to-contact": {"status": "to-contact"},
    "sort=status desc": {"sort": "status", "order": "desc"},
    "sort=name": {"sort": "name"},
    "sort=birth_date desc": {"sort": "birth_date", "order": "desc"},
    "format=csv": {"format": "csv"},
}


ROUNDS = 5
#: A status is recorded for one worklist row in this many (contacted, declined, done in turn).
STATUS_EVERY = 10


def _largest_pcns(warehouse: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The two PCNs with the most worklist rows, and the first's (worklist_id, person_id)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = con.execute(
            "SELECT pcn_code FROM phm_worklist GROUP BY pcn_code ORDER BY count(*) DESC, 1"
        ).fetchall()
        pcns = [str(r[0]) for r in found[:2]]
        listed = con.execute(
            "SELECT worklist_id, person_id FROM phm_worklist WHERE pcn_code = ? ORDER BY 2, 1",
            [pcns[0]],
        ).fetchall()
    return pcns, [(str(w), int(p)) for w, p in listed]


def _cpu_ms(client: TestClient, path: str, params: dict[str, str], repeat: int) -> float:
    for _ in range(3):
        assert client.get(path, params=params).status_code == 200
    start = time.process_time()
    for _ in range(repeat):
        answer = client.get(path, params=params)
        assert answer.status_code == 200, answer.text
    return (time.process_time() - start) / repeat * 1000


def _service_ms(
    client: TestClient, pcn: str, statuses: Mapping[tuple[str, int], WorklistStatus],
    params: dict[str, str], repeat: int,
) -> dict[str, float]:  # fmt: skip
    """The page alone (`worklist_rows`, no HTTP, no audit, no serialising), each path."""
    board = client.app.state.dashboard  # type: ignore[attr-defined]
    sort = params.get("sort", "risk_score")
    descending = params.get("order", "desc" if sort == "risk_score" else "asc") == "desc"
    where: dict[str, str | None] = {"practice": None, "cohort": None, "risk_tier": None}
    out = {}
    for label, whole in (("whole_list", True), ("arrow", False)):
        rounds = []
        for _ in range(ROUNDS):
            start = time.process_time()
            for _ in range(repeat // ROUNDS):
                worklists.worklist_rows(
                    board, statuses, pcn, where, params.get("status"), sort, descending, 50,
                    int(params.get("offset", 0)), whole_list=whole,
                )  # fmt: skip
            rounds.append((time.process_time() - start) / (repeat // ROUNDS) * 1000)
        out[f"service_{label}_ms"] = round(statistics.median(rounds), 2)
    return out


def run(warehouse: Path, repeat: int) -> dict[str, Any]:
    pcns, listed = _largest_pcns(warehouse)
    with tempfile.TemporaryDirectory() as folder:
        settings = WebSettings(warehouse=warehouse, access_db=Path(folder) / "access.sqlite")
        store = AccessStore(settings.access_path)
        clinician = next(u for u in create_demo_users(store, pcns) if u.username == "clinician")
        for i, (worklist_id, person_id) in enumerate(listed[::STATUS_EVERY]):
            status = ("contacted", "declined", "done")[i % 3]
            store.set_worklist_status(
                clinician, pcns[0], worklist_id, person_id, status, "", client="bench"
            )
        statuses = store.worklist_statuses(pcns[0])
        store.close()
        with TestClient(create_app(settings, warm=False)) as client:
            token = client.post(
                "/api/v1/token",
                json={"username": "clinician", "password": demo_password("clinician")},
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            path = f"/api/v1/worklists/{pcns[0]}"
            base = {"reason": "mdt", "limit": "50"}
            rows = client.get(path, params=base).json()["total"]
            floor = statistics.median(
                _cpu_ms(client, "/api/v1/me", {}, repeat // ROUNDS) for _ in range(ROUNDS)
            )
            arrow_sorts = worklists.ARROW_SORTS
            views: dict[str, dict[str, float]] = {}
            for name, extra in VIEWS.items():
                # The two paths in turn, ROUNDS times each: the median round of each is kept,
                # so a burst of other work on a shared machine moves one round, not the figure.
                rounds: dict[str, list[float]] = {"whole_list": [], "arrow": []}
                n = max(2, repeat // ROUNDS // (10 if "csv" in name else 1))
                for _ in range(ROUNDS):
                    for label, sorts in (("whole_list", frozenset[str]()), ("arrow", arrow_sorts)):
                        worklists.ARROW_SORTS = sorts
                        rounds[label].append(_cpu_ms(client, path, base | extra, n))
                worklists.ARROW_SORTS = arrow_sorts
                times = {f"{k}_ms": round(statistics.median(v), 2) for k, v in rounds.items()}
                times["ratio"] = round(times["whole_list_ms"] / times["arrow_ms"], 2)
                if "csv" not in name:
                    times |= _service_ms(client, pcns[0], statuses, base | extra, repeat)
                views[name] = times
    return {
        "warehouse": str(warehouse),
        "pcn": pcns[0],
        "pcn_rows": rows,
        "statuses": len(statuses),
        "repeat": repeat,
        "me_ms": round(floor, 2),
        "views": views,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=Path("data/joinedup.duckdb"))
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(run(args.warehouse, args.repeat), indent=2))


if __name__ == "__main__":
    main()
