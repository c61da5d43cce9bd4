"""`synth --parquet DIR`: every canonical table also lands as Parquet, row for row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from joinedup.footprint import default_footprint
from joinedup.synth import synthesise
from joinedup.warehouse.schema import ALL_TABLES


def test_parquet_copy_holds_every_table_with_the_warehouse_rows(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    parquet = tmp_path / "parquet"
    result = synthesise(
        default_footprint(), people=3_000, seed=9, warehouse=warehouse, parquet_dir=parquet,
        workers=1,
    )  # fmt: skip
    assert sorted(p.name for p in result.parquet) == sorted(f"{t.name}.parquet" for t in ALL_TABLES)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for table in ALL_TABLES:
            written = pq.read_table(parquet / f"{table.name}.parquet")
            assert written.column_names == table.column_names, table.name
            (rows,) = con.execute(f"SELECT count(*) FROM {table.name}").fetchone() or (0,)
            assert written.num_rows == rows, table.name
    finally:
        con.close()
