"""The search parameters the store indexes, and the index entries one resource gives.

Each parameter is one of four kinds, each with a table of its own: token (a code with its
system, an identifier, a status), string (a name, matched from the start, ignoring case and
accents), date (a range of instants in UTC: a FHIR date is the whole day, month or year it
names, a Period its start to its end) and reference (a target type and id). This module is
plain Python: the store writes what it returns and searches what it parses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from joinedup.fhir.validate import R4_RESOURCE_TYPES
from joinedup.records.errors import InvalidSearchError

Kind = Literal["token", "string", "date", "reference"]

#: Open ends of a Period (and the range of a date-only search) in the date index.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
#: Longest value kept in an index column (a btree entry has a size limit on PostgreSQL).
MAX_INDEXED = 512


@dataclass(frozen=True)
class Parameter:
    """One search parameter: its kind, the element paths it reads (dotted, lists flattened;
    choice elements spelt out: `effectiveDateTime`), and for references the types it may
    point to (empty: any)."""

    kind: Kind
    paths: tuple[str, ...]
    targets: frozenset[str] = frozenset()


def _clinical(
    subject: str, date: tuple[str, ...], code: tuple[str, ...], category: str | None, status: str
) -> dict[str, Parameter]:
    found = {
        "patient": Parameter("reference", (subject,), frozenset({"Patient"})),
        "date": Parameter("date", date),
        "code": Parameter("token", code),
        "status": Parameter("token", (status,)),
    }
    if subject == "subject":
        found["subject"] = Parameter("reference", (subject,))
    if category:
        found["category"] = Parameter("token", (category,))
    return found


_EFFECTIVE = ("effectiveDateTime", "effectivePeriod", "effectiveInstant")

#: What the store indexes, by resource type (issue 16). Other types are stored and read but
#: not searched, except by `_id`.
SEARCH_PARAMETERS: dict[str, dict[str, Parameter]] = {
    "Patient": {
        "identifier": Parameter("token", ("identifier",)),
        "name": Parameter("string", ("name",)),
        "family": Parameter("string", ("name.family",)),
        "given": Parameter("string", ("name.given",)),
        "birthdate": Parameter("date", ("birthDate",)),
        "gender": Parameter("token", ("gender",)),
        "general-practitioner": Parameter(
            "reference",
            ("generalPractitioner",),
            frozenset({"Organization", "Practitioner", "PractitionerRole"}),
        ),
    },
    "Condition": _clinical(
        "subject",
        ("onsetDateTime", "onsetPeriod", "recordedDate"),
        ("code",),
        "category",
        "clinicalStatus",
    ),
    "Encounter": {
        **_clinical("subject", ("period",), ("type",), "class", "status"),
        "service-provider": Parameter(
            "reference", ("serviceProvider",), frozenset({"Organization"})
        ),
    },
    "Observation": _clinical("subject", _EFFECTIVE, ("code",), "category", "status"),
    "MedicationRequest": _clinical(
        "subject", ("authoredOn",), ("medicationCodeableConcept",), "category", "status"
    ),
    "MedicationStatement": _clinical(
        "subject", _EFFECTIVE, ("medicationCodeableConcept",), "category", "status"
    ),
    "AllergyIntolerance": _clinical(
        "patient", ("recordedDate",), ("code",), "category", "clinicalStatus"
    ),
    "Immunization": _clinical("patient", ("occurrenceDateTime",), ("vaccineCode",), None, "status"),
    "Procedure": _clinical(
        "subject", ("performedDateTime", "performedPeriod"), ("code",), "category", "status"
    ),
    "EpisodeOfCare": {
        **_clinical("patient", ("period",), ("type",), None, "status"),
        "organization": Parameter(
            "reference", ("managingOrganization",), frozenset({"Organization"})
        ),
    },
    # Referrals and care teams: read by the access policy (records.policy) as relationships.
    "ServiceRequest": {
        **_clinical(
            "subject", ("authoredOn", "occurrenceDateTime"), ("code",), "category", "status"
        ),
        "performer": Parameter("reference", ("performer",)),
        "intent": Parameter("token", ("intent",)),
    },
    "CareTeam": {
        "patient": Parameter("reference", ("subject",), frozenset({"Patient"})),
        "subject": Parameter("reference", ("subject",)),
        "date": Parameter("date", ("period",)),
        "category": Parameter("token", ("category",)),
        "status": Parameter("token", ("status",)),
        "participant": Parameter("reference", ("participant.member",)),
    },
    # Care plans (care planning: who is doing what for the person, e.g. a frailty plan).
    "CarePlan": {
        "patient": Parameter("reference", ("subject",), frozenset({"Patient"})),
        "subject": Parameter("reference", ("subject",)),
        "date": Parameter("date", ("period",)),
        "category": Parameter("token", ("category",)),
        "status": Parameter("token", ("status",)),
        "intent": Parameter("token", ("intent",)),
    },
    "Consent": _clinical("patient", ("dateTime",), ("scope",), "category", "status"),
    "AuditEvent": {
        "patient": Parameter("reference", ("entity.what",), frozenset({"Patient"})),
        "date": Parameter("date", ("recorded",)),
        "code": Parameter("token", ("type",)),
        "category": Parameter("token", ("subtype",)),
        "status": Parameter("token", ("outcome",)),
    },
}


@dataclass(frozen=True)
class Entries:
    """The index rows of one resource, by table: (parameter, system, code), (parameter,
    value), (parameter, low, high) and (parameter, target type, target id)."""

    tokens: list[tuple[str, str | None, str]]
    strings: list[tuple[str, str]]
    dates: list[tuple[str, datetime, datetime]]
    references: list[tuple[str, str, str]]


def _values(node: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
    elif not path:
        if node is not None:
            yield node
    elif isinstance(node, dict):
        yield from _values(node.get(path[0]), path[1:])


def normalise(text: str) -> str:
    """A string as the string index holds it: accents dropped, case folded, spaces single."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())[:MAX_INDEXED]


def _tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if isinstance(value.get("coding"), list):  # CodeableConcept
            for coding in value["coding"]:
                yield from _tokens(coding)
        elif isinstance(value.get("code"), str):  # Coding
            yield value.get("system"), value["code"]
        elif isinstance(value.get("value"), str):  # Identifier
            yield value.get("system"), value["value"]


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for part in (*_NAME_PARTS, *_ADDRESS_PARTS):
            for text in _values(value, [part]):
                if isinstance(text, str):
                    yield text


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date, dateTime or instant covers, as [low, high) in UTC: `2020`
    is the whole year, `2020-03-01T10:00:00Z` that second. A time without an offset is read
    as UTC. Raises ValueError for text that is not a date."""
    try:
        return _date_range(text)
    except OverflowError:  # the last moments of year 9999
        raise ValueError("beyond the last date the store holds") from None


def _date_range(text: str) -> tuple[datetime, datetime]:
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError("not a FHIR date, dateTime or instant")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if month is None:
        low = datetime(int(year), 1, 1, tzinfo=UTC)
        return low, low.replace(year=low.year + 1) if low.year < 9999 else LATEST
    if day is None:
        low = datetime(int(year), int(month), 1, tzinfo=UTC)
        after = low + timedelta(days=31)
        return low, after.replace(day=1)
    if hour is None:
        low = datetime(int(year), int(month), int(day), tzinfo=UTC)
        return low, low + timedelta(days=1)
    offset = UTC if zone in (None, "Z") else datetime.strptime(zone, "%z").tzinfo
    low = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=offset
    ).astimezone(UTC)
    step = timedelta(seconds=1) if second is not None else timedelta(minutes=1)
    if fraction:  # to the precision written, to the microsecond at finest
        digits = fraction[1:7]
        low += timedelta(microseconds=int(digits.ljust(6, "0")))
        step = timedelta(microseconds=10 ** (6 - len(digits)))
    return low, low + step


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    if isinstance(value, str):
        try:
            yield date_range(value)
        except ValueError:
            return
    elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        try:
            low = date_range(value["start"])[0] if "start" in value else EARLIEST
            high = date_range(value["end"])[1] if "end" in value else LATEST
        except (TypeError, ValueError):
            return
        yield low, high


def split_reference(text: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference `Type/id`, `Type/id/_history/n` or a URL ending in
    `Type/id`; None for anything else (a contained `#id`, a `urn:uuid:`)."""
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] in R4_RESOURCE_TYPES and _ID.fullmatch(parts[-1]):
        return parts[-2], parts[-1]
    return None


def _references(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        found = split_reference(value["reference"])
        if found:
            yield found


def entries(resource: dict[str, Any]) -> Entries:
    """The index rows `resource` gives for its type's search parameters."""
    found = Entries([], [], [], [])
    for name, parameter in SEARCH_PARAMETERS.get(resource["resourceType"], {}).items():
        values = [v for path in parameter.paths for v in _values(resource, path.split("."))]
        for value in values:
            if parameter.kind == "token":
                found.tokens.extend(
                    (name, s[:MAX_INDEXED] if s else s, c[:MAX_INDEXED]) for s, c in _tokens(value)
                )
            elif parameter.kind == "string":
                found.strings.extend((name, normalise(s)) for s in _strings(value))
            elif parameter.kind == "date":
                found.dates.extend((name, low, high) for low, high in _dates(value))
            else:
                found.references.extend(
                    (name, t, i)
                    for t, i in _references(value)
                    if not parameter.targets or t in parameter.targets
                )
    return Entries(
        list(dict.fromkeys(found.tokens)),
        list(dict.fromkeys(found.strings)),
        list(dict.fromkeys(found.dates)),
        list(dict.fromkeys(found.references)),
    )


def parameter(resource_type: str, name: str) -> Parameter:
    """The search parameter `name` of `resource_type`, or InvalidSearchError naming it."""
    known = SEARCH_PARAMETERS.get(resource_type, {})
    if name not in known:
        listed = ", ".join(sorted(known)) or "none but _id"
        raise InvalidSearchError(
            f"{resource_type}?{name}: not a search parameter the store indexes ({listed})"
        )
    return known[name]


@dataclass(frozen=True)
class Link:
    """An `_include` or `_revinclude` of a search: resources of `source` point through its
    reference parameters `names` to resources of `target` (None: any type those parameters
    point to)."""

    source: str
    names: tuple[str, ...]
    target: str | None


def link(searched: str, value: str, *, reverse: bool, iterate: bool = False) -> Link:
    """`_include` (or with `reverse`, `_revinclude`) `Source:parameter[:Target]` of a search
    of `searched`, checked against the indexed reference parameters; `Source:*` is every one
    of them. With `iterate` (`_include:iterate`), the link is followed from the included
    resources too, so it may start from (or, reversed, point to) any type, and a reversed one
    without a target points to whatever its parameters may (`toward` narrows it to one type).
    InvalidSearchError names the parameter and says what is wrong."""
    name = ("_revinclude" if reverse else "_include") + (":iterate" if iterate else "")
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidSearchError(f"{name}: {value!r} is not Type:parameter or Type:parameter:Type")
    source, given, target = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    for kind in (source, target):
        if kind is not None and kind not in R4_RESOURCE_TYPES:
            raise InvalidSearchError(f"{name}: {kind} is not a FHIR R4 resource type")
    if not reverse and not iterate and source != searched:
        raise InvalidSearchError(
            f"{name}: {value} starts from {source}, but the search is of {searched} "
            "(_include:iterate follows links from included resources)"
        )
    known = {n: p for n, p in SEARCH_PARAMETERS.get(source, {}).items() if p.kind == "reference"}
    if given == "*":
        names = tuple(sorted(known))
    elif given in known:
        names = (given,)
    else:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidSearchError(
            f"{name}: {source}:{given} is not a reference parameter the store indexes ({listed})"
        )
    if reverse and iterate:
        if target is not None:
            names = tuple(n for n in names if not known[n].targets or target in known[n].targets)
            if not names:
                raise InvalidSearchError(f"{name}: {value} never points to {target}")
    elif reverse:
        if target not in (None, searched):
            raise InvalidSearchError(f"{name}: {value} points to {target}, not to {searched}")
        names = tuple(n for n in names if not known[n].targets or searched in known[n].targets)
        if not names:
            raise InvalidSearchError(f"{name}: {value} never points to {searched}")
        target = searched
    elif target is not None:
        names = tuple(n for n in names if not known[n].targets or target in known[n].targets)
        if not names:
            raise InvalidSearchError(f"{name}: {value} never points to {target}")
    return Link(source, names, target)


def toward(linked: Link, kind: str) -> Link | None:
    """`linked` (a `_revinclude`) kept to the parameters that may point to a `kind`, with
    `kind` as its target; None when none may (or its target is another type)."""
    if linked.target not in (None, kind):
        return None
    known = SEARCH_PARAMETERS.get(linked.source, {})
    names = tuple(n for n in linked.names if not known[n].targets or kind in known[n].targets)
    return Link(linked.source, names, kind) if names else None


def patient_references() -> dict[str, tuple[str, ...]]:
    """By resource type, its indexed reference parameters that may point to a Patient (what
    `Patient/$everything` follows back to the patient)."""
    found: dict[str, tuple[str, ...]] = {}
    for kind, known in SEARCH_PARAMETERS.items():
        names = tuple(
            name
            for name, p in known.items()
            if p.kind == "reference" and (not p.targets or "Patient" in p.targets)
        )
        if names:
            found[kind] = names
    return found
