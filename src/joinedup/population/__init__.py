"""Population health: who has which conditions and how much they weigh.

Importing the package adds its publishable analytics (`charlson_distribution`) to the
warehouse's registry, so `joinedup warehouse run` and the demo run them like any other.
"""

from joinedup.population.charlson import (
    CONDITION_NAMES,
    CONDITIONS,
    HIERARCHY,
    SCORE_BANDS,
    WEIGHTINGS,
    CodeList,
    Condition,
    Weighting,
    age_points,
    charlson_codelist,
    charlson_distribution,
    charlson_from_warehouse,
    charlson_scores,
    normalise_code,
    score_table,
)
from joinedup.warehouse import analytics as _analytics

_analytics.register(charlson_distribution)

__all__ = [
    "CONDITIONS",
    "CONDITION_NAMES",
    "HIERARCHY",
    "SCORE_BANDS",
    "WEIGHTINGS",
    "CodeList",
    "Condition",
    "Weighting",
    "age_points",
    "charlson_codelist",
    "charlson_distribution",
    "charlson_from_warehouse",
    "charlson_scores",
    "normalise_code",
    "score_table",
]
