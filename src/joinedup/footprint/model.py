"""The ICS as typed, validated configuration: system, places, PCNs, practices, organisations.

A footprint file is JSON matching `Footprint.model_json_schema()`. Loading checks every field and
every cross-reference (a practice's PCN exists and sits in the practice's place, a collaborative's
members exist, codes are unique) and reports the first problems by field path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from joinedup.errors import InputError, describe_validation_error

Code = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_\-]+$")]


class PlaceProfile(StrEnum):
    """Population profiles the synthetic generator knows how to shape."""

    DEPRIVED_URBAN = "deprived_urban"
    AFFLUENT_SUBURBAN = "affluent_suburban"
    OLDER_COASTAL = "older_coastal"
    RURAL = "rural"
    MIXED_TOWN = "mixed_town"
    # A place built from real reference data: its shape comes from the reference files.
    REFERENCE = "reference"


class OrganisationType(StrEnum):
    ACUTE_TRUST = "acute_trust"
    COMMUNITY_TRUST = "community_trust"
    MENTAL_HEALTH_TRUST = "mental_health_trust"
    AMBULANCE_TRUST = "ambulance_trust"
    LOCAL_AUTHORITY = "local_authority"
    ICB = "icb"
    VOLUNTARY_SECTOR = "voluntary_sector"


class CollaborativeKind(StrEnum):
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class System(_Model):
    code: Code = Field(description="ICB ODS code, or a local code for a fictional system.")
    name: str = Field(min_length=1)
    is_real: bool = Field(False, description="Built from published NHS England data.")


class Place(_Model):
    code: Code = Field(description="Local authority district code (GSS), e.g. E08000012.")
    name: str = Field(min_length=1)
    profile: PlaceProfile = PlaceProfile.MIXED_TOWN


class Pcn(_Model):
    code: Code
    name: str = Field(min_length=1)
    place: Code = Field(description="Code of the place the PCN sits in.")


class Practice(_Model):
    code: Code = Field(description="ODS practice code.")
    name: str = Field(min_length=1)
    place: Code
    pcn: Code
    postcode: str | None = None
    latitude: float | None = Field(None, ge=49.0, le=61.0)
    longitude: float | None = Field(None, ge=-9.0, le=2.5)
    list_size: int = Field(gt=0, le=200_000, description="Registered patients.")


class Organisation(_Model):
    code: Code = Field(description="ODS organisation code.")
    name: str = Field(min_length=1)
    type: OrganisationType
    place: Code | None = Field(None, description="Place it mainly serves; none if system-wide.")


class Collaborative(_Model):
    code: Code
    name: str = Field(min_length=1)
    kind: CollaborativeKind
    place: Code | None = Field(None, description="The place of a vertical collaborative.")
    members: list[Code] = Field(min_length=1)


class Footprint(_Model):
    """A whole Integrated Care System as configuration."""

    system: System
    places: list[Place] = Field(min_length=1)
    pcns: list[Pcn] = Field(min_length=1)
    practices: list[Practice] = Field(min_length=1)
    organisations: list[Organisation] = Field(default_factory=list)
    collaboratives: list[Collaborative] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="Provenance and caveats, shown with summaries."
    )

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems = [
            *self._duplicate_codes(),
            *self._practice_problems(),
            *self._organisation_problems(),
            *self._collaborative_problems(),
            *self._pcns_without_practices(),
        ]
        if problems:
            raise ValueError("; ".join(problems[:10]))
        return self

    def _duplicate_codes(self) -> Iterator[str]:
        for name in ("places", "pcns", "practices", "organisations", "collaboratives"):
            seen: set[str] = set()
            for i, item in enumerate(getattr(self, name)):
                if item.code in seen:
                    yield f"{name}.{i}.code: duplicate code {item.code!r}"
                seen.add(item.code)

    def _practice_problems(self) -> Iterator[str]:
        """PCNs in unknown places; practices in unknown places or PCNs, or in a PCN of
        another place."""
        places = {p.code for p in self.places}
        pcn_place = {p.code: p.place for p in self.pcns}
        for i, pcn in enumerate(self.pcns):
            if pcn.place not in places:
                yield f"pcns.{i}.place: unknown place {pcn.place!r}"
        for i, pr in enumerate(self.practices):
            if pr.place not in places:
                yield f"practices.{i}.place: unknown place {pr.place!r}"
            if pr.pcn not in pcn_place:
                yield f"practices.{i}.pcn: unknown PCN {pr.pcn!r}"
            elif pcn_place[pr.pcn] != pr.place:
                yield (
                    f"practices.{i}.pcn: PCN {pr.pcn!r} is in place {pcn_place[pr.pcn]!r}, "
                    f"not the practice's place {pr.place!r}"
                )

    def _organisation_problems(self) -> Iterator[str]:
        places = {p.code for p in self.places}
        for i, org in enumerate(self.organisations):
            if org.place is not None and org.place not in places:
                yield f"organisations.{i}.place: unknown place {org.place!r}"

    def _collaborative_problems(self) -> Iterator[str]:
        places = {p.code for p in self.places}
        orgs = {o.code for o in self.organisations}
        for i, col in enumerate(self.collaboratives):
            if col.kind is CollaborativeKind.VERTICAL and col.place is None:
                yield f"collaboratives.{i}.place: a vertical collaborative needs a place"
            if col.place is not None and col.place not in places:
                yield f"collaboratives.{i}.place: unknown place {col.place!r}"
            for j, member in enumerate(col.members):
                if member not in orgs:
                    yield f"collaboratives.{i}.members.{j}: unknown organisation {member!r}"

    def _pcns_without_practices(self) -> Iterator[str]:
        used = {p.pcn for p in self.practices}
        for i, pcn in enumerate(self.pcns):
            if pcn.code not in used:
                yield f"pcns.{i}: PCN {pcn.code!r} has no practices"

    # Convenience views -------------------------------------------------------------------
    @property
    def population(self) -> int:
        return sum(p.list_size for p in self.practices)

    def place_population(self) -> dict[str, int]:
        sizes = {p.code: 0 for p in self.places}
        for pr in self.practices:
            sizes[pr.place] += pr.list_size
        return sizes

    def pcn_population(self) -> dict[str, int]:
        sizes = {p.code: 0 for p in self.pcns}
        for pr in self.practices:
            sizes[pr.pcn] += pr.list_size
        return sizes

    def place(self, code: str) -> Place:
        for p in self.places:
            if p.code == code:
                return p
        raise KeyError(code)

    def organisations_of(self, kind: OrganisationType) -> list[Organisation]:
        return [o for o in self.organisations if o.type is kind]

    # Files -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Footprint:
        """Read and validate a footprint file; errors name the file, field path and reason."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(str(path), f"cannot read footprint file ({err.strerror})") from err
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(
                f"{path}:{err.lineno}:{err.colno}", f"not valid JSON ({err.msg})"
            ) from err
        return cls.parse(raw, source=str(path))

    @classmethod
    def parse(cls, raw: object, *, source: str = "footprint") -> Footprint:
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise InputError(source, describe_validation_error(err)) from err

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
        tmp.replace(path)
