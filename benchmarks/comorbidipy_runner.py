"""Run comorbidipy 0.5.0's Charlson index over a CSV of (id, code, age) rows.

Runs under `.venv-comorbidipy/bin/python` (pandas 1.5, numpy 1), never under joinedup's own
environment. Used by the agreement test and the benchmark:

    .venv-comorbidipy/bin/python benchmarks/comorbidipy_runner.py IN.csv OUT.csv --weighting quan

Codes are upper-cased and stripped of dots and spaces first, because comorbidipy compares them
as given. Writes one row per id (flags, comorbidity_score, age_adj_comorbidity_score) and prints
{"seconds": ...}: the time of the comorbidity() call alone, without reading or writing files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import pandas.errors

# comorbidipy 0.5.0 imports SettingWithCopyWarning from where pandas 1.5 no longer keeps it.
pd.core.common.SettingWithCopyWarning = pandas.errors.SettingWithCopyWarning  # type: ignore[attr-defined]

from comorbidipy import comorbidity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--weighting", choices=["quan", "charlson"], default="quan")
    parser.add_argument("--no-age", action="store_true", help="Score without ages.")
    args = parser.parse_args()
    df = pd.read_csv(args.input, dtype={"code": str}, keep_default_na=False, na_values=[""])
    df["code"] = df["code"].str.upper().str.replace(".", "", regex=False)
    df["code"] = df["code"].str.replace(" ", "", regex=False)
    started = time.perf_counter()
    scores = comorbidity(
        df,
        id="id",
        code="code",
        age=None if args.no_age else "age",
        score="charlson",
        icd="icd10",
        variant="quan",
        weighting=args.weighting,
        assign0=True,
    )
    seconds = time.perf_counter() - started
    scores.sort_values("id").to_csv(args.output, index=False)
    print(json.dumps({"seconds": seconds, "people": len(scores)}))


if __name__ == "__main__":
    main()
