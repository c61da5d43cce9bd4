"""The shape of each place: its small areas (LSOAs), their deprivation and age structure, and
the ethnic mix. Fictional places take their shape from a profile; real places from reference data.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from joinedup.footprint import Footprint, PlaceProfile
from joinedup.reference.areas import Area as Area  # noqa: PLC0414 (re-export)
from joinedup.synth import params

AGES = params.MAX_AGE_INDEX + 1
ETHNIC_CODES: tuple[str, ...] = (*params.ETHNICITY_ENGLAND, "Z")


@dataclass(frozen=True)
class PlaceShape:
    place_code: str
    areas: Area
    #: probability of each code in ETHNIC_CODES (excluding the not-stated share).
    ethnicity: NDArray[np.float64]


# Profile shapes for fictional places ------------------------------------------------------------
_TILT_AGES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
_AGE_TILT: dict[PlaceProfile, tuple[float, ...]] = {
    PlaceProfile.DEPRIVED_URBAN: (1.15, 1.1, 1.3, 1.35, 1.1, 0.95, 0.8, 0.7, 0.65, 0.6),
    PlaceProfile.AFFLUENT_SUBURBAN: (1.05, 1.15, 0.8, 0.8, 1.1, 1.2, 1.1, 1.05, 1.05, 1.05),
    PlaceProfile.OLDER_COASTAL: (0.85, 0.85, 0.75, 0.75, 0.8, 1.0, 1.25, 1.6, 1.7, 1.8),
    PlaceProfile.RURAL: (0.9, 0.95, 0.75, 0.75, 0.9, 1.15, 1.3, 1.35, 1.25, 1.2),
    PlaceProfile.MIXED_TOWN: (1.0,) * 10,
    PlaceProfile.REFERENCE: (1.0,) * 10,
}
_IMD_MIX: dict[PlaceProfile, tuple[float, ...]] = {
    PlaceProfile.DEPRIVED_URBAN: (0.28, 0.2, 0.14, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02),
    PlaceProfile.AFFLUENT_SUBURBAN: (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.18, 0.2, 0.2),
    PlaceProfile.OLDER_COASTAL: (0.12, 0.12, 0.1, 0.1, 0.1, 0.1, 0.1, 0.09, 0.09, 0.08),
    PlaceProfile.RURAL: (0.01, 0.03, 0.06, 0.1, 0.14, 0.16, 0.16, 0.14, 0.12, 0.08),
    PlaceProfile.MIXED_TOWN: (0.1,) * 10,
    PlaceProfile.REFERENCE: (0.1,) * 10,
}
# Multiplier on every group other than White British, by profile.
_DIVERSITY: dict[PlaceProfile, float] = {
    PlaceProfile.DEPRIVED_URBAN: 2.2,
    PlaceProfile.AFFLUENT_SUBURBAN: 1.0,
    PlaceProfile.OLDER_COASTAL: 0.35,
    PlaceProfile.RURAL: 0.25,
    PlaceProfile.MIXED_TOWN: 1.0,
    PlaceProfile.REFERENCE: 1.0,
}
_PEOPLE_PER_LSOA = 1600  # ONS LSOAs hold 1,000-3,000 people, about 1,600 on average


def national_age_counts() -> NDArray[np.float64]:
    """England's population by single year of age (persons), 0..90+."""
    return np.asarray(params.NATIONAL_MALE_K, float) + np.asarray(params.NATIONAL_FEMALE_K, float)


def male_share_by_age() -> NDArray[np.float64]:
    m = np.asarray(params.NATIONAL_MALE_K, float)
    return m / (m + np.asarray(params.NATIONAL_FEMALE_K, float))


def allocate(total: int, weights: NDArray[np.float64]) -> NDArray[np.int64]:
    """Split `total` into integer parts proportional to `weights` (largest remainder)."""
    raw = weights / weights.sum() * total
    parts = np.floor(raw).astype(np.int64)
    short = total - int(parts.sum())
    if short > 0:
        order = np.argsort(-(raw - parts), kind="stable")
        parts[order[:short]] += 1
    return parts


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def profile_shape(place_code: str, profile: PlaceProfile, population: int) -> PlaceShape:
    """A fictional place: LSOAs with deciles drawn from the profile's mix, ages tilted by it."""
    n_areas = max(1, round(population / _PEOPLE_PER_LSOA))
    # Deciles in exactly the profile's proportions (not drawn), so a place's deprivation, and
    # everything that follows from it, does not depend on the seed.
    counts = allocate(n_areas, np.asarray(_IMD_MIX[profile]))
    deciles = np.repeat(np.arange(1, 11), counts)
    tilt = np.interp(np.arange(AGES), _TILT_AGES, _AGE_TILT[profile])
    base = national_age_counts() * tilt
    # More deprived areas are younger, less deprived older, around the place's own structure.
    young = np.interp(np.arange(AGES), (0, 30, 50, 65, 90), (1.08, 1.1, 1.0, 0.88, 0.82))
    depth = (5.5 - deciles) / 4.5
    age_counts = base[None, :] * (1 + depth[:, None] * (young[None, :] - 1))
    age_counts /= age_counts.sum(axis=1)[:, None]  # areas of equal size
    codes = np.asarray([f"ZZ{_stable_seed(place_code) % 1000:03d}{k:05d}" for k in range(n_areas)])
    return PlaceShape(
        place_code,
        Area(codes, deciles.astype(np.int16), age_counts),
        ethnicity_mix(_DIVERSITY[profile]),
    )


def ethnicity_mix(diversity: float) -> NDArray[np.float64]:
    shares = np.asarray([params.ETHNICITY_ENGLAND[c] for c in ETHNIC_CODES[:-1]], float)
    shares[1:] *= diversity
    shares[0] = max(0.05, 1 - shares[1:].sum()) if diversity > 1 else shares[0]
    out = np.append(shares / shares.sum(), 0.0)
    return out


def reference_shape(
    place_code: str, areas: Area, ethnicity: Mapping[str, float] | None
) -> PlaceShape:
    """A real place from reference files: its LSOAs, their IMD and ages, and its ethnic mix."""
    if ethnicity:
        mix = np.asarray([ethnicity.get(c, 0.0) for c in ETHNIC_CODES], float)
        mix[-1] = 0.0
        mix = mix / mix.sum() if mix.sum() > 0 else ethnicity_mix(1.0)
    else:
        mix = ethnicity_mix(1.0)
    return PlaceShape(place_code, areas, mix)


def shapes_for(
    footprint: Footprint,
    reference_areas: Mapping[str, Area] | None = None,
    reference_ethnicity: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, PlaceShape]:
    """The shape of every place in the footprint."""
    sizes = footprint.place_population()
    out: dict[str, PlaceShape] = {}
    for place in footprint.places:
        if reference_areas is not None and place.code in reference_areas:
            eth = (reference_ethnicity or {}).get(place.code)
            out[place.code] = reference_shape(place.code, reference_areas[place.code], eth)
        else:
            out[place.code] = profile_shape(place.code, place.profile, sizes[place.code])
    return out
