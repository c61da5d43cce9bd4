"""FHIR Consents the records tests write: a person's objection to sharing their record."""

from __future__ import annotations

from typing import Any


def objection(
    pid: str, organisation: str, status: str = "active", *, cid: str | None = None
) -> dict[str, Any]:
    """An objection to sharing Patient `pid`'s record (docs/records.md gives its shape),
    recorded by `organisation`, with the id `cid` (None: the store gives one)."""
    consent: dict[str, Any] = {"resourceType": "Consent"}
    if cid is not None:
        consent["id"] = cid
    consent.update({
        "status": status,
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "dateTime": "2026-05-01T09:00:00Z",
        "organization": [{"identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": organisation}}],
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    })  # fmt: skip
    return consent
