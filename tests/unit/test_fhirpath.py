"""The FHIRPath parser: the trees views compile, and clear errors for what it cannot read."""

from __future__ import annotations

import pytest

from joinedup.errors import InputError
from joinedup.fhir.fhirpath import (
    Binary,
    Call,
    Constant,
    Index,
    Literal,
    Member,
    This,
    TypeName,
    parse,
)


def test_paths_calls_and_indexers() -> None:
    assert parse("name.family") == Member(Member(This(), "name"), "family")
    assert parse("name[0].given.first()") == Call(
        Member(Member(Index(Member(This(), "name"), Literal(0)), "given"), "first"), "first", ()
    ) or parse("name[0].given.first()") == Call(
        Member(Index(Member(This(), "name"), Literal(0)), "given"), "first", ()
    )
    assert parse("getReferenceKey(Patient)") == Call(
        This(), "getReferenceKey", (TypeName("Patient"),)
    )
    assert parse("name.where(use = %name_use)") == Call(
        Member(This(), "name"),
        "where",
        (Binary("=", Member(This(), "use"), Constant("name_use")),),
    )


def test_precedence_follows_the_fhirpath_specification() -> None:
    tree = parse("a = 1 or b = 2 and c")
    assert tree == Binary(
        "or",
        Binary("=", Member(This(), "a"), Literal(1)),
        Binary("and", Binary("=", Member(This(), "b"), Literal(2)), Member(This(), "c")),
    )
    assert parse("1 + 2 * 3") == Binary("+", Literal(1), Binary("*", Literal(2), Literal(3)))
    assert parse("(gender = 'male').not()") == Call(
        Binary("=", Member(This(), "gender"), Literal("male")), "not", ()
    )


def test_literals() -> None:
    assert parse("'it\\'s'") == Literal("it's")
    assert parse("true") == Literal(True)
    assert parse("2.5") == Literal(2.5)
    assert parse("$this") == This()


@pytest.mark.parametrize("bad", ["@@", "", "name.", "name.where(", "a = ", "name)"])
def test_unreadable_expressions_say_where(bad: str) -> None:
    with pytest.raises(InputError, match="FHIRPath"):
        parse(bad)
