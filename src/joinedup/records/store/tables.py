"""The records store's tables: every resource's current version, every version ever written
(append-only), and one index table per kind of search parameter with typed, indexed columns.

Instants are stored as UTC without an offset (`UtcDateTime`) so SQLite and PostgreSQL hold and
compare them alike; bodies are the JSON text exactly as written, so a read gives back what
was stored, number for number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: written from an aware datetime as UTC, read back as an aware UTC one."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("an instant needs a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()


def _keys() -> list[Column[Any]]:
    return [
        Column("resource_type", String(64), nullable=False),
        Column("resource_id", String(64), nullable=False),
    ]


resources = Table(
    "resources",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", UtcDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("body", Text, nullable=True),  # None once deleted
    Index("ix_resources_last_updated", "resource_type", "last_updated"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", UtcDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("body", Text, nullable=True),
)

search_tokens = Table(
    "search_tokens",
    metadata,
    *_keys(),
    Column("parameter", String(64), nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=False),
    Index("ix_search_tokens_value", "resource_type", "parameter", "code", "system"),
    Index("ix_search_tokens_resource", "resource_type", "resource_id"),
)

search_strings = Table(
    "search_strings",
    metadata,
    *_keys(),
    Column("parameter", String(64), nullable=False),
    Column("value", String(512), nullable=False),
    Index("ix_search_strings_value", "resource_type", "parameter", "value"),
    Index("ix_search_strings_resource", "resource_type", "resource_id"),
)

search_dates = Table(
    "search_dates",
    metadata,
    *_keys(),
    Column("parameter", String(64), nullable=False),
    Column("low", UtcDateTime, nullable=False),
    Column("high", UtcDateTime, nullable=False),
    Index("ix_search_dates_value", "resource_type", "parameter", "low", "high"),
    Index("ix_search_dates_resource", "resource_type", "resource_id"),
)

search_references = Table(
    "search_references",
    metadata,
    *_keys(),
    Column("parameter", String(64), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(64), nullable=False),
    Index("ix_search_references_value", "resource_type", "parameter", "target_id", "target_type"),
    Index("ix_search_references_resource", "resource_type", "resource_id"),
)

INDEX_TABLES = (search_tokens, search_strings, search_dates, search_references)

#: Break-glass grants (records.policy): who may read which patient's record until when, and
#: the reason they gave. Append-only; a grant stops working at `expires_at`.
access_grants = Table(
    "access_grants",
    metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_access_grants_user", "username", "patient_id", "expires_at"),
    Index("ix_access_grants_granted", "granted_at"),
)

#: Whose record an objection to sharing withholds, kept as rows (records.store.withheld) so a
#: search keeps them back by one indexed anti-join rather than finding every objecting
#: Patient in the store. A row (key, P, Q, organisation): Patient P's record is withheld
#: because Patient Q (P itself, or another Patient the master person index makes the same
#: person under the identifier systems mapping `systems_key`; '' for P's own objections
#: only) has an active objection to sharing, and `organisation` recorded one of Q's
#: objections ('' on the one row a (P, Q) always has): so P is withheld from users of
#: organisations O when some Q of P has no row of an organisation in O. Written in the same
#: transaction as each Consent write, each Patient write that moves a Patient between
#: people, and each person index run.
withheld_patients = Table(
    "withheld_patients",
    metadata,
    Column("systems_key", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("objecting_id", String(64), primary_key=True),
    Column("organisation", String(64), primary_key=True),
    Index("ix_withheld_patients_objecting", "systems_key", "objecting_id"),
)

#: The keys of `withheld_patients` whose rows are built: a store made before the table had
#: none, and builds them when it is opened (records.store.withheld.build_missing).
withheld_built = Table(
    "withheld_built",
    metadata,
    Column("systems_key", String(64), primary_key=True),
)
