"""Where the records store lives: a SQLite path or a PostgreSQL URL, from an argument or
JOINEDUP_RECORDS, and a clear refusal (never showing a password) when it cannot be opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import ConfigurationError
from joinedup.records import DEFAULT_RECORDS, RecordsSettings, RecordStore, database_url


def test_a_path_is_a_sqlite_file(tmp_path: Path) -> None:
    assert database_url(tmp_path / "r.sqlite") == f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_a_postgresql_url_is_opened_with_psycopg(scheme: str) -> None:
    url = database_url(f"{scheme}://joinedup:pw@db.example:5433/records")
    assert url == "postgresql+psycopg://joinedup:pw@db.example:5433/records"


def test_another_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="mysql is not a supported database"):
        database_url("mysql://root@localhost/records")


def test_a_store_that_cannot_be_reached_is_refused_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://joinedup:s3cret@/records?host={tmp_path}&port=1"
    with pytest.raises(ConfigurationError, match="records: cannot open") as caught:
        RecordStore(url)
    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)  # one line


def test_a_new_sqlite_store_makes_its_folder(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "deep" / "er" / "records.sqlite") as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "deep" / "er" / "records.sqlite").is_file()


def test_the_setting_comes_from_joinedup_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOINEDUP_RECORDS", raising=False)
    assert RecordsSettings().records == DEFAULT_RECORDS
    monkeypatch.setenv("JOINEDUP_RECORDS", "postgresql://joinedup@/records")
    assert RecordsSettings().records == "postgresql://joinedup@/records"
