"""Every table the dashboard shows, downloadable as CSV or Excel with its notes.

An API route that returns a table takes `format=json|csv|xlsx`; for csv and xlsx it builds a
`Table` from the same rows it returns as JSON and answers `respond(table, fmt)`. So the file
holds the numbers of the page, suppressed cells stay empty (the disclosure note says why), and
the definition, period, disclosure rule and source travel with the figures: repeated on every
CSV row as Fingertips does, and on a "Notes" sheet in Excel.

Text that a spreadsheet would run as a formula (starting = + - @, tab or carriage return) is
neutralised as OWASP advises for CSV injection: prefixed with ' in CSV, and stored as plain
text (quote-prefixed) in Excel, so a name or note typed by someone cannot become a formula.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, BinaryIO, Literal

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]
from openpyxl.cell.cell import (  # type: ignore[import-untyped]
    ERROR_CODES,
    ILLEGAL_CHARACTERS_RE,
)
from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]
from pydantic import BaseModel

from joinedup.web.site import figures, site

__all__ = [
    "CSV_MEDIA_TYPE",
    "XLSX_MEDIA_TYPE",
    "Column",
    "Format",
    "Table",
    "TableOut",
    "as_json",
    "cached_download",
    "csv_chunks",
    "file_stem",
    "neutralised",
    "percent",
    "respond",
    "streamed",
    "to_csv",
    "to_xlsx",
    "write_xlsx",
]

Format = Literal["json", "csv", "xlsx"]

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: First characters that make a spreadsheet read text as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_FORMAT = "yyyy-mm-dd"
_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
#: Excel's limit on the characters of one cell.
_EXCEL_CELL_LIMIT = 32_767
#: Excel's rows a worksheet, less the header.
_EXCEL_ROWS = 1_048_575


@dataclass(frozen=True)
class Column:
    """One column of a download: the row key it reads, its heading in words, its unit."""

    key: str
    heading: str
    unit: str = ""

    @property
    def label(self) -> str:
        """The heading with its unit, as the file's header shows it: "Rate (per 1,000)"."""
        if not self.unit or self.unit.lower() == self.heading.lower():
            return self.heading
        return f"{self.heading} ({self.unit})"


@dataclass(frozen=True)
class Table:
    """A table as shown on a page: its rows are the API's rows (suppressed cells None)."""

    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[tuple[str, str]]


class ColumnOut(BaseModel):
    key: str
    heading: str
    unit: str


class NoteOut(BaseModel):
    label: str
    text: str


class TableOut(BaseModel):
    """A downloadable table as JSON: the rows the CSV and Excel files hold, cell for cell."""

    name: str
    title: str
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]
    notes: list[NoteOut]


def as_json(table: Table) -> dict[str, Any]:
    """The table as the `format=json` answer of a table route (see `TableOut`)."""
    return {
        "name": table.name,
        "title": table.title,
        "columns": [{"key": c.key, "heading": c.heading, "unit": c.unit} for c in table.columns],
        "rows": [{c.key: row.get(c.key) for c in table.columns} for row in table.rows],
        "notes": [{"label": label, "text": text} for label, text in table.notes],
    }


def percent(text: str | None) -> float | None:
    """A share shown as "12.3%" as the number 12.3 (None for an empty or suppressed cell)."""
    if not text or not text.endswith("%"):
        return None
    try:
        return float(text[:-1].replace(",", ""))
    except ValueError:
        return None


def file_stem(name: str) -> str:
    """`name` made safe as a file name: ASCII letters, digits and single hyphens (an ODS code
    keeps its capitals: worklist-U12345)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    return stem[:100].rstrip("-") or "table"


def neutralised(text: str) -> str:
    """`text` with a leading ' when a spreadsheet would otherwise read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    """None, and numbers no file can hold (NaN, infinities): an empty cell."""
    if value is None:
        return True
    if isinstance(value, float | Decimal):
        return not math.isfinite(value)
    return False


def _utc_naive(value: datetime) -> datetime:
    # Neither CSV nor Excel carries a time zone; every instant is written as UTC.
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _csv_cell(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if _number(value):
        return str(value)
    if isinstance(value, datetime):
        return _utc_naive(value).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return neutralised(str(value))


def to_csv(table: Table) -> bytes:
    """The table as UTF-8 CSV: a header of headings, then one line a row, each row ending
    with the notes (definition, period, disclosure, source) repeated, as Fingertips does."""
    return b"".join(csv_chunks(table, table.rows))


def csv_chunks(
    table: Table, rows: Iterable[Mapping[str, Any]], *, chunk_bytes: int = 1 << 16
) -> Iterator[bytes]:
    """`to_csv` of `table`'s columns and notes with `rows` (read once, as they come) in
    pieces of about `chunk_bytes`: a file as long as the whole audit log is streamed, never
    held in memory."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [neutralised(c.label) for c in table.columns]
        + [neutralised(label) for label, _ in table.notes]
    )
    notes = [neutralised(text) for _, text in table.notes]
    for row in rows:
        writer.writerow([_csv_cell(row.get(c.key)) for c in table.columns] + notes)
        if out.tell() >= chunk_bytes:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue().encode("utf-8")


def _excel_value(value: Any) -> tuple[Any, str | None, bool]:
    """(value, number format, is text needing protection) for one Excel cell."""
    if _missing(value):
        return None, None, False
    if isinstance(value, bool) or _number(value):
        return value, None, False
    if isinstance(value, datetime):
        return _utc_naive(value), _DATETIME_FORMAT, False
    if isinstance(value, date):
        return value, _DATE_FORMAT, False
    text = str(value)
    if not text:
        return None, None, False  # Excel has no empty text: an empty cell
    if _ISO_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text), _DATE_FORMAT, False
        except ValueError:
            pass
    # Control characters (a request path copied into the audit log may hold them) cannot be
    # stored in a worksheet: each is shown as U+FFFD rather than failing the whole download.
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)[:_EXCEL_CELL_LIMIT], None, True


def _put(sheet: Any, row: int, column: int, value: Any) -> Any:
    """Write one cell; text is always stored as text, never as a formula."""
    shown, number_format, text = _excel_value(value)
    cell = sheet.cell(row=row, column=column)
    cell.value = shown
    return _formatted(cell, shown, number_format, text)


def _formatted(cell: Any, shown: Any, number_format: str | None, text: bool) -> Any:
    """`cell` with its number format, and text kept as text: openpyxl reads a string starting
    "=" as a formula, so force it to be text, and mark it quote-prefixed as Excel itself does
    for text typed with a leading apostrophe."""
    if number_format:
        cell.number_format = number_format
    if text:
        cell.data_type = "s"
        if shown.startswith(_FORMULA_STARTS):
            cell.quotePrefix = True
    return cell


def to_xlsx(table: Table, *, generated_at: datetime | None = None) -> bytes:
    """The table as an Excel workbook: a "Data" sheet (bold frozen header, autofilter,
    numbers as numbers, dates as dates) and a "Notes" sheet (title, notes, columns, when)."""
    book = Workbook()
    data = book.active
    data.title = "Data"
    bold = Font(bold=True)
    widths: list[int] = []
    for j, column in enumerate(table.columns, start=1):
        _put(data, 1, j, column.label).font = bold
        widths.append(len(column.label))
    for i, row in enumerate(table.rows, start=2):
        for j, column in enumerate(table.columns, start=1):
            value = row.get(column.key)
            _put(data, i, j, value)
            if value is not None:
                widths[j - 1] = max(widths[j - 1], min(len(str(value)), 60))
    for j, width in enumerate(widths, start=1):
        data.column_dimensions[get_column_letter(j)].width = width + 2
    data.freeze_panes = "A2"
    if table.columns:
        last = get_column_letter(len(table.columns))
        data.auto_filter.ref = f"A1:{last}{len(table.rows) + 1}"

    notes = book.create_sheet("Notes")
    when = _utc_naive(generated_at or datetime.now(UTC))
    _put(notes, 1, 1, table.title).font = Font(bold=True, size=14)
    line = 3
    for label, text in table.notes:
        _put(notes, line, 1, label).font = bold
        _put(notes, line, 2, text).alignment = Alignment(wrap_text=True, vertical="top")
        line += 1
    _put(notes, line, 1, "Generated at (UTC)").font = bold
    _put(notes, line, 2, when)
    line += 2
    _put(notes, line, 1, "Column").font = bold
    _put(notes, line, 2, "Unit").font = bold
    for column in table.columns:
        line += 1
        _put(notes, line, 1, column.heading)
        _put(notes, line, 2, column.unit)
    notes.column_dimensions["A"].width = 28
    notes.column_dimensions["B"].width = 100
    book.properties.title = table.title[:255]

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _write_only_value(sheet: Any, value: Any, font: Any = None) -> Any:
    """One cell of a write-only sheet, as `_put` writes it: a plain value where it needs
    nothing more (most numbers), else a cell with its format, text kept as text."""
    shown, number_format, text = _excel_value(value)
    if shown is None or (not number_format and not text and font is None):
        return shown
    if (
        text and font is None
        and not shown.startswith(_FORMULA_STARTS) and shown not in ERROR_CODES
    ):  # fmt: skip
        return shown  # stored as text as it is: no cell object (a quarter faster a row)
    cell = _formatted(WriteOnlyCell(sheet, value=shown), shown, number_format, text)
    if font is not None:
        cell.font = font
    return cell


def write_xlsx(
    out: BinaryIO,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    generated_at: datetime | None = None,
    rows_per_sheet: int = _EXCEL_ROWS,
) -> int:
    """`to_xlsx` of `table`'s columns and notes with `rows`, written to `out` by openpyxl's
    write-only mode: each row goes to the sheet's temporary file as it comes, so memory stays
    flat however long the log. The same sheets and cells as `to_xlsx`, except that column
    widths follow the headings (the rows are not known in advance) and a table longer than a
    worksheet's 1,048,575 rows runs on to "Data 2", "Data 3"... Returns the rows written."""
    book = Workbook(write_only=True)
    bold = Font(bold=True)
    written = 0
    sheets = 0
    data: Any = None
    in_sheet = rows_per_sheet  # so the first row opens the first sheet

    def open_sheet() -> Any:
        nonlocal sheets
        sheets += 1
        sheet = book.create_sheet("Data" if sheets == 1 else f"Data {sheets}")
        for j, column in enumerate(table.columns, start=1):
            width = max(len(column.label), 12) + 2
            sheet.column_dimensions[get_column_letter(j)].width = width
        sheet.freeze_panes = "A2"
        sheet.append([_write_only_value(sheet, c.label, bold) for c in table.columns])
        return sheet

    def close_sheet(sheet: Any, count: int) -> None:
        if table.columns:
            last = get_column_letter(len(table.columns))
            sheet.auto_filter.ref = f"A1:{last}{count + 1}"

    for row in rows:
        if in_sheet >= rows_per_sheet:
            if data is not None:
                close_sheet(data, in_sheet)
            data, in_sheet = open_sheet(), 0
        data.append([_write_only_value(data, row.get(c.key)) for c in table.columns])
        in_sheet += 1
        written += 1
    if data is None:
        data, in_sheet = open_sheet(), 0
    close_sheet(data, in_sheet)

    notes = book.create_sheet("Notes")
    notes.column_dimensions["A"].width = 28
    notes.column_dimensions["B"].width = 100
    wrap = Alignment(wrap_text=True, vertical="top")
    title = _write_only_value(notes, table.title, Font(bold=True, size=14))
    notes.append([title])
    notes.append([])
    for label, text in table.notes:
        note = _write_only_value(notes, text, Font())
        if note is not None:
            note.alignment = wrap
        notes.append([_write_only_value(notes, label, bold), note])
    when = _utc_naive(generated_at or datetime.now(UTC))
    notes.append([_write_only_value(notes, "Generated at (UTC)", bold),
                  _write_only_value(notes, when)])  # fmt: skip
    notes.append([])
    notes.append([_write_only_value(notes, "Column", bold),
                  _write_only_value(notes, "Unit", bold)])  # fmt: skip
    for column in table.columns:
        notes.append([_write_only_value(notes, column.heading),
                      _write_only_value(notes, column.unit)])  # fmt: skip
    book.properties.title = table.title[:255]
    book.save(out)
    return written


def streamed(chunks: Iterable[bytes], name: str, fmt: Literal["csv", "xlsx"]) -> StreamingResponse:
    """`chunks` as a download named `name` (an attachment of `fmt`'s media type), sent as
    they come: Starlette runs a plain iterator's steps in worker threads."""
    return StreamingResponse(iter(chunks), **_as_file(name, fmt))


def respond(table: Table, fmt: Literal["csv", "xlsx"]) -> Response:
    """The table as a download (an attachment of the right media type) in `fmt`."""
    if fmt == "csv":
        body = to_csv(table)
    elif fmt == "xlsx":
        body = to_xlsx(table)
    else:
        raise ValueError(f"format must be csv or xlsx, got {fmt!r}")
    return _attachment(body, table.name, fmt)


def _attachment(body: bytes, name: str, fmt: Literal["csv", "xlsx"]) -> Response:
    return Response(body, **_as_file(name, fmt))


def _as_file(name: str, fmt: Literal["csv", "xlsx"]) -> dict[str, Any]:
    """A response's media type and headers for a download named `name` in `fmt`."""
    return {
        "media_type": CSV_MEDIA_TYPE if fmt == "csv" else XLSX_MEDIA_TYPE,
        "headers": {
            "Content-Disposition": f'attachment; filename="{file_stem(name)}.{fmt}"',
            "X-Content-Type-Options": "nosniff",
        },
    }


async def cached_download(
    request: Request,
    key: tuple[str, ...],
    build: Callable[[], Table],
    fmt: Literal["csv", "xlsx"],
) -> Response:
    """`respond(build(), fmt)` for figures that cannot change while served: the file is made
    once (in a worker thread, a bad name in `build` as 404) and kept beside the JSON."""
    kept = site(request).serialised
    body_key, name_key = ("download", fmt, *key), ("download-name", *key)
    body, name = kept.get(body_key), kept.get(name_key)
    if body is None or name is None:
        table = await run_in_threadpool(figures, build)
        made = await run_in_threadpool(respond, table, fmt)
        kept[body_key], kept[name_key] = bytes(made.body), table.name.encode()
        return made
    return _attachment(body, name.decode(), fmt)
