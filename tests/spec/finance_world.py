"""A tiny warehouse that `joinedup finance run` can run on: the population health world
(`phm_world`) with an ICS, organisations, provider collaboratives, a build record covering
four financial years, and the population health tables finance reads (`phm_person` now and a
year before, and a `phm_run` naming the index date), loaded into an engine as a warehouse
exported to Parquet would be."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from phm_world import EXTRACT, INDEX, World
from spec_tables import table
from sqlglot import exp

from joinedup.population.codelists import load_codelists
from joinedup.population.conditions import phm_person
from joinedup.warehouse.engines import DuckDBEngine, Engine
from joinedup.warehouse.schema import ACTIVITY_TYPES

#: First day of the history: four whole financial years before the extract date.
HISTORY_START = date(2021, 4, 1)
#: Providers that activity is recorded against (None: no provider, e.g. a GP consultation).
PROVIDERS = ("RA1", "RA2", "RC1", "RM1", None)
ORGANISATIONS = (
    ("Q1", "Test ICB", "icb", None),
    ("RA1", "Northby Hospitals", "acute_trust", "E1"),
    ("RA2", "Southby Hospitals", "acute_trust", "E2"),
    ("RC1", "Community Care", "community_trust", None),
    ("RM1", "Mental Health Partnership", "mental_health_trust", None),
    ("RY1", "Ambulance Service", "ambulance_trust", None),
    ("LA1", "Northby Council", "local_authority", "E1"),
    ("LA2", "Southby Council", "local_authority", "E2"),
)
COLLABORATIVES = (
    ("C1", "Northby Partnership", "vertical", "E1", ("LA1", "RA1")),
    ("C2", "Southby Partnership", "vertical", "E2", ("LA2", "RA2")),
    ("C3", "Acute Collaborative", "horizontal", None, ("RA1", "RA2")),
)


@functools.cache
def _phm_sql() -> dict[str, str]:
    """phm_person now and a year before, as DuckDB renders the syntax trees: built and
    rendered once per test run (the query is large; only the world changes between examples)."""
    codes = load_codelists()
    year_ago = INDEX - timedelta(days=365)
    with DuckDBEngine() as duck:
        return {
            name: duck.render(phm_person(when, codes, EXTRACT))
            for name, when in (("phm_person", INDEX), ("phm_person_previous", year_ago))
        }


def add_activity(
    world: World,
    person_id: int,
    kind: str,
    when: date,
    provider: str | None,
    cost_gbp: Decimal,
) -> World:
    """One contact with its provider and cost (phm_world's `act` has neither)."""
    world.act(person_id, kind, when)
    world.rows["activity"][-1] |= {"provider_code": provider, "cost_gbp": cost_gbp}
    return world


def phm_tables(world: World) -> dict[str, pa.Table]:
    """The population health tables finance reads, computed from `world` (by DuckDB: the
    engines agree on them, tests/spec/test_phm_engines_agree.py) as `joinedup phm run` would
    leave them: `phm_person` now and a year before, and a `phm_run` naming the index date."""
    with DuckDBEngine() as duck:
        world.load(duck)
        out = {name: duck.execute_text(sql) for name, sql in _phm_sql().items()}
    out["phm_run"] = pa.table(
        {
            "run_id": ["r1"],
            "index_date": pa.array([INDEX], pa.date32()),
            "extract_date": pa.array([EXTRACT], pa.date32()),
        }
    )
    return out


class Reversed(Engine):
    """An engine whose tables are loaded with their rows in reverse order, as Spark may read
    a warehouse's Parquet files in any order: output must not depend on row order."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine

    def load(self, name: str, data: pa.Table) -> None:
        self.inner.load(name, data.take(pa.array(range(data.num_rows - 1, -1, -1), pa.int64())))

    def load_parquet(self, name: str, files: Iterable[Path]) -> None:
        raise NotImplementedError

    def execute(self, query: exp.Query) -> pa.Table:
        return self.inner.execute(query)

    def drop(self, name: str) -> None:
        self.inner.drop(name)

    def table_names(self) -> list[str]:
        return self.inner.table_names()


def load_finance_world(
    engine: Engine, world: World, phm: dict[str, pa.Table], *, reverse: bool = False
) -> None:
    """Load `world`, everything finance needs beside it and the population health tables
    `phm` (from `phm_tables`) into `engine`, as a warehouse exported to Parquet would be;
    with `reverse`, every table's rows in reverse order."""
    if reverse:
        engine = Reversed(engine)
    world.load(engine)
    for name, data in phm.items():
        engine.load(name, data)
    engine.load(
        "ics", table("ics", [{"ics_code": "Q1", "ics_name": "Test ICS", "is_real": False}], {})
    )
    engine.load(
        "organisation",
        table(
            "organisation",
            [
                {
                    "organisation_code": c,
                    "organisation_name": n,
                    "organisation_type": k,
                    "place_code": p,
                }
                for c, n, k, p in ORGANISATIONS
            ],
            {},
        ),
    )
    engine.load(
        "collaborative",
        table(
            "collaborative",
            [
                {"collaborative_code": c, "collaborative_name": n, "kind": k, "place_code": p}
                for c, n, k, p, _ in COLLABORATIVES
            ],
            {},
        ),
    )
    engine.load(
        "collaborative_member",
        table(
            "collaborative_member",
            [
                {"collaborative_code": c, "organisation_code": m}
                for c, _, _, _, members in COLLABORATIVES
                for m in members
            ],
            {},
        ),
    )
    engine.load(
        "build",
        table(
            "build",
            [
                {
                    "build_id": "b1",
                    "source": "synthetic",
                    "built_at": "2025-04-02T00:00:00+00:00",
                    "joinedup_version": "0",
                    "seed": 1,
                    "people_count": len(world.rows["person"]),
                    "footprint": "spec",
                    "history_start_date": HISTORY_START,
                    "history_end_date": EXTRACT,
                    "parameters": "{}",
                }
            ],
            {},
        ),
    )


def kinds() -> list[str]:
    """Activity types the need model costs (social care is the council's)."""
    return [k for k in ACTIVITY_TYPES if k != "social_care_package"]
