"""Where the records store lives: `JOINEDUP_RECORDS` (a SQLite file path, the default
`data/records.sqlite`, or a `postgresql://` URL); and `JOINEDUP_RECORDS_CODE_SYSTEMS`, a folder
of CodeSystem resources (the UK Core ones) that `$validate` checks codings against;
`JOINEDUP_RECORDS_SENSITIVE_CODES`, a CSV of sensitive codes to use instead of the shipped list
(records.consent)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RECORDS = "data/records.sqlite"


class RecordsSettings(BaseSettings):
    """The records store's settings, read from the environment."""

    model_config = SettingsConfigDict(env_prefix="JOINEDUP_")

    records: str = DEFAULT_RECORDS
    records_code_systems: Path | None = None
    #: A CSV of sensitive codes (records.consent) to use instead of the shipped list.
    records_sensitive_codes: Path | None = None
