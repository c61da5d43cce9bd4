"""`joinedup export fhir`: the warehouse's population as UK Core-shaped FHIR R4 bulk NDJSON.

One file per resource type, as the FHIR Bulk Data `$export` writes them. Each resource is built
inside DuckDB (`json_object`, with nulls stripped by an RFC 7396 merge patch, as FHIR JSON allows
no nulls) and streamed out in batches, so memory stays flat however large the population.

| table | resource |
|---|---|
| person, identity | Patient (NHS number, name, birth date, postcode, LSOA, ethnicity, GP, death) |
| person.national_data_opt_out | Consent (National Data Opt-out policy, provision deny) |
| registration | EpisodeOfCare (joinedup episode type `gp-registration`) |
| activity (social care packages) | EpisodeOfCare (activity type, cost) |
| activity (everything else) | Encounter (class, activity type, admission method, specialty, cost) |
| diagnosis | Condition (SNOMED or ICD-10, care setting, recording organisation) |
| medication | MedicationRequest (BNF, course of therapy, validity period, repeats) |
| observation | Observation (SNOMED, UCUM quantity or coded smoking finding) |
| rtt_pathway | ServiceRequest (referral, provider, treatment function, clock period) |
| practice, organisation | Organization (ODS code) |
"""

from __future__ import annotations

import gzip
import typing
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlglot import exp

from joinedup.errors import ConfigurationError
from joinedup.fhir import ukcore as uk
from joinedup.fhir.sqltree import (
    c,
    case,
    case_map,
    cast,
    coalesce,
    concat,
    is_null,
    isin,
    lit,
    ordered,
    row_number,
    union_all,
)
from joinedup.warehouse import Engine
from joinedup.warehouse.schema import ETHNIC_CATEGORIES

#: A JSON member's value: SQL (a column, a CASE), or a constant.
_Json = exp.Expr | str | bool


def _value(value: _Json) -> exp.Expr:
    return value if isinstance(value, exp.Expr) else lit(value)


def obj(members: dict[str, _Json]) -> exp.Expr:
    """json_object('key', value, ...); a NULL value is dropped when the resource is written."""
    args: list[exp.Expr] = []
    for key, value in members.items():
        args += [lit(key), _value(value)]
    return exp.Anonymous(this="json_object", expressions=args)


def arr(*items: _Json) -> exp.Expr:
    return exp.Anonymous(this="json_array", expressions=[_value(i) for i in items])


def _stripped(value: exp.Expr) -> exp.Expr:
    """An object without its null members, for use inside an array (the merge patch that cleans
    a whole resource replaces arrays whole, so it cannot reach nulls inside them)."""
    return exp.Anonymous(this="json_merge_patch", expressions=[lit("{}"), value])


def _unless_null(column: exp.Expr, value: exp.Expr) -> exp.Expr:
    """NULL when `column` is, else `value` (a member left out of the resource)."""
    return case((is_null(column), exp.null()), default=value)


def _coding(system: str, code: _Json, display: _Json | None = None) -> exp.Expr:
    members: dict[str, _Json] = {"system": system, "code": _value(code)}
    if display is not None:
        members["display"] = _value(display)
    return obj(members)


def _concept(system: str, code: _Json, display: _Json | None = None) -> exp.Expr:
    return obj({"coding": arr(_coding(system, code, display))})


def _ods(code: str) -> exp.Expr:
    """A reference to the Organization the export writes at its ODS code (so a store's search
    index and access rules can follow it), with the ODS code as its identifier too."""
    identifier = obj({"system": uk.ODS_ORGANISATION, "value": c(code)})
    reference = concat(lit("Organization/"), c(code))
    return _unless_null(
        c(code), obj({"reference": reference, "type": "Organization", "identifier": identifier})
    )


def _patient(column: str = "person_id") -> exp.Expr:
    return obj({"reference": concat(lit("Patient/"), cast(c(column), "VARCHAR"))})


def _cost(column: str) -> exp.Expr:
    money = obj({"value": c(column), "currency": "GBP"})
    return arr(obj({"url": uk.COST_EXTENSION, "valueMoney": money}))


def _text(column: str) -> exp.Expr:
    return cast(c(column), "VARCHAR")


def _status(end: str, ongoing: str, ended: str) -> exp.Expr:
    return case((is_null(c(end)), lit(ongoing)), default=lit(ended))


def _period(start: str, end: str) -> exp.Expr:
    return obj({"start": c(start), "end": c(end)})


def _resource(kind: str, members: dict[str, _Json], source: exp.Select) -> exp.Select:
    """SELECT 'kind' AS resource_type, json_object('resourceType', 'kind', ...) AS resource."""
    resource = obj({"resourceType": kind, **members})
    return source.select(lit(kind).as_("resource_type"), resource.as_("resource"))


def _numbered(prefix: str, *order: exp.Expr) -> exp.Expr:
    """`prefix-<person>-<n>`: the n-th of a person's rows in `order` (a stable id)."""
    nth = row_number([c("person_id")], [ordered(o) for o in order])
    return concat(lit(f"{prefix}-"), _text("person_id"), lit("-"), cast(nth, "VARCHAR"))


#: identity's columns beyond the NHS number that a Patient carries (UK Core Patient: name,
#: birthDate, address.postalCode).
_IDENTITY_DETAILS = ("given_name", "family_name", "birth_date", "postcode")


def _patients() -> exp.Select:
    identity = (
        exp.select(
            c("person_id"),
            exp.ArgMin(this=c("source_system"), expression=c("source_system")).as_("source_system"),
            *(
                exp.ArgMin(this=c(name), expression=c("source_system")).as_(name)
                for name in ("nhs_number", *_IDENTITY_DETAILS)
            ),
        )
        .from_("identity")
        .group_by(c("person_id"))
    )
    ethnicity = obj(
        {
            "url": uk.ETHNIC_CATEGORY_EXTENSION,
            "valueCodeableConcept": _concept(
                uk.ETHNIC_CATEGORY_SYSTEM,
                c("p.ethnic_category"),
                case_map(c("p.ethnic_category"), ETHNIC_CATEGORIES),
            ),
        }
    )
    lsoa = obj({"url": uk.LSOA_EXTENSION, "valueCode": c("p.lsoa_code")})
    # The full date where identity holds one, else the year and month the person row keeps.
    birth = coalesce(
        cast(c("i.birth_date"), "VARCHAR"),
        exp.Anonymous(
            this="printf", expressions=[lit("%04d-%02d"), c("p.birth_year"), c("p.birth_month")]
        ),
    )
    name = obj(
        {
            "use": "official",
            "family": c("i.family_name"),
            "given": _unless_null(c("i.given_name"), arr(c("i.given_name"))),
        }
    )
    address = obj(
        {
            "use": "home",
            "extension": _unless_null(c("p.lsoa_code"), arr(lsoa)),
            "postalCode": c("i.postcode"),
        }
    )
    members: dict[str, _Json] = {
        "id": _text("p.person_id"),
        "meta": obj({"source": c("i.source_system")}),
        "extension": arr(ethnicity),
        "identifier": _unless_null(
            c("i.nhs_number"), arr(obj({"system": uk.NHS_NUMBER, "value": c("i.nhs_number")}))
        ),
        "name": _unless_null(coalesce(c("i.family_name"), c("i.given_name")), arr(_stripped(name))),
        "gender": c("p.sex"),
        "birthDate": birth,
        "deceasedDateTime": c("p.death_date"),
        "address": _unless_null(
            coalesce(c("p.lsoa_code"), c("i.postcode")), arr(_stripped(address))
        ),
        "generalPractitioner": _unless_null(c("p.practice_code"), arr(_ods("p.practice_code"))),
    }
    source = (
        exp.select()
        .from_(exp.to_table("person").as_("p"))
        .join(identity.subquery("i"), using=["person_id"], join_type="left")
    )
    return _resource("Patient", members, source)


def _consents() -> exp.Select:
    members: dict[str, _Json] = {
        "id": concat(lit("ndop-"), _text("person_id")),
        "status": "active",
        "scope": _concept("http://terminology.hl7.org/CodeSystem/consentscope", "research"),
        "category": arr(_concept(uk.LOINC, "59284-0", "Patient Consent")),
        "patient": _patient(),
        "policy": arr(obj({"uri": uk.NATIONAL_DATA_OPT_OUT})),
        "provision": obj({"type": "deny"}),
    }
    return _resource(
        "Consent", members, exp.select().from_("person").where(c("national_data_opt_out"))
    )


def _registrations() -> exp.Select:
    started = exp.TimeToStr(this=c("start_date"), format=lit("%Y%m%d"))
    members: dict[str, _Json] = {
        "id": concat(lit("reg-"), _text("person_id"), lit("-"), started),
        "status": _status("end_date", "active", "finished"),
        "type": arr(_concept(uk.EPISODE_TYPE_SYSTEM, uk.GP_REGISTRATION)),
        "patient": _patient(),
        "managingOrganization": _ods("practice_code"),
        "period": _period("start_date", "end_date"),
    }
    return _resource("EpisodeOfCare", members, exp.select().from_("registration"))


def _activity_identifier() -> exp.Expr:
    return arr(obj({"system": uk.ACTIVITY_ID_SYSTEM, "value": _text("activity_id")}))


def _is_package() -> exp.Expr:
    return exp.EQ(this=c("activity_type"), expression=lit(uk.SOCIAL_CARE_PACKAGE))


def _social_care() -> exp.Select:
    members: dict[str, _Json] = {
        "id": _text("activity_id"),
        "extension": _cost("cost_gbp"),
        "identifier": _activity_identifier(),
        "status": _status("end_date", "active", "finished"),
        "type": arr(_concept(uk.ACTIVITY_TYPE_SYSTEM, c("activity_type"))),
        "patient": _patient(),
        "managingOrganization": _ods("provider_code"),
        "period": _period("start_date", "end_date"),
    }
    return _resource("EpisodeOfCare", members, exp.select().from_("activity").where(_is_package()))


def _admission() -> exp.Expr:
    method = _concept(uk.ADMISSION_METHOD_SYSTEM, case_map(c("activity_type"), uk.ADMISSION_METHOD))
    extension = obj({"url": uk.ADMISSION_METHOD_EXTENSION, "valueCodeableConcept": method})
    return case((isin(c("activity_type"), uk.ADMISSION_METHOD), obj({"extension": arr(extension)})))


def _encounters() -> exp.Select:
    length = obj(
        {"value": c("length_of_stay_days"), "unit": "days", "system": uk.UCUM, "code": "d"}
    )
    members: dict[str, _Json] = {
        "id": _text("activity_id"),
        "extension": _cost("cost_gbp"),
        "identifier": _activity_identifier(),
        "status": "finished",
        "class": obj(
            {"system": uk.ACT_CODE, "code": case_map(c("activity_type"), uk.ENCOUNTER_CLASS)}
        ),
        "type": arr(_concept(uk.ACTIVITY_TYPE_SYSTEM, c("activity_type"))),
        "serviceType": _unless_null(
            c("specialty_code"), _concept(uk.TREATMENT_FUNCTION, c("specialty_code"))
        ),
        "subject": _patient(),
        "period": _period("start_date", "end_date"),
        "length": _unless_null(c("length_of_stay_days"), length),
        "hospitalization": _admission(),
        "serviceProvider": _ods("provider_code"),
    }
    source = exp.select().from_("activity").where(exp.Not(this=_is_package()))
    return _resource("Encounter", members, source)


def _icd10_with_dot() -> exp.Expr:
    """A stored ICD-10 code (`E119`) as FHIR writes it (`E11.9`)."""
    code = c("code")
    dotted = concat(
        exp.Substring(this=code.copy(), start=lit(1), length=lit(3)),
        lit("."),
        exp.Substring(this=code.copy(), start=lit(4)),
    )
    return case(
        (exp.GT(this=exp.Length(this=code), expression=lit(3)), dotted), default=code.copy()
    )


def _conditions() -> exp.Select:
    recorded_by = obj(
        {"url": uk.RECORDED_BY_EXTENSION, "valueReference": _ods("organisation_code")}
    )
    coding = case(
        (exp.EQ(this=c("code_system"), expression=lit("snomed")), _coding(uk.SNOMED, c("code"))),
        default=_coding(uk.ICD10, _icd10_with_dot()),
    )
    members: dict[str, _Json] = {
        "id": _numbered("dx", c("diagnosis_date"), c("code"), c("setting"), c("organisation_code")),
        "extension": _unless_null(c("organisation_code"), arr(recorded_by)),
        "category": arr(_concept(uk.CARE_SETTING_SYSTEM, c("setting"))),
        "code": obj({"coding": arr(coding)}),
        "subject": _patient(),
        "recordedDate": c("diagnosis_date"),
    }
    return _resource("Condition", members, exp.select().from_("diagnosis"))


def _medications() -> exp.Select:
    course = case((c("is_repeat"), lit("continuous")), default=lit("acute"))
    system = case(
        (exp.EQ(this=c("code_system"), expression=lit("dmd")), lit(uk.DMD)), default=lit(uk.BNF)
    )
    medicine = obj(
        {
            "coding": arr(obj({"system": system, "code": c("code"), "display": c("description")})),
            "text": c("description"),
        }
    )
    dispense = obj(
        {
            "validityPeriod": _period("start_date", "end_date"),
            "numberOfRepeatsAllowed": exp.Sub(this=c("issue_count"), expression=lit(1)),
        }
    )
    members: dict[str, _Json] = {
        "id": _numbered("rx", c("start_date"), c("code"), c("end_date"), c("issue_count")),
        "status": _status("end_date", "active", "completed"),
        "intent": "order",
        "courseOfTherapyType": _concept(uk.COURSE_OF_THERAPY, course),
        "medicationCodeableConcept": medicine,
        "subject": _patient(),
        "authoredOn": c("start_date"),
        "requester": _ods("prescriber_code"),
        "dispenseRequest": dispense,
    }
    return _resource("MedicationRequest", members, exp.select().from_("medication"))


def _observations() -> exp.Select:
    quantity = obj({"value": c("value"), "unit": c("unit"), "system": uk.UCUM, "code": c("unit")})
    members: dict[str, _Json] = {
        "id": _numbered(
            "obs", c("observation_date"), c("observation_type"), c("value"), c("value_code")
        ),
        "status": "final",
        "code": _concept(uk.SNOMED, c("code")),
        "subject": _patient(),
        "effectiveDateTime": c("observation_date"),
        "valueQuantity": _unless_null(c("value"), quantity),
        "valueCodeableConcept": _unless_null(c("value_code"), _concept(uk.SNOMED, c("value_code"))),
    }
    return _resource("Observation", members, exp.select().from_("observation"))


def _service_requests() -> exp.Select:
    stop = obj({"url": uk.RTT_STOP_REASON_EXTENSION, "valueCode": c("stop_reason")})
    members: dict[str, _Json] = {
        "id": _text("pathway_id"),
        "extension": _unless_null(c("stop_reason"), arr(stop)),
        "identifier": arr(obj({"system": uk.RTT_PATHWAY_SYSTEM, "value": _text("pathway_id")})),
        "status": _status("clock_stop_date", "active", "completed"),
        "intent": "order",
        "code": _concept(uk.SNOMED, "3457005", "Patient referral"),
        "subject": _patient(),
        "occurrencePeriod": _period("clock_start_date", "clock_stop_date"),
        "authoredOn": c("clock_start_date"),
        "performerType": _concept(uk.TREATMENT_FUNCTION, c("specialty_code")),
        "performer": arr(_ods("provider_code")),
    }
    return _resource("ServiceRequest", members, exp.select().from_("rtt_pathway"))


def _organizations() -> exp.Select:
    organisations = union_all(
        exp.select(
            c("practice_code").as_("code"),
            c("practice_name").as_("name"),
            lit("gp_practice").as_("kind"),
        ).from_("practice"),
        exp.select(c("organisation_code"), c("organisation_name"), c("organisation_type")).from_(
            "organisation"
        ),
    )
    members: dict[str, _Json] = {
        "id": c("code"),
        "identifier": arr(obj({"system": uk.ODS_ORGANISATION, "value": c("code")})),
        "active": True,
        "type": arr(_concept(uk.JOINEDUP_BASE + "/CodeSystem/organisation-type", c("kind"))),
        "name": c("name"),
    }
    return _resource("Organization", members, exp.select().from_(organisations.subquery("o")))


#: (file stem, query) in the order files are written.
EXPORTS: tuple[tuple[str, exp.Select], ...] = (
    ("Organization", _organizations()),
    ("Patient", _patients()),
    ("Consent", _consents()),
    ("EpisodeOfCare", _registrations()),
    ("EpisodeOfCare", _social_care()),
    ("Encounter", _encounters()),
    ("Condition", _conditions()),
    ("MedicationRequest", _medications()),
    ("Observation", _observations()),
    ("ServiceRequest", _service_requests()),
)
RESOURCE_TYPES = tuple(dict.fromkeys(name for name, _ in EXPORTS))


def _without_nulls(query: exp.Select) -> exp.Query:
    """Each resource as JSON text without its null members (FHIR JSON allows none): an RFC
    7396 merge patch onto `{}` drops them, at every depth."""
    patched = exp.Anonymous(this="json_merge_patch", expressions=[lit("{}"), c("resource")])
    return exp.select(cast(patched, "VARCHAR").as_("resource")).from_(query.subquery("r"))


def _of(query: exp.Select, stem: str, people: exp.Query | None) -> exp.Select:
    """`query` kept to the person_ids `people` selects (Organization is nobody's)."""
    if people is None or stem == "Organization":
        return query
    return query.where(c("person_id").isin(query=people.copy()))


def _writer(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return typing.cast(IO[bytes], gzip.open(path, "wb", compresslevel=1))
    return path.open("wb")


def export_fhir(
    engine: Engine,
    out_dir: Path,
    *,
    types: tuple[str, ...] = RESOURCE_TYPES,
    gzip_files: bool = False,
    on_batch: Callable[[str, int], None] | None = None,
    people: exp.Query | None = None,
) -> dict[str, int]:
    """Write one NDJSON file per resource type into `out_dir`; returns resources by type.

    With `people` (a query of person_id), only those people's resources are written, with
    every Organization; each keeps the id it has in a whole export.

    Files are written under temporary names and renamed when complete, so an interrupted export
    leaves no truncated file behind a finished-looking name.
    """
    unknown = [t for t in types if t not in RESOURCE_TYPES]
    if unknown:
        raise ConfigurationError(
            f"cannot export {', '.join(unknown)}: choose from {', '.join(RESOURCE_TYPES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".ndjson.gz" if gzip_files else ".ndjson"
    counts: dict[str, int] = {}
    for name in types:
        final = out_dir / f"{name}{suffix}"
        partial = out_dir / f".{name}{suffix}.partial"
        written = 0
        with _writer(partial) as handle:
            for stem, query in EXPORTS:
                if stem != name:
                    continue
                for batch in engine.stream(_without_nulls(_of(query, stem, people))):
                    lines = batch.column(0).to_pylist()
                    if not lines:
                        continue
                    handle.write(("\n".join(lines) + "\n").encode("utf-8"))
                    written += len(lines)
                    if on_batch is not None:
                        on_batch(name, len(lines))
        partial.replace(final)
        counts[name] = written
    return counts
