"""Reading a reference CSV: one place for the checks every loader needs (readable, UTF-8, a
header with the required columns), so each loader only checks its own rows."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from joinedup.errors import InputError


@contextmanager
def csv_rows(path: Path, what: str, required: Sequence[str]) -> Iterator[csv.DictReader[str]]:
    """A DictReader over `path` whose header holds `required`; file-level problems (cannot be
    read, not UTF-8, not CSV, no header, missing columns) become an InputError naming the file."""
    source = str(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise InputError(source, "empty file: expected a header row")
            missing = [c for c in required if c not in header]
            if missing:
                names = ", ".join(repr(c) for c in missing)
                plural = "s" if len(missing) > 1 else ""
                raise InputError(source, f"missing column{plural} {names}")
            yield reader
    except OSError as err:
        raise InputError(source, f"cannot read {what} ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise InputError(source, f"not UTF-8 text ({err.reason})") from err
    except csv.Error as err:
        raise InputError(source, f"not a readable CSV file ({err})") from err
