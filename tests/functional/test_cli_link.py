"""`joinedup link dedupe` and `joinedup link pair` end to end, from a shell."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from cli_run import joinedup

GIVEN = [
    "Oliver",
    "Amelia",
    "George",
    "Isla",
    "Harry",
    "Ava",
    "Noah",
    "Mia",
    "Jack",
    "Ivy",
    "Leo",
    "Grace",
    "Arthur",
    "Freya",
    "Oscar",
    "Lily",
]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Davies", "Patel", "Robinson",
          "Wright", "Evans", "Walker", "White", "Green", "Hall", "Wood", "Khan"]  # fmt: skip
POSTCODES = ["LS1 4AP", "LS6 2QT", "M1 1AE", "M14 5RB", "S10 2TN", "BD7 1DP"]
HEADER = ["record_id", "given_name", "family_name", "birth_date", "sex", "postcode", "nhs_number"]


def _nhs_number(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def _people(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [
        [f"p{i}", rng.choice(GIVEN), rng.choice(FAMILY),
         f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(13, 28):02d}",
         rng.choice("MF"), rng.choice(POSTCODES), _nhs_number(rng)]
        for i in range(n)
    ]  # fmt: skip


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_dedupe_clusters_the_same_person(tmp_path: Path) -> None:
    people = _people(120, seed=5)
    rows = [[f"{r[0]}a", *r[1:]] for r in people]
    # p0 again under a mistyped NHS number and a new address; p1 again with day and month
    # swapped and no NHS number; p2 again with its valid NHS number and a typo in the name.
    p0, p1, p2 = people[0], people[1], people[2]
    rows.append(
        ["p0b", p0[1], p0[2], p0[3], p0[4], "HX1 1UJ", p0[6][:9] + str((int(p0[6][9]) + 1) % 10)]
    )
    day_first = f"{p1[3][:4]}-{p1[3][8:]}-{p1[3][5:7]}" if int(p1[3][8:]) <= 12 else p1[3]
    rows.append(["p1b", p1[1], p1[2], day_first, p1[4], p1[5], ""])
    rows.append(["p2b", p2[1] + "e", p2[2], p2[3], p2[4], p2[5], p2[6]])
    _write(tmp_path / "in.csv", rows)

    run = joinedup("link", "dedupe", "in.csv", "-o", "clusters.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "123 records are" in run.stdout
    clusters = {r["record_id"]: r["cluster_id"] for r in _read(tmp_path / "clusters.csv")}
    assert len(clusters) == 123
    for person in ("p0", "p1", "p2"):
        assert clusters[f"{person}a"] == clusters[f"{person}b"], person
    others = {clusters[f"p{i}a"] for i in range(3, 120)}
    assert len(others) >= 115  # different people stay apart (a few may share every detail)


def test_pair_links_two_extracts_with_probabilities(tmp_path: Path) -> None:
    people = _people(100, seed=9)
    _write(tmp_path / "gp.csv", [[f"gp{r[0]}", *r[1:]] for r in people])
    # The trust holds the first 60, some without NHS number and one with a typo in the name.
    trust = [[f"t{r[0]}", *r[1:6], r[6] if i % 2 else ""] for i, r in enumerate(people[:60])]
    trust[0][2] = trust[0][2] + "s"
    _write(tmp_path / "trust.csv", trust)

    run = joinedup("link", "pair", "gp.csv", "trust.csv", "-o", "links.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    links = _read(tmp_path / "links.csv")
    assert list(links[0]) == [
        "left_record_id",
        "right_record_id",
        "match_probability",
        "match_weight",
        "matched_by",
    ]
    pairs = {(r["left_record_id"], r["right_record_id"]) for r in links}
    true = {(f"gpp{i}", f"tp{i}") for i in range(60)}
    assert len(pairs & true) >= 57
    assert len(pairs - true) <= 1
    assert {r["matched_by"] for r in links} == {"nhs_number", "splink"}
    assert all(float(r["match_probability"]) >= 0.9 for r in links)


def test_a_bad_file_is_refused_in_one_line(tmp_path: Path) -> None:
    rows = _people(3, seed=1)
    rows[2][0] = rows[0][0]
    _write(tmp_path / "in.csv", rows)
    run = joinedup("link", "dedupe", "in.csv", "-o", "clusters.csv", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: in.csv row 3, column record_id: duplicate record_id 'p0' (first at row 1)"
    )
    assert not (tmp_path / "clusters.csv").exists()


def test_help_names_the_columns(tmp_path: Path) -> None:
    run = joinedup("link", "--help", cwd=tmp_path)
    assert run.returncode == 0
    assert "nhs_number" in run.stdout
    assert "dedupe" in run.stdout and "pair" in run.stdout
