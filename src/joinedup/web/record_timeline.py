"""One person's joined-up record as the dashboard shows it (issue 16, item 6): the resources
the records API gave for them (`Patient/$everything`, already kept to what the user may see)
turned into a demographics header, summaries (active problems, medicines, allergies), trends
of repeated results and a timeline newest first, each item with its source organisation.

Plain functions of FHIR JSON: no access decisions here (records.policy and the API's gate make
them before any resource reaches this module)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from joinedup.fhir.ukcore import (
    ACTIVITY_NAMES,
    ACTIVITY_TYPE_SYSTEM,
    ICD10_SYSTEMS,
    OBSERVATION_CODES,
    OBSERVATION_NAMES,
    SNOMED,
)
from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.population.codelists import code_descriptions
from joinedup.records.consent import recording_organisations

#: The types the page asks `$everything` for, in the order their sections come.
RECORD_TYPES = (
    "Patient", "Encounter", "EpisodeOfCare", "Condition", "MedicationRequest",
    "MedicationStatement", "AllergyIntolerance", "Observation", "Immunization", "Procedure",
    "ServiceRequest", "CarePlan",
)  # fmt: skip

#: What each type is called on the page.
KIND_LABELS = {
    "Encounter": "Encounter",
    "EpisodeOfCare": "Episode of care",
    "Condition": "Problem",
    "MedicationRequest": "Medicine prescribed",
    "MedicationStatement": "Medicine taken",
    "AllergyIntolerance": "Allergy",
    "Observation": "Result",
    "Immunization": "Immunisation",
    "Procedure": "Procedure",
    "ServiceRequest": "Referral",
    "CarePlan": "Care plan",
}

#: Encounter.class codes (v3 ActCode) in words.
ENCOUNTER_CLASSES = {
    "AMB": "outpatient or clinic",
    "IMP": "inpatient",
    "ACUTE": "inpatient (acute)",
    "NONAC": "inpatient (non-acute)",
    "EMER": "emergency",
    "HH": "home visit",
    "VR": "virtual",
    "OBSENC": "observation",
    "PRENC": "pre-admission",
    "SS": "short stay",
    "FLD": "field",
}

#: Medicines still being taken or prescribed.
CURRENT_MEDICINE = frozenset({"active", "on-hold", "intended"})


def nhs_number_text(value: str) -> str:
    """An NHS number as people read it: 3-3-4 digits with spaces (e.g. 943 476 5919)."""
    digits = "".join(c for c in value if c.isdigit())
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}" if len(digits) == 10 else value


def concept_text(concept: Any) -> str:
    """A CodeableConcept in words: its text, else its first coding's display, else the words
    joinedup knows for a coding's code (`code_words`), else its first code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        if coding.get("display"):
            return str(coding["display"])
    for coding in codings:
        words = code_words(coding.get("system"), coding.get("code"))
        if words:
            return words
    return next((str(c["code"]) for c in codings if c.get("code")), "")


@cache
def _known_words() -> dict[tuple[str, str], str]:
    """(system, code) -> words: the observation types and activity types joinedup writes, and
    the SNOMED CT terms and ICD-10 titles of the shipped diagnosis list (ICD-10 undotted)."""
    known: dict[tuple[str, str], str] = {}
    for kind, codes in OBSERVATION_CODES.items():
        for system, code in codes:
            known.setdefault((system, code), OBSERVATION_NAMES[kind])
    for kind, words in ACTIVITY_NAMES.items():
        known[(ACTIVITY_TYPE_SYSTEM, kind)] = words
    for (system, code), words in code_descriptions().items():
        for url in (SNOMED,) if system == "snomed" else ICD10_SYSTEMS:
            known.setdefault((url, code), words)
    return known


def code_words(system: Any, code: Any) -> str:
    """The words joinedup knows for a code that came without any (records from feeds, and
    joinedup's own export, often carry codes alone): '' when none. An ICD-10 code is looked up
    without its dot and then by shorter prefixes, as a category's title covers its
    subdivisions."""
    if not isinstance(system, str) or not isinstance(code, str) or not code:
        return ""
    known = _known_words()
    if system not in ICD10_SYSTEMS:
        return known.get((system, code), "")
    bare = code.upper().replace(".", "").rstrip("X")
    for end in range(len(bare), 2, -1):
        words = known.get((system, bare[:end]))
        if words:
            return words
    return ""


def concept_key(concept: Any) -> str:
    """A CodeableConcept's first coding as system|code (how repeated results are grouped)."""
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return f"{coding.get('system', '')}|{coding['code']}"
    return concept_text(concept)


def _status(concept: Any) -> str:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return ""


def _first(resource: dict[str, Any], *paths: str) -> str:
    """The first of `paths` (dotted) with a value, as text."""
    for path in paths:
        node: Any = resource
        for step in path.split("."):
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
    return ""


def when_of(resource: dict[str, Any]) -> str:
    """The clinically relevant date-time of a resource (ISO text; '' when none)."""
    return _first(
        resource, "period.start", "effectiveDateTime", "effectivePeriod.start", "onsetDateTime",
        "onsetPeriod.start", "recordedDate", "authoredOn", "occurrenceDateTime",
        "performedDateTime", "performedPeriod.start", "dateAsserted", "issued", "created",
        "meta.lastUpdated",
    )  # fmt: skip


def _quantity(value: Any) -> tuple[float | None, str]:
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        return None, ""
    unit = str(value.get("unit") or value.get("code") or "")
    return float(value["value"]), unit


def _number(value: float) -> str:
    return f"{value:g}"


def value_text(observation: dict[str, Any]) -> str:
    """An Observation's value in words: a quantity with its unit, components joined with '/'
    (blood pressure 140/90 mmHg), or a coded or text value."""
    number, unit = _quantity(observation.get("valueQuantity"))
    if number is not None:
        return f"{_number(number)} {unit}".strip()
    parts = [_quantity(c.get("valueQuantity")) for c in observation.get("component") or []]
    numbers = [(n, u) for n, u in parts if n is not None]
    if numbers:
        units = {u for _, u in numbers}
        joined = "/".join(_number(n) for n, _ in numbers)
        return (
            f"{joined} {units.pop()}"
            if len(units) == 1
            else ", ".join(f"{_number(n)} {u}" for n, u in numbers)
        )
    if "valueCodeableConcept" in observation:
        return concept_text(observation["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in observation:
            return str(observation[key])
    return ""


@dataclass(frozen=True)
class Source:
    """The organisation an item came from: its ODS code and name (the code when unnamed)."""

    ods_code: str
    name: str


@dataclass
class Item:
    """One line of the timeline."""

    kind: str
    label: str
    when: str
    title: str
    detail: str
    status: str
    sources: list[Source]
    setting: str = ""


@dataclass
class Series:
    """One line of a trend: a component's (or the result's) values in time order."""

    name: str
    unit: str
    points: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Trend:
    """A result recorded more than once: its readings oldest first, and its series."""

    code: str
    title: str
    readings: list[tuple[str, str, list[Source]]]
    series: list[Series]


@dataclass
class Record:
    """What the page shows of one person."""

    patient_id: str
    name: str
    nhs_number: str
    birth_date: str
    gender: str
    practice: Source | None
    timeline: list[Item]
    problems: list[Item]
    medicines: list[Item]
    allergies: list[Item]
    trends: list[Trend]
    counts: dict[str, int]


def _name(patient: dict[str, Any]) -> str:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if chosen.get("text"):
        return str(chosen["text"])
    given = " ".join(str(g) for g in chosen.get("given") or [])
    return " ".join(p for p in (given, str(chosen.get("family") or "").upper()) if p)


def _reference_id(reference: Any, kind: str) -> str | None:
    text = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    prefix = f"{kind}/"
    return text[len(prefix) :] if text.startswith(prefix) else None


def organisation_ids(resources: list[dict[str, Any]]) -> set[str]:
    """Every Organization the page names: the registered practice and each item's source."""
    found: set[str] = set()
    for resource in resources:
        if resource.get("resourceType") == "Patient":
            for gp in resource.get("generalPractitioner") or []:
                org = _reference_id(gp, "Organization")
                if org:
                    found.add(org)
        else:
            found |= recording_organisations(resource)
    return found


def _title(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind == "Encounter":
        types = [concept_text(t) for t in resource.get("type") or []]
        return next((t for t in types if t), "") or concept_text(
            {"coding": [resource.get("class") or {}]}
        )
    if kind == "EpisodeOfCare":
        types = [concept_text(t) for t in resource.get("type") or []]
        return next((t for t in types if t), "Episode of care")
    if kind in ("MedicationRequest", "MedicationStatement"):
        return concept_text(resource.get("medicationCodeableConcept")) or _first(
            resource, "medicationReference.display"
        )
    if kind == "Immunization":
        return concept_text(resource.get("vaccineCode"))
    if kind == "CarePlan":
        categories = [concept_text(c) for c in resource.get("category") or []]
        return _first(resource, "title") or next((c for c in categories if c), "Care plan")
    return concept_text(resource.get("code"))


def _detail(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind == "Observation":
        return value_text(resource)
    if kind in ("MedicationRequest", "MedicationStatement"):
        doses = [d.get("text") for d in resource.get("dosage") or resource.get(
            "dosageInstruction") or [] if isinstance(d, dict) and d.get("text")]  # fmt: skip
        return "; ".join(str(d) for d in doses)
    if kind == "AllergyIntolerance":
        reactions = [
            concept_text(m)
            for r in resource.get("reaction") or [] if isinstance(r, dict)
            for m in r.get("manifestation") or []
        ]  # fmt: skip
        return ", ".join(r for r in reactions if r)
    if kind == "CarePlan":
        activities = [
            concept_text((a.get("detail") or {}).get("code"))
            for a in resource.get("activity") or [] if isinstance(a, dict)
        ]  # fmt: skip
        said = [_first(resource, "description"), *(a for a in activities if a)]
        return "; ".join(t for t in said if t)
    if kind == "Encounter":
        end = _first(resource, "period.end")
        return f"until {end[:10]}" if end and end[:10] != when_of(resource)[:10] else ""
    return ""


def _status_of(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind in ("Condition", "AllergyIntolerance"):
        return _status(resource.get("clinicalStatus")) or _status(
            resource.get("verificationStatus")
        )
    return str(resource.get("status") or "")


def _setting(resource: dict[str, Any]) -> str:
    if resource.get("resourceType") != "Encounter":
        return ""
    klass = resource.get("class") or {}
    code = str(klass.get("code") or "")
    return ENCOUNTER_CLASSES.get(code, str(klass.get("display") or code))


def build_record(
    patient_id: str, resources: list[dict[str, Any]], organisations: dict[str, str]
) -> Record:
    """The page's view of `resources` (the Patient and what points to them); `organisations`
    names each Organization id (ODS code) it knows."""

    def source(ods_code: str) -> Source:
        return Source(ods_code, organisations.get(ods_code) or ods_code)

    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    encounters = {str(r.get("id")): r for r in resources if r.get("resourceType") == "Encounter"}
    items: list[Item] = []
    for resource in resources:
        kind = str(resource.get("resourceType"))
        if kind not in KIND_LABELS:
            continue
        recorded = recording_organisations(resource)
        if not recorded:  # an item with no organisation of its own: its encounter's
            encounter = encounters.get(_reference_id(resource.get("encounter"), "Encounter") or "")
            recorded = recording_organisations(encounter) if encounter else set()
        items.append(
            Item(
                kind=kind, label=KIND_LABELS[kind], when=when_of(resource),
                title=_title(resource) or "(not coded)", detail=_detail(resource),
                status=_status_of(resource), sources=[source(o) for o in sorted(recorded)],
                setting=_setting(resource),
            )
        )  # fmt: skip
    items.sort(key=lambda i: i.when, reverse=True)
    practice = next(
        (
            source(org)
            for gp in patient.get("generalPractitioner") or []
            for org in [_reference_id(gp, "Organization")]
            if org
        ),
        None,
    )
    number = next(
        (
            str(i.get("value"))
            for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM and i.get("value")
        ),
        "",
    )
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.kind] += 1
    return Record(
        patient_id=patient_id,
        name=_name(patient),
        nhs_number=nhs_number_text(number) if number else "",
        birth_date=str(patient.get("birthDate") or ""),
        gender=str(patient.get("gender") or ""),
        practice=practice,
        timeline=items,
        problems=[i for i in items if i.kind == "Condition"],
        medicines=[
            i
            for i in items
            if i.kind in ("MedicationRequest", "MedicationStatement")
            and i.status in CURRENT_MEDICINE
        ],
        allergies=[i for i in items if i.kind == "AllergyIntolerance"],
        trends=trends(resources, source),
        counts=dict(counts),
    )


def trends(resources: list[dict[str, Any]], source: Any) -> list[Trend]:
    """Results with a number recorded on more than one date, each oldest first; a result
    with components (blood pressure) has a series per component."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        if resource.get("resourceType") == "Observation" and when_of(resource):
            grouped[concept_key(resource.get("code"))].append(resource)
    found: list[Trend] = []
    for code, observations in grouped.items():
        observations.sort(key=when_of)
        series: dict[str, Series] = {}
        for obs in observations:
            when = when_of(obs)
            number, unit = _quantity(obs.get("valueQuantity"))
            if number is not None:
                series.setdefault("", Series(concept_text(obs.get("code")), unit)).points.append(
                    (when, number)
                )
            for component in obs.get("component") or []:
                number, unit = _quantity(component.get("valueQuantity"))
                if number is not None:
                    name = concept_text(component.get("code"))
                    series.setdefault(name, Series(name, unit)).points.append((when, number))
        if len({when_of(o)[:10] for o in observations}) < 2 or not series:
            continue
        readings = [
            (when_of(o), value_text(o), [source(r) for r in sorted(recording_organisations(o))])
            for o in observations
        ]
        title = concept_text(observations[-1].get("code")) or code
        found.append(Trend(code, title, readings, list(series.values())))
    found.sort(key=lambda t: t.title.lower())
    return found


#: The trend chart's size (CSS px) and margins for its axes' labels.
CHART_WIDTH, CHART_HEIGHT = 560, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 44, 16, 40  # room for the last date's label
_COLOURS = ("#005eb8", "#d5281b", "#007f3b", "#330072")


def trend_svg(trend: Trend) -> dict[str, Any]:
    """The trend as a line chart's geometry for the template (which writes the SVG): each
    series' points in chart coordinates, with the axes' ticks, the dates spaced by time."""
    points = [(w, v) for s in trend.series for w, v in s.points]
    days = sorted({w[:10] for w, _ in points})
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.1
    low, high = low - pad, high + pad
    width = CHART_WIDTH - _LEFT - _RIGHT
    height = CHART_HEIGHT - _TOP - _BOTTOM

    def x(day: str) -> float:
        return _LEFT + (width * days.index(day) / (len(days) - 1) if len(days) > 1 else width / 2)

    def y(value: float) -> float:
        return _TOP + height * (high - value) / (high - low)

    lines = [
        {
            "name": s.name,
            "unit": s.unit,
            "colour": _COLOURS[i % len(_COLOURS)],
            "points": [
                (round(x(w[:10]), 1), round(y(v), 1), w[:10], _number(v)) for w, v in s.points
            ],
        }
        for i, s in enumerate(trend.series)
    ]
    ticks = [low + (high - low) * k / 4 for k in range(5)]
    shown = days if len(days) <= 6 else days[:: -(-len(days) // 6)]  # at most 6 date labels
    return {
        "width": CHART_WIDTH, "height": CHART_HEIGHT, "left": _LEFT, "right": CHART_WIDTH - _RIGHT,
        "top": _TOP, "bottom": CHART_HEIGHT - _BOTTOM, "lines": lines,
        "y_ticks": [(round(y(t), 1), f"{t:.3g}") for t in ticks],
        "x_ticks": [(round(x(d), 1), d) for d in shown],
    }  # fmt: skip


__all__ = [
    "RECORD_TYPES",
    "Item",
    "Record",
    "Source",
    "Trend",
    "build_record",
    "nhs_number_text",
    "organisation_ids",
    "trend_svg",
]
