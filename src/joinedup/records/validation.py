"""Checks every resource passes before the store writes it: the structure of FHIR R4 (the
fhir.resources models; they are R4B, which is R4 plus additions, the same models
`joinedup.fhir` reads UK Core with) and joinedup's own rules (`joinedup.fhir.validate`: NHS
numbers pass Modulus 11, dates exist on the calendar, references point where they may), and
the required code bindings of the elements the store searches by. Given the UK Core code systems
(`CodeSystems`, read from a folder by `records.loader.read_code_systems`), `$validate` also
checks every coding that names one of them holds one of its codes.

Problems name the element and the reason (`Patient.birthDate: ...`), never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from joinedup.fhir.validate import R4_RESOURCE_TYPES, problems
from joinedup.records.errors import InvalidResourceError


def _path(kind: str, loc: tuple[int | str, ...]) -> str:
    text = kind
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def structure_problems(resource: dict[str, Any]) -> list[str]:
    """What FHIR's own structure rules refuse in `resource` (unknown elements, wrong types,
    missing required elements), each as `Type.element: reason`."""
    kind = resource["resourceType"]
    try:
        model = get_fhir_model_class(kind)
    except (KeyError, ValueError):
        return [f"{kind}: not a resource type the store can validate"]
    try:
        model.model_validate(resource)
    except ValidationError as err:
        found = []
        for error in err.errors():
            reason = error["msg"].removeprefix("Value error, ")
            found.append(f"{_path(kind, tuple(error['loc']))}: {reason}")
        return found
    return []


#: Codes with a required binding in FHIR R4 on the elements the store searches by: any other
#: code is an error (the models check structure, not bindings).
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
         "entered-in-error", "unknown"}
    ),
    ("Encounter", "status"): frozenset(
        {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
         "entered-in-error", "unknown"}
    ),
    ("MedicationRequest", "status"): frozenset(
        {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft",
         "unknown"}
    ),
    ("MedicationStatement", "status"): frozenset(
        {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown",
         "not-taken"}
    ),
    ("Immunization", "status"): frozenset({"completed", "entered-in-error", "not-done"}),
    ("Procedure", "status"): frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
         "entered-in-error", "unknown"}
    ),
    ("EpisodeOfCare", "status"): frozenset(
        {"planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"}
    ),
    ("Consent", "status"): frozenset(
        {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
    ),
    ("Condition", "clinicalStatus"): frozenset(
        {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
    ),
    ("AllergyIntolerance", "clinicalStatus"): frozenset({"active", "inactive", "resolved"}),
}  # fmt: skip


def binding_problems(resource: dict[str, Any]) -> list[str]:
    """Codes outside their required binding (`REQUIRED_CODES`), naming the element."""
    kind = resource["resourceType"]
    found: list[str] = []
    for (owner, element), allowed in REQUIRED_CODES.items():
        value = resource.get(element) if owner == kind else None
        codes: list[tuple[str, Any]]
        if isinstance(value, str):
            codes = [(f"{kind}.{element}", value)]
        elif isinstance(value, dict) and isinstance(value.get("coding"), list):
            codes = [
                (f"{kind}.{element}.coding[{i}].code", c.get("code"))
                for i, c in enumerate(value["coding"])
                if isinstance(c, dict)
            ]
        else:
            continue
        found.extend(
            f"{path}: not a code of its required value set ({', '.join(sorted(allowed))})"
            for path, code in codes
            if code not in allowed
        )
    return found


@dataclass(frozen=True)
class CodeSystems:
    """The codes of complete code systems by canonical URL (the UK Core CodeSystems), to check
    codings against. A system whose `content` is not `complete` (a fragment, or codes not
    listed) is not checked: a code missing from it may still be right."""

    codes: Mapping[str, frozenset[str]]
    #: Systems whose codes match ignoring case (CodeSystem.caseSensitive false).
    case_insensitive: frozenset[str] = frozenset()

    @classmethod
    def of(cls, code_systems: Iterable[dict[str, Any]]) -> CodeSystems:
        """From CodeSystem resources (FHIR JSON); each concept's nested concepts count too."""
        codes: dict[str, frozenset[str]] = {}
        folded: set[str] = set()
        for system in code_systems:
            url = system.get("url")
            if system.get("content") != "complete" or not isinstance(url, str):
                continue
            insensitive = system.get("caseSensitive") is False
            found = frozenset(
                code.lower() if insensitive else code for code in _concepts(system.get("concept"))
            )
            codes[url] = codes.get(url, frozenset()) | found
            if insensitive:
                folded.add(url)
        return cls(codes, frozenset(folded))

    def __len__(self) -> int:
        return len(self.codes)

    def problems(self, resource: dict[str, Any]) -> list[str]:
        """Codings whose `system` is one of these code systems and whose `code` is not one of
        its codes, each as `Type.path.code: reason` (the code itself is not repeated)."""
        found = []
        for path, coding in _codings(resource, str(resource.get("resourceType"))):
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or system not in self.codes:
                continue
            wanted = (
                code.lower() if isinstance(code, str) and system in self.case_insensitive else code
            )
            if wanted not in self.codes[system]:
                found.append(f"{path}.code: not a code of the code system {system}")
        return found


def _concepts(concepts: Any) -> Iterator[str]:
    for concept in concepts or []:
        if isinstance(concept, dict):
            if isinstance(concept.get("code"), str):
                yield concept["code"]
            yield from _concepts(concept.get("concept"))


def _codings(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object with a `system` and a `code` (a Coding) in `node`, with its path."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _codings(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        if "system" in node and "code" in node:
            yield path, node
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _codings(value, f"{path}.{key}")


def validate_resource(resource: Any, code_systems: CodeSystems | None = None) -> None:
    """Raise `InvalidResourceError` naming every problem with `resource`, or return if it may be
    stored. The resource's id must already be set (the store assigns ids before checking).
    With `code_systems`, codings of those systems must hold one of their codes too."""
    if not isinstance(resource, dict):
        raise InvalidResourceError("resource", ["not a JSON object"])
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind not in R4_RESOURCE_TYPES:
        raise InvalidResourceError("resource", ["resourceType is missing or not a FHIR R4 type"])
    found = problems(resource) + structure_problems(resource) + binding_problems(resource)
    if code_systems is not None:
        found += code_systems.problems(resource)
    found = list(dict.fromkeys(found))
    if found:
        raise InvalidResourceError(f"{kind}/{resource.get('id')}", found)
