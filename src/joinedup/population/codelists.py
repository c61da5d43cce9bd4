"""The population health code lists: diagnosis codes (SNOMED CT, ICD-10) and medicine groups
(BNF prefixes) that define conditions and segments, shipped as versioned CSV files with their
provenance in a sibling `.meta.json`.

A site can pass its own lists (same columns) with `--codelist-dir`; they are checked as they are
read, so a bad row fails with the file, line and reason.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from joinedup.errors import ConfigurationError, InputError

CONDITIONS_LIST = "phm_conditions"
MEDICINES_LIST = "phm_medicines"

_SNOMED = re.compile(r"[0-9]{6,18}")
_ICD10 = re.compile(r"[A-Z][0-9]{2}[0-9A-Z]{0,2}")
_BNF = re.compile(r"[0-9]{2}[0-9A-Z]{0,13}")

#: Diagnosis groups the population health rules read (the file may hold more).
DIAGNOSIS_GROUPS: tuple[str, ...] = (
    "alcohol_problems",
    "anxiety_depression",
    "asthma",
    "atrial_fibrillation",
    "cancer",
    "chronic_kidney_disease",
    "connective_tissue_disorder",
    "copd",
    "coronary_heart_disease",
    "dementia",
    "diabetes",
    "epilepsy",
    "hearing_loss",
    "heart_failure",
    "hypertension",
    "irritable_bowel",
    "psychosis_bipolar",
    "stroke_tia",
    "frailty_mild",
    "frailty_moderate",
    "frailty_severe",
    "palliative_care",
    "secondary_cancer",
    "liver_failure",
    "learning_disability",
    "physical_disability",
    "pregnancy",
    "fall",
)
#: Medicine groups the prescription rules read.
MEDICINE_GROUPS: tuple[str, ...] = (
    "laxatives",
    "antispasmodics",
    "analgesics",
    "antiepileptics",
    "antidepressants",
    "anxiolytics_hypnotics",
    "asthma_medicines",
    "lithium",
)


@dataclass(frozen=True)
class PhmCodeLists:
    """Diagnosis codes by group, medicine prefixes by group, and where each list came from."""

    #: (group, code_system, code): SNOMED codes match exactly, ICD-10 codes as prefixes.
    diagnoses: tuple[tuple[str, str, str], ...]
    #: (group, bnf_prefix)
    medicines: tuple[tuple[str, str], ...]
    provenance: dict[str, Any]

    def icd10_prefix_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(c) for _, s, c in self.diagnoses if s == "icd10"}))

    def bnf_prefix_lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(c) for _, c in self.medicines}))

    def versions(self) -> dict[str, str]:
        return {name: str(meta.get("version", "?")) for name, meta in self.provenance.items()}


def _read(text: str, where: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(reader.fieldnames or ())
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(where, f"missing column(s) {', '.join(missing)}")
    return list(reader)


def _diagnoses(text: str, where: str) -> tuple[tuple[str, str, str], ...]:
    out: list[tuple[str, str, str]] = []
    for line, row in enumerate(_read(text, where, ("group", "code_system", "code")), start=2):
        group = (row["group"] or "").strip()
        system = (row["code_system"] or "").strip().lower()
        code = (row["code"] or "").strip().upper().replace(".", "")
        if not group:
            raise InputError(f"{where}, line {line}", "group is empty")
        if system == "snomed":
            if not _SNOMED.fullmatch(code):
                raise InputError(f"{where}, line {line}", f"{code!r} is not a SNOMED CT id")
        elif system == "icd10":
            if not _ICD10.fullmatch(code):
                raise InputError(f"{where}, line {line}", f"{code!r} is not an ICD-10 code")
        else:
            raise InputError(
                f"{where}, line {line}", f"code_system {system!r} must be snomed or icd10"
            )
        out.append((group, system, code))
    return tuple(sorted(set(out)))


def _medicines(text: str, where: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for line, row in enumerate(_read(text, where, ("group", "bnf_prefix")), start=2):
        group = (row["group"] or "").strip()
        prefix = (row["bnf_prefix"] or "").strip().upper()
        if not group:
            raise InputError(f"{where}, line {line}", "group is empty")
        if not _BNF.fullmatch(prefix):
            raise InputError(f"{where}, line {line}", f"{prefix!r} is not a BNF code prefix")
        out.append((group, prefix))
    return tuple(sorted(set(out)))


def _check_groups(found: set[str], needed: tuple[str, ...], where: str) -> None:
    missing = [g for g in needed if g not in found]
    if missing:
        raise InputError(where, f"no codes for group(s) {', '.join(missing)}")


def code_descriptions() -> dict[tuple[str, str], str]:
    """The words for each code of the shipped diagnosis list, by (`snomed` or `icd10`, code
    without its dot): SNOMED CT terms, ICD-10 titles (a 3-character category's title covers
    its subdivisions), for a record that carries a code and no text."""
    folder = resources.files("joinedup.population").joinpath("codelists")
    text = folder.joinpath(f"{CONDITIONS_LIST}.csv").read_text(encoding="utf-8")
    found: dict[tuple[str, str], str] = {}
    for row in _read(text, f"{CONDITIONS_LIST}.csv", ("code_system", "code", "description")):
        code = (row["code"] or "").strip().upper().replace(".", "")
        words = (row["description"] or "").strip()
        if code and words:
            found.setdefault(((row["code_system"] or "").strip().lower(), code), words)
    return found


def load_codelists(directory: Path | None = None) -> PhmCodeLists:
    """The shipped code lists, or those in `directory` (phm_conditions.csv, phm_medicines.csv
    and optional .meta.json files beside them)."""
    texts: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for name in (CONDITIONS_LIST, MEDICINES_LIST):
        if directory is None:
            folder = resources.files("joinedup.population").joinpath("codelists")
            text = folder.joinpath(f"{name}.csv").read_text(encoding="utf-8")
            meta = json.loads(folder.joinpath(f"{name}.meta.json").read_text("utf-8"))
            where = f"{name}.csv"
        else:
            path = directory / f"{name}.csv"
            if not path.is_file():
                raise InputError(str(path), "code list not found")
            text = path.read_text(encoding="utf-8")
            meta_path = path.with_suffix(".meta.json")
            meta = {"version": "local"}
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text("utf-8"))
                except json.JSONDecodeError as err:
                    raise InputError(str(meta_path), f"not valid JSON ({err.msg})") from None
            where = str(path)
        texts[name] = (text, where, meta)
    text, where, _ = texts[CONDITIONS_LIST]
    diagnoses = _diagnoses(text, where)
    _check_groups({g for g, _, _ in diagnoses}, DIAGNOSIS_GROUPS, where)
    text, where, _ = texts[MEDICINES_LIST]
    medicines = _medicines(text, where)
    _check_groups({g for g, _ in medicines}, MEDICINE_GROUPS, where)
    if not diagnoses:
        raise ConfigurationError("the diagnosis code list is empty")
    return PhmCodeLists(diagnoses, medicines, {name: m for name, (_, _, m) in texts.items()})
