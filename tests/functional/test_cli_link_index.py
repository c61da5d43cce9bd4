"""`joinedup link index` end to end, from a shell: the master person index over several
sources, person_ids kept across re-runs, the review queue and reviewers' decisions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cli_run import flat, joinedup
from test_cli_link import _people, _read, _write

DECISIONS = [
    "left_source",
    "left_record_id",
    "right_source",
    "right_record_id",
    "decision",
    "decided_by",
    "decided_at",
    "reason",
]


def _sources(folder: Path) -> list[list[str]]:
    """A GP extract of 150 people and an acute extract of 60 of them (a third without NHS
    number), plus two acute records that look like GP patients but differ in a way the model
    is unsure of: u1 (p100 without sex, at another postcode), u2 (p101 with a typo in the
    given name and another birth day)."""
    people = _people(150, seed=3)
    _write(folder / "gp.csv", people)
    acute = [[f"{r[0]}t", *r[1:6], "" if i % 3 else r[6]] for i, r in enumerate(people[:60])]
    p100, p101 = people[100], people[101]
    other = "M1 1AE" if p100[5] != "M1 1AE" else "LS1 4AP"
    acute.append(["u1", p100[1], p100[2], p100[3], "", other, ""])
    acute.append(["u2", p101[1][:-1] + "x", p101[2], p101[3][:8] + "01", p101[4], p101[5], ""])
    _write(folder / "acute.csv", acute)
    return people


def _index(folder: Path) -> dict[tuple[str, str], str]:
    return {
        (r["source"], r["record_id"]): r["person_id"] for r in _read(folder / "person_index.csv")
    }


def _decide(path: Path, *rows: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DECISIONS)
        writer.writerows(rows)
    return path


def test_a_rerun_with_new_records_keeps_every_person_id(tmp_path: Path) -> None:
    people = _sources(tmp_path)
    run = joinedup("link", "index", "gp.csv", "acute.csv", "-o", "mpi", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "212 records from 2 sources are 152 people" in flat(run.stdout)
    first = _index(tmp_path / "mpi")
    assert first[("gp", "p7")] == first[("acute", "p7t")]
    assert len(set(first.values())) == 152
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acute.csv", "gp.csv", "mpi"]

    # New records: the acute trust sees ten more GP patients, and a community service
    # (named with --source) sees two GP patients and one person no one else knows.
    with (tmp_path / "acute.csv").open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[f"{r[0]}t", *r[1:]] for r in people[60:70]])
    _write(
        tmp_path / "community-2026.csv",
        [["c1", *people[0][1:]], ["c2", *people[80][1:6], ""],
         ["c3", "Zebedee", "Quixote", "1950-06-15", "M", "BD7 1DP", ""]],
    )  # fmt: skip
    refused = joinedup("link", "index", "gp.csv", "acute.csv", "-o", "mpi", cwd=tmp_path)
    assert refused.returncode != 0
    assert "give --previous mpi" in flat(refused.stderr)
    run = joinedup(
        "link", "index", "gp.csv", "acute.csv", "--source", "community=community-2026.csv",
        "-o", "mpi", "--previous", "mpi", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "152 person_ids kept, 0 merged, 0 split off, 0 retired; 1 new person_ids" in flat(
        run.stdout
    )
    second = _index(tmp_path / "mpi")
    assert {key: second[key] for key in first} == first  # every existing person_id kept
    for i in range(60, 70):
        assert second[("acute", f"p{i}t")] == first[("gp", f"p{i}")]
    assert second[("community", "c1")] == first[("gp", "p0")]
    assert second[("community", "c2")] == first[("gp", "p80")]
    assert second[("community", "c3")] not in set(first.values())
    history = _read(tmp_path / "mpi" / "person_id_history.csv")
    assert len(history) == 153 and {h["event"] for h in history} == {"created"}
    record = json.loads((tmp_path / "mpi" / "run.json").read_text())
    assert record["previous"] == "mpi" and record["counts"]["ids_kept"] == 152
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "acute.csv",
        "community-2026.csv",
        "gp.csv",
        "mpi",
    ]  # no partial or old folder left behind

    # A run that fails once linkage has started leaves the index as it was.
    saved = {f.name: f.read_bytes() for f in (tmp_path / "mpi").iterdir()}
    (tmp_path / "sexonly.csv").write_text("record_id,sex\nx1,F\nx2,M\n", encoding="utf-8")
    run = joinedup("link", "index", "sexonly.csv", "-o", "mpi", "--previous", "mpi", cwd=tmp_path)
    assert run.returncode != 0
    assert flat(run.stderr).startswith("error: sexonly.csv: nothing to train the model on")
    assert {f.name: f.read_bytes() for f in (tmp_path / "mpi").iterdir()} == saved
    assert len(list(tmp_path.iterdir())) == 5


def test_the_review_queue_and_decisions_that_persist(tmp_path: Path) -> None:
    _sources(tmp_path)
    run = joinedup("link", "index", "gp.csv", "acute.csv", "-o", "v1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    queue = {
        (r["left_record_id"], r["right_record_id"]): r
        for r in _read(tmp_path / "v1" / "review_queue.csv")
    }
    assert set(queue) == {("u1", "p100"), ("u2", "p101")}
    for row in queue.values():
        assert 0.5 <= float(row["match_probability"]) < 0.9
        assert row["queued_for"] == "uncertain" and "Exact match on family_name" in row["evidence"]
    index = _index(tmp_path / "v1")
    assert index[("acute", "u1")] != index[("gp", "p100")]

    # A reviewer fills in the queue (u1 is p100; u2 left for later) and adds a row rejecting
    # the NHS number link of p3 (twins sharing a number).
    rows = _read(tmp_path / "v1" / "review_queue.csv")
    for row in rows:
        if row["left_record_id"] == "u1":
            row.update(decision="accept", decided_by="dana", reason="same GP letter",
                       decided_at="2026-12-05T18:00:00Z")  # fmt: skip
    rows.append(
        {"left_source": "gp", "left_record_id": "p3", "right_source": "acute",
         "right_record_id": "p3t", "decision": "reject", "decided_by": "sam",
         "decided_at": "2026-12-05T19:00:00+01:00", "reason": "twin"}
    )  # fmt: skip
    with (tmp_path / "reviewed.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), restval="")
        writer.writeheader()
        writer.writerows(rows)
    run = joinedup(
        "link", "index", "gp.csv", "acute.csv", "-o", "v2", "--previous", "v1",
        "--decisions", "reviewed.csv", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "1 pairs to review; 2 decisions applied" in flat(run.stdout)

    # The next run is given no decisions file: the index's own log carries them.
    run = joinedup(
        "link", "index", "gp.csv", "acute.csv", "-o", "v3", "--previous", "v2", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "1 pairs to review; 2 decisions applied" in flat(run.stdout)
    before = _index(tmp_path / "v1")
    # Two people of one record each merge: the older id (minted first) survives.
    older = min(before[("acute", "u1")], before[("gp", "p100")])
    for folder in ("v2", "v3"):
        index = _index(tmp_path / folder)
        assert index[("acute", "u1")] == index[("gp", "p100")] == older
        assert index[("acute", "p3t")] != index[("gp", "p3")]
        queue = _read(tmp_path / folder / "review_queue.csv")
        assert [(r["left_record_id"], r["right_record_id"], r["decision"]) for r in queue] == [
            ("u2", "p101", "")
        ]
        log = _read(tmp_path / folder / "decisions.csv")
        assert [(d["decision"], d["decided_by"], d["decided_at"]) for d in log] == [
            ("accept", "dana", "2026-12-05T18:00:00+00:00"),
            ("reject", "sam", "2026-12-05T18:00:00+00:00"),
        ]
    links = _read(tmp_path / "v3" / "links.csv")
    accepted = [r for r in links if r["matched_by"] == "accepted"]
    assert [(r["left_record_id"], r["right_record_id"]) for r in accepted] == [("u1", "p100")]
    assert "accepted by dana at 2026-12-05T18:00:00+00:00" in accepted[0]["evidence"]
    assert not any({r["left_record_id"], r["right_record_id"]} == {"p3", "p3t"} for r in links)
    # v2 split p3 from p3t and merged u1 with p100; v3 changed nothing.
    history = _read(tmp_path / "v2" / "person_id_history.csv")
    changes = sorted(h["event"] for h in history if h["event"] != "created")
    assert changes == ["merged_into", "split_from"]
    assert len(history) == 152 + 2
    assert _read(tmp_path / "v3" / "person_id_history.csv") == history


def test_a_bad_decision_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    _sources(tmp_path)
    _decide(
        tmp_path / "decisions.csv",
        ["acute", "u1", "gp", "p100", "accept", "dana", "2026-12-05T18:00:00Z", ""],
        ["acute", "u2", "gp", "p101", "perhaps", "dana", "2026-12-05T18:00:00Z", ""],
    )
    run = joinedup(
        "link", "index", "gp.csv", "acute.csv", "-o", "mpi", "--decisions", "decisions.csv",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: decisions.csv row 2, column decision: decision is not accept or reject"
    )
    assert not (tmp_path / "mpi").exists()


def test_a_bad_source_or_option_is_refused_in_one_line(tmp_path: Path) -> None:
    _sources(tmp_path)
    (tmp_path / "other").mkdir()
    _write(tmp_path / "other" / "gp.csv", [["x1", "Ann", "Lee", "1980-13-01", "F", "", ""]])
    cases = {
        ("other/gp.csv",): "error: other/gp.csv row 1, column birth_date: birth_date is not a "
        "real date (month must be in 1..12)",
        ("gp.csv", "other/gp.csv"): "error: source gp given twice (gp.csv and other/gp.csv): "
        "name one with --source NAME=FILE",
        ("gp.csv", "--review-threshold", "0.95"): "error: --review-threshold 0.95: give a "
        "probability above 0 and no more than the link threshold (0.9)",
        ("gp.csv", "--previous", "other"): "error: other: no person_index.csv: not a folder "
        "`link index` wrote",
    }
    for args, message in cases.items():
        run = joinedup("link", "index", *args, "-o", "mpi", cwd=tmp_path)
        assert run.returncode != 0, args
        assert run.stderr.strip() == message, args
        assert not (tmp_path / "mpi").exists()
