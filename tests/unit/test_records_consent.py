"""records.consent: what is an objection to sharing and what a national data opt-out (the UK
Core Consent example among them), which organisation recorded a resource, the shipped and
configured sensitive code lists with their errors, and the policy over a small SQLite store:
objections withhold the record from other organisations until withdrawn, sensitive resources
are withheld outside the recording organisation, both but for break-glass."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import ConfigurationError
from joinedup.records import Policy, RecordStore, Requester, read_resource
from joinedup.records.consent import (
    NATIONAL_DATA_OPT_OUT,
    citizen_choice_problem,
    citizen_objection,
    configured_sensitive_codes,
    index_entries,
    is_objection,
    is_opt_out,
    read_sensitive_codes,
    recording_organisations,
)
from joinedup.web.access import Role, User
from joinedup.web.records_api.gate import requester

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ICD10 = "http://hl7.org/fhir/sid/icd-10-uk"
SCT = "http://snomed.info/sct"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP_A = Requester("gp-a", frozenset({"A11111", "U11111"}), frozenset({"A11111"}))
GP_B = Requester("gp-b", frozenset({"B22222"}), frozenset({"A11111"}))  # treats A's patients
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


def _objection(patient: str, organisation: str | None, **changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    }  # fmt: skip
    if organisation:
        found["organization"] = [{"reference": f"Organization/{organisation}"}]
    return {**found, **changes}


def test_the_uk_core_consent_example_is_no_objection_until_it_denies(
    uk_core_examples: Path,
) -> None:
    example = read_resource(uk_core_examples / "UKCore-Consent-ForInformationAccess-Example.xml")
    assert example["scope"]["coding"][0]["code"] == "patient-privacy"
    assert not is_objection(example)  # its provision permits (no type): a consent to share
    denying = {**example, "provision": {"type": "deny"}}
    assert is_objection(denying)
    assert recording_organisations(denying) == {
        "UKCore-Organization-WhiteRoseMedicalCentre-Example"
    }
    for status in ("inactive", "rejected", "draft", "proposed", "entered-in-error"):
        assert not is_objection({**denying, "status": status})
    research = {**denying, "scope": {"coding": [{"system": SCOPE, "code": "research"}]}}
    assert not is_objection(research)


def test_the_national_data_opt_out_is_not_an_objection() -> None:
    ndop = {
        **_objection("p", None),
        "policy": [{"uri": "https://digital.nhs.uk/services/national-data-opt-out"}],
    }
    assert is_opt_out(ndop) and not is_objection(ndop)
    assert is_opt_out({k: v for k, v in ndop.items() if k != "provision"})
    assert not is_opt_out({**ndop, "status": "inactive"})
    assert not is_opt_out({**ndop, "provision": {"type": "permit"}})
    assert not is_opt_out(_objection("p", None))


def test_the_recording_organisation_of_a_resource() -> None:
    extension = "https://fhir.joinedup.org/StructureDefinition/recorded-by-organisation"
    by_extension = {
        "resourceType": "Condition",
        "extension": [{"url": extension, "valueReference": {"reference": "Organization/A1"}}],
        "recorder": {"reference": "#role"},
        "contained": [{"resourceType": "PractitionerRole", "id": "role",
                       "organization": {"reference": "Organization/B2"}}],
    }  # fmt: skip
    assert recording_organisations(by_extension) == {"A1"}  # the extension alone, when there
    del by_extension["extension"]
    assert recording_organisations(by_extension) == {"B2"}  # a contained PractitionerRole
    logical = {"identifier": {"system": ODS, "value": "RXX"}, "type": "Organization"}
    assert recording_organisations({"resourceType": "Encounter", "serviceProvider": logical}) == {
        "RXX"
    }
    procedure = {
        "resourceType": "Procedure",
        "performer": [{"actor": {"reference": "Practitioner/x"},
                       "onBehalfOf": {"reference": "Organization/C3"}}],
    }  # fmt: skip
    assert recording_organisations(procedure) == {"C3"}
    practitioner_only = {
        "resourceType": "Observation",
        "performer": [{"reference": "Practitioner/x"}],
    }
    assert recording_organisations(practitioner_only) == set()


def test_the_shipped_sensitive_codes_are_snomed_and_icd10_with_sources() -> None:
    """GP systems code in SNOMED CT, hospitals' diagnoses in ICD-10 (as joinedup's own export
    writes them): each category is listed in both."""
    shipped = read_sensitive_codes()
    categories = {"hiv", "sexual-health", "gender-identity", "assisted-conception"}
    for system in (SCT, ICD10):
        assert {c.category for c in shipped.codes if c.system == system} == categories
    assert all(c.system in (SCT, ICD10) and c.source for c in shipped.codes)
    assert all(c.code.isdigit() for c in shipped.codes if c.system == SCT)
    hospital = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": ICD10, "code": "B24.X"}]},
    }
    assert shipped.categories_of(hospital) == ["hiv"]  # B24X, dotted as the export writes it

    def coded(code: str) -> list[str]:
        return shipped.categories_of({"code": {"coding": [{"system": ICD10, "code": code}]}})

    # a category listed covers its subdivisions, dotted or not, and the X filler or none
    assert coded("A54.0") == coded("A540") == coded("A60.9") == ["sexual-health"]
    assert coded("B200") == coded("Z21X") == coded("Z21") == coded("B24") == ["hiv"]
    assert coded("Z31.2") == ["assisted-conception"]
    assert coded("Z31.4") == coded("E11.9") == coded("A5") == []
    assert (SCT, "86406008") in shipped.pairs
    hiv = {"resourceType": "Condition", "code": {"coding": [{"system": SCT, "code": "86406008"}]}}
    assert shipped.categories_of(hiv) == ["hiv"]
    assert shipped.categories_of({**hiv, "code": {"coding": [{"code": "86406008"}]}}) == []


def test_a_sensitive_code_list_of_ones_own_and_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "sensitive.csv"
    own.write_text(
        "category,system,code,display,source\n"
        f"mental-health,{SCT},35489007,Depressive disorder (disorder),local list\n"
    )
    monkeypatch.setenv("JOINEDUP_RECORDS_SENSITIVE_CODES", str(own))
    assert [c.code for c in configured_sensitive_codes().codes] == ["35489007"]
    monkeypatch.delenv("JOINEDUP_RECORDS_SENSITIVE_CODES")
    assert configured_sensitive_codes() == read_sensitive_codes()

    cases = {
        "category,code\nhiv,1\n": "row 1: the header must be category,system,code,display,source",
        f"category,system,code,display,source\nhiv,{SCT},,x,y\n": "row 2: code is empty",
        f"category,system,code,display,source\nhiv,{SCT},1,x,y,extra\n": "row 2: more values",
        "category,system,code,display,source\n": "no codes",
    }
    for text, message in cases.items():
        own.write_text(text)
        with pytest.raises(ConfigurationError, match=message) as raised:
            read_sensitive_codes(own)
        assert str(own) in str(raised.value)
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_sensitive_codes(tmp_path / "missing.csv")


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "records.sqlite", clock=lambda: NOW)


def _world(store: RecordStore) -> dict[str, str]:
    ids = {}
    for name in ("plain", "objects"):
        ids[name] = store.create({
            "resourceType": "Patient",
            "generalPractitioner": [{"reference": "Organization/A11111"}],
        }).resource_id  # fmt: skip
    return ids


def test_an_objection_withholds_until_withdrawn_or_break_glass(store: RecordStore) -> None:
    ids = _world(store)
    policy = Policy(store)
    made = store.create(_objection(ids["objects"], "B22222"))
    assert store.objections(ids["objects"]) == [frozenset({"B22222"})]
    assert policy.decide(GP_A, ids["objects"]).label == (
        "withheld: objection to sharing recorded by another organisation"
    )
    assert policy.decide(GP_B, ids["objects"]).rule == "registered"  # inside B, and B's GPs
    assert policy.permitted(GP_A) == {ids["plain"]: "registered"}
    scope, _ = policy.scope(GP_A)
    assert store.search("Patient", patients_of=scope).total == 1

    store.create(_objection(ids["objects"], None))  # recorded by no known organisation
    assert policy.decide(GP_B, ids["objects"]).allowed  # one of the objections is B's
    policy.break_glass(GP_A, ids["objects"], "Collapsed in clinic, needs medication history")
    decision = policy.decide(GP_A, ids["objects"])
    assert decision.label == (
        "legitimate relationship: break-glass; objection to sharing overridden by break-glass"
    )
    scope, _ = policy.scope(GP_A)
    assert store.search("Patient", patients_of=scope).total == 2

    withdrawn = {**_objection(ids["objects"], "B22222", status="inactive"), "id": made.resource_id}
    store.update(withdrawn)
    assert len(store.objections(ids["objects"])) == 1  # the other still stands


def test_sensitive_resources_and_an_overriding_list(store: RecordStore, tmp_path: Path) -> None:
    pid = _world(store)["plain"]
    asthma = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": SCT, "code": "195967001"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "asserter": {"reference": "#r"},
        "contained": [{"resourceType": "PractitionerRole", "id": "r",
                       "organization": {"reference": "Organization/A11111"}}],
    }  # fmt: skip
    store.create(asthma)
    shipped = Policy(store)
    assert shipped.withheld(GP_B, asthma) is None
    own = tmp_path / "sensitive.csv"
    own.write_text(f"category,system,code,display,source\nasthma,{SCT},195967001,Asthma,test\n")
    strict = Policy(store, sensitive=read_sensitive_codes(own))
    assert strict.withheld(GP_B, asthma) == (
        "sensitive category asthma recorded by another organisation"
    )
    assert strict.withheld(GP_A, asthma) is None
    for policy, seen in ((shipped, 1), (strict, 0)):
        scope, _ = policy.scope(GP_B)
        assert store.search("Condition", patients_of=scope).total == seen


def test_internal_index_rows_hold_only_what_the_search_index_lacks() -> None:
    hiv = {"system": SCT, "code": "165816005"}
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [hiv]},
        "asserter": {"reference": "#r"},
        "contained": [{"resourceType": "PractitionerRole", "id": "r",
                       "organization": {"reference": "Organization/A11111"}}],
    }  # fmt: skip
    tokens, references = index_entries(condition)
    assert tokens == []  # its code is indexed already as the `code` parameter
    assert references == [("_recorded-by", "Organization", "A11111")]
    observation = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "7917-8"}]},
        "valueCodeableConcept": {"coding": [hiv]},
    }
    assert index_entries(observation) == ([("_coded", SCT, "165816005")], [])
    assert index_entries(_objection("p", "A11111"))[0] == [("_objection", None, "true")]


def test_a_care_worker_sees_through_their_organisation_never_by_registration(
    store: RecordStore,
) -> None:
    ids = _world(store)
    # a care worker of practice A11111 itself, even one given a PCN: its registered patients
    # are not theirs
    at_practice = requester(
        User("carer", "Carer", Role.CARE_WORKER, pcn_code="U11111", organisation_code="A11111"),
        lambda _: frozenset({"A11111"}),
    )
    council = requester(User("social", "Social", Role.CARE_WORKER, organisation_code="ZZL01"))
    assert at_practice.practices == frozenset() and council.organisations == {"ZZL01"}
    policy = Policy(store)
    assert policy.decide(at_practice, ids["plain"]).label == "no relationship"
    assert policy.permitted(at_practice) == {}
    store.create({
        "resourceType": "EpisodeOfCare", "status": "active",
        "patient": {"reference": f"Patient/{ids['plain']}"},
        "managingOrganization": {"reference": "Organization/ZZL01"},
    })  # fmt: skip
    store.create({
        "resourceType": "EpisodeOfCare", "status": "active",
        "patient": {"reference": f"Patient/{ids['objects']}"},
        "managingOrganization": {"reference": "Organization/ZZL01"},
    })  # fmt: skip
    store.create(_objection(ids["objects"], "A11111"))
    assert policy.decide(council, ids["plain"]).label == "legitimate relationship: episode"
    assert policy.decide(council, ids["objects"]).label == (
        "withheld: objection to sharing recorded by another organisation"
    )
    assert policy.permitted(council) == {ids["plain"]: "episode"}
    scope, _ = policy.scope(council)
    assert store.search("Patient", patients_of=scope).total == 1


def test_what_a_citizen_may_write_as_their_sharing_choice() -> None:
    own = citizen_objection("cy", ["A11111"], "2026-06-01T12:00:00Z")
    assert citizen_choice_problem(own, "cy", ["A11111"]) is None
    withdrawn = {**own, "status": "inactive"}
    assert citizen_choice_problem(withdrawn, "cy", ["A11111"]) is None
    by_ods = {**own, "organization": [{"identifier": {"system": ODS, "value": "A11111"}}]}
    assert citizen_choice_problem(by_ods, "cy", ["A11111"]) is None
    wrong = {
        "resourceType": ({**own, "resourceType": "Observation"}, ["A11111"]),
        "Consent.scope": ({**own, "policy": [{"uri": NATIONAL_DATA_OPT_OUT}]}, ["A11111"]),
        "Consent.patient": ({**own, "patient": {"reference": "Patient/other"}}, ["A11111"]),
        "Consent.performer": (
            {**own, "performer": [{"reference": "Patient/cy"}, {"reference": "Patient/x"}]},
            ["A11111"],
        ),
        "Consent.organization": (own, ["A11111", "A11112"]),
    }
    for element, (resource, practices) in wrong.items():
        problem = citizen_choice_problem(resource, "cy", practices)
        assert problem is not None and problem[0] == element, (element, problem)
    assert citizen_choice_problem(own, "cy", []) == (
        "Consent.organization",
        "your record names no GP practice to record this choice: ask your practice",
    )
