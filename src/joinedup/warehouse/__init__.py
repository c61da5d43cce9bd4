"""The warehouse: canonical analytic tables, the engines that hold them, and the analytics.

Everything outside this package reaches engines through these names only.
"""

from joinedup.warehouse import analytics
from joinedup.warehouse.engines import ENGINE_KINDS, Engine, open_empty_engine, open_engine
from joinedup.warehouse.engines.dialects import JSON_DIALECTS, JsonDialect
from joinedup.warehouse.schema import ALL_TABLES, POPULATION_TABLES, TABLES, Table, render_markdown
from joinedup.warehouse.store import (
    BuildInfo,
    build_warehouse,
    copy_warehouse,
    export_parquet,
    footprint_tables,
)

__all__ = [
    "ALL_TABLES",
    "ENGINE_KINDS",
    "JSON_DIALECTS",
    "POPULATION_TABLES",
    "TABLES",
    "BuildInfo",
    "Engine",
    "JsonDialect",
    "Table",
    "analytics",
    "build_warehouse",
    "copy_warehouse",
    "export_parquet",
    "footprint_tables",
    "open_empty_engine",
    "open_engine",
    "render_markdown",
]
