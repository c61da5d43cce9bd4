"""A Spark engine that joins a session it did not start (a notebook's, another engine's)
leaves it as it found it: its tables go when it closes, the session and others' tables stay."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlglot import exp

from joinedup.warehouse.engines import SparkEngine

pytestmark = pytest.mark.spark


def test_an_engine_in_a_shared_session_forgets_its_tables_on_close(
    spark_engine: SparkEngine,
) -> None:
    spark_engine.drop_all()
    spark_engine.load("owner_table", pa.table({"x": [1]}))
    guest = SparkEngine("local[2]", app_name="joinedup-spec")
    assert guest.session is spark_engine.session
    guest.load("fhir_load", pa.table({"load_seq": [1, 2]}))
    guest.load("dropped_early", pa.table({"y": [3]}))
    guest.drop("dropped_early")
    assert "fhir_load" in spark_engine.table_names()  # one session: the owner sees it meanwhile
    guest.close()
    # The next engine over another lake must not find this one's fhir_load.
    assert "fhir_load" not in spark_engine.table_names()
    assert "owner_table" in spark_engine.table_names()
    # ...and the session it joined still runs.
    assert spark_engine.execute(exp.select("x").from_("owner_table")).column("x").to_pylist() == [1]
    spark_engine.drop_all()
