"""The writes a transaction is made of: plain values, so a caller (a FHIR transaction Bundle,
an ingest feed, a test) builds a list of them and the store applies it all or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Create:
    """Create `resource` with a server-assigned id; with `if_none_exist` (a search such as
    `identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009`), only when nothing matches."""

    resource: dict[str, Any]
    if_none_exist: str | None = None


@dataclass(frozen=True)
class Update:
    """Write a new version of `resource` (at its `id`; created if absent). With `if_match`,
    only when the current version is that number. With `if_changed`, nothing is written when
    the current version already holds the same content (`meta.versionId` and
    `meta.lastUpdated` aside), so a bulk load run twice makes no new versions."""

    resource: dict[str, Any]
    if_match: int | None = None
    if_changed: bool = False


@dataclass(frozen=True)
class ConditionalUpdate:
    """Update the one resource matching `criteria` (a search), or create it if none does."""

    resource: dict[str, Any]
    criteria: str


@dataclass(frozen=True)
class Delete:
    """Delete a resource: a new version flagged deleted (earlier versions stay readable)."""

    resource_type: str
    resource_id: str


Operation = Create | Update | ConditionalUpdate | Delete


@dataclass(frozen=True)
class Outcome:
    """What a write did: the resource as stored (None for a delete), whether it was created
    rather than updated, and the version it now has. `changed` is False when an update
    `if_changed` found the same content stored and wrote nothing."""

    resource_type: str
    resource_id: str
    version_id: int
    created: bool
    resource: dict[str, Any] | None
    changed: bool = True
