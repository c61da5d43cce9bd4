"""Stage one of linkage: the same Modulus 11 valid NHS number, with demographics that agree."""

from __future__ import annotations

from pathlib import Path

from joinedup.linkage import read_extract
from joinedup.linkage.run import nhs_number_pairs
from joinedup.warehouse.engines import DuckDBEngine

HEADER = "record_id,given_name,family_name,birth_date,sex,postcode,nhs_number"


def _pairs(tmp_path: Path, *lines: str) -> set[tuple[str, str]]:
    path = tmp_path / "extract.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    extract = read_extract(path)
    query = nhs_number_pairs("r", "r", extract.identity_columns, dedupe=True)
    assert query is not None
    with DuckDBEngine() as engine:
        engine.load("r", extract.records)
        rows = engine.execute(query).to_pylist()
    return {(row["record_id_l"], row["record_id_r"]) for row in rows}


def test_links_a_valid_number_when_demographics_agree(tmp_path: Path) -> None:
    found = _pairs(
        tmp_path,
        "a,Ann,Lee,1980-01-02,F,LS1 4AP,943 476 5919",
        "b,Anne,Leigh,1980-01-02,,M1 1AE,9434765919",  # names sound alike, sex unknown, moved
    )
    assert found == {("a", "b")}


def test_refuses_an_invalid_number_even_when_everything_agrees(tmp_path: Path) -> None:
    found = _pairs(
        tmp_path,
        "a,Ann,Lee,1980-01-02,F,LS14AP,9434765918",  # fails Modulus 11
        "b,Ann,Lee,1980-01-02,F,LS14AP,9434765918",
    )
    assert found == set()


def test_refuses_a_shared_number_whose_demographics_disagree(tmp_path: Path) -> None:
    found = _pairs(
        tmp_path,
        "a,Ann,Lee,1980-01-02,F,,9434765919",
        "b,Ann,Lee,1981-01-02,F,,9434765919",  # another birth date
        "c,Tom,Khan,1980-01-02,M,,9434765919",  # another name and sex
        "d,Ann,Lee,1980-01-02,M,,9434765919",  # conflicting sex
        "e,Ann,Lee,,F,,9434765919",  # no birth date to agree
    )
    assert found == set()


def test_no_stage_without_demographics_to_check(tmp_path: Path) -> None:
    path = tmp_path / "extract.csv"
    path.write_text("record_id,nhs_number\na,9434765919\nb,9434765919\n", encoding="utf-8")
    extract = read_extract(path)
    assert nhs_number_pairs("r", "r", extract.identity_columns, dedupe=True) is None
