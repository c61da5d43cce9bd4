"""The server's heap, settled once it has started.

A server process builds hundreds of thousands of long-lived Python objects as it starts (the
FHIR models, FastAPI's routes and schemas, SQLAlchemy's tables, the code systems): about
320,000 in a `records serve` worker. CPython's collector looks at every one of them again in
each full (oldest-generation) collection, which under 50 clients came every 2-4 s in each
worker and took 190-400 ms, with the whole process stopped. The workers share the audit
log's write lock, so one worker stopped while writing stopped the other too: every client
waited at once, and those pauses were the 1% of requests that took 180-250 ms
(benchmarks/records.py, 7 December 2026; docs/benchmarks.md).

`settle_heap` collects once and then moves every object alive at that moment out of the
collector's sight (`gc.freeze`), so full collections look only at what was made since: 3-4 ms
each in the same run. Objects that become garbage later are collected as before; what the
freeze keeps alive is only what was already alive when the server was ready.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect, then freeze what survives (see the module's description). Call it once the
    app is built, before the server answers its first request."""
    gc.collect()
    gc.freeze()
