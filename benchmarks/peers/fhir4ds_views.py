"""Run SQL-on-FHIR v2 ViewDefinitions with the peer, fhir4ds 0.5.1 (on DuckDB), over NDJSON.

Runs under `.venv-fhir4ds/bin/python` (fhir4ds==0.5.1 and its own DuckDB), never under
joinedup's environment, and imports nothing from joinedup:

    .venv-fhir4ds/bin/python benchmarks/peers/fhir4ds_views.py \
        --views V1.json V2.json --input DIR_OR_FILE... [--repeat N] [--loader native|resources]

Directories given to --input are read for `*.ndjson` files. Resources are loaded into one
in-memory fhir4ds database by one of fhir4ds's documented loaders:

- native (default): `load_from_json_file(path, use_native_json=True)`, one call per file, the
  loader fhir4ds documents as "optimized for large files" (DuckDB `read_json` + `to_json`). It
  is the fastest, but lossy: keys that DuckDB's schema sample (20,480 lines a file) never saw are
  dropped, absent keys come back as JSON nulls, and date-times are rewritten in UTC.
- resources: parse each line in Python and call `load_resources(resources)`, which inserts in
  batches of `SELECT '<json>' UNION ALL ...`; lossless, about 10 times slower.

Each view is run `--repeat` times through `ConnectedDatabase.execute(view).fetchall()` (SQL
generation, the query and fhir4ds's row conversion) and its fastest run is reported. Prints one
JSON object: {"peer", "version", "duckdb", "loader", "resources", "load_s", "views": {name:
{"rows", "seconds"} or {"error"}}, "total_view_s"}. Views are keyed by `name`, else file stem.
Loading (creating the database included) is timed apart from the views; imports are not timed.
fhir4ds's warnings (e.g. a FHIRPath it could not translate and replaced) go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import fhir4ds
from fhir4ds.datastore import ConnectedDatabase, FHIRDataStore
from fhir4ds.dialects import DuckDBDialect

# Every DuckDBDialect runs `INSTALL json; LOAD json;` on its connection. DuckDB 2 links json in
# statically, yet INSTALL still tries to download it, which fails offline (after ~2 s): the
# database cannot even be created, and the throwaway dialects fhir4ds makes while translating some
# FHIRPath (e.g. `first()`) fail too, which it hides by degrading the column to NULL. So the
# dialect's constructor gets a connection that skips INSTALL, then keeps the real connection.
_dialect_init = DuckDBDialect.__init__


class _SkipInstall:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSTALL JSON"):
            return self._connection.execute("LOAD json")
        return self._connection.execute(sql, *args)


def _init_without_install(self: Any, connection: Any = None, database: str = ":memory:") -> None:
    connection = connection or duckdb.connect(database)
    _dialect_init(self, connection=_SkipInstall(connection), database=database)
    self.connection = connection


DuckDBDialect.__init__ = _init_without_install  # type: ignore[method-assign]


def ndjson_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        files.extend(sorted(path.glob("*.ndjson")) if path.is_dir() else [path])
    if not files:
        sys.exit("no NDJSON files found in --input")
    return files


def load(files: list[Path], loader: str) -> ConnectedDatabase:
    """Create an in-memory fhir4ds database and load the files into it (as QuickConnect.memory)."""
    db = ConnectedDatabase(FHIRDataStore.with_duckdb(":memory:"), connection_type="DuckDB")
    for path in files:
        if loader == "native":
            db.load_from_json_file(str(path), use_native_json=True)
        else:
            with path.open(encoding="utf-8") as lines:
                db.load_resources([json.loads(line) for line in lines if line.strip()])
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=Path, nargs="+", required=True)
    parser.add_argument("--input", type=Path, nargs="+", required=True)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each view; best is kept")
    parser.add_argument("--loader", choices=["native", "resources"], default="native")
    args = parser.parse_args()
    views = {}
    for path in args.views:
        view = json.loads(path.read_text(encoding="utf-8"))
        views[view.get("name") or path.stem] = view
    files = ndjson_files(args.input)

    expected = sum(1 for path in files for line in path.open(encoding="utf-8") if line.strip())
    started = time.perf_counter()
    db = load(files, args.loader)
    load_s = time.perf_counter() - started
    resources = sum(db.datastore.get_resource_counts().values())
    if resources != expected:  # fhir4ds logs a file it fails to read and carries on
        sys.exit(f"fhir4ds loaded {resources} of the {expected} resources in --input")

    results: dict[str, dict[str, Any]] = {}
    for name, view in views.items():
        times, rows = [], 0
        try:
            for _ in range(max(1, args.repeat)):
                started = time.perf_counter()
                rows = len(db.execute(view).fetchall())
                times.append(time.perf_counter() - started)
        except Exception as error:  # a view fhir4ds cannot run is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
            continue
        results[name] = {"rows": rows, "seconds": round(min(times), 6)}

    print(
        json.dumps(
            {
                "peer": "fhir4ds",
                "version": fhir4ds.__version__,
                "duckdb": duckdb.__version__,
                "loader": args.loader,
                "resources": resources,
                "load_s": round(load_s, 6),
                "views": results,
                "total_view_s": round(sum(r.get("seconds", 0) for r in results.values()), 6),
            }
        )
    )


if __name__ == "__main__":
    main()
