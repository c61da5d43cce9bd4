"""The demo ICS as `make demo` builds it, shared by the acceptance tests that judge it."""

from __future__ import annotations

import pytest
from demo import DemoWarehouse

from joinedup.footprint import default_footprint
from joinedup.population.pipeline import run_phm
from joinedup.synth import synthesise
from joinedup.warehouse import open_engine

DEMO_PEOPLE = 1_200_000  # Makefile DEMO_PEOPLE
DEMO_SEED = 42  # Makefile DEMO_SEED


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> DemoWarehouse:
    """The default footprint, 1.2 million people, seed 42, with population health run."""
    warehouse = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    synthesise(default_footprint(), people=DEMO_PEOPLE, seed=DEMO_SEED, warehouse=warehouse)
    with open_engine("duckdb", warehouse=warehouse, read_only=False) as engine:
        return DemoWarehouse(warehouse, run_phm(engine))
