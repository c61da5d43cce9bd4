"""Benchmark: latency of the dashboard's JSON API under load, on loopback.

`joinedup serve` runs as a separate process over a warehouse (the default demo: 1.2 million
people, seed 42), with its own temporary access database holding the demo users, so the
benchmark never touches the repository's. Once `/ready` answers 200 (figures warmed), a load
generator opens exactly `clients` concurrent keep-alive connections (asyncio + httpx, closed
loop: each client sends its next request when the last one has answered) and runs each over a
weighted round-robin of the main API routes until the deadline; every request's latency
(time.perf_counter) and status is kept. The worklist route goes with the demo clinician's token
(their own PCN, reason=mdt, limit=50; each call writes an audit row), every other route with the
analyst's.

The generator is bounded: a per-request timeout, an overall asyncio.wait_for and a
deadline checked before each request, so it stops even if the server hangs. By default it runs
in a child process of its own (its CPU time and the server's are both reported: on a 2-core
machine client and server share the CPUs). The server is always stopped at the end.

Run alone for quick trials:

    .venv/bin/python benchmarks/api.py --warehouse data/joinedup.duckdb --duration 10 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

TARGET_P95_MS = 200.0
READY_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 10.0
DEMO_PEOPLE = 1_200_000
DEMO_SEED = 42

# Weighted round-robin: each client walks this cycle (starting at a different point), so every
# fourteen requests are two overviews, two place profiles (in turn over every place), two
# indicators' values (at place, PCN and practice level in turn, every third as a CSV download),
# one each of the rest. The worklist route is the clinician's; every other route is the analyst's.
ROUTE_WEIGHTS: dict[str, int] = {
    "/api/v1/overview": 2,
    "/api/v1/places": 1,
    "/api/v1/places/{place_code}": 2,
    "/api/v1/pcns": 1,
    "/api/v1/finance": 1,
    "/api/v1/data-quality": 1,
    "/api/v1/about": 1,
    "/api/v1/worklists/{pcn}": 1,
    "/api/v1/indicators": 1,
    "/api/v1/indicators/{indicator_id}": 2,
    "/api/v1/headlines/place/{place_code}": 1,
}
WORKLIST = "/api/v1/worklists/{pcn}"
#: Indicators asked for in turn: a prevalence, an activity rate and a standardised rate.
INDICATORS = ("diabetes_prevalence", "emergency_admissions_crude", "emergency_admissions_dsr")
PLACE = "/api/v1/places/{place_code}"
INDICATOR = "/api/v1/indicators/{indicator_id}"
HEADLINES = "/api/v1/headlines/place/{place_code}"
#: Indicator values are asked for in turn at each level, with a download every third time.
INDICATOR_QUERIES = ("?level=place", "?level=pcn", "?level=practice&format=csv")


def _joinedup() -> str:
    return str(Path(sys.executable).with_name("joinedup"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (everything but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def build_demo(warehouse: Path, outputs: Path) -> None:
    """The default demo: `joinedup demo --people 1200000 --seed 42` (also makes demo users)."""
    subprocess.run(
        [
            _joinedup(), "demo", "--people", str(DEMO_PEOPLE), "--seed", str(DEMO_SEED),
            "--warehouse", str(warehouse), "--outputs", str(outputs), "--no-serve",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def people_in(warehouse: Path) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM person").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


# --- the load generator ----------------------------------------------------------------------


def _schedule(places: list[str], pcn: str) -> list[tuple[str, str, str]]:
    """(route label, URL path, token role) for one full cycle of the weighted round-robin."""
    cycle: list[tuple[str, str, str]] = []
    place_turn = indicator_turn = 0
    for route, weight in ROUTE_WEIGHTS.items():
        for _ in range(weight):
            if route == PLACE:
                path = f"/api/v1/places/{places[place_turn % len(places)]}"
                place_turn += 1
            elif route == WORKLIST:
                path = f"/api/v1/worklists/{pcn}?reason=mdt&limit=50"
            elif route == INDICATOR:
                indicator = INDICATORS[indicator_turn % len(INDICATORS)]
                query = INDICATOR_QUERIES[indicator_turn % len(INDICATOR_QUERIES)]
                path = f"/api/v1/indicators/{indicator}{query}"
                indicator_turn += 1
            elif route == HEADLINES:
                path = f"/api/v1/headlines/place/{places[place_turn % len(places)]}"
                place_turn += 1
            else:
                path = route
            cycle.append((route, path, "clinician" if route == WORKLIST else "analyst"))
    # Interleave so that one client's consecutive requests differ (a, b, a, c, ...).
    return [cycle[i] for i in sorted(range(len(cycle)), key=lambda i: (i % 2, i))]


async def _load(
    base_url: str,
    tokens: dict[str, str],
    places: list[str],
    pcn: str,
    clients: int,
    duration: float,
) -> tuple[list[tuple[str, float, str]], float]:
    cycle = _schedule(places, pcn)
    headers = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
    records: list[tuple[str, float, str]] = []  # (route, seconds, status or exception name)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)

    async def client(index: int) -> None:
        # One connection per client, as 50 separate users would have (a shared httpx pool
        # costs the generator more CPU per request at this concurrency).
        turn = index * len(cycle) // clients  # spread the clients over the cycle
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
            while time.perf_counter() < deadline:
                route, path, role = cycle[turn % len(cycle)]
                turn += 1
                began = time.perf_counter()
                try:
                    response = await http.get(path, headers=headers[role])
                    outcome = str(response.status_code)
                except httpx.HTTPError as err:
                    outcome = type(err).__name__
                records.append((route, time.perf_counter() - began, outcome))

    started = time.perf_counter()
    deadline = started + duration
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + REQUEST_TIMEOUT_S + 5)
    except TimeoutError:
        records.append(("(generator)", REQUEST_TIMEOUT_S, "GeneratorTimeout"))
    elapsed = time.perf_counter() - started
    return records, elapsed


def run_load(
    base_url: str,
    tokens: dict[str, str],
    places: list[str],
    pcn: str,
    clients: int,
    duration: float,
) -> dict[str, Any]:
    """Run the closed-loop load; return the raw records, wall time and this process's CPU."""
    cpu = time.process_time()
    records, elapsed = asyncio.run(_load(base_url, tokens, places, pcn, clients, duration))
    return {"records": records, "elapsed_s": elapsed, "client_cpu_s": time.process_time() - cpu}


# --- the server ------------------------------------------------------------------------------


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> float:
    began = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=5.0) as http:
        while time.perf_counter() - began < READY_TIMEOUT_S:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"joinedup serve exited with code {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if http.get("/ready").status_code == 200:
                    return time.perf_counter() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"joinedup serve was not ready within {READY_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _sign_in(http: httpx.Client, username: str) -> str:
    response = http.post(
        "/api/v1/token", json={"username": username, "password": f"{username}-demo-2026"}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _solo(http: httpx.Client, cycle: list[tuple[str, str, str]], tokens: dict[str, str]) -> Any:
    """Median latency of each route with one client and nothing else going on (3 rounds)."""
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for _ in range(3):
        for route, path, role in cycle:
            began = time.perf_counter()
            response = http.get(path, headers={"Authorization": f"Bearer {tokens[role]}"})
            times.setdefault(route, []).append(time.perf_counter() - began)
            response.raise_for_status()
            sizes[route] = len(response.content)
    return (
        {r: round(sorted(t)[len(t) // 2] * 1000, 2) for r, t in times.items()},
        sizes,
    )


def bench_api(
    warehouse: Path,
    *,
    clients: int = 50,
    duration: float = 60.0,
    people: int | None = None,
    in_process: bool = False,
) -> list[dict[str, Any]]:
    """p95 latency of the main API routes under `clients` concurrent clients for `duration` s."""
    warehouse = warehouse.resolve()
    if not warehouse.is_file():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist")
    if people is None:
        people = people_in(warehouse)
    tmp = Path(tempfile.mkdtemp(prefix="joinedup-bench-api-"))
    env = {**os.environ, "JOINEDUP_ACCESS_DB": str(tmp / "access.sqlite"), "JOINEDUP_MODE": "demo"}
    subprocess.run(
        [_joinedup(), "users", "demo", "-w", str(warehouse)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    load_before = os.getloadavg()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_joinedup(), "serve", "--warehouse", str(warehouse), "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        ready_s = _wait_ready(proc, base_url, log)
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
            tokens = {role: _sign_in(http, role) for role in ("analyst", "clinician")}
            me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['clinician']}"})
            pcn = str(me.raise_for_status().json()["pcn_code"])
            places_response = http.get(
                "/api/v1/places", headers={"Authorization": f"Bearer {tokens['analyst']}"}
            )
            places = [str(p["place_code"]) for p in places_response.raise_for_status().json()]
            solo_ms, sizes = _solo(http, _schedule(places, pcn), tokens)
        server_cpu, busy = _cpu_seconds(proc.pid), _machine_busy_seconds()
        if in_process:
            load = run_load(base_url, tokens, places, pcn, clients, duration)
        else:
            spawn = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                load = pool.submit(
                    run_load, base_url, tokens, places, pcn, clients, duration
                ).result(timeout=duration + REQUEST_TIMEOUT_S + 120)
        server_cpu = _cpu_seconds(proc.pid) - server_cpu
        busy = _machine_busy_seconds() - busy
    finally:
        _stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)

    records: list[tuple[str, float, str]] = [tuple(r) for r in load["records"]]  # type: ignore[misc]
    elapsed: float = load["elapsed_s"]
    latencies = sorted(seconds * 1000 for _, seconds, _ in records)
    outcomes = Counter(outcome for _, _, outcome in records)
    errors = sum(n for outcome, n in outcomes.items() if not outcome.startswith("2"))
    by_route: dict[str, list[float]] = {}
    for route, seconds, _ in records:
        by_route.setdefault(route, []).append(seconds * 1000)
    per_route = {
        route: {
            "requests": len(ms),
            "p50_ms": round(percentile(sorted(ms), 50), 2),
            "p95_ms": round(percentile(sorted(ms), 95), 2),
            "errors": sum(1 for r in records if r[0] == route and not r[2].startswith("2")),
            "solo_ms": solo_ms.get(route),
            "bytes": sizes.get(route),
        }
        for route, ms in sorted(by_route.items())
    }
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    throughput = len(records) / elapsed
    detail = {
        "requests": len(records),
        "errors": errors,
        "outcomes": dict(outcomes),
        "throughput_rps": round(throughput, 1),
        "mean_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "per_route_p95_ms": {r: v["p95_ms"] for r, v in per_route.items()},
        "per_route": per_route,
        "clients": clients,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 2),
        "people": people,
        "generator": "in-process" if in_process else "child process",
        "client_cpu_s": round(load["client_cpu_s"], 2),
        "server_cpu_s": round(server_cpu, 2),
        # Everything else the machine did meanwhile (other processes; the parent process
        # waiting): CPU seconds, out of cpus x elapsed available.
        "other_cpu_s": round(busy - server_cpu - load["client_cpu_s"], 2),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "ready_s": round(ready_s, 1),
        "route_weights": ROUTE_WEIGHTS,
    }
    return [
        {
            "name": "api_p95_ms",
            "value": p95,
            "unit": "ms",
            "baseline_name": "target_200ms",
            "baseline_value": TARGET_P95_MS,
            "ratio": p95 / TARGET_P95_MS,
            "passed": p95 <= TARGET_P95_MS and errors == 0,
            "throughput_rps": throughput,
            "requests": len(records),
            "errors": errors,
            "p50_ms": p50,
            "p99_ms": p99,
            "per_route_p95_ms": detail["per_route_p95_ms"],
            "clients": clients,
            "duration_s": duration,
            "people": people,
            "detail": detail,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--warehouse", type=Path, required=True, help="A demo warehouse.")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load.")
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients.")
    parser.add_argument(
        "--in-process", action="store_true", help="Generate load in this process, not a child."
    )
    parser.add_argument("--out", type=Path, help="Also write the result here (JSON).")
    args = parser.parse_args()
    results = bench_api(
        args.warehouse, clients=args.clients, duration=args.duration, in_process=args.in_process
    )
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
