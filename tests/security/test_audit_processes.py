"""Several server processes append to one audit log (`records serve --workers N`): the chain
stays whole, the signed head ends on the newest entry (it only moves forward, under a lock,
whichever process writes it), and a check running beside the writers never reports a sound
log broken."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from joinedup.web.access import AccessStore, AuditEvent
from joinedup.web.audit import Mark, read_head

pytestmark = pytest.mark.security

PROCESSES = 2
THREADS = 4
EACH = 40


def _append(path: str, worker: int) -> None:
    """One server process: THREADS request threads, each auditing EACH requests."""
    store = AccessStore(Path(path))

    def requests(thread: int) -> None:
        for i in range(EACH):
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
    AccessStore(path).close()  # the key and the schema, as the server's start makes them
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_append, args=(str(path), w)) for w in range(PROCESSES)]
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
    total = PROCESSES * THREADS * EACH
    assert checker.newest_entry() == total
    head = read_head(checker.audit_head_path, checker._audit_key)
    assert isinstance(head, Mark) and head.seq == total
    found = checker.verify_audit(full=True)
    assert found.intact, found.problem
    assert found.verified_through == total
    assert checks > 0
    checker.close()
