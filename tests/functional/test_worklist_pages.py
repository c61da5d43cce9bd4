"""A worklist page cut in Arrow before its rows are enriched is the page the whole-list path
gives (every row enriched, filtered by status and sorted in Python): the same rows in the same
order, totals, cohorts and audit entries, for pages, sorts, orders and filters, over a real
warehouse whose scores were made to tie, to sit half-way between two shown values, and to be
missing, whose reasons start with a capital accent and some of whose people have no name, with
statuses recorded for some people."""

from __future__ import annotations

import csv
import io
import math
import shutil
from collections.abc import Iterator
from dataclasses import asdict

import duckdb
import pytest
from cli_run import PhmWarehouse
from fastapi.testclient import TestClient

from joinedup.web.access import AccessStore, create_demo_users, demo_password
from joinedup.web.app import create_app
from joinedup.web.dashboard import Dashboard
from joinedup.web.settings import WebSettings
from joinedup.web.worklists import ARROW_SORTS, SORT_KEYS, WorklistOut, worklist_rows

pytestmark = pytest.mark.slow

PCN = "U99001"
#: Every worklist row moved to the clinician's PCN (its practices in turn), for pages enough.
MOVED = (
    "UPDATE phm_worklist SET pcn_code = 'U99001', "
    "practice_code = list_extract(?, CAST(person_id % ? AS INTEGER) + 1) "
    "WHERE pcn_code <> 'U99001'"
)
#: Rows of the clinician's PCN made awkward: ties at 4 decimals (scores cut to 2), scores a
#: hair from half-way between two shown values, missing scores and ages, non-ASCII reasons,
#: family names in capitals and people with no identity row (no name, no date of birth).
AWKWARD = (
    "UPDATE phm_worklist SET risk_score = round(risk_score, 2) "
    "WHERE pcn_code = 'U99001' AND person_id % 3 = 0",
    "UPDATE phm_worklist SET risk_score = floor(risk_score * 10000) / 10000 + 0.00005 "
    "WHERE pcn_code = 'U99001' AND person_id % 7 = 1",
    "UPDATE phm_worklist SET risk_score = NULL WHERE pcn_code = 'U99001' AND person_id % 11 = 2",
    "UPDATE phm_worklist SET age = NULL WHERE pcn_code = 'U99001' AND person_id % 13 = 3",
    "UPDATE phm_worklist SET reasons = 'Évalué: ' || reasons "
    "WHERE pcn_code = 'U99001' AND person_id % 5 = 4",
    "UPDATE identity SET family_name = upper(family_name) WHERE person_id % 2 = 0",
    "DELETE FROM identity WHERE person_id IN "
    "(SELECT person_id FROM phm_worklist WHERE pcn_code = 'U99001' AND person_id % 17 = 5)",
)


@pytest.fixture(scope="module")
def served(
    web_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, AccessStore]]:
    """The dashboard over an awkward copy of the warehouse, signed in as the PCN's clinician,
    with statuses recorded for some of its people; and its access store."""
    folder = tmp_path_factory.mktemp("worklist-pages")
    path = folder / "ics.duckdb"
    shutil.copyfile(web_warehouse.path, path)
    with duckdb.connect(str(path)) as con:
        found = con.execute(
            "SELECT practice_code FROM practice WHERE pcn_code = 'U99001' ORDER BY 1"
        ).fetchall()
        codes = [str(r[0]) for r in found]
        con.execute(MOVED, [codes, len(codes)])
        for statement in AWKWARD:
            con.execute(statement)
    settings = WebSettings(warehouse=path, access_db=folder / "access.sqlite")
    store = AccessStore(settings.access_path)
    users = create_demo_users(store, [PCN, "U99002"])
    clinician = next(u for u in users if u.username == "clinician")
    listed = duckdb.connect(str(path), read_only=True)
    people = listed.execute(
        "SELECT worklist_id, person_id FROM phm_worklist WHERE pcn_code = 'U99001' "
        "ORDER BY person_id, worklist_id"
    ).fetchall()
    listed.close()
    for i, (worklist_id, person_id) in enumerate(people[::4]):
        status = ("contacted", "declined", "done")[i % 3]
        store.set_worklist_status(clinician, PCN, worklist_id, person_id, status, "", client="t")
    with TestClient(create_app(settings, warm=False)) as client:
        token = client.post(
            "/api/v1/token",
            json={"username": "clinician", "password": demo_password("clinician")},
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, store
    store.close()


def test_the_warehouse_is_as_awkward_as_meant(served: tuple[TestClient, AccessStore]) -> None:
    client, _ = served
    board: Dashboard = client.app.state.dashboard  # type: ignore[attr-defined]
    scores = [r["risk_score"] for r in board.worklist(PCN, limit=10_000).rows]
    shown = [s for s in scores if s is not None]
    raw = board.worklist_csv_rows(PCN, practice=None, cohort=None, risk_tier=None)
    halves = [
        s
        for s in raw["risk_score"].to_pylist()
        if s is not None and abs(s * 1e4 - math.floor(s * 1e4) - 0.5) < 1e-6
    ]
    assert len(shown) - len(set(shown)) > 20, "ties in the shown score"
    assert None in scores and halves, "missing scores, and scores half-way between two shown"
    people = board.worklist_people()
    ids = [int(p) for p in raw["person_id"].to_pylist()]
    assert any(p not in people for p in ids), "people with no identity row"
    assert any(str(people[p]["family_name"]).isupper() for p in ids if p in people)


def test_a_page_cut_in_arrow_is_the_whole_lists_page(
    served: tuple[TestClient, AccessStore],
) -> None:
    client, store = served
    board: Dashboard = client.app.state.dashboard  # type: ignore[attr-defined]
    cohort = board.worklist(PCN, limit=1).cohorts[0]["id"]
    practice = str(board.worklist(PCN, limit=1).rows[0]["practice_code"])
    views: list[dict[str, str]] = [
        {},
        *({"sort": s, "order": o} for s in sorted(SORT_KEYS) for o in ("asc", "desc")),
        {"risk_tier": "high"},
        {"cohort": cohort, "sort": "age"},
        {"practice": practice, "sort": "reasons", "order": "desc"},
        {"status": "contacted"},
        {"status": "done", "sort": "nhs_number"},
        {"status": "to-contact", "cohort": cohort},
        {"status": "declined", "sort": "status", "order": "desc"},
    ]
    assert {v.get("sort") for v in views} >= ARROW_SORTS
    checked = 0
    for view in views:
        whole = None
        for offset, limit in ((0, 50), (50, 25), (-7, 50), (10_000, 50)):
            filters = {k: view.get(k) for k in ("practice", "cohort", "risk_tier")}
            sort = view.get("sort", "risk_score")
            descending = view.get("order", "desc" if sort == "risk_score" else "asc") == "desc"
            if whole is None:
                whole = worklist_rows(
                    board, store.worklist_statuses(PCN), PCN, filters, view.get("status"),
                    sort, descending, 10_000_000, 0, whole_list=True,
                )  # fmt: skip
            at = max(0, whole.total + offset) if offset < 0 else offset
            expected = worklist_rows(
                board, store.worklist_statuses(PCN), PCN, filters, view.get("status"), sort,
                descending, limit, at, whole_list=True,
            )  # fmt: skip
            answer = client.get(
                f"/api/v1/worklists/{PCN}",
                params={"reason": "mdt", **view, "limit": limit, "offset": at},
            )
            assert answer.status_code == 200, answer.text
            out = WorklistOut.model_validate(asdict(expected)).model_dump(mode="json")
            assert answer.json() == out, (view, offset, limit)
            _, entries = store.audit_entries(limit=1)
            assert entries[0]["action"] == "view"
            assert entries[0]["detail"].endswith(f"; {len(expected.rows)} rows from offset {at}")
            checked += len(expected.rows)
        assert whole is not None and (whole.total > 75 or set(view) - {"sort", "order"})
    assert checked > 2_000


def test_a_download_is_the_whole_lists_rows_in_its_order(
    served: tuple[TestClient, AccessStore],
) -> None:
    client, store = served
    board: Dashboard = client.app.state.dashboard  # type: ignore[attr-defined]
    answer = client.get(
        f"/api/v1/worklists/{PCN}", params={"reason": "mdt", "format": "csv", "sort": "practice"}
    )
    assert answer.status_code == 200
    filters: dict[str, str | None] = {"practice": None, "cohort": None, "risk_tier": None}
    expected = worklist_rows(
        board, store.worklist_statuses(PCN), PCN, filters, None, "practice", False,
        10_000_000, 0, whole_list=True,
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(answer.text)))
    header = next(i for i, row in enumerate(rows) if row[:1] == ["worklist_id"])
    at = rows[header].index("nhs_number")
    numbers = [row[at] for row in rows[header + 1 : header + 1 + expected.total]]
    assert expected.total > 75 and numbers == [r["nhs_number"] for r in expected.rows]
