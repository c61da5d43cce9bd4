"""Tiny canonical tables for spec tests, built from the few columns each test cares about."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa

from joinedup.warehouse.engines import Engine
from joinedup.warehouse.schema import ACTIVITY_TYPES, TABLES, conform


def table(name: str, rows: Iterable[dict[str, Any]], defaults: dict[str, Any]) -> pa.Table:
    """A canonical table from row dicts, filling unspecified columns from `defaults` (and
    nullable ones nobody gave with NULL)."""
    schema = TABLES[name].arrow_schema()
    full = [{**defaults, **row} for row in rows]
    data = {
        f.name: pa.array([r[f.name] if not f.nullable else r.get(f.name) for r in full], f.type)
        for f in schema
    }
    return conform(TABLES[name], pa.table(data, schema=schema))


def person(*rows: dict[str, Any]) -> pa.Table:
    defaults = {
        "birth_year": 1980,
        "birth_month": 1,
        "sex": "female",
        "ethnic_category": "A",
        "lsoa_code": "E01000001",
        "imd_decile": 5,
        "practice_code": "P1",
        "death_date": None,
        "national_data_opt_out": False,
    }
    return table("person", rows, defaults)


def p(
    person_id: int,
    born: tuple[int, int],
    sex: str = "female",
    *,
    died: date | None = None,
    opted_out: bool = False,
    practice: str = "P1",
) -> dict[str, Any]:
    """One person: id, (birth year, birth month), sex and what else matters to the test."""
    return {
        "person_id": person_id,
        "birth_year": born[0],
        "birth_month": born[1],
        "sex": sex,
        "death_date": died,
        "national_data_opt_out": opted_out,
        "practice_code": practice,
    }


def activity(*rows: tuple[int, int, str, date, Decimal, int | None]) -> pa.Table:
    """Rows of (activity_id, person_id, activity_type, start_date, cost_gbp, bed days)."""
    return table(
        "activity",
        (
            {
                "activity_id": aid,
                "person_id": pid,
                "activity_type": kind,
                "start_date": start,
                "cost_gbp": cost,
                "length_of_stay_days": los,
                "point_of_delivery": ACTIVITY_TYPES[kind],
            }
            for aid, pid, kind, start, cost, los in rows
        ),
        {"end_date": None, "provider_code": "RXX", "specialty_code": None},
    )


def diagnosis(
    rows: Iterable[tuple[int, date, str, str]], setting: str, organisation_code: str
) -> pa.Table:
    """Diagnosis rows (person_id, diagnosis_date, code_system, code) in one setting."""
    return table(
        "diagnosis",
        ({"person_id": i, "diagnosis_date": d, "code_system": s, "code": c} for i, d, s, c in rows),
        {"setting": setting, "organisation_code": organisation_code},
    )


def footprint(engine: Engine) -> None:
    """Two places, three practices: P1 and P2 in Northby (E1), P3 in Southby (E2)."""
    engine.load(
        "place",
        table(
            "place",
            [
                {"place_code": "E1", "place_name": "Northby"},
                {"place_code": "E2", "place_name": "Southby"},
            ],
            {"profile": None},
        ),
    )
    engine.load(
        "practice",
        table(
            "practice",
            [
                {"practice_code": "P1", "place_code": "E1"},
                {"practice_code": "P2", "place_code": "E1"},
                {"practice_code": "P3", "place_code": "E2"},
            ],
            {
                "practice_name": "Surgery",
                "pcn_code": "U1",
                "postcode": None,
                "latitude": None,
                "longitude": None,
                "registered_count": 1000,
            },
        ),
    )


def rows(result: pa.Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The result's rows as tuples, after checking its columns are exactly `columns`."""
    assert result.column_names == list(columns)
    return [tuple(r[c] for c in columns) for r in result.to_pylist()]
