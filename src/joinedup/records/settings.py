"""Where the records store lives: `JOINEDUP_RECORDS` (a SQLite file path, the default
`data/records.sqlite`, or a `postgresql://` URL); and `JOINEDUP_RECORDS_CODE_SYSTEMS`, a folder
of CodeSystem resources (the UK Core ones) that `$validate` checks codings against;
`JOINEDUP_RECORDS_SENSITIVE_CODES`, a CSV of sensitive codes to use instead of the shipped list
(records.consent); `JOINEDUP_RECORDS_EXPORTS`, the folder Bulk Data `$export` writes its
files in (default `records-exports` beside a SQLite store, else `data/records-exports`), and
`JOINEDUP_RECORDS_EXPORT_HOURS`, how long a finished export's files are kept (default 24);
`JOINEDUP_RECORDS_INDEX_SOURCES`, each person index source's identifier system, as JSON;
`JOINEDUP_RECORDS_PROXY_END_AGE`, the birthday on which a parent's or guardian's proxy
access ends (default and most 16, records.proxy_age); `JOINEDUP_RECORDS_PROXY_REVIEW_AGE`,
the one from which it is suspended until their GP practice renews it after review (default
11, at most 13); `JOINEDUP_RECORDS_PROXY_NOTICE_DAYS`, how many days ahead the proxy and the
person are told of an end or a review (default 30)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from joinedup.errors import ConfigurationError
from joinedup.records.proxy_age import (
    DEFAULT_PROXY_END_AGE,
    DEFAULT_PROXY_NOTICE_DAYS,
    DEFAULT_PROXY_REVIEW_AGE,
    MAX_PROXY_REVIEW_AGE,
)

DEFAULT_RECORDS = "data/records.sqlite"


class RecordsSettings(BaseSettings):
    """The records store's settings, read from the environment; a bad one is a
    ConfigurationError naming its variable."""

    model_config = SettingsConfigDict(env_prefix="JOINEDUP_")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except SettingsError as err:  # a value that should be JSON and is not
            field = re.search(r'field "(\w+)"', str(err))
            name = f"JOINEDUP_{field.group(1).upper()}" if field else "a JOINEDUP_ variable"
            raise ConfigurationError(f"records settings: {name}: not valid JSON") from None
        except ValidationError as err:
            problems = "; ".join(
                f"JOINEDUP_{'.'.join(str(x) for x in e['loc']).upper()}: {e['msg']}"
                for e in err.errors()
            )
            raise ConfigurationError(f"records settings: {problems}") from None

    records: str = DEFAULT_RECORDS
    records_code_systems: Path | None = None
    #: A CSV of sensitive codes (records.consent) to use instead of the shipped list.
    records_sensitive_codes: Path | None = None
    #: Where Bulk Data `$export` writes its files (records.exports); see `exports_folder`.
    records_exports: Path | None = None
    #: Hours a finished export's files are kept before they are removed.
    records_export_hours: float = Field(default=24.0, gt=0)
    #: The identifier system of each master person index source's local ids, as JSON
    #: (`{"gp": "https://gp.example.org/patient-id"}`): how `$everything` finds the same
    #: person's other Patients (`ingest fhir --index-source NAME=SYSTEM`'s rule).
    records_index_sources: dict[str, str] = Field(default_factory=dict)
    #: The birthday on which a parent's or guardian's proxy access ends (records.proxy_age):
    #: 16 by NHS England's rule that clinical systems suspend proxy access at 16; a practice
    #: may choose an earlier one, never a later one.
    records_proxy_end_age: int = Field(
        default=DEFAULT_PROXY_END_AGE, ge=1, le=DEFAULT_PROXY_END_AGE
    )
    #: The birthday from which a parent's or guardian's proxy access is suspended until the
    #: child's GP practice renews it after review (records.proxy_age): 11 by the RCGP's
    #: guidance for general practice; NHS England's DAPB3051 7.2 asks for 13 or earlier, set by
    #: local policy. One at or above the end age gives no review (the end comes first).
    records_proxy_review_age: int = Field(
        default=DEFAULT_PROXY_REVIEW_AGE, ge=1, le=MAX_PROXY_REVIEW_AGE
    )
    #: How many days before a proxy's access ends or comes up for review the proxy and the
    #: person are told on their record's page; a renewal counts for a review from this many
    #: days before it.
    records_proxy_notice_days: int = Field(default=DEFAULT_PROXY_NOTICE_DAYS, ge=0, le=366)

    def exports_folder(self, records: str | None = None) -> Path:
        """The exports folder for the store at `records` (else this setting's): the
        `records_exports` setting, else `records-exports` beside a SQLite store's file, else
        `data/records-exports`."""
        if self.records_exports is not None:
            return self.records_exports
        target = records or self.records
        if "://" not in target:
            return Path(target).parent / "records-exports"
        if target.startswith("sqlite:///") and target != "sqlite:///:memory:":
            return Path(target.removeprefix("sqlite:///")).parent / "records-exports"
        return Path("data/records-exports")
