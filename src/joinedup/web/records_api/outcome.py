"""Errors of the FHIR API as OperationOutcome resources with their HTTP status: each issue
names the element (or parameter) in `expression` and the reason in `diagnostics`, never a
value from the record."""

from __future__ import annotations

import json
from typing import Any

from joinedup.records import (
    InvalidResourceError,
    InvalidSearchError,
    PreconditionFailedError,
    RecordsError,
    ResourceDeletedError,
    ResourceNotFoundError,
    TransactionFailedError,
    VersionConflictError,
)

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    """A refusal to answer with `status` and an OperationOutcome of `issues`, each (FHIR
    issue code, element or None, reason)."""

    def __init__(
        self,
        status: int,
        issues: list[tuple[str, str | None, str]],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.issues = issues
        self.headers = headers or {}
        super().__init__("; ".join(reason for _, _, reason in issues))

    @classmethod
    def one(
        cls, status: int, code: str, reason: str, element: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> FhirError:  # fmt: skip
        return cls(status, [(code, element, reason)], headers)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(
    issues: list[tuple[str, str | None, str]], severity: str = "error"
) -> dict[str, Any]:
    """An OperationOutcome of `issues`: (code, element, reason)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": code,
                "diagnostics": reason,
                **({"expression": [element]} if element else {}),
            }
            for code, element, reason in issues
        ],
    }


def _split(problem: str) -> tuple[str | None, str]:
    """`Patient.gender: reason` as (element, reason); a problem naming no element as (None, it)."""
    head, sep, rest = problem.partition(": ")
    if sep and head and " " not in head:
        return head, rest
    return None, problem


def from_records(err: RecordsError, *, if_match: bool = False) -> FhirError:
    """The HTTP status and OperationOutcome of a records store refusal. A version conflict is
    412 when the client named a version (If-Match) and 409 when another writer won a race."""
    if isinstance(err, TransactionFailedError):
        inner = from_records(err.cause, if_match=if_match)
        prefix = f"transaction entry {err.index}: "
        return FhirError(
            inner.status,
            [
                (code, el, prefix + reason + " (nothing was written)")
                for code, el, reason in inner.issues
            ],
        )
    if isinstance(err, InvalidResourceError):
        issues: list[tuple[str, str | None, str]] = []
        for problem in err.problems:
            element, reason = _split(problem)
            issues.append(("invalid", element, reason))
        return FhirError(422, issues or [("invalid", None, str(err))])
    if isinstance(err, InvalidSearchError):
        element, reason = _split(str(err))
        return FhirError.one(400, "invalid", reason, element)
    if isinstance(err, ResourceDeletedError):
        return FhirError.one(410, "deleted", str(err))
    if isinstance(err, ResourceNotFoundError):
        return FhirError.one(404, "not-found", str(err))
    if isinstance(err, VersionConflictError):
        return FhirError.one(412 if if_match else 409, "conflict", str(err))
    if isinstance(err, PreconditionFailedError):
        return FhirError.one(412, "duplicate", str(err))
    return FhirError.one(400, "processing", str(err))


def outcome_body(content: dict[str, Any]) -> bytes:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
