"""Loaders for public reference files (NHS England, ONS) that users supply by path.

The product never assumes where these files live: every loader takes a path or a directory.
"""

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
    "PRACTICE_FILE_NAME",
    "REQUIRED_COLUMNS",
    "WEIGHTED_POPULATION_COLUMNS",
    "PracticeRecord",
    "find_practice_file",
    "load_practices",
    "load_practices_from_dir",
]
