"""The CapabilityStatement at `/fhir/R4/metadata`, made from what the server really does: the
interactions the routes implement and the search parameters the store indexes."""

from __future__ import annotations

from typing import Any

from joinedup import __version__
from joinedup.fhir.validate import R4_RESOURCE_TYPES
from joinedup.records import SEARCH_PARAMETERS
from joinedup.web.records_api import audit_events
from joinedup.web.records_api.interactions import MAX_INCLUDE_DEPTH, MAX_INCLUDES

#: The interactions every resource type has (the routes in `routes`).
INTERACTIONS = (
    "read", "vread", "update", "delete", "history-instance", "history-type", "create",
    "search-type",
)  # fmt: skip
#: What the Bulk Data operations do (web.records_api.bulk_export).
BULK_EXPORT = (
    "SMART/HL7 Bulk Data kick-off: GET with Prefer: respond-async; _type, _since and "
    "_outputFormat (application/fhir+ndjson) supported; 202 with the status URL in "
    "Content-Location, whose manifest lists NDJSON files that need the same bearer token. "
    "System and admin roles only."
)
PAGING = (
    (
        "_count",
        "number",
        "Resources a page holds (default 50, at most 1000; 0 for the total only).",
    ),
    ("_offset", "number", "Where the page starts (the Bundle's next and previous links set it)."),
)


def _search_parameters(kind: str) -> list[dict[str, Any]]:
    found = [{"name": "_id", "type": "token", "documentation": "The resource's id."}]
    for name, parameter in sorted(SEARCH_PARAMETERS.get(kind, {}).items()):
        found.append(
            {
                "name": name,
                "type": parameter.kind,
                "documentation": "Reads " + ", ".join(parameter.paths) + ".",
            }
        )
    return found


def _includes(kind: str) -> list[str]:
    """`_include` values of a search of `kind`: each indexed reference parameter, and `*`."""
    known = SEARCH_PARAMETERS.get(kind, {})
    found = [f"{kind}:{name}" for name, p in sorted(known.items()) if p.kind == "reference"]
    return [*found, f"{kind}:*"] if found else []


def _revincludes(kind: str) -> list[str]:
    """`_revinclude` values of a search of `kind`: the indexed reference parameters of every
    type that may point to a `kind`."""
    return [
        f"{source}:{name}"
        for source, known in sorted(SEARCH_PARAMETERS.items())
        for name, p in sorted(known.items())
        if p.kind == "reference" and (not p.targets or kind in p.targets)
    ]


def _resource(kind: str) -> dict[str, Any]:
    if kind == "AuditEvent":  # the audit trail: read and search only
        return audit_events.capability()
    operations = [
        {
            "name": "validate",
            "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            "documentation": (
                "POST {type}/$validate, or POST {type}/{id}/$validate to check it as an update "
                "of that id (its id must be the URL's; mode, if given, update)."
            ),
        }
    ]
    if kind == "Patient":
        operations.append(
            {
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                "documentation": (
                    "GET Patient/{id}/$everything: the patient and every resource pointing to "
                    "them, paged by _count (next links); _since and _type supported. "
                    "linked=true adds the same person's other Patients by the master person "
                    "index, each allowed and audited on its own, their entries marked with the "
                    "extension https://fhir.joinedup.org/StructureDefinition/person-index-link "
                    "on Bundle.entry.search."
                ),
            }
        )
        operations.append(
            {
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                "documentation": BULK_EXPORT
                + " Patient/$export writes Patient and the types indexed by patient.",
            }
        )
    return {
        "type": kind,
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalDelete": "not-supported",
        **({"searchInclude": _includes(kind)} if _includes(kind) else {}),
        **({"searchRevInclude": _revincludes(kind)} if _revincludes(kind) else {}),
        "searchParam": _search_parameters(kind),
        "operation": operations,
    }


def capability_statement(base: str, instant: str) -> dict[str, Any]:
    """What this server does, for a client to read before it asks anything else."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant,
        "publisher": "joinedup",
        "kind": "instance",
        "software": {"name": "joinedup", "version": __version__},
        "implementation": {"description": "joinedup records store", "url": base},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Only the admin and system roles may use this API until access by legitimate "
                    "relationship is in place; every request is audited. Searches take the "
                    "searchInclude and searchRevInclude values listed, and with :iterate "
                    "(_include:iterate, _revinclude:iterate) any type's, followed from the "
                    f"included resources too, {MAX_INCLUDE_DEPTH} levels from the matches at "
                    f"most, {MAX_INCLUDES:,} included a page at most."
                ),
                "security": {"description": "A bearer token from POST /api/v1/token."},
                "resource": [_resource(kind) for kind in sorted(R4_RESOURCE_TYPES)],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": BULK_EXPORT,
                    }
                ],
                "searchParam": [
                    {"name": name, "type": kind, "documentation": text}
                    for name, kind, text in PAGING
                ]
                + [
                    {
                        "name": "_sort",
                        "type": "string",
                        "documentation": "Keys by commas: _id, _lastUpdated or a date or "
                        "string parameter of the type, - for descending.",
                    }
                ],
            }
        ],
    }
