"""The built-in footprint: a fictional ICS of 1.2 million people for demos and tests.

"NHS Riverside and Coast ICB" has five places with the five population profiles the synthetic
generator knows, 29 PCNs of 30–50k people and 153 practices. Every code sits in a range no real
organisation uses (ICB QZZ, places E99…, PCNs U99…, practices Z1…, others ZZ…), so the default
can never be mistaken for, or joined to, a real ICS. Sizes and locations come from a fixed
low-discrepancy sequence, not a random generator: the same footprint on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from joinedup.footprint.model import (
    Collaborative,
    CollaborativeKind,
    Footprint,
    Organisation,
    OrganisationType,
    Pcn,
    Place,
    PlaceProfile,
    Practice,
    System,
)

ICB_CODE = "QZZ"
ICB_NAME = "NHS Riverside and Coast ICB"

MIN_LIST_SIZE = 2_000
MAX_LIST_SIZE = 25_000

# Weyl sequence steps (golden ratio and plastic number): evenly spread, fully reproducible.
_STEP_A = 0.6180339887498949
_STEP_B = 0.7548776662466927


@dataclass(frozen=True, slots=True)
class _PlaceSpec:
    code: str
    name: str
    profile: PlaceProfile
    population: int
    practice_count: int
    pcn_areas: tuple[str, ...]  # one PCN per area
    # Bounding box: south, north latitude; west, east longitude.
    box: tuple[float, float, float, float]
    council: str


_PLACES: tuple[_PlaceSpec, ...] = (
    _PlaceSpec(
        "E99000001",
        "Riverside City",
        PlaceProfile.DEPRIVED_URBAN,
        350_000,
        40,
        (
            "Quayside",
            "Foundry",
            "Millbank",
            "Docklands",
            "Northgate",
            "St Aidan's",
            "Eastfield",
            "Canal Side",
        ),
        (53.74, 53.84, -2.36, -2.18),
        "Riverside City Council",
    ),
    _PlaceSpec(
        "E99000002",
        "Northvale",
        PlaceProfile.AFFLUENT_SUBURBAN,
        250_000,
        30,
        ("Northvale Park", "Oakwood", "Hazelmere", "Fernleigh", "Ashby Green", "Kingsmead"),
        (53.84, 53.96, -2.40, -2.16),
        "Northvale Borough Council",
    ),
    _PlaceSpec(
        "E99000003",
        "Saltmarsh Coast",
        PlaceProfile.OLDER_COASTAL,
        180_000,
        25,
        ("Saltmarsh Bay", "Promenade", "Cliffside", "Harbourmouth", "Dunes"),
        (53.78, 54.05, -3.05, -2.88),
        "Saltmarsh Coast District Council",
    ),
    _PlaceSpec(
        "E99000004",
        "Highdale",
        PlaceProfile.RURAL,
        170_000,
        28,
        ("Upper Highdale", "Fellside", "Lowmoor", "Brackenridge"),
        (53.96, 54.30, -2.70, -2.10),
        "Highdale District Council",
    ),
    _PlaceSpec(
        "E99000005",
        "Brookford",
        PlaceProfile.MIXED_TOWN,
        250_000,
        30,
        ("Brookford Central", "Mill Hill", "Westbrook", "Station Road", "Larkfield", "Chapel End"),
        (53.60, 53.74, -2.45, -2.15),
        "Brookford Town Council",
    ),
)

# Practice names: a street or landmark and a kind of practice, combined without repeats.
_STREETS = (
    "Alder Road",
    "Beacon Lane",
    "Church View",
    "Dale Street",
    "Elm Grove",
    "Ferry Road",
    "Granary",
    "Heathfield",
    "Ivy Bank",
    "Jubilee",
    "Kestrel Way",
    "Lime Tree",
    "Market Square",
    "Newhall",
    "Orchard",
    "Priory",
    "Queen's Road",
    "Riverbank",
    "Sandgate",
    "Tannery",
    "Union Street",
    "Victoria",
    "Willow Bank",
    "Yew Tree",
    "Abbey Lane",
    "Brook House",
    "Castle Hill",
    "Dovecote",
    "Eastgate",
    "Fountain",
)
_KINDS = (
    "Surgery",
    "Medical Centre",
    "Health Centre",
    "Medical Practice",
    "Family Practice",
    "Group Practice",
)


def default_footprint() -> Footprint:
    """The built-in fictional ICS: same content every call, validated like any footprint file."""
    places: list[Place] = []
    pcns: list[Pcn] = []
    practices: list[Practice] = []
    practice_index = 0
    for spec in _PLACES:
        places.append(Place(code=spec.code, name=spec.name, profile=spec.profile))
        pcn_sizes = _spread(spec.population, len(spec.pcn_areas), width=0.2, offset=len(pcns))
        per_pcn = _split_count(spec.practice_count, len(spec.pcn_areas))
        for j, area in enumerate(spec.pcn_areas):
            pcn_code = f"U99{len(pcns) + 1:03d}"
            pcns.append(Pcn(code=pcn_code, name=f"{area} PCN", place=spec.code))
            cell = _cell(spec.box, j, len(spec.pcn_areas))
            sizes = _list_sizes(pcn_sizes[j], per_pcn[j], offset=practice_index)
            for size in sizes:
                practice_index += 1
                lat, lon = _locate(cell, practice_index)
                practices.append(
                    Practice(
                        code=f"Z1{practice_index:04d}",
                        name=_practice_name(practice_index - 1),
                        place=spec.code,
                        pcn=pcn_code,
                        latitude=lat,
                        longitude=lon,
                        list_size=size,
                    )
                )
    organisations = _organisations()
    return Footprint(
        system=System(code=ICB_CODE, name=ICB_NAME, is_real=False),
        places=places,
        pcns=pcns,
        practices=practices,
        organisations=organisations,
        collaboratives=_collaboratives(),
        notes=[
            "Fictional: NHS Riverside and Coast ICB, its places, PCNs, practices and "
            "organisations are invented for demonstration and testing; codes use ranges no "
            "real organisation has (QZZ, E99…, U99…, Z1…, ZZ…).",
        ],
    )


def _organisations() -> list[Organisation]:
    acute, community, mental_health = (
        OrganisationType.ACUTE_TRUST,
        OrganisationType.COMMUNITY_TRUST,
        OrganisationType.MENTAL_HEALTH_TRUST,
    )
    orgs = [
        Organisation(code=ICB_CODE, name=ICB_NAME, type=OrganisationType.ICB),
        Organisation(
            code="ZZT01",
            name="Riverside University Hospitals NHS Foundation Trust",
            type=acute,
            place="E99000001",
        ),
        Organisation(
            code="ZZT02",
            name="Northvale and Brookford Hospitals NHS Trust",
            type=acute,
            place="E99000005",
        ),
        Organisation(
            code="ZZT03",
            name="Saltmarsh and Highdale Hospitals NHS Foundation Trust",
            type=acute,
            place="E99000003",
        ),
        Organisation(
            code="ZZT04", name="Riverside and Coast Community Health NHS Trust", type=community
        ),
        Organisation(
            code="ZZT05",
            name="Riverside and Coast Mental Health NHS Foundation Trust",
            type=mental_health,
        ),
        Organisation(
            code="ZZT06",
            name="Highdale Minds Partnership NHS Foundation Trust",
            type=mental_health,
            place="E99000004",
        ),
        Organisation(
            code="ZZA01",
            name="Coast and Dales Ambulance Service NHS Trust",
            type=OrganisationType.AMBULANCE_TRUST,
        ),
    ]
    orgs += [
        Organisation(
            code=f"ZZL{i:02d}",
            name=spec.council,
            type=OrganisationType.LOCAL_AUTHORITY,
            place=spec.code,
        )
        for i, spec in enumerate(_PLACES, start=1)
    ]
    voluntary = OrganisationType.VOLUNTARY_SECTOR
    orgs += [
        Organisation(code="ZZV01", name="Riverside and Coast Voluntary Action", type=voluntary),
        Organisation(
            code="ZZV02", name="Saltmarsh Carers Network", type=voluntary, place="E99000003"
        ),
        Organisation(
            code="ZZV03", name="Highdale Rural Community Trust", type=voluntary, place="E99000004"
        ),
    ]
    return orgs


# The acute trust each place mainly uses: vertical partnerships are built around it.
_PLACE_ACUTE = {
    "E99000001": "ZZT01",
    "E99000002": "ZZT02",
    "E99000003": "ZZT03",
    "E99000004": "ZZT03",
    "E99000005": "ZZT02",
}
_PLACE_MENTAL_HEALTH = {"E99000004": "ZZT06"}
_PLACE_VOLUNTARY = {"E99000003": "ZZV02", "E99000004": "ZZV03"}


def _collaboratives() -> list[Collaborative]:
    horizontal = CollaborativeKind.HORIZONTAL
    collaboratives = [
        Collaborative(
            code="ZZC01",
            name="Riverside and Coast Acute Provider Collaborative",
            kind=horizontal,
            members=["ZZT01", "ZZT02", "ZZT03"],
        ),
        Collaborative(
            code="ZZC02",
            name="Riverside and Coast Mental Health Provider Collaborative",
            kind=horizontal,
            members=["ZZT05", "ZZT06", "ZZV01"],
        ),
    ]
    for i, spec in enumerate(_PLACES, start=1):
        members = [
            ICB_CODE,
            _PLACE_ACUTE[spec.code],
            "ZZT04",
            _PLACE_MENTAL_HEALTH.get(spec.code, "ZZT05"),
            f"ZZL{i:02d}",
            _PLACE_VOLUNTARY.get(spec.code, "ZZV01"),
        ]
        collaboratives.append(
            Collaborative(
                code=f"ZZP{i:02d}",
                name=f"{spec.name} Place Partnership",
                kind=CollaborativeKind.VERTICAL,
                place=spec.code,
                members=members,
            )
        )
    return collaboratives


def _weyl(i: int, step: float) -> float:
    """The i-th point of an additive recurrence in [0, 1): even spread, no randomness."""
    return (i * step) % 1.0


def _spread(total: int, n: int, *, width: float, offset: int) -> list[int]:
    """Split `total` into `n` whole parts varying by about ±width/2 around the mean."""
    weights = [1.0 - width / 2 + width * _weyl(offset + j + 1, _STEP_A) for j in range(n)]
    scale = total / sum(weights)
    parts = [round(w * scale) for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def _split_count(count: int, n: int) -> list[int]:
    base, extra = divmod(count, n)
    return [base + (1 if j < extra else 0) for j in range(n)]


def _list_sizes(total: int, n: int, *, offset: int) -> list[int]:
    """List sizes for `n` practices summing to about `total`, skewed like real lists.

    Lognormal-like weights (a few large practices, many middling); each list is kept within
    2k–25k and the rounding remainder goes to the practice with room for it.
    """
    weights = [math.exp(1.1 * (2 * _weyl(offset + j + 1, _STEP_B) - 1)) for j in range(n)]
    scale = total / sum(weights)
    sizes = [min(MAX_LIST_SIZE, max(MIN_LIST_SIZE, round(w * scale))) for w in weights]
    remainder = total - sum(sizes)
    for j in sorted(range(n), key=lambda j: -sizes[j]):
        if remainder > 0:
            step = min(remainder, MAX_LIST_SIZE - sizes[j])
        else:
            step = max(remainder, MIN_LIST_SIZE - sizes[j])
        sizes[j] += step
        remainder -= step
        if remainder == 0:
            break
    return sizes


def _cell(
    box: tuple[float, float, float, float], j: int, n: int
) -> tuple[float, float, float, float]:
    """The j-th of n grid cells covering a place's box, so each PCN is a compact area."""
    south, north, west, east = box
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    row, col = divmod(j, cols)
    height = (north - south) / rows
    width = (east - west) / cols
    return (
        north - (row + 1) * height,
        north - row * height,
        west + col * width,
        west + (col + 1) * width,
    )


def _locate(cell: tuple[float, float, float, float], i: int) -> tuple[float, float]:
    south, north, west, east = cell
    lat = south + (0.1 + 0.8 * _weyl(i, _STEP_A)) * (north - south)
    lon = west + (0.1 + 0.8 * _weyl(i, _STEP_B)) * (east - west)
    return round(lat, 6), round(lon, 6)


def _practice_name(i: int) -> str:
    street = _STREETS[i % len(_STREETS)]
    kind = _KINDS[(i // len(_STREETS) + i) % len(_KINDS)]
    return f"{street} {kind}"
