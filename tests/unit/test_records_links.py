"""`_include`/`_revinclude` values read against the indexed reference parameters (each
mistake named), what `Patient/$everything` follows back to a patient, and both declared in the
CapabilityStatement a client reads first."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from joinedup.records import InvalidSearchError
from joinedup.records.parameters import Link, link, patient_references, toward
from joinedup.web.records_api.capability import capability_statement


def test_links_name_their_source_parameters_and_target() -> None:
    assert link("Encounter", "Encounter:subject", reverse=False) == Link(
        "Encounter", ("subject",), None
    )
    assert link("Encounter", "Encounter:subject:Patient", reverse=False).target == "Patient"
    assert link("Encounter", "Encounter:*", reverse=False).names == (
        "patient", "service-provider", "subject",
    )  # fmt: skip
    assert link("Patient", "Condition:subject", reverse=True) == Link(
        "Condition", ("subject",), "Patient"
    )
    # Encounter:* back to an Organization follows only what may point to one.
    assert link("Organization", "Encounter:*", reverse=True).names == (
        "service-provider", "subject",
    )  # fmt: skip


def test_iterate_links_start_from_any_type_and_narrow_toward_each() -> None:
    # `_include:iterate` starts from an included type, not only the searched one.
    assert link("Encounter", "Patient:general-practitioner", reverse=False, iterate=True) == Link(
        "Patient", ("general-practitioner",), None
    )
    # `_revinclude:iterate` without a target points to whatever its parameters may point to,
    # narrowed to each included type as it is followed.
    back = link("Encounter", "CareTeam:*", reverse=True, iterate=True)
    assert back == Link("CareTeam", ("participant", "patient", "subject"), None)
    assert toward(back, "Patient") == Link("CareTeam", back.names, "Patient")
    assert toward(back, "Practitioner") == Link(
        "CareTeam", ("participant", "subject"), "Practitioner"
    )
    assert toward(link("Encounter", "Encounter:service-provider", reverse=True, iterate=True),
                  "Patient") is None  # fmt: skip
    with pytest.raises(InvalidSearchError, match=r"_revinclude:iterate: .* never points to Group"):
        link("Encounter", "Condition:patient:Group", reverse=True, iterate=True)


@pytest.mark.parametrize(
    ("searched", "value", "reverse", "says"),
    [
        ("Encounter", "Encounter", False, "_include: 'Encounter' is not Type:parameter"),
        ("Encounter", "Observation:subject", False, "the search is of Encounter"),
        ("Encounter", "Encounter:code", False, "not a reference parameter the store indexes"),
        ("Encounter", "Encounter:patient:Organization", False, "never points to Organization"),
        ("Encounter", "Shoe:patient", False, "Shoe is not a FHIR R4 resource type"),
        ("Patient", "Observation:performer", True, "_revinclude: Observation:performer"),
        ("Patient", "Condition:subject:Group", True, "points to Group, not to Patient"),
        ("Organization", "Condition:patient", True, "never points to Organization"),
    ],
)
def test_a_bad_link_is_refused_naming_what_is_wrong(
    searched: str, value: str, reverse: bool, says: str
) -> None:
    with pytest.raises(InvalidSearchError, match=says.replace("*", r"\*")):
        link(searched, value, reverse=reverse)


def test_everything_follows_every_reference_that_may_point_to_a_patient() -> None:
    follows = patient_references()
    assert follows["Condition"] == ("patient", "subject")
    assert follows["CareTeam"] == ("patient", "subject", "participant")
    assert "service-provider" not in follows["Encounter"]
    assert "Patient" not in follows  # general-practitioner points to practices, not patients


def test_the_capability_statement_declares_includes_and_everything() -> None:
    statement = capability_statement("http://example.org/fhir/R4", "2026-06-01T12:00:00Z")
    CapabilityStatement.model_validate(statement)
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    patient = by_type["Patient"]
    assert patient["searchInclude"] == ["Patient:general-practitioner", "Patient:*"]
    assert {"Condition:subject", "Observation:patient", "CareTeam:participant"} <= set(
        patient["searchRevInclude"]
    )
    assert "Encounter:service-provider" in by_type["Encounter"]["searchInclude"]
    assert "searchInclude" not in by_type["Organization"]
    assert "Encounter:service-provider" in by_type["Organization"]["searchRevInclude"]
    assert "_include:iterate, _revinclude:iterate" in statement["rest"][0]["documentation"]
    assert "4 levels from the matches" in statement["rest"][0]["documentation"]
    operations = {o["name"]: o["definition"] for o in patient["operation"]}
    assert operations["everything"].endswith("OperationDefinition/Patient-everything")
    assert "everything" not in {o["name"] for o in by_type["Observation"]["operation"]}
