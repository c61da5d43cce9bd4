"""Which complex elements of FHIR R4 (4.0.1) hold at most one value (cardinality `0..1` or
`1..1`), from the R4 StructureDefinitions of the resources joinedup's views read and of the
data types they contain (http://hl7.org/fhir/R4/<type>.html).

The ViewDefinition compiler uses this as a hint only: in a valid resource such an element is
an object, never an array, so the compiler reads its children directly and reads the element
itself only where it does turn out to be an array. Results never depend on the hint; a wrong or
missing entry only costs time.
"""

from __future__ import annotations

import functools

#: Each resource's single-valued complex elements and their data types.
_RESOURCES: dict[str, dict[str, str]] = {
    "Patient": {"meta": "Meta", "maritalStatus": "CodeableConcept",
                "managingOrganization": "Reference"},
    "Condition": {"meta": "Meta", "clinicalStatus": "CodeableConcept",
                  "verificationStatus": "CodeableConcept", "severity": "CodeableConcept",
                  "code": "CodeableConcept", "subject": "Reference", "encounter": "Reference",
                  "onsetPeriod": "Period", "onsetAge": "Quantity", "onsetRange": "Range",
                  "abatementPeriod": "Period", "abatementAge": "Quantity",
                  "abatementRange": "Range", "recorder": "Reference", "asserter": "Reference"},
    "Encounter": {"meta": "Meta", "class": "Coding", "serviceType": "CodeableConcept",
                  "priority": "CodeableConcept", "subject": "Reference", "period": "Period",
                  "length": "Quantity", "hospitalization": "EncounterHospitalization",
                  "serviceProvider": "Reference", "partOf": "Reference"},
    "Observation": {"meta": "Meta", "code": "CodeableConcept", "subject": "Reference",
                    "encounter": "Reference", "effectivePeriod": "Period",
                    "valueQuantity": "Quantity", "valueCodeableConcept": "CodeableConcept",
                    "valueRange": "Range", "valuePeriod": "Period",
                    "dataAbsentReason": "CodeableConcept", "method": "CodeableConcept",
                    "bodySite": "CodeableConcept", "specimen": "Reference",
                    "device": "Reference"},
    "Procedure": {"meta": "Meta", "category": "CodeableConcept", "code": "CodeableConcept",
                  "subject": "Reference", "encounter": "Reference", "performedPeriod": "Period",
                  "recorder": "Reference", "asserter": "Reference", "location": "Reference",
                  "outcome": "CodeableConcept"},
    "MedicationRequest": {"meta": "Meta", "medicationCodeableConcept": "CodeableConcept",
                          "medicationReference": "Reference", "subject": "Reference",
                          "encounter": "Reference", "requester": "Reference",
                          "performer": "Reference", "recorder": "Reference",
                          "dispenseRequest": "MedicationRequestDispenseRequest"},
    "MedicationStatement": {"meta": "Meta", "category": "CodeableConcept",
                            "medicationCodeableConcept": "CodeableConcept",
                            "medicationReference": "Reference", "subject": "Reference",
                            "context": "Reference", "effectivePeriod": "Period",
                            "informationSource": "Reference"},
    "ServiceRequest": {"meta": "Meta", "code": "CodeableConcept", "subject": "Reference",
                       "encounter": "Reference", "requester": "Reference",
                       "occurrencePeriod": "Period"},
    "EpisodeOfCare": {"meta": "Meta", "patient": "Reference", "period": "Period",
                      "managingOrganization": "Reference", "careManager": "Reference"},
    "Consent": {"meta": "Meta", "scope": "CodeableConcept", "patient": "Reference",
                "policyRule": "CodeableConcept"},
    "Organization": {"meta": "Meta", "partOf": "Reference"},
    "Practitioner": {"meta": "Meta"},
    "PractitionerRole": {"meta": "Meta", "practitioner": "Reference",
                         "organization": "Reference", "period": "Period"},
}  # fmt: skip

#: Lists of complex elements whose items have single-valued complex elements of their own,
#: and the items' data types: `Patient.generalPractitioner` is a list of Reference, each
#: with at most one `identifier`.
_ITEMS: dict[str, dict[str, str]] = {
    "Patient": {"identifier": "Identifier", "generalPractitioner": "Reference"},
    "Condition": {"identifier": "Identifier"},
    "Encounter": {"identifier": "Identifier", "episodeOfCare": "Reference",
                  "basedOn": "Reference", "account": "Reference"},
    "Observation": {"identifier": "Identifier", "basedOn": "Reference", "partOf": "Reference",
                    "performer": "Reference", "hasMember": "Reference",
                    "derivedFrom": "Reference"},
    "Procedure": {"identifier": "Identifier", "basedOn": "Reference", "partOf": "Reference"},
    "MedicationRequest": {"identifier": "Identifier", "basedOn": "Reference"},
    "MedicationStatement": {"identifier": "Identifier", "basedOn": "Reference",
                            "partOf": "Reference"},
    "ServiceRequest": {"identifier": "Identifier", "basedOn": "Reference"},
    "EpisodeOfCare": {"identifier": "Identifier", "referralRequest": "Reference",
                      "account": "Reference"},
    "Consent": {"identifier": "Identifier", "organization": "Reference"},
    "Organization": {"identifier": "Identifier", "endpoint": "Reference"},
    "Practitioner": {"identifier": "Identifier"},
    "PractitionerRole": {"identifier": "Identifier", "location": "Reference",
                         "healthcareService": "Reference", "endpoint": "Reference"},
}  # fmt: skip

#: Each data type's single-valued complex elements and their data types.
_TYPES: dict[str, dict[str, str]] = {
    "Reference": {"identifier": "Identifier"},
    "Identifier": {"type": "CodeableConcept", "period": "Period", "assigner": "Reference"},
    "Range": {"low": "Quantity", "high": "Quantity"},
    "EncounterHospitalization": {"origin": "Reference", "admitSource": "CodeableConcept",
                                 "reAdmission": "CodeableConcept", "destination": "Reference",
                                 "dischargeDisposition": "CodeableConcept"},
    "MedicationRequestDispenseRequest": {"validityPeriod": "Period", "quantity": "Quantity",
                                         "expectedSupplyDuration": "Quantity",
                                         "performer": "Reference"},
}  # fmt: skip

#: How far below the resource the paths go (`serviceProvider.identifier.assigner`).
_DEPTH = 3


@functools.cache
def single_paths(resource_type: str) -> frozenset[tuple[str | int, ...]]:
    """The paths (by name) from a resource of `resource_type` to complex elements that hold
    at most one value in the resource or in each item of a list on the way, every other
    step single too (empty for a type not listed): `subject.identifier`, and
    `generalPractitioner.identifier` for the `identifier` of each General Practitioner."""
    found: set[tuple[str | int, ...]] = set()

    def walk(path: tuple[str, ...], elements: dict[str, str]) -> None:
        for name, type_name in elements.items():
            found.add((*path, name))
            if len(path) + 1 < _DEPTH:
                walk((*path, name), _TYPES.get(type_name, {}))

    walk((), _RESOURCES.get(resource_type, {}))
    for name, type_name in _ITEMS.get(resource_type, {}).items():
        walk((name,), _TYPES.get(type_name, {}))
    return frozenset(found)
