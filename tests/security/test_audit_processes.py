"""Several server processes append to one audit log (`records serve --workers N`): the chain
stays whole, the signed head ends on the newest entry (it only moves forward, under a lock,
whichever process writes it), and a check running beside the writers never reports a sound
log broken."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from joinedup.web.access import AccessStore, AuditEvent, Role
from joinedup.web.audit import HEAD_SLOT, Mark, advance_head, mark_mac, read_head

pytestmark = pytest.mark.security

PROCESSES = 2
THREADS = 8
EACH = 150


def _append(path: str, worker: int, token: str) -> None:
    """One server process: THREADS request threads, each signing in and auditing EACH
    requests, as the records API does for every request."""
    store = AccessStore(Path(path))

    def requests(thread: int) -> None:
        for i in range(EACH):
            assert store.session_user(token) is not None
            event = AuditEvent(
                username="system", role="system", action="fhir read", resource="fhir/Patient/x",
                detail=f"200; worker {worker} thread {thread} request {i}", reason="test",
                client="127.0.0.1",
            )  # fmt: skip
            store.audit_all([event])

    threads = [threading.Thread(target=requests, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()


def test_two_processes_append_one_chain_and_the_head_ends_on_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite"
    made = AccessStore(path)  # the key and the schema, as the server's start makes them
    made.add_user("feed", "a long enough password", Role.SYSTEM)
    token = made.issue_token("feed", 1)[1]
    made.close()
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_append, args=(str(path), w, token)) for w in range(PROCESSES)]
    for worker in workers:
        worker.start()
    # a privacy officer's check while both write: never a false alarm
    checker = AccessStore(path)
    checks = 0
    while any(w.is_alive() for w in workers):
        found = checker.verify_audit()
        assert found.intact, found.problem
        checks += 1
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    total = PROCESSES * THREADS * EACH + 1  # and the token's issue
    assert checker.newest_entry() == total
    head = read_head(checker.audit_head_path, checker._audit_key)
    assert isinstance(head, Mark) and head.seq == total
    found = checker.verify_audit(full=True)
    assert found.intact, found.problem
    assert found.verified_through == total
    assert checks > 0
    checker.close()


def _old_head(path: Path, key: bytes, mark: Mark) -> None:
    """A head as written before the two slots: one JSON object, the whole file."""
    mac = mark_mac(key, "head", mark.seq, mark.entries, mark.hash)
    body = {"seq": mark.seq, "entries": mark.entries, "hash": mark.hash, "mac": mac}
    path.write_text(json.dumps(body))


def test_the_head_moves_only_forward_and_a_changed_slot_shows(tmp_path: Path) -> None:
    key, path = b"k" * 32, tmp_path / "access.sqlite.audit-head"
    _old_head(path, key, Mark(5, 5, "a" * 64))  # a log from before the slots still opens
    assert read_head(path, key) == Mark(5, 5, "a" * 64)
    assert advance_head(path, key, Mark(7, 7, "b" * 64)) == 7
    assert advance_head(path, key, Mark(6, 6, "c" * 64)) == 7  # never backwards
    assert read_head(path, key) == Mark(7, 7, "b" * 64)
    assert advance_head(path, key, Mark(9, 9, "d" * 64)) == 9  # over the older slot
    assert read_head(path, key) == Mark(9, 9, "d" * 64)
    assert path.stat().st_size == 2 * HEAD_SLOT
    # someone without the key edits either slot: the head no longer checks
    for slot in (0, 1):
        data = bytearray(path.read_bytes())
        saved = bytes(data)
        at = data.index(b'"seq": ', slot * HEAD_SLOT) + 7
        data[at : at + 1] = b"8" if data[at : at + 1] != b"8" else b"1"
        path.write_bytes(bytes(data))
        found = read_head(path, key)
        assert isinstance(found, str) and "not signed" in found
        path.write_bytes(saved)
    # a slot cut to nothing (a blank) leaves the other
    data = bytearray(path.read_bytes())
    newest_slot = 0 if b'"seq": 9' in data[:HEAD_SLOT] else 1
    data[(1 - newest_slot) * HEAD_SLOT : (2 - newest_slot) * HEAD_SLOT] = b" " * HEAD_SLOT
    path.write_bytes(bytes(data))
    assert read_head(path, key) == Mark(9, 9, "d" * 64)
