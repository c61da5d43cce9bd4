"""Benchmark: the shared care record's FHIR API and bulk load on PostgreSQL, each against the
same work done by PostgreSQL alone on the same database in the same run.

A throwaway PostgreSQL cluster is made for the run by the code that makes the tests'
`postgresql_server` (tests/postgres_cluster.py: `initdb` and `pg_ctl` as the `postgres` user
under root, listening on a unix socket only, trust authentication), but with PostgreSQL's
durable defaults (fsync, synchronous commit and full page writes on) and 1 GB of shared
buffers. It is stopped and deleted at the end. A synthetic population (`joinedup synth`,
seed 42) is exported as FHIR NDJSON (`joinedup export fhir`); then:

- records_ingest_resources_per_s: `joinedup records load` of that NDJSON into an empty store,
  the command as a user runs it (validation, versions, search index, 500 resources a
  transaction), wall time. Floor: PostgreSQL's own `COPY ... FROM STDIN` of the same lines,
  byte for byte, into a one-column `jsonb` table of another database on the same server (each
  line parsed as JSON; no index), committed. Ratio = load seconds / COPY seconds.
- fhir_read_p95_ms, fhir_search_p95_ms: `joinedup records serve --workers 2` (two Uvicorn
  processes on one port, one a core; `--workers 1` for one) over the loaded store, signed in as
  the demo `system` user (a feed: no relationship filter), 50 concurrent keep-alive clients
  (closed loop, one connection each) for `duration` seconds on loopback. The clients are
  KeepAlive below, a minimal HTTP/1.1 client on asyncio streams: about 0.07-0.08 ms of CPU a
  request here against httpx's 1.2-1.7 ms, which on the shared 2 cores took CPU from the server
  being measured; before the timed runs it is checked to get the same statuses, resources and
  totals as httpx for the checked requests. Each client walks a cycle of sampled patients, four
  requests each: Patient by NHS number (`identifier` search), Patient read, the patient's
  Conditions and the patient's Observations (`patient` search, first page of 50). Read = the
  Patient read; search = the other three. Floor: the statements the store sends to PostgreSQL
  for the same requests (compiled from its own search code: for a search the page, then the
  count only when the page is full, as the store does; for a read the current-version row), run
  through psycopg by 50 concurrent connections in autocommit (the store's reads send no BEGIN or
  ROLLBACK), closed loop, for the same duration; the rows are fetched, not parsed. Ratio = API
  p95 / SQL p95. Before the timed runs one pass over the first patients checks that the API and
  the floor return the same resources and totals.

Each client sends one untimed request first (opening its connection), and the clock starts
when every client has; clients start at points spread over the cycle and over the four kinds
of request. The load generators run in a child process of their own, so their CPU time is
apart from the server's; the CPU time of the API server, of PostgreSQL and of the generator
are in `detail`, with the load average before each part (the machine may be shared).

Run alone:

    .venv/bin/python benchmarks/records.py --people 2000 --duration 15
    .venv/bin/python benchmarks/records.py --people 1000 --ingest-only   # the load alone
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from api import _cpu_seconds, _free_port, _joinedup, _machine_busy_seconds, _stop, percentile
from postgres_cluster import PostgresServer as Cluster
from postgres_cluster import postgresql_cluster

#: People in the synthetic population; about 42 resources each (3,000 people: 126,516). The
#: load's rate, not memory, limits the size on the 2-core machine (see docs/benchmarks.md).
PEOPLE = 10_000
SEED = 42
TARGET_READ_P95_MS = 50.0
TARGET_SEARCH_P95_MS = 150.0
#: Patients sampled (fixed seed) for the request cycle; each gives four requests.
SAMPLE = 500
#: Patients of the sample checked one by one: the API and the floor find the same.
CHECKED = 20
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 10.0
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
FHIR = "/fhir/R4"
#: The requests for one patient: (label, class).
QUERIES = (
    ("Patient?identifier", "search"),
    ("Patient/{id}", "read"),
    ("Condition?patient", "search"),
    ("Observation?patient", "search"),
)
#: PostgreSQL settings added to initdb's: a unix socket only, room for both sides' clients.
SERVER_CONF = {
    "listen_addresses": "''",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "timezone": "'UTC'",
}


# --- a throwaway PostgreSQL server -----------------------------------------------------------


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and of every process under it, live or reaped (a server's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(current, []))
    return total


def _cluster_cpu_seconds(cluster: Cluster) -> float:
    """CPU of the postmaster, its live backends and the backends it has reaped."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    total = ticks / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else ():
        try:
            total += _cpu_seconds(int(child))
        except (FileNotFoundError, ProcessLookupError):
            continue  # a backend that ended meanwhile is counted in cutime next time
    return total


@contextmanager
def bench_cluster() -> Iterator[Cluster]:
    """A new PostgreSQL cluster with SERVER_CONF (tests/postgres_cluster.py starts it, as it
    does the tests' own), stopped and deleted afterwards."""
    with postgresql_cluster(SERVER_CONF, prefix="joinedup-bench-pg-") as cluster:
        yield cluster


# --- the population --------------------------------------------------------------------------


def build_population(work: Path, people: int) -> tuple[Path, Path]:
    """`joinedup synth` then `joinedup export fhir`: the warehouse and the NDJSON folder."""
    warehouse, ndjson = work / "world.duckdb", work / "ndjson"
    for args in (
        ["synth", "-n", str(people), "--seed", str(SEED), "-w", str(warehouse)],
        ["export", "fhir", "-o", str(ndjson), "-w", str(warehouse)],
    ):
        subprocess.run([_joinedup(), *args], check=True, stdout=subprocess.DEVNULL)
    return warehouse, ndjson


def _files(ndjson: Path) -> list[Path]:
    return sorted(ndjson.glob("*.ndjson"))


def _lines(ndjson: Path) -> int:
    count = 0
    for path in _files(ndjson):
        with path.open("rb") as handle:
            count += sum(1 for _ in handle)
    return count


def sample_patients(ndjson: Path, size: int) -> list[tuple[str, str]]:
    """(id, NHS number) of `size` Patients picked with a fixed seed."""
    found = []
    with (ndjson / "Patient.ndjson").open(encoding="utf-8") as handle:
        for line in handle:
            patient = json.loads(line)
            nhs = next(i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER)
            found.append((patient["id"], nhs))
    return random.Random(SEED).sample(found, min(size, len(found)))


# --- ingest: records load against COPY ----------------------------------------------------------


def copy_floor(cluster: Cluster, ndjson: Path) -> float:
    """Seconds for PostgreSQL to COPY every NDJSON line into a one-column jsonb table, in one
    transaction. CSV format with quote and delimiter characters JSON never holds unescaped
    (0x01, 0x02), so each line goes in byte for byte."""
    import psycopg

    cluster.create_database("copy_floor")
    with psycopg.connect(cluster.conninfo("copy_floor")) as conn:
        conn.execute("CREATE TABLE resource_lines (resource jsonb NOT NULL)")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur:
            for path in _files(ndjson):
                with (
                    path.open("rb") as handle,
                    cur.copy(
                        "COPY resource_lines (resource) FROM STDIN "
                        "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
                    ) as copy,
                ):
                    while chunk := handle.read(1 << 20):
                        copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - began
        copied = conn.execute("SELECT count(*) FROM resource_lines").fetchone()
    if copied is None or copied[0] != _lines(ndjson):
        raise RuntimeError(f"COPY stored {copied} lines, not {_lines(ndjson)}")
    return seconds


def records_load(
    cluster: Cluster, ndjson: Path, database: str, validation_workers: int = 0
) -> tuple[float, str]:
    """Seconds of `joinedup records load` into a new database, and its summary line."""
    cluster.create_database(database)
    began = time.perf_counter()
    done = subprocess.run(
        [_joinedup(), "records", "load", str(ndjson), "--records", cluster.url(database),
         "--validation-workers", str(validation_workers),
         "-w", str(ndjson.parent / "audit" / "warehouse.duckdb")],  # its audit entry there
        capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"records load failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = next((ln for ln in done.stdout.splitlines() if ln.startswith("Read ")), "")
    return seconds, summary.strip()


# --- the requests, over HTTP and as the store's SQL -------------------------------------------

Request = tuple[str, str, Any]  # (label, class, path or [Statement, ...])
#: A floor statement: SQL, parameters, and for a search's count the page's `_count` and
#: `_offset` (the count is sent only when the page before it does not end the matches, as
#: RecordStore.search does); None for every other statement.
Statement = tuple[str, dict[str, Any], tuple[int, int] | None]


def needed(statement: Statement, previous: list[Any] | None) -> bool:
    """Whether the store would send `statement` after a statement that fetched `previous`:
    a count is skipped when the page was short of `_count` (and not past the end)."""
    if statement[2] is None or previous is None:
        return True
    count, offset = statement[2]
    return not (count > 0 and len(previous) < count and (previous or not offset))


def http_requests(patients: list[tuple[str, str]]) -> list[Request]:
    """The four requests for each patient, as API paths."""
    cycle: list[Request] = []
    for pid, nhs in patients:
        paths = (
            f"{FHIR}/Patient?" + urlencode({"identifier": f"{NHS_NUMBER}|{nhs}"}),
            f"{FHIR}/Patient/{quote(pid)}",
            f"{FHIR}/Condition?" + urlencode({"patient": f"Patient/{pid}"}),
            f"{FHIR}/Observation?" + urlencode({"patient": f"Patient/{pid}"}),
        )
        cycle += [(label, kind, path) for (label, kind), path in zip(QUERIES, paths, strict=True)]
    return cycle


def sql_requests(patients: list[tuple[str, str]]) -> list[Request]:
    """The same requests as the statements RecordStore.read and RecordStore.search send to
    PostgreSQL, compiled from the store's own query code (psycopg's parameter style)."""
    from sqlalchemy import select
    from sqlalchemy.dialects.postgresql import psycopg as pg

    from joinedup.records.store import search as searching
    from joinedup.records.store.tables import resources

    dialect = pg.dialect()  # type: ignore[no-untyped-call]

    def compiled(
        statement: Any, values: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        done = statement.compile(dialect=dialect)
        return str(done), dict(done.construct_params(values))

    def search(kind: str, query: dict[str, str]) -> list[Statement]:
        ready = searching.prepared(kind, query)  # as RecordStore.search, for the system user
        return [
            (*compiled(ready.page, ready.values), None),
            (*compiled(ready.total, ready.values), (ready.count, ready.offset)),
        ]

    def read(kind: str, rid: str) -> list[Statement]:
        c = resources.c
        row = select(c.version_id, c.last_updated, c.deleted, c.body).where(
            c.resource_type == kind, c.resource_id == rid
        )
        return [(*compiled(row), None)]

    cycle: list[Request] = []
    for pid, nhs in patients:
        statements = (
            search("Patient", {"identifier": f"{NHS_NUMBER}|{nhs}"}),
            read("Patient", pid),
            search("Condition", {"patient": f"Patient/{pid}"}),
            search("Observation", {"patient": f"Patient/{pid}"}),
        )
        cycle += [(label, kind, s) for (label, kind), s in zip(QUERIES, statements, strict=True)]
    return cycle


Record = tuple[str, str, float, str]  # (label, class, seconds, outcome)
Send = Callable[[Any], Awaitable[str]]  # sends one request's payload; its outcome, never raises


class _StartLine:
    """Where the clients wait after one untimed request each (their connections open and warm),
    so that the clock starts with every client ready and no client's first request is timed."""

    def __init__(self, clients: int, duration: float) -> None:
        self.waiting, self.duration = clients, duration
        self.go = asyncio.Event()
        self.started = self.deadline = 0.0

    async def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.started = time.perf_counter()
            self.deadline = self.started + self.duration
            self.go.set()
        await self.go.wait()


async def _closed_loop(
    senders: list[Send], cycle: list[Request], duration: float
) -> tuple[list[Record], float]:
    """Each sender is one client with its own connection, sending its next request when its
    last has answered, from its own place in the cycle (spread over the cycle and over the
    four kinds of request), until the deadline; every request's latency and outcome."""
    done: list[Record] = []
    line = _StartLine(len(senders), duration)

    async def client(index: int, send: Send) -> None:
        turn = index * len(cycle) // len(senders) + index
        await send(cycle[turn % len(cycle)][2])  # untimed: opens and warms the connection
        await line.arrive()
        while time.perf_counter() < line.deadline:
            label, kind, payload = cycle[turn % len(cycle)]
            turn += 1
            began = time.perf_counter()
            outcome = await send(payload)
            done.append((label, kind, time.perf_counter() - began, outcome))

    tasks = [client(i, send) for i, send in enumerate(senders)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + REQUEST_TIMEOUT_S + 30)
    except TimeoutError:
        done.append(("(generator)", "", REQUEST_TIMEOUT_S, "GeneratorTimeout"))
    return done, time.perf_counter() - (line.started or time.perf_counter())


class KeepAlive:
    """One client's keep-alive HTTP/1.1 connection on asyncio streams: GET a path, read the
    whole response (Content-Length or chunked), give its status; reconnects when the server
    closes. A small fraction of httpx's CPU a request (under 0.1 ms against 1.2-1.7 here), so
    the load generator leaves the shared cores to the server it measures."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """Status and body of GET `path` (may raise OSError, asyncio.IncompleteReadError,
        ValueError for a response it cannot read)."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            if "content-length" in fields:
                body = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                body = await self._chunks(reader)
            else:
                raise ValueError("a response with neither Content-Length nor chunks")
        except BaseException:
            await self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers from this server: the closing line
        return b"".join(parts)

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


async def _http_load(
    base_url: str, token: str, cycle: list[Request], clients: int, duration: float
) -> tuple[list[Record], float]:
    where = urlsplit(base_url)
    host, port = where.hostname or "127.0.0.1", where.port or 80

    def sender(http: KeepAlive) -> Send:
        async def send(path: str) -> str:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    return str((await http.get(path))[0])
            except TimeoutError:
                return "ReadTimeout"
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                return type(err).__name__

        return send

    connections = [KeepAlive(host, port, token) for _ in range(clients)]
    try:
        return await _closed_loop([sender(c) for c in connections], cycle, duration)
    finally:
        for connection in connections:
            await connection.close()


async def _sql_load(
    conninfo: str, cycle: list[Request], clients: int, duration: float
) -> tuple[list[Record], float]:
    import psycopg

    def sender(conn: psycopg.AsyncConnection[Any]) -> Send:
        async def send(statements: list[Statement]) -> str:
            try:
                async with conn.cursor() as cur:
                    previous: list[Any] | None = None
                    for statement in statements:
                        if needed(statement, previous):
                            await cur.execute(statement[0], statement[1])
                            previous = await cur.fetchall()
            except psycopg.Error as err:
                return type(err).__name__
            return "ok"

        return send

    async with AsyncExitStack() as stack:
        senders = [
            sender(
                await stack.enter_async_context(
                    await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                )
            )
            for _ in range(clients)
        ]
        return await _closed_loop(senders, cycle, duration)


def run_load(side: str, target: str, token: str, cycle: list[Request], clients: int,
             duration: float) -> dict[str, Any]:  # fmt: skip
    """One side's closed-loop load (in a child process): its records, wall time and CPU."""
    cpu = time.process_time()
    if side == "api":
        done, elapsed = asyncio.run(_http_load(target, token, cycle, clients, duration))
    else:
        done, elapsed = asyncio.run(_sql_load(target, cycle, clients, duration))
    return {"records": done, "elapsed_s": elapsed, "client_cpu_s": time.process_time() - cpu}


def _in_child(side: str, target: str, token: str, cycle: list[Request], clients: int,
              duration: float) -> dict[str, Any]:  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        future = pool.submit(run_load, side, target, token, cycle, clients, duration)
        result: dict[str, Any] = future.result(timeout=duration + REQUEST_TIMEOUT_S + 120)
        return result


# --- checking the floor finds what the API finds ------------------------------------------------


def _ids(bodies: list[Any]) -> list[str]:
    return [json.loads(b)["id"] for b in bodies]


def check_and_time_alone(
    http: httpx.Client, conninfo: str, api_cycle: list[Request], sql_cycle: list[Request]
) -> dict[str, dict[str, float]]:
    """One client on each side over the first CHECKED patients: the API and the floor must give
    the same resources (and totals); the median of each request, in ms."""
    import psycopg

    times: dict[str, dict[str, list[float]]] = {"api": {}, "sql": {}}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for (label, kind, path), (_, _, statements) in zip(api_cycle, sql_cycle, strict=True):
            began = time.perf_counter()
            response = http.get(path)
            times["api"].setdefault(label, []).append(time.perf_counter() - began)
            response.raise_for_status()
            answer = response.json()
            began = time.perf_counter()
            rows: list[list[Any]] = []
            for statement in statements:
                if needed(statement, rows[-1] if rows else None):
                    rows.append(conn.execute(statement[0], statement[1]).fetchall())
            times["sql"].setdefault(label, []).append(time.perf_counter() - began)
            if kind == "read":
                same = answer["id"] == json.loads(rows[0][0][3])["id"]
            else:
                found = [e["resource"]["id"] for e in answer.get("entry", [])]
                total = rows[1][0][0] if len(rows) > 1 else len(rows[0])  # offset 0 here
                same = answer["total"] == total and found == _ids([r[0] for r in rows[0]])
            if not same:
                raise RuntimeError(f"the floor's SQL and the API disagree on {label} ({path})")
    return {
        side: {label: round(statistics.median(t) * 1000, 2) for label, t in by_label.items()}
        for side, by_label in times.items()
    }


def _found(answer: dict[str, Any]) -> tuple[Any, ...]:
    """What a response shows: a Bundle's total and resources, or a resource's id and version."""
    if answer.get("resourceType") == "Bundle":
        return answer.get("total"), [e["resource"]["id"] for e in answer.get("entry", [])]
    return answer.get("resourceType"), answer.get("id"), answer.get("meta", {}).get("versionId")


def check_load_client(
    http: httpx.Client, base_url: str, token: str, api_cycle: list[Request]
) -> None:
    """The load generator's client (KeepAlive, one connection) gets what httpx gets for the
    same requests: the same status, resources and totals."""
    where = urlsplit(base_url)

    async def fetch() -> list[tuple[int, bytes]]:
        connection = KeepAlive(where.hostname or "127.0.0.1", where.port or 80, token)
        try:
            return [await connection.get(path) for _, _, path in api_cycle]
        finally:
            await connection.close()

    for (label, _, path), (status, body) in zip(api_cycle, asyncio.run(fetch()), strict=True):
        answer = http.get(path)
        if status != answer.status_code or _found(json.loads(body)) != _found(answer.json()):
            raise RuntimeError(
                f"the load generator's client and httpx disagree on {label} ({path})"
            )


# --- summaries ---------------------------------------------------------------------------------


def summarise(load: dict[str, Any]) -> dict[str, Any]:
    """p50/p95/p99, throughput and errors: overall, by class (read, search) and by request."""
    done: list[Record] = [(r[0], r[1], r[2], r[3]) for r in load["records"]]
    elapsed: float = load["elapsed_s"]

    def stats(rows: list[Record]) -> dict[str, Any]:
        ms = sorted(r[2] * 1000 for r in rows)
        return {
            "requests": len(rows),
            "errors": sum(1 for r in rows if r[3] not in ("200", "ok")),
            "throughput_rps": round(len(rows) / elapsed, 1),
            "p50_ms": round(percentile(ms, 50), 2),
            "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(ms[-1], 2) if ms else None,
        }

    return {
        **stats(done),
        "outcomes": dict(Counter(r[3] for r in done)),
        "by_class": {k: stats([r for r in done if r[1] == k]) for k in ("read", "search")},
        "by_request": {q: stats([r for r in done if r[0] == q]) for q, _ in QUERIES},
        "elapsed_s": round(elapsed, 2),
        "client_cpu_s": round(load["client_cpu_s"], 2),
    }


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the API server ----------------------------------------------------------------------------


def _sign_in(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for the server to answer, then sign in as the demo system user; its token."""
    began = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=5.0) as http:
        while time.perf_counter() - began < READY_TIMEOUT_S:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"records serve exited with code {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                answer = http.post(
                    "/api/v1/token", json={"username": "system", "password": "system-demo-2026"}
                )
                answer.raise_for_status()
                token: str = answer.json()["access_token"]
                return token
            except httpx.HTTPError:
                time.sleep(0.5)
    raise RuntimeError(f"records serve did not answer within {READY_TIMEOUT_S:.0f} s")


def _listening(port: int) -> int:
    """How many sockets listen on TCP `port` (IPv4, Linux /proc/net/tcp; 0 elsewhere)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return 0
    rows = [line.split() for line in table.read_text().splitlines()[1:]]
    return sum(1 for r in rows if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port)


def _wait_for_workers(port: int, workers: int) -> None:
    """Wait until each of `workers` listens on `port` (records serve gives each a socket of
    its own): the first answers the sign-in while the others may still be starting, and
    connections made before they listen all go to it and stay there (keep-alive)."""
    began = time.perf_counter()
    while workers > 1 and _listening(port) < workers:
        if time.perf_counter() - began > READY_TIMEOUT_S:
            raise RuntimeError(f"only {_listening(port)} of {workers} workers listen on {port}")
        time.sleep(0.2)


def bench_queries(
    cluster: Cluster,
    database: str,
    warehouse: Path,
    patients: list[tuple[str, str]],
    work: Path,
    *,
    clients: int,
    duration: float,
    workers: int = 2,
) -> dict[str, Any]:
    """The API's load and the floor's, on the loaded store: summaries and CPU of each part;
    the API served by `workers` processes."""
    import psycopg

    with psycopg.connect(cluster.conninfo(database), autocommit=True) as conn:
        conn.execute("ANALYZE")  # as autovacuum would after a bulk load; both sides gain
    env = {**os.environ, "JOINEDUP_ACCESS_DB": str(work / "access.sqlite"),
           "JOINEDUP_MODE": "demo"}  # fmt: skip
    subprocess.run(
        [_joinedup(), "users", "demo", "-w", str(warehouse)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    api_cycle, sql_cycle = http_requests(patients), sql_requests(patients)
    conninfo = cluster.conninfo(database)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = work / "records-serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_joinedup(), "records", "serve", "--records", cluster.url(database),
             "-w", str(warehouse), "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        token = _sign_in(base_url, proc, log)
        _wait_for_workers(port, workers)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers=headers) as http:
            checked = CHECKED * len(QUERIES)
            alone = check_and_time_alone(http, conninfo, api_cycle[:checked], sql_cycle[:checked])
            check_load_client(http, base_url, token, api_cycle[:checked])
        parts: dict[str, Any] = {}
        for side, target, cycle in (("sql", conninfo, sql_cycle), ("api", base_url, api_cycle)):
            loadavg = _loadavg()
            server, pg, busy = (
                _tree_cpu_seconds(proc.pid),
                _cluster_cpu_seconds(cluster),
                _machine_busy_seconds(),
            )
            load = _in_child(side, target, token, cycle, clients, duration)
            summary = summarise(load)
            summary["api_server_cpu_s"] = round(_tree_cpu_seconds(proc.pid) - server, 2)
            summary["api_server_workers"] = workers
            summary["postgresql_cpu_s"] = round(_cluster_cpu_seconds(cluster) - pg, 2)
            summary["machine_busy_cpu_s"] = round(_machine_busy_seconds() - busy, 2)
            summary["loadavg_before"] = loadavg
            summary["alone_median_ms"] = alone[side]
            parts[side] = summary
    finally:
        _stop(proc)
        if any(part.get("errors") for part in locals().get("parts", {}).values()):
            # the work folder goes at the end: show why requests failed while it is there
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    return parts


# --- the benchmark ---------------------------------------------------------------------------


def bench_records(
    work: Path,
    *,
    people: int = PEOPLE,
    clients: int = 50,
    duration: float = 60.0,
    ingest_only: bool = False,
    validation_workers: int = 0,
    workers: int = 2,
) -> list[dict[str, Any]]:
    """records_ingest_resources_per_s, fhir_read_p95_ms and fhir_search_p95_ms (see above);
    with `ingest_only`, the first alone."""
    work = work / "records-bench"
    work.mkdir(parents=True, exist_ok=True)
    loadavg_build = _loadavg()
    warehouse, ndjson = build_population(work, people)
    resources = _lines(ndjson)
    patients = sample_patients(ndjson, SAMPLE)
    with bench_cluster() as cluster:
        loadavg_copy = _loadavg()
        copy_s = copy_floor(cluster, ndjson)
        loadavg_load = _loadavg()
        load_s, summary = records_load(cluster, ndjson, "records", validation_workers)
        parts = (
            {}
            if ingest_only
            else bench_queries(
                cluster,
                "records",
                warehouse,
                patients,
                work,
                clients=clients,
                duration=duration,
                workers=workers,
            )
        )
    ndjson_bytes = sum(p.stat().st_size for p in _files(ndjson))
    shutil.rmtree(work, ignore_errors=True)

    common = {"people": people, "resources": resources, "cpus": os.cpu_count(),
              "postgresql": SERVER_CONF}  # fmt: skip
    rate, floor_rate = resources / load_s, resources / copy_s
    results: list[dict[str, Any]] = [
        {
            "name": "records_ingest_resources_per_s",
            "value": rate,
            "unit": "resources/s",
            "baseline_name": "postgresql_copy_jsonb_same_server",
            "baseline_value": floor_rate,
            "ratio": load_s / copy_s,
            "detail": {
                **common,
                "load_s": round(load_s, 2),
                "copy_s": round(copy_s, 2),
                "load_summary": summary,
                "validation_workers": validation_workers,
                "ndjson_bytes": ndjson_bytes,
                "loadavg_before_synth": loadavg_build,
                "loadavg_before_copy": loadavg_copy,
                "loadavg_before_load": loadavg_load,
            },
        }
    ]
    if ingest_only:
        return results
    api, sql = parts["api"], parts["sql"]
    for name, kind, target in (
        ("fhir_read_p95_ms", "read", TARGET_READ_P95_MS),
        ("fhir_search_p95_ms", "search", TARGET_SEARCH_P95_MS),
    ):
        mine, floor = api["by_class"][kind], sql["by_class"][kind]
        results.append(
            {
                "name": name,
                "value": mine["p95_ms"],
                "unit": "ms",
                "baseline_name": "same_sql_on_same_database_p95",
                "baseline_value": floor["p95_ms"],
                "ratio": mine["p95_ms"] / floor["p95_ms"],
                "target_ms": target,
                "passed": mine["p95_ms"] <= target and api["errors"] == 0,
                "p50_ms": mine["p50_ms"],
                "p99_ms": mine["p99_ms"],
                "throughput_rps": mine["throughput_rps"],
                "errors": mine["errors"],
                "clients": clients,
                "duration_s": duration,
                "detail": {**common, "api": api, "sql": sql, "sampled_patients": len(patients)},
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=PEOPLE, help="People in the population.")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load each side.")
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients each side.")
    parser.add_argument("--out", type=Path, help="Also write the results here (JSON).")
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="Measure records_ingest_resources_per_s alone (no API load: minutes, not an hour).",
    )
    parser.add_argument(
        "--validation-workers",
        type=int,
        default=0,
        help="records load --validation-workers (processes validating alongside the writes).",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="records serve --workers (server processes)."
    )
    args = parser.parse_args()
    if args.people < 10 or args.clients < 1 or args.duration <= 0:
        parser.error("--people must be at least 10, --clients at least 1, --duration above 0")
    with tempfile.TemporaryDirectory(prefix="joinedup-bench-") as tmp:
        results = bench_records(
            Path(tmp),
            people=args.people,
            clients=args.clients,
            duration=args.duration,
            ingest_only=args.ingest_only,
            validation_workers=args.validation_workers,
            workers=args.workers,
        )
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
