"""Benchmark: checking the audit log's keyed chain at 300,000 entries.

The access store is filled with 300,000 entries (in batches of 10,000, one transaction
each), closed (which checks them and signs a checkpoint) and opened again, as a restarted
dashboard would. Measured: the full check of every entry (run once at each start), the check
the audit page makes (only entries since the last checkpoint: none here) and after one new
entry, and a page of the newest 50 entries. Target: the audit page under 100 ms.

Run alone:

    .venv/bin/python benchmarks/audit.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from joinedup.web.access import AccessStore, AuditEvent, Role

ENTRIES = 300_000
TARGET_PAGE_MS = 100.0


def _ms(run: Any, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_audit(workdir: Path, entries: int = ENTRIES) -> list[dict[str, Any]]:
    path = workdir / "audit-bench.sqlite"
    store = AccessStore(path)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    event = AuditEvent("gp", "clinician", "view", "worklist/U1", "50 rows", "mdt", "127.0.0.1")
    for _ in range(entries // 10_000):
        store.audit_all([event] * 10_000)
    store.close()
    store = AccessStore(path)
    started = time.perf_counter()
    full = store.verify_audit(full=True)
    full_s = time.perf_counter() - started
    assert full.intact and full.verified_through == entries, full

    def page() -> None:
        check = store.verify_audit()
        assert check.intact
        store.audit_entries(50, 0)

    page_ms = _ms(page)

    def one_more() -> None:
        store.audit(gp, "view", "worklist/U1", detail="1 row", reason="mdt", client="x")
        assert store.verify_audit().checked == 1

    append_and_check_ms = _ms(one_more)
    store.close()
    return [
        {"name": "audit_full_check_300k_s", "value": full_s, "unit": "s"},
        {
            "name": "audit_page_check_300k_ms",
            "value": page_ms,
            "unit": "ms",
            "baseline_name": "target_100ms",
            "baseline_value": TARGET_PAGE_MS,
            "ratio": page_ms / TARGET_PAGE_MS,
        },
        {"name": "audit_append_and_check_ms", "value": append_and_check_ms, "unit": "ms"},
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for row in bench_audit(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else ENTRIES):
            print(row)
