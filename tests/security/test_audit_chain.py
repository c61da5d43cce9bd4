"""The audit log against someone who can change its SQLite file but has not the key: entries
deleted, the end cut off, an entry edited with every later hash recomputed (plain SHA-256 or
HMAC under a key of their own) — each is reported, naming the entry. Also: details are
capped, failed sign-ins and 401s are audited without secrets, old unkeyed logs still open,
and the audit page at 300,000 entries checks only what is new."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_run import PhmWarehouse
from fastapi.testclient import TestClient

from joinedup.web.access import AccessStore, AuditEvent, Role, User
from joinedup.web.app import create_app
from joinedup.web.audit import AUDIT_FIELDS, MAX_DETAIL_LENGTH, TRUNCATED, Mark, read_head
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.security

FIELDS = ", ".join(AUDIT_FIELDS)


def logged(tmp_path: Path, n: int = 30) -> tuple[AccessStore, User]:
    store = AccessStore(tmp_path / "access.sqlite")
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    for i in range(n):
        store.audit(gp, "view", "worklist/U1", detail=f"{i} rows", reason="mdt", client="x")
    return store, gp


def tamper(path: Path, script: str) -> None:
    """What someone with the file can do: drop the triggers and change rows."""
    with sqlite3.connect(path) as con:
        con.executescript(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;"
            + script
        )


def rehash(path: Path, start: int, digest: Callable[[bytes], str]) -> None:
    """Recompute every hash from entry `start` on, as a forger would, with `digest`."""
    with sqlite3.connect(path) as con:
        con.executescript("DROP TRIGGER IF EXISTS audit_no_update")
        rows = con.execute(f"SELECT seq, {FIELDS}, prev_hash FROM audit ORDER BY seq").fetchall()
        prev = None
        for row in rows:
            if row[0] < start:
                prev = con.execute("SELECT hash FROM audit WHERE seq = ?", (row[0],)).fetchone()[0]
                continue
            body = json.dumps([prev, *row[1:-1]], ensure_ascii=False).encode()
            new = digest(body)
            con.execute(
                "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, new, row[0])
            )
            prev = new


def reopened(store: AccessStore) -> AccessStore:
    """The same files opened again, as by a restarted server (it checks every entry)."""
    store.close()
    return AccessStore(store.path)


def test_an_untouched_log_is_intact_and_the_key_is_private(tmp_path: Path) -> None:
    store, _ = logged(tmp_path)
    assert store.verify_audit().intact
    mode = stat.S_IMODE(store.audit_key_path.stat().st_mode)
    assert mode == 0o600
    again = reopened(store)
    check = again.verify_audit(full=True)
    assert (check.intact, check.verified_through, check.legacy_entries) == (True, 30, 0)
    assert again.verify_audit().checked == 0  # nothing new since the full check


@pytest.mark.parametrize(
    "forger",
    [
        lambda body: hashlib.sha256(body).hexdigest(),
        lambda body: hmac.new(b"k" * 32, body, hashlib.sha256).hexdigest(),
    ],
    ids=["sha256", "wrong-key-hmac"],
)
def test_an_entry_rewritten_with_every_hash_recomputed_shows(
    tmp_path: Path, forger: Callable[[bytes], str]
) -> None:
    store, _ = logged(tmp_path)
    assert store.verify_audit(checkpoint=True).intact  # a signed checkpoint at entry 30
    tamper(store.path, "UPDATE audit SET reason = 'care-planning' WHERE seq = 12;")
    rehash(store.path, 12, forger)
    # Seen at once by the quick check (the checkpoint's entry changed) and by a full one.
    quick = AccessStore(store.path).verify_audit()
    assert not quick.intact and quick.problem and "changed" in quick.problem
    full = AccessStore(store.path).verify_audit(full=True)
    assert not full.intact and full.verified_through == 11
    assert full.problem and "entry 12" in full.problem


def test_entries_deleted_from_the_middle_show(tmp_path: Path) -> None:
    store, _ = logged(tmp_path)
    store.verify_audit(checkpoint=True)
    tamper(store.path, "DELETE FROM audit WHERE seq IN (7, 8);")
    full = AccessStore(store.path).verify_audit(full=True)  # as every start of the server
    assert not full.intact and full.problem and "entry 9" in full.problem


def test_entries_cut_from_the_end_show(tmp_path: Path) -> None:
    store, gp = logged(tmp_path)
    store.verify_audit(checkpoint=True)
    for i in range(3):  # after the checkpoint: only the signed head outside the file has them
        store.audit(gp, "download", "worklist/U1", detail=f"{i}", reason="mdt", client="x")
    tamper(store.path, "DELETE FROM audit WHERE seq > 31;")
    check = AccessStore(store.path).verify_audit(full=True)
    assert not check.intact and check.problem
    assert "ends at entry 31" in check.problem and "entry 33" in check.problem
    # Cutting the head file too is no way out: a keyed log without its head is reported.
    store.audit_head_path.unlink()
    check = AccessStore(store.path).verify_audit(full=True)
    assert not check.intact and check.problem and "head file" in check.problem


def test_concurrent_writers_share_head_writes_yet_each_returns_vouched_for(
    tmp_path: Path,
) -> None:
    # The records API audits from many threads at once; they share the head's writes (one
    # rename can vouch for several entries), but no entry is ever left without a head that
    # covers it once its audit call has returned, so cutting it off always shows.
    store, gp = logged(tmp_path, n=0)
    returned: list[tuple[int, int]] = []

    def write(worker: int) -> None:
        for i in range(25):
            seq = store.audit(gp, "view", f"worklist/U{worker}", detail=f"{i}", reason="mdt",
                              client="x")  # fmt: skip
            head = read_head(store.audit_head_path, store._audit_key)
            assert isinstance(head, Mark)
            returned.append((seq, head.seq))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seq for seq, _ in returned) == list(range(1, 201))
    assert all(head >= seq for seq, head in returned)
    assert store.verify_audit(full=True).intact
    tamper(store.path, "DELETE FROM audit WHERE seq = 200;")
    check = AccessStore(store.path).verify_audit(full=True)
    assert not check.intact and check.problem and "ends at entry 199" in check.problem


def test_calls_written_together_each_get_their_own_entries_in_order(tmp_path: Path) -> None:
    # Concurrent calls are committed in groups (one transaction and one head for all the
    # calls waiting): each call's number is still its own last entry, a call's entries stay
    # together and in its order, and the chain checks.
    store, gp = logged(tmp_path, n=0)
    returned: list[tuple[int, int, int]] = []
    start = threading.Barrier(8)

    def write(worker: int) -> None:
        start.wait()
        for i in range(20):
            where = f"worklist/U{worker}"
            events = [
                AuditEvent(gp.username, gp.role.value, "view", where, f"{i}.{part}", "mdt", "x")
                for part in range(1 + i % 3)
            ]
            returned.append((store.audit_all(events), worker, i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sqlite3.connect(store.path) as con:
        found = con.execute("SELECT seq, resource, detail FROM audit").fetchall()
    rows = {seq: (resource, detail) for seq, resource, detail in found}
    assert len(rows) == sum(1 + i % 3 for i in range(20)) * 8
    for seq, worker, i in returned:
        parts = 1 + i % 3
        mine = [rows[seq - parts + 1 + k] for k in range(parts)]
        assert mine == [(f"worklist/U{worker}", f"{i}.{k}") for k in range(parts)]
    assert store.verify_audit(full=True).intact


def test_a_failed_write_reaches_every_caller_in_it_and_later_writes_go_on(tmp_path: Path) -> None:
    # A write the database refuses fails every call written in that transaction (none of their
    # entries is kept, none is told it was), and the writer goes on with the next ones.
    store, gp = logged(tmp_path, n=1)
    with sqlite3.connect(store.path) as con:
        con.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON audit WHEN NEW.detail = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
        )

    def event(detail: str) -> AuditEvent:
        return AuditEvent(gp.username, gp.role.value, "view", "x", detail, "m", "c")

    with pytest.raises(sqlite3.IntegrityError, match="refused by the database"):
        store.audit_all([event("fine"), event("boom")])
    assert store.audit_all([event("after")]) == 2
    with sqlite3.connect(store.path) as con:
        details = [r[0] for r in con.execute("SELECT detail FROM audit ORDER BY seq")]
    assert details == ["0 rows", "after"]
    assert store.verify_audit(full=True).intact


def test_an_edit_between_checks_is_found_and_the_answer_stays_broken(tmp_path: Path) -> None:
    store, gp = logged(tmp_path)
    assert store.verify_audit().intact
    store.audit(gp, "view", "worklist/U1", detail="31", reason="mdt", client="x")
    tamper(store.path, "UPDATE audit SET detail = 'nothing' WHERE seq = 31;")
    assert not store.verify_audit().intact
    assert not store.verify_audit().intact  # still broken, whatever is written next


def test_details_are_capped_and_other_fields_too(tmp_path: Path) -> None:
    store, gp = logged(tmp_path, n=0)
    store.audit(gp, "view", "r" * 5000, detail="d" * 60_029, reason="x" * 999, client="c")
    _, (entry,) = store.audit_entries(1)
    assert len(entry["detail"]) == MAX_DETAIL_LENGTH and entry["detail"].endswith(TRUNCATED)
    assert len(entry["resource"]) <= 200 and entry["resource"].endswith(TRUNCATED)
    assert len(entry["reason"]) <= 200
    assert store.verify_audit(full=True).intact


def test_an_old_unkeyed_log_opens_and_its_entries_are_reported_as_legacy(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite"
    with sqlite3.connect(path) as con:  # the log as the dashboard wrote it before it had a key
        con.executescript(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, "
            "username TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, resource TEXT "
            "NOT NULL, detail TEXT NOT NULL, reason TEXT NOT NULL, client TEXT NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
        )
        prev = "0" * 64
        for i in range(5):
            entry = [f"2026-01-0{i + 1}T00:00:00", "gp", "clinician", "view", "worklist/U1",
                     f"{i} rows", "mdt", "x"]  # fmt: skip
            body = json.dumps([prev, *entry], ensure_ascii=False).encode()
            digest = hashlib.sha256(body).hexdigest()
            con.execute(
                f"INSERT INTO audit ({FIELDS}, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (*entry, prev, digest),
            )
            prev = digest
    store = AccessStore(path)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    store.audit(gp, "view", "worklist/U1", detail="keyed", reason="mdt", client="x")
    check = AccessStore(path).verify_audit(full=True)
    assert (check.intact, check.legacy_entries, check.verified_through) == (True, 5, 6)
    tamper(path, "UPDATE audit SET reason = 'follow-up' WHERE seq = 6;")
    rehash(path, 6, lambda body: hashlib.sha256(body).hexdigest())
    assert not AccessStore(path).verify_audit(full=True).intact  # keyed entries need the key


def test_sign_in_failures_and_unauthenticated_calls_are_audited_without_secrets(
    small_web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    settings = WebSettings(warehouse=small_web_warehouse.path, access_db=tmp_path / "a.sqlite")
    store = AccessStore(settings.access_path)
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    store.close()
    with TestClient(create_app(settings, warm=False)) as client:
        post = client.post
        post("/api/v1/token", json={"username": "ana", "password": "wrong horse battery"})
        post("/api/v1/token", json={"username": "hunter2-secret", "password": "whatever"})
        client.get("/api/v1/overview")
        client.get("/api/v1/me", headers={"Authorization": "Bearer made-up-token-value"})
        form = post("/login", data={"username": "ana", "password": "wrong again horse"})
        assert form.status_code == 401
    with sqlite3.connect(settings.access_path) as con:
        rows = con.execute(
            "SELECT username, action, resource, detail FROM audit ORDER BY seq"
        ).fetchall()
    assert rows == [
        ("ana", "sign-in failed", "sign-in/token", "wrong password"),
        ("(unknown name)", "sign-in failed", "sign-in/token", "unknown username"),
        ("-", "unauthenticated", "GET /api/v1/overview", "no token"),
        ("-", "unauthenticated", "GET /api/v1/me", "token unknown, expired or signed out"),
        ("ana", "sign-in failed", "sign-in/cookie", "wrong password"),
    ]
    text = repr(rows)
    assert "horse" not in text and "hunter2" not in text and "made-up-token" not in text


def test_the_audit_page_at_300000_entries_checks_only_what_is_new(
    small_web_warehouse: PhmWarehouse, tmp_path: Path
) -> None:
    settings = WebSettings(warehouse=small_web_warehouse.path, access_db=tmp_path / "a.sqlite")
    store = AccessStore(settings.access_path)
    store.add_user("boss", "correct horse battery", Role.ADMIN)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U99001")
    event = AuditEvent("gp", "clinician", "view", "worklist/U99001", "50 rows", "mdt", "x")
    for _ in range(30):
        store.audit_all([event] * 10_000)
    store.close()  # checks the new entries and signs a checkpoint
    with TestClient(create_app(settings, warm=False)) as client:
        token = client.post(
            "/api/v1/token", json={"username": "boss", "password": "correct horse battery"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        access: AccessStore = client.app.state.access  # type: ignore[attr-defined]
        assert access.verify_audit().intact  # waits for the full check that runs at start
        started = time.perf_counter()
        log = client.get("/api/v1/audit", params={"limit": 5}, headers=headers).json()
        elapsed = time.perf_counter() - started
        print(f"audit endpoint at {log['total']:,} entries: {elapsed * 1000:.1f} ms")
        assert log["total"] == 300_000 and log["chain_intact"] is True
        assert log["verified_through"] == 300_000 and log["entries"][0]["seq"] == 300_000
        access.audit(gp, "view", "worklist/U99001", detail="1 row", reason="mdt", client="x")
        assert access.verify_audit().checked == 1  # one new entry, one hash
        # An entry rewritten behind the running server before it is checked: the next call
        # says so, naming it.
        access.audit(gp, "view", "worklist/U99001", detail="2 rows", reason="mdt", client="x")
        tamper(settings.access_path, "UPDATE audit SET detail = '0 rows' WHERE seq = 300002;")
        after = client.get("/api/v1/audit", params={"limit": 5}, headers=headers).json()
        assert after["chain_intact"] is False and "entry 300002" in after["chain_problem"]
