"""Identity linkage: which records from one or more extracts are the same person.

An exact NHS number stage, then probabilistic linkage with Splink on names, birth date, sex
and postcode, run inside a warehouse engine (DuckDB or Spark); see docs/linkage.md.
"""

from joinedup.linkage.evaluate import (
    Scores,
    baseline_dedupe,
    baseline_link,
    cluster_pairs,
    link_pairs,
    score,
)
from joinedup.linkage.extract import IDENTITY_COLUMNS, Extract, read_extract, soundex
from joinedup.linkage.model import DEFAULT_SEED, DEFAULT_THRESHOLD, LinkageSettings
from joinedup.linkage.run import dedupe, link_pair

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_THRESHOLD",
    "IDENTITY_COLUMNS",
    "Extract",
    "LinkageSettings",
    "Scores",
    "baseline_dedupe",
    "baseline_link",
    "cluster_pairs",
    "dedupe",
    "link_pair",
    "link_pairs",
    "read_extract",
    "score",
    "soundex",
]
