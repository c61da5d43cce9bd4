"""Reading a linkage extract: clean values, derived keys, and bad files refused in one line
naming the row and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import ConfigurationError, InputError
from joinedup.linkage import read_extract, soundex
from joinedup.linkage.extract import postcode_district, transposed

HEADER = "record_id,given_name,family_name,birth_date,sex,postcode,nhs_number"


def _csv(tmp_path: Path, *lines: str, header: str = HEADER) -> Path:
    path = tmp_path / "extract.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def test_cleans_values_and_derives_keys(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a1, o'Brien ,Smith-Jones,1980-03-04,female,ls1 4ap,943 476 5919")
    row = read_extract(path).records.to_pylist()[0]
    assert row["given_name"] == "OBRIEN"
    assert row["family_name"] == "SMITH JONES"
    assert row["sex"] == "F"
    assert row["postcode"] == "LS14AP"
    assert row["postcode_district"] == "LS1"
    assert row["birth_date_transposed"] == "1980-04-03"
    assert row["birth_year"] == 1980
    assert row["nhs_number"] == "9434765919"
    assert row["nhs_number_key"] == "9434765919"  # Modulus 11 valid


def test_a_mistyped_nhs_number_is_kept_but_links_nothing(tmp_path: Path) -> None:
    row = read_extract(_csv(tmp_path, "a1,Ann,Lee,,,,9434765918")).records.to_pylist()[0]
    assert row["nhs_number"] == "9434765918"
    assert row["nhs_number_key"] is None


def test_missing_columns_are_skipped_and_extra_ones_compared(tmp_path: Path) -> None:
    path = _csv(
        tmp_path, "1,Ann,x road,9", "2,Bob,y road,9", header="record_id,given_name,street,z"
    )
    extract = read_extract(path, ("street",))
    assert extract.identity_columns == ("given_name",)
    assert extract.columns == ("given_name", "street")
    assert "z" not in extract.records.column_names
    assert extract.records.column("street").to_pylist() == ["X ROAD", "Y ROAD"]


@pytest.mark.parametrize(
    ("lines", "where", "reason"),
    [
        (
            ["a1,Ann,Lee,1980-01-01,F,,", "a1,Bob,Lee,,,,"],
            "row 2, column record_id",
            "first at row 1",
        ),
        (["a1,Ann,Lee,1980-01-01,F,,", ",Bob,Lee,,,,"], "row 2, column record_id", "empty"),
        (["a1,Ann,Lee,01/02/1980,F,,"], "row 1, column birth_date", "YYYY-MM-DD"),
        (["a1,Ann,Lee,1980-02-30,F,,"], "row 1, column birth_date", "not a real date"),
        (["a1,Ann,Lee,1980-02-03,X,,"], "row 1, column sex", "M, F"),
        (["a1,Ann,Lee,1980-02-03,F,"], "row 1", "6 fields where the header has 7"),
    ],
)
def test_bad_rows_are_refused_naming_row_and_column(
    tmp_path: Path, lines: list[str], where: str, reason: str
) -> None:
    with pytest.raises(InputError) as err:
        read_extract(_csv(tmp_path, *lines))
    message = str(err.value)
    assert f"extract.csv {where}:" in message
    assert reason in message
    assert "\n" not in message
    assert "Ann" not in message  # never echoes a name


def test_not_utf8_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "extract.csv"
    path.write_bytes(f"{HEADER}\na1,Ann,Lee,,,,\na2,Ren\xe9e,Lee,,,,\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"extract.csv row 2: not UTF-8"):
        read_extract(path)


def test_header_problems(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no record_id column"):
        read_extract(_csv(tmp_path, "Ann", header="given_name"))
    with pytest.raises(InputError, match="'given_name' appears twice"):
        read_extract(_csv(tmp_path, "1,Ann,Ann", header="record_id,given_name,given_name"))
    with pytest.raises(InputError, match="no records after the header"):
        read_extract(_csv(tmp_path))
    with pytest.raises(ConfigurationError, match=r"--compare street: .* has no column 'street'"):
        read_extract(_csv(tmp_path, "1,Ann", header="record_id,given_name"), ("street",))


@pytest.mark.parametrize(
    ("name", "code"),
    [("Robert", "R163"), ("Rupert", "R163"), ("Ashcraft", "A261"), ("Tymczak", "T522"),
     ("Pfister", "P236"), ("Lee", "L000"), ("Smith", "S530"), ("Smythe", "S530")],
)  # fmt: skip
def test_soundex_matches_the_published_examples(name: str, code: str) -> None:
    assert soundex(name) == code


def test_transposition_and_district() -> None:
    from datetime import date

    assert transposed(date(1990, 5, 7)) == "1990-07-05"
    assert transposed(date(1990, 5, 13)) is None  # no 13th month
    assert transposed(date(1990, 5, 5)) is None  # the same date
    assert postcode_district("SW1A1AA") == "SW1A"
    assert postcode_district("M11AE") == "M1"
    assert postcode_district("2600") is None


def test_the_arrow_reader_agrees_with_the_row_by_row_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrow reads good files; the Python reader it falls back on for bad ones is the
    reference, and both must give the same records (quoting, a BOM, blank lines, spaces,
    case, non-ASCII letters, repeated values, a compared column)."""
    from joinedup.linkage import extract as module

    rows = [
        'a1," Ann ","O\'Brien-Smith",1980-03-04,female, ls1 4ap ,943 476 5919,"1 High St, Leeds"',
        "a2,ann,obrien smith,1980-03-04,F,LS14AP,9434765919,1 HIGH ST",
        "",
        'a3,"Zoë","Strauß",1999-12-31,U,2600,943-476-5918,"two\nlines"',
        "a4,,,,,,,",
        " a5 ,Bob,Lee,2001-02-13,2,M1 1AE,,",
    ]
    path = tmp_path / "extract.csv"
    text = "\n".join([f"{HEADER},address", *rows]) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    reference = module._read_by_row(path, module._decode(path), ("address",))

    def refuse(*_: object) -> None:
        raise AssertionError("a good file fell back to the row-by-row reader")

    monkeypatch.setattr(module, "_read_by_row", refuse)
    fast = read_extract(path, ("address",))
    assert fast.records.equals(reference.records)
    assert fast.records.column("record_id").to_pylist() == ["a1", "a2", "a3", "a4", "a5"]
    assert fast.records.column("given_soundex").to_pylist()[:2] == ["A500", "A500"]


def test_a_bad_row_far_down_a_long_file_is_named(tmp_path: Path) -> None:
    lines = [f"r{i},Ann,Lee,1980-01-01,F,LS1 4AP," for i in range(1, 20_001)]
    lines[15_000] = "r15001,Ann,Lee,1980-13-01,F,LS1 4AP,"
    with pytest.raises(InputError, match=r"row 15001, column birth_date: .*not a real date"):
        read_extract(_csv(tmp_path, *lines))
