"""Synthetic ICS populations calibrated to public England statistics.

`synthesise` builds a whole population with its history into the warehouse; `calibrate` checks
an England-shaped build against published targets.
"""

import pyarrow as pa

from joinedup.synth import params
from joinedup.synth.run import (
    DEFAULT_START,
    DEFAULT_YEARS,
    ReferenceShapes,
    SynthResult,
    synthesise,
)


def condition_codelist() -> pa.Table:
    """The SNOMED CT codes the generator records for each long-term condition, as a code list
    table (condition, code_system, code)."""
    rows = [
        {"condition": c.name, "code_system": "snomed", "code": code}
        for c in params.CONDITIONS
        for code in c.snomed
    ]
    return pa.Table.from_pylist(rows)


__all__ = [
    "DEFAULT_START",
    "DEFAULT_YEARS",
    "ReferenceShapes",
    "SynthResult",
    "condition_codelist",
    "synthesise",
]
