"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The public reference data directory (env JOINEDUP_REFERENCE_DIR, else ../shared).

    Tests that need it are skipped when it is absent, except in CI (CI=true), where a missing
    reference directory is a broken setup and fails.
    """
    configured = os.environ.get("JOINEDUP_REFERENCE_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "reference"
    if not path.is_dir():
        message = f"reference data not found in {path} (set JOINEDUP_REFERENCE_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _shared(path: Path, what: str) -> Path:
    """A folder of ../shared, skipped when absent except under CI=true, where it fails."""
    if not path.is_dir():
        message = f"{what} not found in {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sql_on_fhir_tests() -> Path:
    """The official SQL-on-FHIR v2 test files in ../shared/specs."""
    return _shared(
        REPO_ROOT.parent / "shared" / "specs" / "sql-on-fhir-v2" / "tests", "SQL-on-FHIR tests"
    )


@pytest.fixture(scope="session")
def uk_core_examples() -> Path:
    """The UK Core example resources (FHIR XML) in ../shared/specs."""
    return _shared(
        REPO_ROOT.parent / "shared" / "specs" / "uk-core" / "examples", "UK Core examples"
    )
