"""The tables `joinedup ingest fhir` writes beside the canonical ones, column by column, for
docs/data-model.md. A test loads FHIR and checks each table's columns are exactly these."""

from __future__ import annotations

from joinedup.warehouse.schema import table_docs_markdown

FHIR_TABLE_DOCS: tuple[tuple[str, str, list[tuple[str, str]]], ...] = (
    (
        "fhir_resource",
        "The raw store: every resource ever loaded, one row per type, id and version. The "
        "canonical tables are rebuilt from the latest version of each.",
        [
            ("resource_type", "FHIR resource type."),
            ("id", "Resource id."),
            ("version_id", "`meta.versionId`, or `#` and a hash of the content when absent."),
            (
                "last_updated",
                "`meta.lastUpdated` as given; orders versions (as an instant) before versionId "
                "(as a number) and load order.",
            ),
            ("resource", "The resource as FHIR JSON."),
            ("load_id", "Load that stored this version."),
            ("load_seq", "Order of that load (1, 2, ...)."),
            ("source_file", "File it came from."),
            ("source_line", "Line of that file (1 for a whole-file resource or Bundle)."),
            ("load_order", "Position in its load, in the order read: later wins in a tie."),
        ],
    ),
    (
        "fhir_quarantine",
        "Records set aside: not readable, or failing a check. Identical records from a re-run "
        "are not added twice.",
        [
            ("load_id", "Load that found it."),
            ("source_file", "File."),
            ("source_line", "Line."),
            ("resource_type", "Resource type, when it could be read."),
            ("resource_id", "Resource id, when it could be read."),
            ("reason", "Every problem found, each naming the element."),
            ("content_hash", "Hash of the record and reason."),
            ("content", "The record as read (JSON), for correction and reload."),
        ],
    ),
    (
        "fhir_load",
        "One row per load.",
        [
            ("load_id", "Load id."),
            ("load_seq", "Order of the load."),
            ("started_at", "UTC start (ISO 8601)."),
            ("finished_at", "UTC end."),
            ("inputs", "Files read, as a JSON list."),
            ("resources_in_count", "Records read."),
            ("stored_count", "New resource versions stored."),
            ("unchanged_count", "Versions already stored."),
            ("quarantined_count", "Records quarantined."),
            ("joinedup_version", "Package version."),
        ],
    ),
    (
        "fhir_load_quality",
        "The data-quality report of each load, as rows: `section` is one of resources in, "
        "stored, unchanged, quarantined (by resource type), quarantine reasons, rows out (by "
        "table), unmapped codes, dangling references, people.",
        [
            ("load_id", "Load id."),
            ("section", "Part of the report."),
            ("item", "What is counted (a resource type, table, code or reference)."),
            ("detail", "More about it, e.g. the code system and code."),
            ("items_count", "How many."),
        ],
    ),
    (
        "procedure",
        "Procedures from FHIR Procedure resources (no synthetic counterpart).",
        [
            ("person_id", "Pseudonymous person key."),
            ("procedure_date", "Date performed."),
            ("code_system", "`snomed` or `opcs4`."),
            ("code", "Procedure code."),
            ("description", "Display text of the code."),
            ("status", "FHIR status."),
            ("organisation_code", "ODS code of the performing organisation, if given."),
        ],
    ),
    (
        "practitioner",
        "Practitioners from FHIR Practitioner resources.",
        [
            ("practitioner_key", "`Practitioner/<id>`."),
            ("identifier_system", "System of the first identifier (e.g. GMC, SDS user id)."),
            ("identifier_value", "Its value."),
            ("family", "Family name."),
            ("given", "First given name."),
            ("prefix", "Title."),
            ("gender", "Administrative gender."),
            ("qualification", "First qualification's display."),
        ],
    ),
    (
        "practitioner_role",
        "Practitioners' roles from FHIR PractitionerRole resources.",
        [
            ("role_key", "`PractitionerRole/<id>`."),
            ("practitioner_key", "The practitioner."),
            ("organisation_code", "ODS code of the organisation."),
            ("role_code", "Role code (e.g. SDS job role)."),
            ("role_display", "Its display."),
            ("specialty_code", "First specialty code."),
            ("active", "Whether the role is active."),
            ("start_date", "Start of the role."),
            ("end_date", "End of the role."),
        ],
    ),
    (
        "source_organisation",
        "Organisations as the FHIR sources describe them (the footprint tables stay as built).",
        [
            ("organization_key", "`Organization/<id>`."),
            ("ods_code", "ODS code."),
            ("name", "Name."),
            ("type_code", "First type code."),
            ("type_display", "Its display."),
            ("active", "Whether active."),
            ("part_of", "Parent organisation key."),
            ("postcode", "First address postcode."),
        ],
    ),
)


def render_fhir_markdown() -> str:
    """The data-model page's section on the FHIR ingest tables."""
    return table_docs_markdown(
        "FHIR ingest tables",
        "Written by `joinedup ingest fhir` (see [fhir.md](fhir.md)). Each load also rebuilds "
        "the canonical population tables above from the latest version of every stored "
        "resource.",
        FHIR_TABLE_DOCS,
    )
