"""Identity linkage: which records from one or more extracts are the same person.

An exact NHS number stage, then probabilistic linkage with Splink on names, birth date, sex
and postcode, run inside a warehouse engine (DuckDB or Spark), and the master person index
whose person_ids stay stable across runs; see docs/linkage.md.
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
from joinedup.linkage.mpi import (
    DEFAULT_REVIEW_THRESHOLD,
    Decision,
    MasterPersonIndex,
    PreviousIndex,
    build_index,
)
from joinedup.linkage.run import dedupe, link_pair, link_sources

__all__ = [
    "DEFAULT_REVIEW_THRESHOLD",
    "DEFAULT_SEED",
    "DEFAULT_THRESHOLD",
    "IDENTITY_COLUMNS",
    "Decision",
    "Extract",
    "LinkageSettings",
    "MasterPersonIndex",
    "PreviousIndex",
    "Scores",
    "baseline_dedupe",
    "baseline_link",
    "build_index",
    "cluster_pairs",
    "dedupe",
    "link_pair",
    "link_pairs",
    "link_sources",
    "read_extract",
    "score",
    "soundex",
]
