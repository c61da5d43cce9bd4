"""What a search keeps back from a user beyond their legitimate relationships (issue 16), as
SQLAlchemy expressions over the internal index rows `records.consent` writes: the records of
people with an objection to sharing recorded by another organisation, and resources coded in a
sensitive category recorded by another organisation; neither for patients the user holds a
break-glass grant for. An objection follows the person: with the master person index
followed (`Withholding.person_sources`), the records of every Patient the index links to an
objecting one are kept back too. A search reads whom objections withhold from the rows
store.withheld keeps (`withheld_patients`, one indexed anti-join a resource, whatever the
number of objections in the store); a read's check (`person_objection_organisations`) and
the rows' upkeep read the Consents' own index rows (`objection_rows`), and `objected` and
`person_objected` give the same answer as a join over them. Also who has a national data
opt-out, for secondary use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    false,
    or_,
    select,
    true,
    union,
)

from joinedup.records.consent import CODED, OBJECTION, OPT_OUT, RECORDED_BY
from joinedup.records.parameters import SEARCH_PARAMETERS
from joinedup.records.store.person_links import same_person_kept, systems_key
from joinedup.records.store.tables import (
    resources,
    search_references,
    search_tokens,
    withheld_patients,
)
from joinedup.records.store.written import inlined


@dataclass(frozen=True)
class Withholding:
    """What to keep back from one user: `organisations` are theirs (what those recorded is
    not kept back from them), `granted` the patients of their break-glass grants (nothing of
    theirs is kept back), `sensitive` the (system, code) pairs of the sensitive categories;
    `person_sources` each person index source's identifier system, to keep back the records
    of the same person's other Patients too (None: the index is not followed)."""

    organisations: frozenset[str]
    granted: frozenset[str] = frozenset()
    sensitive: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    person_sources: tuple[tuple[str, str], ...] | None = None


class Permitted(list[tuple[str, Any]]):
    """The searches (type, query) whose patients a user may see, carrying what is still kept
    back from those patients' records (`withholding`): wherever a search, an `_include` or
    `$everything` is kept to these patients, the withholding applies too."""

    def __init__(self, searches: Sequence[tuple[str, Any]], withholding: Withholding) -> None:
        super().__init__(searches)
        self.withholding = withholding


def _tokens(kind: str, parameter: str) -> Select[Any]:
    t = search_tokens.c
    return select(t.resource_id).where(t.resource_type == kind, t.parameter == parameter)


def _recorded_by(kind: str, organisations: frozenset[str]) -> Select[Any]:
    r = search_references.c
    return select(r.resource_id).where(
        r.resource_type == kind,
        r.parameter == RECORDED_BY,
        r.target_type == "Organization",
        r.target_id.in_(sorted(organisations)) if organisations else false(),
    )


def _consent_patients(consents: Select[Any]) -> Select[Any]:
    r = search_references.c
    return select(r.target_id).where(
        r.resource_type == "Consent",
        r.parameter == "patient",
        r.target_type == "Patient",
        r.resource_id.in_(consents),
    )


def objected(organisations: frozenset[str]) -> Select[Any]:
    """Patients with an active objection to sharing and none recorded by `organisations`
    (NOT EXISTS rather than NOT IN, so PostgreSQL can plan it as an anti-join)."""
    objections = _tokens("Consent", OBJECTION)
    theirs = search_references.alias("objecting")
    ours = (
        select(theirs.c.resource_id)
        .where(
            theirs.c.resource_type == "Consent",
            theirs.c.parameter == "patient",
            theirs.c.target_type == "Patient",
            theirs.c.target_id == search_references.c.target_id,
            theirs.c.resource_id.in_(objections),
            theirs.c.resource_id.in_(_recorded_by("Consent", organisations)),
        )
        .correlate(search_references)
    )
    return _consent_patients(objections).where(~ours.exists())


def person_objected(organisations: frozenset[str], systems: Mapping[str, str]) -> Select[Any]:
    """Patients whose record an objection to sharing withholds from users of
    `organisations`: their own (`objected`), or one of another Patient the master person index
    links them to (by confirmed links)."""
    return _person_objected(organisations, tuple(sorted(systems.items())))


# Made once for each set of organisations (a few hundred at most: practices, PCNs, trusts,
# councils) and reused, as building it costs a search more than running it.
@lru_cache(maxsize=1024)
def _person_objected(
    organisations: frozenset[str], sources: tuple[tuple[str, str], ...]
) -> Select[Any]:
    systems = dict(sources)
    # The objecting Patients once, as a common table expression.
    own = objected(organisations).cte()
    found = union(select(own.c[0]), same_person_kept(select(own.c[0]), systems))
    return inlined(select(found.subquery().c[0]))


def objection_organisations(patient_id: str) -> Select[Any]:
    """(Consent id, recording organisation or None, Patient id) of each active objection of
    `patient_id`."""
    return objection_rows(search_references.c.target_id == patient_id)


def person_objection_organisations(systems: Mapping[str, str]) -> Select[Any]:
    """`objection_organisations` of the Patient bound as `patient_id` and of the Patients the
    master person index links to it (`systems`: each source's identifier system). Made once
    for each `systems` and reused: building the statement costs more than running it."""
    return _person_objection_organisations(tuple(sorted(systems.items())))


@lru_cache(maxsize=16)
def _person_objection_organisations(systems: tuple[tuple[str, str], ...]) -> Select[Any]:
    asked = bindparam("patient_id", type_=String())
    target = search_references.c.target_id
    patients = same_person_kept(select(asked), dict(systems))
    found = objection_rows(or_(target == asked, target.in_(patients)))
    return inlined(found, keep=frozenset({"patient_id"}))


def objection_rows(patients: ColumnElement[bool] | None) -> Select[Any]:
    """(Consent id, recording organisation or None, Patient id) of each active objection to
    sharing, of the Patients `patients` (a condition on `search_references.c.target_id`;
    None: of every Patient): one row an organisation the Consent names, or one with None."""
    r = search_references.c
    recorded = search_references.alias("recorded")
    t = search_tokens.c
    # Whether each Consent found is an objection, looked up by its id (an IN over every
    # objection's id, which SQLite builds in full for each statement, grew with them).
    objection = (
        select(t.resource_id)
        .where(
            t.resource_type == "Consent",
            t.resource_id == r.resource_id,
            t.parameter == OBJECTION,
        )
        .exists()
    )
    return (
        select(r.resource_id, recorded.c.target_id.label("organisation"), r.target_id)
        .select_from(
            search_references.outerjoin(
                recorded,
                and_(
                    recorded.c.resource_type == "Consent",
                    recorded.c.resource_id == r.resource_id,
                    recorded.c.parameter == RECORDED_BY,
                ),
            )
        )
        .where(
            r.resource_type == "Consent",
            r.parameter == "patient",
            r.target_type == "Patient",
            true() if patients is None else patients,
            objection,
        )
    )


def opted_out() -> Select[Any]:
    """Patients with an active national data opt-out."""
    return _consent_patients(_tokens("Consent", OPT_OUT)).distinct()


# Each test below is an EXISTS correlated with the enclosing query's `resources` row, so that
# its negation is an anti-join on PostgreSQL (a NOT IN over a subquery it cannot hash would be
# run again for every row).


def _of(kind: str, patients: Select[Any] | Sequence[str]) -> ColumnElement[bool]:
    """The `resources` row is of `kind` and belongs to `patients` (a subquery or ids)."""
    if kind == "Patient":
        return resources.c.resource_id.in_(patients)
    r = search_references.c
    return (
        select(r.resource_id)
        .where(
            r.resource_type == kind,
            r.resource_id == resources.c.resource_id,
            r.parameter == "patient",
            r.target_type == "Patient",
            r.target_id.in_(patients),
        )
        .correlate(resources)
        .exists()
    )


def _sensitive(kind: str, pairs: frozenset[tuple[str, str]]) -> ColumnElement[bool]:
    """The `resources` row is coded in one of `pairs` (system, code): among its `code`
    parameter's tokens or the `_coded` rows that hold its other codings."""
    by_system: dict[str, list[str]] = defaultdict(list)
    for system, code in sorted(pairs):
        by_system[system].append(code)
    t = search_tokens.c
    matches = [and_(t.system == s, t.code.in_(codes)) for s, codes in by_system.items()]
    return (
        select(t.resource_id)
        .where(
            t.resource_type == kind,
            t.resource_id == resources.c.resource_id,
            t.parameter.in_(("code", CODED)),
            or_(*matches),
        )
        .correlate(resources)
        .exists()
    )


def _ours(kind: str, organisations: frozenset[str]) -> ColumnElement[bool]:
    """The `resources` row was recorded by one of `organisations`."""
    if not organisations:
        return false()
    r = search_references.c
    return (
        select(r.resource_id)
        .where(
            r.resource_type == kind,
            r.resource_id == resources.c.resource_id,
            r.parameter == RECORDED_BY,
            r.target_type == "Organization",
            r.target_id.in_(sorted(organisations)),
        )
        .correlate(resources)
        .exists()
    )


def _key(sources: tuple[tuple[str, str], ...] | None) -> str:
    """The key of the `withheld_patients` rows for a withholding following the person index
    by `sources` (None: not followed, the Patients' own objections)."""
    return "" if sources is None else systems_key(dict(sources))


def _objecting(held: Any, organisations: frozenset[str]) -> list[ColumnElement[bool]]:
    """The conditions on a `withheld_patients` row `held` that an objection withholds its
    Patient from users of `organisations`: it is the row every objecting Patient has, and
    none of that Patient's objections was recorded by one of `organisations` (a primary key
    lookup)."""
    found: list[ColumnElement[bool]] = [held.c.organisation == ""]
    if organisations:
        theirs = withheld_patients.alias("theirs")
        found.append(
            ~select(theirs.c.organisation)
            .where(
                theirs.c.systems_key == held.c.systems_key,
                theirs.c.patient_id == held.c.patient_id,
                theirs.c.objecting_id == held.c.objecting_id,
                theirs.c.organisation.in_(sorted(organisations)),
            )
            .exists()
        )
    return found


# Made once for each type, key and set of organisations, with its constants written into
# the SQL text (store.written): with them bound, PostgreSQL's generic plan of the prepared
# search, knowing neither the key nor the organisations, hashed every row of the key (16 ms
# a search at 50,000 objections, against 0.15 ms as an index lookup a resource).
@lru_cache(maxsize=1024)
def _withheld(kind: str, key: str, organisations: frozenset[str]) -> ColumnElement[bool]:
    """The `resources` row belongs to a Patient an objection withholds from users of
    `organisations`, by the rows kept under `key` (store.withheld): its Patient's rows looked
    up by primary key, so the cost is that of the row's own lookups however many objections
    the store holds."""
    held = withheld_patients.alias("held")
    objecting = [held.c.systems_key == key, *_objecting(held, organisations)]
    if kind == "Patient":
        found = (
            select(held.c.patient_id)
            .where(held.c.patient_id == resources.c.resource_id, *objecting)
            .correlate(resources)
        )
        return inlined(found).exists()
    r = search_references.c
    found = (
        select(r.resource_id)
        .select_from(search_references.join(held, held.c.patient_id == r.target_id))
        .where(
            r.resource_type == kind,
            r.resource_id == resources.c.resource_id,
            r.parameter == "patient",
            r.target_type == "Patient",
            *objecting,
        )
        .correlate(resources)
    )
    return inlined(found).exists()


def withheld_from(organisations: frozenset[str], sources: tuple[tuple[str, str], ...] | None
                  ) -> Select[Any]:  # fmt: skip
    """The Patients an objection withholds from users of `organisations` (following the
    person index by `sources`, or not with None), from the rows kept (store.withheld)."""
    held = withheld_patients.alias("held")
    return (
        select(held.c.patient_id)
        .where(held.c.systems_key == _key(sources), *_objecting(held, organisations))
        .distinct()
    )


def kept_back(kind: str, withholding: Withholding) -> ColumnElement[bool]:
    """Resources of `kind` that `withholding` keeps back (to be excluded from a search)."""
    if kind != "Patient" and "patient" not in SEARCH_PARAMETERS.get(kind, {}):
        return false()  # nobody's record
    held = [_withheld(kind, _key(withholding.person_sources), withholding.organisations)]
    if withholding.sensitive:
        held.append(
            and_(
                _sensitive(kind, withholding.sensitive),
                ~_ours(kind, withholding.organisations),
            )
        )
    found = or_(*held)
    if withholding.granted:
        found = and_(found, ~_of(kind, sorted(withholding.granted)))
    return found


def shown(kind: str, withholding: Withholding | None) -> ColumnElement[bool]:
    """The filter a search keeps: everything but what `withholding` keeps back."""
    return true() if withholding is None else ~kept_back(kind, withholding)


__all__ = [
    "Permitted",
    "Withholding",
    "kept_back",
    "objected",
    "objection_organisations",
    "objection_rows",
    "opted_out",
    "person_objected",
    "person_objection_organisations",
    "shown",
    "withheld_from",
]
