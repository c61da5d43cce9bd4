"""`joinedup users proxy` and `users proxies`: a proxy relationship recorded at the command line
with its last day, listed as active, expired or revoked, audited with the relationship; a bad or
past `--until` refused in one line naming it, before anything is written. A parent's access
lasts until the day before the child's 16th birthday, from their Patient's birthDate in the
records store (test_records_proxy_age.py checks the age rule itself on both databases)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from joinedup.cli.main import app as cli
from joinedup.cli.main import console
from joinedup.errors import InputError
from joinedup.records import RecordStore
from joinedup.web.access import AccessStore
from joinedup.web.settings import WebSettings

ENV = {"JOINEDUP_NEW_PASSWORD": "a long enough password", "COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' console 200 columns wide whatever the environment was when it was made:
    Rich keeps a COLUMNS it found then (CI's suite had one, and `users proxies` wrapped and
    cut its columns), so the ENV given to each run alone is not enough."""
    monkeypatch.setattr(console, "_width", 200)


def joinedup(*args: str) -> Result:
    """`joinedup ARGS` in this process (the installed command's start-up is seconds a call)."""
    return CliRunner().invoke(cli, list(args), env=ENV)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_proxy_relationship_is_recorded_listed_and_revoked(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse.duckdb")
    records = str(tmp_path / "records.sqlite")
    with RecordStore(records) as store:  # two children, both 16 on 1 January 2036
        for child in ("child-1", "child-2"):
            store.update({"resourceType": "Patient", "id": child, "birthDate": "2020-01-01"})
    w = ("-w", warehouse, "--records", records)
    added = joinedup("users", "add", "mum", "--role", "citizen", "--patient", "own-1", *w[:2])
    assert added.exit_code == 0, added.output
    last_day = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()

    for until, says in (
        ("soon", "'soon' is not a date (YYYY-MM-DD)"),
        ("2020-01-01", "has passed"),
    ):
        bad = joinedup(
            "users", "proxy", "mum", "--patient", "child-1", "--relationship", "parent",
            "--until", until, *w,
        )  # fmt: skip
        assert isinstance(bad.exception, InputError), bad.output
        assert bad.exception.where == "--until" and says in str(bad.exception)
    none = joinedup("users", "proxies", *w[:2])
    assert none.exit_code == 0 and "0 recorded." in flat(none.stdout)

    said = []
    for patient, until in (("child-1", ("--until", last_day)), ("child-2", ())):
        made = joinedup(
            "users", "proxy", "mum", "--patient", patient, "--relationship", "parent", *until,
            *w,
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        said.append(flat(made.stdout))
    review = (
        " Comes up for review on 2031-01-01 (the person's 11th birthday): from then suspended "
        "until the person's GP practice renews it (joinedup users renew-proxy mum --patient "
        "{} --by REVIEWER)."
    )
    assert said == [
        f"mum now sees, as parent through {last_day}, Patient/child-1's record; proxy for 1 "
        "in all." + review.format("child-1"),
        "mum now sees, as parent through 2035-12-31, Patient/child-2's record; proxy for 2 "
        "in all." + review.format("child-2"),
    ]
    revoked = joinedup(
        "users", "proxy", "mum", "--patient", "child-2", "--relationship", "parent", "--revoke",
        *w,
    )  # fmt: skip
    assert "no longer sees Patient/child-2's record; proxy for 1 in all" in flat(revoked.stdout)

    listed = joinedup("users", "proxies", "mum", *w[:2])
    rows = [
        [cell for cell in line.split() if cell.isascii() and cell not in ("|", "-")]
        for line in listed.stdout.splitlines()
        if "child-" in line
    ]
    today = datetime.now(UTC).date().isoformat()
    assert rows == [
        ["mum", "child-1", "parent", today, last_day, "--until", "active"],
        ["mum", "child-2", "parent", today, "2035-12-31", "the", "day", "before", "the",
         "person's", "16th", "birthday", "revoked"],
    ]  # fmt: skip
    assert "2 recorded." in flat(listed.stdout)

    settings = WebSettings(warehouse=Path(warehouse))
    with sqlite3.connect(settings.access_path) as con:  # its last day passes
        con.execute("UPDATE proxies SET until_date = '2020-01-01' WHERE patient_id = 'child-1'")
    expired = joinedup("users", "proxies", *w[:2])
    assert "expired" in expired.stdout and "active" not in expired.stdout

    access = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    try:
        entries = access.audit_entries(limit=100)[1]
    finally:
        access.close()
    proxies = [(e["action"], e["detail"]) for e in reversed(entries) if "proxy" in e["action"]]
    assert proxies == [
        ("proxy granted", f"as parent until {last_day}"),
        ("proxy granted", "as parent until the day before the person's 16th birthday"),
        ("proxy revoked", "as parent"),
    ]
