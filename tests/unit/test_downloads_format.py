"""Tables as CSV and Excel downloads: same cells, notes carried, nothing runs as a formula."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, date, datetime
from typing import Any

import pytest
from openpyxl import load_workbook

from joinedup.web.downloads import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    Column,
    Table,
    csv_chunks,
    file_stem,
    neutralised,
    respond,
    to_csv,
    to_xlsx,
    write_xlsx,
)

NOTES = [
    ("Definition", "Emergency admissions per 1,000 people"),
    ("Period", "2024-04-01 to 2025-03-31"),
    ("Disclosure", "Counts 1-7 suppressed; others rounded to the nearest 5"),
    ("Source", "joinedup warehouse"),
]


def table(rows: list[dict[str, Any]]) -> Table:
    return Table(
        name="indicator-emergency-admissions-pcn",
        title="Emergency admissions by PCN",
        columns=[
            Column("area_code", "Area code"),
            Column("value", "Value", "per 1,000"),
            Column("count", "Count", "people"),
            Column("period_date", "Period end"),
        ],
        rows=rows,
        notes=NOTES,
    )


ROWS: list[dict[str, Any]] = [
    {"area_code": "U12345", "value": 12.5, "count": 40, "period_date": date(2025, 3, 31)},
    {"area_code": "U67890", "value": None, "count": None, "period_date": "2025-03-31"},
]


def read_csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"))))


def test_csv_has_headings_with_units_rows_and_notes_on_every_row() -> None:
    lines = read_csv(to_csv(table(ROWS)))
    assert lines[0] == [
        "Area code", "Value (per 1,000)", "Count (people)", "Period end",
        "Definition", "Period", "Disclosure", "Source",
    ]  # fmt: skip
    assert lines[1][:4] == ["U12345", "12.5", "40", "2025-03-31"]
    # A suppressed cell is empty, not "None" nor "*".
    assert lines[2][:4] == ["U67890", "", "", "2025-03-31"]
    for line in lines[1:]:
        assert line[4:] == [text for _, text in NOTES]
    assert len(lines) == 3


def test_xlsx_data_sheet_keeps_numbers_and_dates_and_empty_suppressed_cells() -> None:
    book = load_workbook(io.BytesIO(to_xlsx(table(ROWS))))
    assert book.sheetnames == ["Data", "Notes"]
    data = book["Data"]
    cells = [[c.value for c in row] for row in data.iter_rows()]
    assert cells[0] == ["Area code", "Value (per 1,000)", "Count (people)", "Period end"]
    assert cells[1] == ["U12345", 12.5, 40, datetime(2025, 3, 31)]
    # An ISO date string from the JSON rows is a date in Excel too.
    assert cells[2] == ["U67890", None, None, datetime(2025, 3, 31)]
    assert isinstance(cells[1][1], float) and isinstance(cells[1][2], int)
    assert data["D2"].number_format == "yyyy-mm-dd"
    assert data.freeze_panes == "A2"
    assert data.auto_filter.ref == "A1:D3"
    assert data["A1"].font.bold


def test_xlsx_notes_sheet_has_title_notes_units_and_generation_time() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    notes = load_workbook(io.BytesIO(to_xlsx(table(ROWS), generated_at=when)))["Notes"]
    pairs = {r[0]: r[1] for r in notes.iter_rows(values_only=True) if r[0]}
    assert notes["A1"].value == "Emergency admissions by PCN"
    for label, text in NOTES:
        assert pairs[label] == text
    assert pairs["Generated at (UTC)"] == datetime(2026, 1, 2, 3, 4, 5)
    assert pairs["Value"] == "per 1,000" and pairs["Count"] == "people"


@pytest.mark.parametrize("text", ["=1+2", "+44 20", "-3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_looking_text_is_neutralised_in_csv_and_stored_as_text_in_xlsx(
    text: str,
) -> None:
    rows = [{"area_code": text, "value": -3.5, "count": 8, "period_date": None}]
    line = read_csv(to_csv(table(rows)))[1]
    assert line[0] == "'" + text
    # Numbers are not text: a negative value keeps its sign.
    assert line[1] == "-3.5"
    book = load_workbook(io.BytesIO(to_xlsx(table(rows))))
    cell = book["Data"]["A2"]
    assert cell.data_type == "s" and cell.value == text
    assert book["Data"]["B2"].value == -3.5


def test_xlsx_formula_text_is_never_written_as_a_formula() -> None:
    rows = [{"area_code": '=HYPERLINK("http://x","y")', "value": 1, "count": 1}]
    body = to_xlsx(table(rows))
    sheet = zipfile.ZipFile(io.BytesIO(body)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet
    # Text, not a formula: an inline string cell.
    assert re.search(r'<c r="A2"[^>]* t="inlineStr"[^>]*><is><t>=HYPERLINK\(', sheet)


def test_notes_are_neutralised_too() -> None:
    rows = [{"area_code": "A"}]
    hostile = Table("t", "=cmd", [Column("area_code", "@x")], rows, [("Source", "=evil()")])
    lines = read_csv(to_csv(hostile))
    assert lines == [["'@x", "Source"], ["A", "'=evil()"]]
    notes = load_workbook(io.BytesIO(to_xlsx(hostile)))["Notes"]
    assert notes["A1"].data_type == "s" and notes["A1"].value == "=cmd"


def test_non_finite_numbers_and_booleans_and_aware_datetimes() -> None:
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    rows = [{"area_code": True, "value": float("nan"), "count": float("inf"), "period_date": at}]
    line = read_csv(to_csv(table(rows)))[1]
    assert line[:4] == ["true", "", "", "2025-06-01 12:00:00"]
    data = load_workbook(io.BytesIO(to_xlsx(table(rows))))["Data"]
    assert [c.value for c in data[2]] == [True, None, None, datetime(2025, 6, 1, 12, 0)]


def test_empty_text_is_an_empty_excel_cell() -> None:
    rows = [{"area_code": "", "value": 1.0}]
    assert read_csv(to_csv(table(rows)))[1][:2] == ["", "1.0"]
    data = load_workbook(io.BytesIO(to_xlsx(table(rows))))["Data"]
    assert data["A2"].value is None and data["B2"].value == 1.0


def test_control_characters_do_not_fail_the_excel_download() -> None:
    # Found by the schema fuzzer: a request path with control characters reached the audit log,
    # and its Excel download failed with a 500. Excel cannot store them: each shows as U+FFFD.
    rows = [{"area_code": "worklist/\x01a\x1fb", "value": 1.0}]
    data = load_workbook(io.BytesIO(to_xlsx(table(rows))))["Data"]
    assert data["A2"].value == "worklist/\ufffda\ufffdb"
    assert read_csv(to_csv(table(rows)))[1][0] == "worklist/\x01a\x1fb"


def test_an_empty_table_still_has_its_header_and_notes() -> None:
    assert read_csv(to_csv(table([])))[0][0] == "Area code"
    book = load_workbook(io.BytesIO(to_xlsx(table([]))))
    assert book["Data"]["A1"].value == "Area code"
    assert book["Data"].auto_filter.ref == "A1:D1"


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("indicator-emergency-admissions-pcn", "indicator-emergency-admissions-pcn"),
        ("Worklist U12345", "Worklist-U12345"),
        ('../../etc/passwd"; x=.csv', "etc-passwd-x-csv"),
        ("", "table"),
        ("£££", "table"),
    ],
)
def test_file_names_are_safe(name: str, stem: str) -> None:
    assert file_stem(name) == stem


def test_respond_is_an_attachment_of_the_right_media_type() -> None:
    t = Table("Places by people", "Places", [Column("a", "A")], [{"a": 1}], [])
    got = respond(t, "csv")
    assert got.media_type == CSV_MEDIA_TYPE
    assert got.headers["content-disposition"] == 'attachment; filename="Places-by-people.csv"'
    assert bytes(got.body) == b"A\r\n1\r\n"
    got = respond(t, "xlsx")
    assert got.media_type == XLSX_MEDIA_TYPE
    assert got.headers["content-disposition"] == 'attachment; filename="Places-by-people.xlsx"'
    assert load_workbook(io.BytesIO(bytes(got.body)))["Data"]["A2"].value == 1
    with pytest.raises(ValueError, match="csv or xlsx"):
        respond(t, "json")  # type: ignore[arg-type]


def test_neutralised_leaves_ordinary_text_alone() -> None:
    assert neutralised("Leeds PCN") == "Leeds PCN"
    assert neutralised("") == ""
    assert neutralised("=A1") == "'=A1"


# --- streamed: a table too long to hold (the whole audit log) ---------------------------------

AWKWARD: list[dict[str, Any]] = [
    *ROWS,
    {"area_code": "=1+1", "value": float("nan"), "count": 0, "period_date": "#N/A"},
    {"area_code": "bell\x07", "value": -3, "count": True, "period_date": "#DIV/0!"},
    {"area_code": "", "value": 1e-9, "count": 7, "period_date": datetime(2026, 1, 2, 3, 4, 5)},
]


def test_streamed_csv_is_the_csv_in_pieces() -> None:
    pieces = list(csv_chunks(table(AWKWARD), iter(AWKWARD * 50), chunk_bytes=200))
    assert len(pieces) > 10
    assert b"".join(pieces) == to_csv(table(AWKWARD * 50))


def test_write_only_excel_holds_the_cells_of_the_excel_and_runs_on_to_more_sheets() -> None:
    def cells(body: bytes, sheet: str) -> list[tuple[Any, ...]]:
        return list(load_workbook(io.BytesIO(body))[sheet].iter_rows(values_only=True))

    whole = to_xlsx(table(AWKWARD))
    out = io.BytesIO()
    assert write_xlsx(out, table(AWKWARD), iter(AWKWARD)) == len(AWKWARD)
    streamed = out.getvalue()
    assert cells(streamed, "Data") == cells(whole, "Data")
    assert cells(streamed, "Notes")[:6] == cells(whole, "Notes")[:6]  # then the time written
    data = load_workbook(io.BytesIO(streamed))["Data"]
    assert data["A4"].data_type == "s" and data["A4"].quotePrefix  # "=1+1" is text
    assert data["D4"].data_type == "s"  # "#N/A" is text, not Excel's error
    assert data.freeze_panes == "A2" and data.auto_filter.ref == "A1:D6"

    out = io.BytesIO()
    write_xlsx(out, table(AWKWARD), iter(AWKWARD * 3), rows_per_sheet=6)
    book = load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Data", "Data 2", "Data 3", "Notes"]
    rows = [r for name in ("Data", "Data 2", "Data 3") for r in cells(out.getvalue(), name)[1:]]
    assert rows == cells(to_xlsx(table(AWKWARD * 3)), "Data")[1:]
    assert [book[n].max_row for n in ("Data", "Data 2", "Data 3")] == [7, 7, 4]
