"""How each engine holds FHIR JSON and works on lists of it: the primitives the ViewDefinition
compiler (`joinedup.fhir.views`) builds every view from, one module per engine.

The compiler sees only `JsonDialect`; the JSON and list functions of DuckDB (`duckdb.py`) and
Spark (`spark.py`) live here, beside the engines that run them.
"""

from __future__ import annotations

from joinedup.warehouse.engines.dialects.base import JsonDialect
from joinedup.warehouse.engines.dialects.duckdb import DuckDBJson
from joinedup.warehouse.engines.dialects.spark import SparkJson

#: The JSON dialect of each engine, by the engine's sqlglot dialect name.
JSON_DIALECTS: dict[str, JsonDialect] = {"duckdb": DuckDBJson(), "spark": SparkJson()}

__all__ = ["JSON_DIALECTS", "DuckDBJson", "JsonDialect", "SparkJson"]
