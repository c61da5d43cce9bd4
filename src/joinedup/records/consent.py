"""Consent and sensitive categories in the shared care record (issue 16): which resources are a
person's objection to sharing or their national data opt-out, which organisation recorded a
resource, and which resources are coded in a sensitive category.

Plain Python over resource bodies, used twice so the two can never disagree: the store indexes
what these functions find with each version it writes (internal index rows a search cannot
name), and the access policy checks a single resource with them on a read. See
docs/records.md, "Consent and sensitive categories".
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from joinedup.errors import ConfigurationError
from joinedup.fhir.ukcore import (
    ICD10_SYSTEMS,
    NATIONAL_DATA_OPT_OUT,
    ODS_ORGANISATION,
    RECORDED_BY_EXTENSION,
)
from joinedup.records.parameters import MAX_INDEXED, SEARCH_PARAMETERS, split_reference
from joinedup.records.settings import RecordsSettings

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

#: Internal index parameters (a leading `_` and not in SEARCH_PARAMETERS, so no search can
#: name them): an active objection to sharing, an active national data opt-out, the codings a
#: resource is about that its type's `code` parameter does not index already, and its
#: recording organisations.
OBJECTION = "_objection"
OPT_OUT = "_opt-out"
CODED = "_coded"
RECORDED_BY = "_recorded-by"

#: Elements whose codings say what a resource is about, read on every type that has them.
CODED_ELEMENTS = (
    "code",
    "type",
    "medicationCodeableConcept",
    "vaccineCode",
    "valueCodeableConcept",
    "reasonCode",
    "meta.security",
)
#: Elements naming who did or recorded something, in which an Organization (directly, by ODS
#: code, or through a contained PractitionerRole's organization) is a recording organisation.
RECORDING_ELEMENTS = (
    "serviceProvider",
    "managingOrganization",
    "organization",
    "recorder",
    "asserter",
    "performer",
    "performer.actor",
    "performer.onBehalfOf",
    "requester",
    "author",
)


def _values(node: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
    elif not path:
        if node is not None:
            yield node
    elif isinstance(node, dict):
        yield from _values(node.get(path[0]), path[1:])


def _codings(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, dict):
        if isinstance(value.get("coding"), list):
            for coding in value["coding"]:
                yield from _codings(coding)
        elif isinstance(value.get("code"), str):
            yield value.get("system"), value["code"]


def codings(resource: dict[str, Any]) -> set[tuple[str | None, str]]:
    """Every (system, code) of the elements in CODED_ELEMENTS."""
    return _codings_of(resource, CODED_ELEMENTS)


def _codings_of(resource: dict[str, Any], paths: tuple[str, ...]) -> set[tuple[str | None, str]]:
    found: set[tuple[str | None, str]] = set()
    for path in paths:
        for value in _values(resource, path.split(".")):
            found.update(_codings(value))
    return found


def _searched(resource: dict[str, Any]) -> set[tuple[str | None, str]]:
    """The codings the type's `code` search parameter indexes already (a sensitive code is
    looked for there and among the `_coded` rows, which hold only the rest)."""
    known = SEARCH_PARAMETERS.get(str(resource.get("resourceType")), {}).get("code")
    return set() if known is None else _codings_of(resource, known.paths)


def _organisation(
    reference: Any, contained: dict[str, dict[str, Any]], depth: int = 0
) -> str | None:
    """The Organization id (an ODS code) a reference names: `Organization/X`, a logical
    reference by ODS code, or a contained Organization or PractitionerRole."""
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if isinstance(text, str) and text.startswith("#") and depth == 0:
        inner = contained.get(text[1:])
        if inner is None:
            return None
        if inner.get("resourceType") == "PractitionerRole":
            return _organisation(inner.get("organization"), contained, depth + 1)
        if inner.get("resourceType") == "Organization":
            for identifier in inner.get("identifier") or []:
                if isinstance(identifier, dict) and identifier.get("system") == ODS_ORGANISATION:
                    return _ods(identifier.get("value"))
        return None
    if isinstance(text, str):
        found = split_reference(text)
        return found[1] if found and found[0] == "Organization" else None
    identifier = reference.get("identifier")
    if (
        reference.get("type") in (None, "Organization")
        and isinstance(identifier, dict)
        and identifier.get("system") == ODS_ORGANISATION
    ):
        return _ods(identifier.get("value"))
    return None


def _ods(value: Any) -> str | None:
    return value[:MAX_INDEXED] if isinstance(value, str) and value else None


def recording_organisations(resource: dict[str, Any]) -> set[str]:
    """The organisations (Organization ids, which are ODS codes) that recorded `resource`: the
    one joinedup's recorded-by-organisation extension names when it is there, else every
    Organization its RECORDING_ELEMENTS name. Empty when none can be told."""
    contained = {
        str(c.get("id")): c for c in resource.get("contained") or [] if isinstance(c, dict)
    }
    named = {
        _organisation(e.get("valueReference"), contained)
        for e in resource.get("extension") or []
        if isinstance(e, dict) and e.get("url") == RECORDED_BY_EXTENSION
    }
    if named - {None}:
        return {o for o in named if o}
    found: set[str] = set()
    for path in RECORDING_ELEMENTS:
        for value in _values(resource, path.split(".")):
            organisation = _organisation(value, contained)
            if organisation:
                found.add(organisation)
    return found


def _policies(resource: dict[str, Any]) -> set[str]:
    return {str(p.get("uri")) for p in resource.get("policy") or [] if isinstance(p, dict)}


def is_opt_out(resource: dict[str, Any]) -> bool:
    """An active national data opt-out: a Consent, status active, with the National Data
    Opt-out as a `policy.uri` and a provision that denies (or none, as the warehouse reads
    it)."""
    return (
        resource.get("resourceType") == "Consent"
        and resource.get("status") == "active"
        and NATIONAL_DATA_OPT_OUT in _policies(resource)
        and (resource.get("provision") or {}).get("type", "deny") == "deny"
    )


def is_objection(resource: dict[str, Any]) -> bool:
    """An active objection to sharing the record: a Consent, status active, scope
    `patient-privacy` (consentscope), top-level `provision.type` deny, and not a national data
    opt-out (which is for secondary use, never direct care)."""
    if resource.get("resourceType") != "Consent" or resource.get("status") != "active":
        return False
    if NATIONAL_DATA_OPT_OUT in _policies(resource):
        return False
    scope = set(_codings(resource.get("scope")))
    provision = resource.get("provision") or {}
    return (CONSENT_SCOPE, "patient-privacy") in scope and provision.get("type") == "deny"


def registered_practices(patient: dict[str, Any]) -> list[str]:
    """The ODS codes of the organisations a Patient's `generalPractitioner` names
    (`Organization/X` or a logical reference by ODS code); a Practitioner is not one."""
    found: list[str] = []
    for reference in patient.get("generalPractitioner") or []:
        code = _organisation(reference, {})
        if code and code not in found:
            found.append(code)
    return found


def citizen_objection(patient_id: str, organisations: list[str], at: str) -> dict[str, Any]:
    """A person's own objection to sharing their record outside `organisations` (their GP
    practice; ODS codes), made by them (`performer`) at `at` (FHIR dateTime): the Consent
    shape that is_objection reads, as docs/records.md gives it."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": at,
        "performer": [{"reference": f"Patient/{patient_id}"}],
        "organization": [{"reference": f"Organization/{o}"} for o in organisations],
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    }  # fmt: skip


def is_sharing_choice(resource: dict[str, Any]) -> bool:
    """A Consent about sharing the record for direct care (scope `patient-privacy`), whatever
    its status and provision, and not a national data opt-out: what a citizen may make and
    change for themselves."""
    return (
        resource.get("resourceType") == "Consent"
        and (CONSENT_SCOPE, "patient-privacy") in set(_codings(resource.get("scope")))
        and NATIONAL_DATA_OPT_OUT not in _policies(resource)
    )


def citizen_choice_problem(
    resource: dict[str, Any], patient_id: str, practices: list[str]
) -> tuple[str, str] | None:
    """Why `resource` is not a sharing choice citizen `patient_id` may write for themselves
    (an objection to sharing, or its withdrawal), as (element, reason); None when it is. It
    must be a Consent with scope `patient-privacy` (not the national data opt-out), about them
    (`patient`), made by them (`performer` their Patient alone) and recorded by their
    registered practices (`practices`, ODS codes; `organization` naming exactly those), as
    citizen_objection makes it."""
    if resource.get("resourceType") != "Consent":
        return "resourceType", "a citizen writes only their own sharing choices (Consent)"
    if not is_sharing_choice(resource):
        return "Consent.scope", (
            f"a sharing choice has the scope {CONSENT_SCOPE}|patient-privacy and is not the "
            "national data opt-out (that is made nationally, not here)"
        )
    own = f"Patient/{patient_id}"
    patient = resource.get("patient")
    if not isinstance(patient, dict) or patient.get("reference") != own:
        return "Consent.patient", f"a citizen's sharing choice is about them: {own}"
    performers = resource.get("performer") or []
    if [p.get("reference") if isinstance(p, dict) else None for p in performers] != [own]:
        return "Consent.performer", f"name yourself ({own}) as who made this choice, alone"
    if not practices:
        return "Consent.organization", (
            "your record names no GP practice to record this choice: ask your practice"
        )
    named = {
        _organisation(o, {}) for o in resource.get("organization") or [] if isinstance(o, dict)
    }
    if named != set(practices):
        wanted = ", ".join(f"Organization/{p}" for p in practices)
        return "Consent.organization", (
            f"your sharing choice is recorded by your registered GP practice: {wanted}"
        )
    return None


def index_entries(
    resource: dict[str, Any],
) -> tuple[list[tuple[str, str | None, str]], list[tuple[str, str, str]]]:
    """The internal index rows of `resource`: tokens (parameter, system, code) and references
    (parameter, type, id)."""
    tokens: list[tuple[str, str | None, str]] = []
    if is_objection(resource):
        tokens.append((OBJECTION, None, "true"))
    if is_opt_out(resource):
        tokens.append((OPT_OUT, None, "true"))
    rest = codings(resource) - _searched(resource)
    tokens += sorted(
        ((CODED, s[:MAX_INDEXED] if s else s, c[:MAX_INDEXED]) for s, c in rest),
        key=lambda t: (t[1] or "", t[2]),
    )
    references = [
        (RECORDED_BY, "Organization", o) for o in sorted(recording_organisations(resource))
    ]
    return tokens, references


# --- sensitive code lists ------------------------------------------------------------------

SHIPPED = "sensitive_codes.csv"
COLUMNS = ("category", "system", "code", "display", "source")


@dataclass(frozen=True)
class SensitiveCode:
    """One code in a sensitive category, with where it was taken from."""

    category: str
    system: str
    code: str
    display: str
    source: str


@dataclass(frozen=True)
class SensitiveCodes:
    """The codes whose resources are shown only within the organisation that recorded them,
    and where the list was read from."""

    codes: tuple[SensitiveCode, ...]
    origin: str

    @cached_property
    def _categories(self) -> dict[tuple[str, str], frozenset[str]]:
        """Each (system, code) that counts, with its categories: a listed code as given, and an
        ICD-10 code in every way sources write it (`icd10_forms`), under its listed system."""
        found: dict[tuple[str, str], set[str]] = {}
        for c in self.codes:
            icd10 = c.system in ICD10_SYSTEMS
            forms = [(c.system, f) for f in icd10_forms(c.code)] if icd10 else [(c.system, c.code)]
            for pair in forms:
                found.setdefault(pair, set()).add(c.category)
        return {pair: frozenset(categories) for pair, categories in found.items()}

    @cached_property
    def pairs(self) -> frozenset[tuple[str, str]]:
        """Every (system, code) that counts (an ICD-10 category with its subdivisions); built
        once, as each request's withholding reads it."""
        return frozenset(self._categories)

    def categories_of(self, resource: dict[str, Any]) -> list[str]:
        """The sensitive categories `resource` is coded in (none: an empty list)."""
        known = self._categories
        return sorted({c for s, code in codings(resource) if s for c in known.get((s, code), ())})


def icd10_forms(code: str) -> list[str]:
    """The ways sources write an ICD-10 code: dotted (`A54.0`) and not (`A540`), the UK's X
    filler or none (`B24.X`, `B24X`, `B24`); a 3-character category stands for itself and every
    subdivision (a fourth character, 0-9 or X), as ICD-10's categories are read."""
    bare = code.strip().upper().replace(".", "")
    if len(bare) == 3:
        fourths = [*"0123456789", "X"]
        return [bare, *(f"{bare}.{d}" for d in fourths), *(f"{bare}{d}" for d in fourths)]
    forms = [bare, f"{bare[:3]}.{bare[3:]}"]
    if bare.endswith("X") and len(bare) == 4:
        forms.append(bare[:3])
    return forms


def read_sensitive_codes(path: Path | None = None) -> SensitiveCodes:
    """The sensitive code list at `path` (CSV with the header category, system, code,
    display, source), or the one shipped with joinedup. ConfigurationError names the file,
    the row and the field of anything wrong."""
    if path is None:
        return _shipped()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigurationError(f"sensitive codes {path}: cannot read ({err.strerror})") from None
    return _parse(text, str(path))


def configured_sensitive_codes() -> SensitiveCodes:
    """The sensitive code list the setting `JOINEDUP_RECORDS_SENSITIVE_CODES` names (a CSV
    file), else the one shipped; each file is read once a process."""
    return _read_once(RecordsSettings().records_sensitive_codes)


@lru_cache(maxsize=8)
def _read_once(path: Path | None) -> SensitiveCodes:
    return read_sensitive_codes(path)


@lru_cache(maxsize=1)
def _shipped() -> SensitiveCodes:
    text = package_files.files("joinedup.records").joinpath("shipped", SHIPPED).read_text("utf-8")
    return _parse(text, f"joinedup/records/shipped/{SHIPPED}")


def _parse(text: str, origin: str) -> SensitiveCodes:
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ConfigurationError(
            f"sensitive codes {origin}: row 1: the header must be {','.join(COLUMNS)}"
        )
    codes: list[SensitiveCode] = []
    for row_number, row in enumerate(reader, start=2):
        values = {k: (row.get(k) or "").strip() for k in COLUMNS}
        for field in ("category", "system", "code", "source"):
            if not values[field]:
                raise ConfigurationError(
                    f"sensitive codes {origin}: row {row_number}: {field} is empty"
                )
        if None in row:
            raise ConfigurationError(
                f"sensitive codes {origin}: row {row_number}: more values than the header names"
            )
        codes.append(SensitiveCode(**values))
    if not codes:
        raise ConfigurationError(
            f"sensitive codes {origin}: no codes (an empty list hides nothing)"
        )
    return SensitiveCodes(tuple(codes), origin)


__all__ = [
    "CODED",
    "NATIONAL_DATA_OPT_OUT",
    "OBJECTION",
    "OPT_OUT",
    "RECORDED_BY",
    "SensitiveCode",
    "SensitiveCodes",
    "citizen_choice_problem",
    "citizen_objection",
    "codings",
    "configured_sensitive_codes",
    "index_entries",
    "is_objection",
    "is_opt_out",
    "is_sharing_choice",
    "read_sensitive_codes",
    "recording_organisations",
    "registered_practices",
]
