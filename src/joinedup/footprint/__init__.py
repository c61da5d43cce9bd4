"""The footprint: an Integrated Care System as typed, validated configuration.

A footprint names the system (ICB), its places, PCNs (neighbourhoods), practices, organisations
and provider collaboratives. Load one from a file, use the built-in fictional default, or build
a real ICB's from NHS England's practice-level weighted populations.
"""

from joinedup.footprint.default import default_footprint
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
from joinedup.footprint.reference import (
    NEIGHBOURHOOD_MAX,
    NEIGHBOURHOOD_MIN,
    NEIGHBOURHOOD_TARGET,
    IcbSummary,
    footprint_from_reference,
    icb_codes,
    icb_summaries,
    neighbourhoods,
)

__all__ = [
    "NEIGHBOURHOOD_MAX",
    "NEIGHBOURHOOD_MIN",
    "NEIGHBOURHOOD_TARGET",
    "Collaborative",
    "CollaborativeKind",
    "Footprint",
    "IcbSummary",
    "Organisation",
    "OrganisationType",
    "Pcn",
    "Place",
    "PlaceProfile",
    "Practice",
    "System",
    "default_footprint",
    "footprint_from_reference",
    "icb_codes",
    "icb_summaries",
    "neighbourhoods",
]
