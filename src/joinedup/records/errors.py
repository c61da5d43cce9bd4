"""What can go wrong in the records store, each a `JoinedupError` a person (or, later, the FHIR
API as an OperationOutcome) can act on. Messages name the resource and the element or parameter,
never a patient's details."""

from __future__ import annotations

from collections.abc import Sequence

from joinedup.errors import JoinedupError


class RecordsError(JoinedupError):
    """Base for the records store's refusals."""


class InvalidResourceError(RecordsError):
    """A resource failed validation; `problems` name each element and the rule it breaks."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.where = where
        self.problems = list(problems)
        shown = "; ".join(self.problems[:10])
        more = len(self.problems) - 10
        super().__init__(f"{where}: {shown}" + (f"; and {more} more" if more > 0 else ""))


class ResourceNotFoundError(RecordsError):
    """No such resource (or no such version of it)."""


class ResourceDeletedError(RecordsError):
    """The resource existed and its current version is a deletion."""


class VersionConflictError(RecordsError):
    """An update named a version (If-Match) that is not the current one."""


class PreconditionFailedError(RecordsError):
    """A conditional create or update matched more than one resource."""


class InvalidSearchError(RecordsError):
    """A search named a parameter the store does not index, or gave a value it cannot read."""


class TransactionFailedError(RecordsError):
    """One entry of a transaction failed, so none of it was written."""

    def __init__(self, index: int, cause: RecordsError) -> None:
        self.index = index
        self.cause = cause
        super().__init__(f"transaction entry {index}: {cause} (nothing was written)")
