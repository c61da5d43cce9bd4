"""The data-model page is the contract's documentation: it must say what the code says."""

from __future__ import annotations

from pathlib import Path

from joinedup.cli.warehouse import data_model_page
from joinedup.population.tables import PHM_TABLE_DOCS
from joinedup.warehouse.schema import ALL_TABLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"


def test_data_model_page_is_generated_from_the_schema() -> None:
    assert DOC.read_text(encoding="utf-8") == data_model_page(), (
        "docs/data-model.md is stale: run `joinedup warehouse schema -o docs/data-model.md`"
    )


def test_every_column_is_documented_with_a_meaning() -> None:
    for table in ALL_TABLES:
        for column in table.columns:
            assert column.description.strip(), f"{table.name}.{column.name} has no description"


def test_every_population_health_table_column_has_a_meaning() -> None:
    for name, description, columns in PHM_TABLE_DOCS:
        assert description.strip(), name
        for column, meaning in columns:
            assert meaning.strip(), f"{name}.{column} has no meaning"
