"""Where the records store lives: `JOINEDUP_RECORDS` (a SQLite file path, the default
`data/records.sqlite`, or a `postgresql://` URL)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RECORDS = "data/records.sqlite"


class RecordsSettings(BaseSettings):
    """The records store's settings, read from the environment."""

    model_config = SettingsConfigDict(env_prefix="JOINEDUP_")

    records: str = DEFAULT_RECORDS
