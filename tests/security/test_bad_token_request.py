"""`joinedup users token NAME --hours H` given bad input, as a mistyped script or a careless
operator would: an unknown user, a lifetime that is not a number, zero, negative, not finite
or over a year, and a warehouse with no access database at all. Each is refused in one line
naming the parameter, with a non-zero exit code, no token on standard output, and nothing
written: the access database, its audit key and the folder are byte for byte as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cli_run import joinedup

pytestmark = pytest.mark.security

ENV = {"JOINEDUP_NEW_PASSWORD": "a long enough password"}


@pytest.fixture(scope="module")
def feed_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse path whose access database holds one system user, `feed`."""
    folder = tmp_path_factory.mktemp("token-input")
    warehouse = folder / "warehouse.duckdb"
    added = joinedup(
        "users", "add", "feed", "--role", "system", "-w", str(warehouse), cwd=folder, env=ENV
    )
    assert added.returncode == 0, added.stdout + added.stderr
    return warehouse


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_refused(args: tuple[str, ...], folder: Path, parameter: str, words: str) -> None:
    before = snapshot(folder)
    run = joinedup("users", "token", *args, cwd=folder)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0, run.stdout + run.stderr
    assert run.stdout == "", run.stdout  # no token, not even a partial one
    assert len(lines) == 1, run.stderr  # one line, no usage box or traceback
    assert lines[0].startswith(f"error: {parameter}: "), lines[0]
    assert words in lines[0], lines[0]
    assert snapshot(folder) == before  # nothing written, not even an audit entry


@pytest.mark.parametrize(
    ("hours", "words"),
    [
        ("0", "more than 0"),
        ("-0.5", "more than 0"),
        ("1e400", "at most 8784"),  # infinite once parsed
        ("nan", "more than 0"),
        ("abc", "'abc' is not a number"),
        ("", "'' is not a number"),
    ],
)
def test_a_bad_lifetime_is_refused_naming_hours(
    feed_warehouse: Path, hours: str, words: str
) -> None:
    args = ("feed", f"--hours={hours}", "-w", str(feed_warehouse))
    assert_refused(args, feed_warehouse.parent, "--hours", words)


def test_an_unknown_user_is_refused_naming_the_user(feed_warehouse: Path) -> None:
    args = ("nobody", "--hours", "2", "-w", str(feed_warehouse))
    assert_refused(args, feed_warehouse.parent, "NAME", "'nobody' is not an active user")


def test_no_access_database_is_refused_without_creating_one(tmp_path: Path) -> None:
    warehouse = tmp_path / "none" / "warehouse.duckdb"
    args = ("feed", "--hours", "2", "-w", str(warehouse))
    assert_refused(args, tmp_path, "NAME", "no access database at")
    assert not (tmp_path / "none").exists()


def test_a_good_request_still_issues_a_token(feed_warehouse: Path) -> None:
    """The refusals above are not everything refused: the same user and a fractional
    lifetime get a token (so the tests above can fail)."""
    run = joinedup("users", "token", "feed", "--hours", "0.5", "-w", str(feed_warehouse),
                   cwd=feed_warehouse.parent)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(run.stdout.strip()) >= 40
