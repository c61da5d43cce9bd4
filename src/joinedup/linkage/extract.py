"""Reading a person extract for linkage: a CSV with one row per source record.

The columns joinedup knows are `record_id` (required), `given_name`, `family_name`,
`birth_date` (YYYY-MM-DD), `sex`, `postcode` and `nhs_number`; any of the others may be
missing, and more columns can be compared as plain strings (`compare`). Values are cleaned
here, once, and the keys linkage compares are derived beside them (a Soundex code for each
name, the day-month transposition of the birth date, the postcode district), so every engine
compares the same values. A file that cannot be read is refused in one line naming the row
and column; a value that is merely wrong (a mistyped NHS number) is data, and is kept.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from joinedup.errors import ConfigurationError, InputError
from joinedup.fhir.validate import is_valid_nhs_number

#: The identity columns joinedup compares, in the order they are written.
IDENTITY_COLUMNS = (
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "postcode",
    "nhs_number",
)

_SEX = {
    "m": "M",
    "male": "M",
    "1": "M",
    "f": "F",
    "female": "F",
    "2": "F",
    "u": None,
    "unknown": None,
    "0": None,
    "9": None,
    "i": None,
    "indeterminate": None,
    "": None,
}
#: Keys derived from each identity column, kept when the column is.
_DERIVED: dict[str, tuple[str, ...]] = {
    "given_name": ("given_soundex",),
    "family_name": ("family_soundex",),
    "birth_date": ("birth_year", "birth_date_transposed"),
    "sex": (),
    "postcode": ("postcode_district",),
    "nhs_number": ("nhs_number_key",),
}
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# A UK postcode without its space: outward code (area, district) then inward code.
_UK_POSTCODE = re.compile(r"([A-Z]{1,2}\d[A-Z\d]?)(\d[A-Z]{2})")
_NOT_NAME = re.compile(r"[^A-Z ]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Extract:
    """A cleaned extract: `records` (Arrow, one row a record, with derived keys), the identity
    columns it has, and the extra columns compared as strings."""

    path: Path
    records: pa.Table
    identity_columns: tuple[str, ...]
    compare_columns: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column linkage may compare: identity columns, then the extra ones."""
        return self.identity_columns + self.compare_columns

    def __len__(self) -> int:
        return int(self.records.num_rows)


def soundex(name: str) -> str | None:
    """American Soundex of `name` (letters only; None when there are none): a letter and
    three digits, so that names that sound alike (SMITH, SMYTHE) share a code."""
    letters = [c for c in name.upper() if "A" <= c <= "Z"]
    if not letters:
        return None
    codes = {
        **dict.fromkeys("BFPV", "1"),
        **dict.fromkeys("CGJKQSXZ", "2"),
        **dict.fromkeys("DT", "3"),
        "L": "4",
        **dict.fromkeys("MN", "5"),
        "R": "6",
    }
    out = [letters[0]]
    previous = codes.get(letters[0], "")
    for c in letters[1:]:
        code = codes.get(c, "")
        if code and code != previous:
            out.append(code)
        if c not in "HW":  # H and W do not separate two letters of the same code
            previous = code
    return ("".join(out) + "000")[:4]


def clean_name(value: str) -> str | None:
    """A name as compared: upper case, letters and single spaces (hyphens become spaces)."""
    text = _SPACES.sub(" ", _NOT_NAME.sub(" ", value.upper().replace("'", ""))).strip()
    return text or None


def postcode_district(postcode: str) -> str | None:
    """The outward code (district) of a cleaned UK postcode, or None for another shape."""
    match = _UK_POSTCODE.fullmatch(postcode)
    return match.group(1) if match else None


def transposed(birth: date) -> str | None:
    """The birth date with day and month swapped (a common keying error), where that is
    another real date."""
    if birth.day > 12 or birth.day == birth.month:
        return None
    return date(birth.year, birth.day, birth.month).isoformat()


def _decode(path: Path) -> bytes:
    """The file's bytes without a byte order mark, once they are known to be UTF-8 text."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        row = data[: err.start].count(b"\n")  # the header is line 1, its first record row 1
        raise InputError(f"{path} row {row}", "not UTF-8 text (save the file as UTF-8)") from err
    return data.removeprefix(codecs.BOM_UTF8)


def _header(path: Path, header: list[str] | None, compare: tuple[str, ...]) -> list[str]:
    if header is None:
        raise InputError(str(path), "empty file: expected a header row naming the columns")
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path} header", f"column {name!r} appears twice")
        seen.add(name)
    if "record_id" not in seen:
        raise InputError(f"{path} header", "no record_id column (one identifier per row)")
    for name in compare:
        if name not in seen:
            raise ConfigurationError(f"--compare {name}: {path} has no column {name!r}")
        if name in IDENTITY_COLUMNS or name == "record_id":
            raise ConfigurationError(
                f"--compare {name}: {name} is compared already; name another column"
            )
    return names


def _birth_date(text: str, where: str) -> date | None:
    if not text:
        return None
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        raise InputError(where, "birth_date is not a date in YYYY-MM-DD form")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as err:
        raise InputError(where, f"birth_date is not a real date ({err})") from None


def read_extract(path: Path, compare: tuple[str, ...] = ()) -> Extract:
    """Read and clean the extract at `path`, comparing the extra columns `compare` as strings.
    Raises `InputError` naming the row (1 = the first after the header) and column.

    Arrow parses the file and each distinct value is cleaned once (names, dates and postcodes
    repeat), so a million records take seconds; a file Arrow cannot parse, or one whose checks
    fail, is read again row by row (`_read_by_row`, the reference) to name the first bad row
    exactly as before."""
    data = _decode(path)
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    try:
        header = next(csv.reader(text), None)
    except csv.Error:
        return _read_by_row(path, data, compare)
    names = _header(path, header, compare)
    present = tuple(c for c in IDENTITY_COLUMNS if c in names)
    wanted = ("record_id", *present, *compare)
    keys = [str(i) for i in range(len(names))]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=keys, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(keys, pa.string()),
                include_columns=[keys[names.index(n)] for n in wanted],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
    except pa.ArrowInvalid:
        return _read_by_row(path, data, compare)
    if table.num_rows == 0:
        return _read_by_row(path, data, compare)
    raw = {n: table.column(keys[names.index(n)]).combine_chunks() for n in wanted}
    ids = pc.utf8_trim_whitespace(raw["record_id"])  # the same characters as str.strip
    columns: dict[str, pa.Array] = {"record_id": ids}
    if pc.any(pc.equal(ids, "")).as_py() or pc.count_distinct(ids).as_py() != len(ids):
        return _read_by_row(path, data, compare)  # it names the first bad row
    for name in present:
        produced, types, clean = _CLEAN[name]
        found = _by_value(raw[name], clean, types)
        if found is None:
            return _read_by_row(path, data, compare)
        columns.update(zip(produced, found, strict=True))
    for name in compare:
        columns[name] = _by_value(raw[name], _compared, (_STRING,))[0]  # type: ignore[index]
    derived = [d for source in present for d in _DERIVED[source]]
    records = pa.table(
        {name: columns[name] for name in ("record_id", *present, *compare, *derived)}
    )
    return Extract(path, records, present, compare)


def _by_value(
    column: pa.Array,
    clean: Callable[[str], tuple[object, ...] | None],
    types: tuple[pa.DataType, ...],
) -> list[pa.Array] | None:
    """`clean` of the stripped text of each distinct value of `column` (names, dates and
    postcodes repeat), spread back over the rows, one array per type in `types`; None when
    `clean` refuses a value."""
    encoded = pc.dictionary_encode(column)
    results = [clean(v.strip()) for v in encoded.dictionary.to_pylist()]
    if any(r is None for r in results):
        return None
    return [
        pc.take(pa.array([r[i] for r in results], type_), encoded.indices)  # type: ignore[index]
        for i, type_ in enumerate(types)
    ]


def _name(text: str) -> tuple[object, ...]:
    name = clean_name(text)
    return name, None if name is None else soundex(name)


def _birth(text: str) -> tuple[object, ...] | None:
    try:
        birth = _birth_date(text, "")
    except InputError:
        return None
    if birth is None:
        return None, None, None
    return birth.isoformat(), birth.year, transposed(birth)


def _sex(text: str) -> tuple[object, ...] | None:
    key = text.lower()
    return (_SEX[key],) if key in _SEX else None


def _postcode(text: str) -> tuple[object, ...]:
    postcode = text.upper().replace(" ", "") or None
    return postcode, None if postcode is None else postcode_district(postcode)


def _nhs_number(text: str) -> tuple[object, ...]:
    nhs = text.replace(" ", "").replace("-", "") or None
    # The key linkage compares: Modulus 11 valid numbers only (a mistyped one links nothing).
    return nhs, nhs if nhs is not None and is_valid_nhs_number(nhs) else None


def _compared(text: str) -> tuple[object, ...]:
    return (_SPACES.sub(" ", text.upper()) or None,)


_STRING = pa.string()
#: How each identity column is cleaned: the columns it gives (itself, then its derived keys),
#: their types, and the function of one value (None: the value is refused).
_CLEAN: dict[
    str, tuple[tuple[str, ...], tuple[pa.DataType, ...], Callable[[str], tuple[object, ...] | None]]
] = {
    "given_name": (("given_name", "given_soundex"), (_STRING, _STRING), _name),
    "family_name": (("family_name", "family_soundex"), (_STRING, _STRING), _name),
    "birth_date": (
        ("birth_date", "birth_year", "birth_date_transposed"),
        (_STRING, pa.int32(), _STRING),
        _birth,
    ),
    "sex": (("sex",), (_STRING,), _sex),
    "postcode": (("postcode", "postcode_district"), (_STRING, _STRING), _postcode),
    "nhs_number": (("nhs_number", "nhs_number_key"), (_STRING, _STRING), _nhs_number),
}


def _read_by_row(path: Path, data: bytes, compare: tuple[str, ...]) -> Extract:
    """The reference reader: row by row in Python, refusing the first bad row by number."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    try:
        names = _header(path, next(reader, None), compare)
        present = tuple(c for c in IDENTITY_COLUMNS if c in names)
        index = {name: i for i, name in enumerate(names)}
        columns: dict[str, list[object]] = {
            name: []
            for name in (
                "record_id",
                *present,
                *compare,
                "nhs_number_key",
                "given_soundex",
                "family_soundex",
                "birth_year",
                "birth_date_transposed",
                "postcode_district",
            )
        }
        first_row: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != len(names):
                raise InputError(
                    f"{path} row {row_number}",
                    f"{len(row)} fields where the header has {len(names)}",
                )
            _read_row(path, row_number, row, index, present, compare, columns, first_row)
    except csv.Error as err:
        raise InputError(f"{path} row {reader.line_num - 1}", f"not valid CSV ({err})") from None
    if not first_row:
        raise InputError(str(path), "no records after the header")
    derived = [d for source in present for d in _DERIVED[source]]
    kept = {name: columns[name] for name in ("record_id", *present, *compare, *derived)}
    types = {"birth_year": pa.int32()}
    records = pa.table(
        {name: pa.array(v, types.get(name, pa.string())) for name, v in kept.items()}
    )
    return Extract(path, records, present, compare)


def _read_row(
    path: Path,
    row_number: int,
    row: list[str],
    index: dict[str, int],
    present: tuple[str, ...],
    compare: tuple[str, ...],
    columns: dict[str, list[object]],
    first_row: dict[str, int],
) -> None:
    def value(name: str) -> str:
        return row[index[name]].strip() if name in index else ""

    def where(name: str) -> str:
        return f"{path} row {row_number}, column {name}"

    record_id = value("record_id")
    if not record_id:
        raise InputError(where("record_id"), "record_id is empty")
    if record_id in first_row:
        raise InputError(
            where("record_id"),
            f"duplicate record_id {record_id!r} (first at row {first_row[record_id]})",
        )
    first_row[record_id] = row_number
    columns["record_id"].append(record_id)

    given = clean_name(value("given_name"))
    family = clean_name(value("family_name"))
    birth = _birth_date(value("birth_date"), where("birth_date"))
    sex_text = value("sex").lower()
    if sex_text not in _SEX:
        raise InputError(where("sex"), "sex is not one of M, F, male, female, 1, 2, U or blank")
    postcode = value("postcode").upper().replace(" ", "") or None
    nhs = value("nhs_number").replace(" ", "").replace("-", "") or None
    cleaned: dict[str, object] = {
        "given_name": given,
        "family_name": family,
        "birth_date": None if birth is None else birth.isoformat(),
        "sex": _SEX[sex_text],
        "postcode": postcode,
        "nhs_number": nhs,
    }
    for name in present:
        columns[name].append(cleaned[name])
    for name in compare:
        columns[name].append(_SPACES.sub(" ", value(name).upper()) or None)
    # The key linkage compares: Modulus 11 valid numbers only (a mistyped one links nothing).
    columns["nhs_number_key"].append(nhs if nhs is not None and is_valid_nhs_number(nhs) else None)
    columns["given_soundex"].append(None if given is None else soundex(given))
    columns["family_soundex"].append(None if family is None else soundex(family))
    columns["birth_year"].append(None if birth is None else birth.year)
    columns["birth_date_transposed"].append(None if birth is None else transposed(birth))
    columns["postcode_district"].append(None if postcode is None else postcode_district(postcode))
