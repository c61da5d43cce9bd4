"""A tiny warehouse for population health spec tests: add people and their records by hand,
then load every canonical table (empty ones too) into an engine."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from spec_tables import footprint, table

from joinedup.warehouse.engines import Engine
from joinedup.warehouse.schema import ACTIVITY_TYPES

INDEX = date(2025, 4, 1)
EXTRACT = date(2025, 3, 31)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "person": {
        "birth_year": 1960,
        "birth_month": 1,
        "sex": "female",
        "ethnic_category": "A",
        "lsoa_code": "E01000001",
        "imd_decile": 5,
        "practice_code": "P1",
        "death_date": None,
        "national_data_opt_out": False,
    },
    "registration": {"practice_code": "P1", "start_date": date(2000, 1, 1), "end_date": None},
    "identity": {"source_system": "synthetic"},
    "diagnosis": {"setting": "primary_care", "organisation_code": "P1"},
    "medication": {
        "code_system": "bnf",
        "description": "medicine",
        "end_date": None,
        "is_repeat": True,
        "prescriber_code": "P1",
    },
    "observation": {"unit": "", "value_code": None},
    "activity": {
        "end_date": None,
        "length_of_stay_days": None,
        "provider_code": "RXX",
        "specialty_code": None,
        "cost_gbp": Decimal("100.00"),
    },
    "rtt_pathway": {},
}


class World:
    """People and records for one spec test."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._activity_id = 0

    def person(self, person_id: int, **fields: Any) -> World:
        registered = fields.pop("registered", True)
        self.rows["person"].append({"person_id": person_id, **fields})
        self.rows["identity"].append(
            {
                "person_id": person_id,
                "nhs_number": f"{9000000000 + person_id}",
                "source_id": str(person_id),
            }
        )
        if registered:
            practice = fields.get("practice_code", "P1")
            self.rows["registration"].append({"person_id": person_id, "practice_code": practice})
        return self

    def dx(self, person_id: int, when: date, code: str, system: str = "snomed") -> World:
        self.rows["diagnosis"].append(
            {"person_id": person_id, "diagnosis_date": when, "code_system": system, "code": code}
        )
        return self

    def rx(
        self,
        person_id: int,
        code: str,
        start: date,
        end: date | None,
        issues: int,
        *,
        repeat: bool = True,
    ) -> World:
        self.rows["medication"].append(
            {
                "person_id": person_id,
                "code": code,
                "start_date": start,
                "end_date": end,
                "issue_count": issues,
                "is_repeat": repeat,
            }
        )
        return self

    def obs(self, person_id: int, when: date, kind: str, value: float | None = None) -> World:
        codes = {"egfr": "1011481000000105", "systolic_bp": "72313002"}
        self.rows["observation"].append(
            {
                "person_id": person_id,
                "observation_date": when,
                "observation_type": kind,
                "code": codes.get(kind, "0"),
                "value": value,
            }
        )
        return self

    def bp(self, person_id: int, when: date, systolic: float, diastolic: float) -> World:
        self.obs(person_id, when, "systolic_bp", systolic)
        return self.obs(person_id, when, "diastolic_bp", diastolic)

    def act(self, person_id: int, kind: str, when: date) -> World:
        self._activity_id += 1
        self.rows["activity"].append(
            {
                "activity_id": self._activity_id,
                "person_id": person_id,
                "activity_type": kind,
                "start_date": when,
                "point_of_delivery": ACTIVITY_TYPES[kind],
            }
        )
        return self

    def load(self, engine: Engine) -> None:
        footprint(engine)
        engine.load(
            "pcn",
            table("pcn", [{"pcn_code": "U1", "pcn_name": "North PCN", "place_code": "E1"}], {}),
        )
        for name, defaults in _DEFAULTS.items():
            engine.load(name, table(name, self.rows.get(name, []), defaults))
