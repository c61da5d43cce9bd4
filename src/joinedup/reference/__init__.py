"""Loaders for public reference files (NHS England, ONS) that users supply by path.

The product never assumes where these files live: every loader takes a path or a directory.
"""

from joinedup.reference.areas import (
    AGE_COLUMNS,
    IMD_FILE_NAME,
    PLACE_PREDECESSORS,
    POPULATION_FILE_NAME,
    Area,
    Predecessors,
    load_place_areas,
    lsoa_name_prefixes,
    normalise_place_name,
)
from joinedup.reference.ethnicity import (
    CENSUS_TO_NHS_ETHNIC_CATEGORY,
    ETHNICITY_FILE_NAME,
    load_place_ethnicity,
)
from joinedup.reference.practices import (
    PRACTICE_FILE_NAME,
    REQUIRED_COLUMNS,
    WEIGHTED_POPULATION_COLUMNS,
    PracticeRecord,
    find_practice_file,
    load_practices,
    load_practices_from_dir,
)

__all__ = [
    "AGE_COLUMNS",
    "CENSUS_TO_NHS_ETHNIC_CATEGORY",
    "ETHNICITY_FILE_NAME",
    "IMD_FILE_NAME",
    "PLACE_PREDECESSORS",
    "POPULATION_FILE_NAME",
    "PRACTICE_FILE_NAME",
    "REQUIRED_COLUMNS",
    "WEIGHTED_POPULATION_COLUMNS",
    "Area",
    "PracticeRecord",
    "Predecessors",
    "find_practice_file",
    "load_place_areas",
    "load_place_ethnicity",
    "load_practices",
    "load_practices_from_dir",
    "lsoa_name_prefixes",
    "normalise_place_name",
]
