"""The master person index as a folder of CSV files: written whole or not at all, read back
as the next run's previous index, and decisions files refused in one line naming the row and
column."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.linkage import mpi_files
from joinedup.linkage.mpi import (
    Decision,
    Link,
    MasterPersonIndex,
    build_index,
    link_table,
    record_table,
)
from joinedup.linkage.mpi_files import read_decisions, read_previous, write_index
from joinedup.warehouse import open_empty_engine

RUN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
DECISIONS = (
    "left_source,left_record_id,right_source,right_record_id,decision,decided_by,decided_at,reason"
)


def _index() -> MasterPersonIndex:
    records = [("gp", "g1"), ("gp", "g2"), ("acute", "a1"), ("acute", "a2")]
    links = [
        Link(("gp", "g1"), ("acute", "a1"), "nhs_number", 1.0, 21.5, "same, NHS number"),
        Link(("gp", "g2"), ("acute", "a2"), "splink", 0.6, 0.58, "Exact match on sex"),
    ]
    decision = Decision(("gp", "g2"), ("acute", "a1"), "reject", "dana", RUN, "twins")
    with open_empty_engine("duckdb") as engine:
        return build_index(
            engine, record_table(records), link_table(links), threshold=0.9,
            decisions=[decision], run_at=RUN,
        )  # fmt: skip


def _decisions(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "decisions.csv"
    path.write_text("\n".join([DECISIONS, *rows]) + "\n", encoding="utf-8")
    return path


def test_an_index_written_reads_back_as_the_previous_one(tmp_path: Path) -> None:
    index = _index()
    write_index(index, tmp_path / "mpi", {"seed": 42})
    previous = read_previous(tmp_path / "mpi")
    assert previous.people == index.entries.select(["source", "record_id", "person_id"])
    assert previous.history == index.history
    assert list(previous.decisions) == index.decisions
    names = sorted(p.name for p in (tmp_path / "mpi").iterdir())
    assert names == [
        "decisions.csv",
        "links.csv",
        "person_id_history.csv",
        "person_index.csv",
        "review_queue.csv",
        "run.json",
    ]
    run = json.loads((tmp_path / "mpi" / "run.json").read_text())
    assert run["seed"] == 42 and run["counts"]["records"] == 4
    queue = (tmp_path / "mpi" / "review_queue.csv").read_text().splitlines()
    assert len(queue) == 2 and ",uncertain," in queue[1]


def test_a_failed_write_leaves_the_old_index_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mpi"
    write_index(_index(), folder, {"run": 1})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    written: list[Path] = []
    real = mpi_files._write_csv

    def fail_on_the_third(path: Path, *args: object) -> None:
        written.append(path)
        if len(written) == 3:
            raise OSError("disk full")
        real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mpi_files, "_write_csv", fail_on_the_third)
    with pytest.raises(OSError, match="disk full"):
        write_index(_index(), folder, {"run": 2})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["mpi"]  # no partial folder left behind


def test_a_new_index_that_fails_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mpi_files, "_write_csv", fail)
    with pytest.raises(OSError):
        write_index(_index(), tmp_path / "mpi", {})
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_an_index_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mpi").mkdir()
    (tmp_path / "mpi" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not an index folder"):
        write_index(_index(), tmp_path / "mpi", {})
    assert (tmp_path / "mpi" / "notes.txt").read_text() == "mine"


def test_decisions_are_read_with_their_time_in_utc(tmp_path: Path) -> None:
    path = _decisions(
        tmp_path,
        "gp,g1,acute,a1,Accept,dana,2026-12-05T18:00:00+01:00,same letters",
        "gp,g2,acute,a2,reject,sam,2026-12-05T18:00:00Z,",
    )
    first, second = read_decisions(path)
    assert first.decision == "accept" and first.reason == "same letters"
    assert first.decided_at == datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
    assert (second.left, second.right, second.reason) == (("gp", "g2"), ("acute", "a2"), "")


def test_rows_not_decided_yet_are_skipped(tmp_path: Path) -> None:
    path = _decisions(
        tmp_path,
        "gp,g1,acute,a1,,,,",
        "gp,g2,acute,a2,accept,sam,2026-12-05T18:00:00Z,",
    )
    assert [d.left for d in read_decisions(path)] == [("gp", "g2")]


def test_a_filled_in_review_queue_is_a_decisions_file(tmp_path: Path) -> None:
    write_index(_index(), tmp_path / "mpi", {})
    queue = (tmp_path / "mpi" / "review_queue.csv").read_text().splitlines()
    assert queue[0].endswith(",decision,decided_by,decided_at,reason")
    assert read_decisions(tmp_path / "mpi" / "review_queue.csv") == []
    filled = queue[1].removesuffix(",,,,") + ",accept,dana,2026-12-05T18:00:00Z,seen"
    (tmp_path / "reviewed.csv").write_text("\n".join([queue[0], filled]) + "\n")
    (decision,) = read_decisions(tmp_path / "reviewed.csv")
    assert (decision.left, decision.right) == (("acute", "a2"), ("gp", "g2"))
    assert (decision.decision, decision.reason) == ("accept", "seen")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("gp,g1,acute,a1,maybe,dana,2026-12-05T18:00:00Z,", "row 1, column decision: decision is"),
        ("gp,g1,acute,a1,accept,,2026-12-05T18:00:00Z,", "row 1, column decided_by: decided_by is"),
        ("gp,g1,acute,a1,accept,dana,2026-12-05 18:00,", "row 1, column decided_at: give the time"),
        ("gp,g1,acute,a1,accept,dana,yesterday,", "row 1, column decided_at: not a date"),
        ("gp,g1,gp,g1,accept,dana,2026-12-05T18:00:00Z,", "a record paired with itself"),
        ("gp,,acute,a1,accept,dana,2026-12-05T18:00:00Z,", "column left_record_id"),
        ("gp,g1,acute,a1,accept,dana", "row 1: 6 fields where the header has 8"),
    ],
)
def test_a_bad_decision_is_refused_naming_row_and_column(
    tmp_path: Path, row: str, message: str
) -> None:
    path = _decisions(tmp_path, row)
    with pytest.raises(InputError) as err:
        read_decisions(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_decisions_file_without_a_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text("left_source,left_record_id,decision\n", encoding="utf-8")
    with pytest.raises(InputError, match="header: no column right_source, right_record_id"):
        read_decisions(path)


def test_a_previous_index_with_a_bad_person_id_is_refused(tmp_path: Path) -> None:
    write_index(_index(), tmp_path / "mpi", {})
    path = tmp_path / "mpi" / "person_index.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",P0", ",Q0", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"person_index.csv row 2, column person_id"):
        read_previous(tmp_path / "mpi")


def test_a_folder_without_an_index_is_not_a_previous_index(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no person_index\.csv"):
        read_previous(tmp_path)
