"""Small builders for the DuckDB SQL text that FHIR export and ingest write (literals, IN
lists, CASE maps). Values come from joinedup's own constants, never from records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def in_list(values: Iterable[object]) -> str:
    """`('a', 'b')` for `x IN (...)`."""
    return "(" + ", ".join(quote(str(v)) for v in values) + ")"


def case_map(column: str, mapping: Mapping[str, str], default: str = "NULL") -> str:
    """`CASE column WHEN 'k' THEN 'v' ... ELSE default END`."""
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in mapping.items())
    return f"CASE {column} {whens} ELSE {default} END"
