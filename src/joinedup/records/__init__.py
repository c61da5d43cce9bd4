"""The shared care record's store: FHIR R4 (UK Core) resources, versioned, searchable, written
all-or-nothing, in SQLite or PostgreSQL. See docs/records.md."""

from __future__ import annotations

from joinedup.records.errors import (
    InvalidResourceError,
    InvalidSearchError,
    PreconditionFailedError,
    RecordsError,
    ResourceDeletedError,
    ResourceNotFoundError,
    TransactionFailedError,
    VersionConflictError,
)
from joinedup.records.loader import read_code_systems, read_folder, read_resource
from joinedup.records.operations import (
    ConditionalUpdate,
    Create,
    Delete,
    Operation,
    Outcome,
    Update,
)
from joinedup.records.parameters import SEARCH_PARAMETERS
from joinedup.records.policy import (
    BreakGlassError,
    Decision,
    Policy,
    Requester,
    Rule,
)
from joinedup.records.settings import DEFAULT_RECORDS, RecordsSettings
from joinedup.records.store import Grant, HistoryEntry, RecordStore, SearchPage, database_url
from joinedup.records.store.person_index import PersonIndexStore, ReviewPair, ReviewRecord
from joinedup.records.validation import CodeSystems, validate_resource

__all__ = [
    "DEFAULT_RECORDS",
    "SEARCH_PARAMETERS",
    "BreakGlassError",
    "CodeSystems",
    "ConditionalUpdate",
    "Create",
    "Decision",
    "Delete",
    "Grant",
    "HistoryEntry",
    "InvalidResourceError",
    "InvalidSearchError",
    "Operation",
    "Outcome",
    "PersonIndexStore",
    "Policy",
    "PreconditionFailedError",
    "RecordStore",
    "RecordsError",
    "RecordsSettings",
    "Requester",
    "ResourceDeletedError",
    "ResourceNotFoundError",
    "ReviewPair",
    "ReviewRecord",
    "Rule",
    "SearchPage",
    "TransactionFailedError",
    "Update",
    "VersionConflictError",
    "database_url",
    "read_code_systems",
    "read_folder",
    "read_resource",
    "validate_resource",
]
