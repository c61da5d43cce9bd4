"""The same linkage on DuckDB and on Spark: identical clusters for the same input and seed."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pyarrow as pa
import pytest

from joinedup.linkage import Extract, LinkageSettings, cluster_pairs, dedupe, read_extract
from joinedup.warehouse.engines import DuckDBEngine, Engine

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
    "Muhammad",
    "Sophia",
    "Alfie",
    "Ella",
]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
          "Green", "Hall", "Wood", "Khan"]  # fmt: skip
POSTCODES = ["LS1 4AP", "LS6 2QT", "M1 1AE", "M14 5RB", "S10 2TN", "BD7 1DP", "HX1 1UJ", "YO1 7HH"]


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(1, len(text))
    return text[:i] + rng.choice("aeioulnrst") + text[i + 1 :]


def people_csv(path: Path, people: int = 60, seed: int = 3) -> set[frozenset[str]]:
    """An extract of `people` people, two in three recorded twice with one error each (a typo,
    day and month swapped, a move, no postcode); returns the true pairs."""
    rng = random.Random(seed)
    rows, truth = [], set()
    for n in range(people):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        birth = f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        sex = "F" if given in GIVEN[1::2] else "M"
        postcode = rng.choice(POSTCODES)
        rows.append([f"p{n}a", given, family, birth, sex, postcode])
        if n % 3 == 2:
            continue
        copy = [f"p{n}b", given, family, birth, sex, postcode]
        error = rng.randrange(4)
        if error == 0:
            field = rng.choice((1, 2))
            copy[field] = _typo(rng, copy[field])
        elif error == 1 and int(birth[8:]) <= 12:
            copy[3] = f"{birth[:4]}-{birth[8:]}-{birth[5:7]}"
        elif error == 2:
            copy[5] = rng.choice(POSTCODES)
        else:
            copy[5] = ""
        rows.append(copy)
        truth.add(frozenset((f"p{n}a", f"p{n}b")))
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "given_name", "family_name", "birth_date", "sex", "postcode"])
        writer.writerows(rows)
    return truth


def _clusters(engine: Engine, extract: Extract) -> list[tuple[str, str]]:
    result = dedupe(engine, extract, LinkageSettings(seed=11))
    return [(r["record_id"], r["cluster_id"]) for r in result.to_pylist()]


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_make_the_same_clusters(tmp_path: Path, spark_engine: Engine) -> None:
    truth = people_csv(tmp_path / "people.csv")
    extract = read_extract(tmp_path / "people.csv")
    with DuckDBEngine() as duck:
        on_duckdb = _clusters(duck, extract)
    on_spark = _clusters(spark_engine, extract)
    assert on_spark == on_duckdb
    found = {frozenset(p) for p in cluster_pairs_of(on_duckdb)}
    assert len(found & truth) >= 0.8 * len(truth)  # and they are mostly right


def cluster_pairs_of(rows: list[tuple[str, str]]) -> set[frozenset[str]]:
    table = pa.table({"record_id": [r for r, _ in rows], "cluster_id": [c for _, c in rows]})
    return cluster_pairs(table)


def test_a_wide_blocking_rule_is_dropped_when_its_blocks_are_large(tmp_path: Path) -> None:
    """Fifty records born on one day make one block of 1,225 pairs (24.5 a record): blocking on
    the birth date alone is dropped, while the rules whose blocks stay small are kept."""
    from joinedup.linkage.run import wide_rules

    path = tmp_path / "one_day.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "given_name", "family_name", "birth_date"])
        for n in range(50):
            writer.writerow([f"r{n}", GIVEN[n % 20], FAMILY[n // 20 * 7 % 20], "1980-01-01"])
    extract = read_extract(path)
    with DuckDBEngine() as engine:
        engine.load("records", extract.records)
        chosen = wide_rules(engine, ["records"], extract, LinkageSettings())
        everything = wide_rules(
            engine, ["records"], extract, LinkageSettings(wide_rule_pairs_per_record=25)
        )
    assert ("birth_date",) not in chosen
    assert ("family_soundex", "given_soundex") in chosen
    assert ("birth_date",) in everything


def test_training_on_both_names_narrows_to_a_birth_year_only_when_asked() -> None:
    from joinedup.linkage.model import narrower_training

    names = ("family_name", "given_name")
    assert narrower_training(names, {*names, "birth_year"}) == (*names, "birth_year")
    assert narrower_training(names, set(names)) is None  # no birth year to narrow by
    assert narrower_training(("nhs_number_key",), {"nhs_number_key", "birth_year"}) is None
