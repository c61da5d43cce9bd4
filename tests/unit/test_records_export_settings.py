"""Where Bulk Data `$export` writes its files and for how long (records.settings): beside a
SQLite store by default, where JOINEDUP_RECORDS_EXPORTS says otherwise, and a bad retention
named by its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import ConfigurationError
from joinedup.records import RecordsSettings


def test_the_exports_folder_is_beside_a_sqlite_store_unless_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JOINEDUP_RECORDS_EXPORTS", raising=False)
    monkeypatch.delenv("JOINEDUP_RECORDS", raising=False)
    settings = RecordsSettings()
    assert settings.exports_folder() == Path("data/records-exports")
    assert settings.exports_folder(str(tmp_path / "r.sqlite")) == tmp_path / "records-exports"
    assert settings.exports_folder(f"sqlite:///{tmp_path}/r.sqlite") == tmp_path / "records-exports"
    assert settings.exports_folder("postgresql://u@/db") == Path("data/records-exports")
    assert settings.records_export_hours == 24
    monkeypatch.setenv("JOINEDUP_RECORDS_EXPORTS", str(tmp_path / "elsewhere"))
    assert RecordsSettings().exports_folder(str(tmp_path / "r.sqlite")) == tmp_path / "elsewhere"


@pytest.mark.parametrize("hours", ["0", "-1", "a day"])
def test_a_bad_retention_is_named(monkeypatch: pytest.MonkeyPatch, hours: str) -> None:
    monkeypatch.setenv("JOINEDUP_RECORDS_EXPORT_HOURS", hours)
    with pytest.raises(ConfigurationError, match="JOINEDUP_RECORDS_EXPORT_HOURS"):
        RecordsSettings()
