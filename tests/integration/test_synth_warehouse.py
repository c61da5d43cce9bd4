"""Integration: real synthetic builds written to real DuckDB warehouse files.

The builds span two generator chunks (CHUNK_SIZE is 20,000), so chunk boundaries, parallel
workers and the atomic swap are all exercised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from joinedup.errors import ConfigurationError
from joinedup.footprint import default_footprint
from joinedup.synth import condition_codelist, synthesise
from joinedup.synth.generator import CHUNK_SIZE
from joinedup.warehouse import store
from joinedup.warehouse.schema import ALL_TABLES, FOOTPRINT_TABLES, POPULATION_TABLES

PEOPLE = 25_000  # two chunks
SEED = 5
CKD_CODES = ("433144002", "431857002")
# Tables of people's records that must point at someone in `person`.
PERSON_TABLES = ("identity", "registration", "activity", "diagnosis", "medication", "observation",
                 "rtt_pathway")  # fmt: skip


def _build(folder: Path, *, seed: int, workers: int, people: int = PEOPLE) -> Path:
    warehouse = folder / "joinedup.duckdb"
    synthesise(default_footprint(), people=people, seed=seed, warehouse=warehouse, workers=workers)
    return warehouse


def _sorted_tables(warehouse: Path) -> dict[str, pa.Table]:
    """Every population and footprint table, its rows in a canonical order."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t.name: con.sql(f"SELECT * FROM {t.name} ORDER BY ALL").to_arrow_table()
            for t in (*POPULATION_TABLES, *FOOTPRINT_TABLES)
        }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One warehouse of 25,000 people built in a single process."""
    return _build(tmp_path_factory.mktemp("one-worker"), seed=SEED, workers=1)


@pytest.fixture(scope="module")
def con(built: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(built), read_only=True) as connection:
        yield connection


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


# --- Same seed, same data -------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_identical_tables_whatever_the_workers(built: Path, tmp_path: Path) -> None:
    assert PEOPLE > CHUNK_SIZE
    again = _build(tmp_path / "two-workers", seed=SEED, workers=2)
    first, second = _sorted_tables(built), _sorted_tables(again)
    differing = [name for name in first if not first[name].equals(second[name])]
    assert not differing, f"tables differ between workers=1 and workers=2: {differing}"


@pytest.mark.slow
def test_a_different_seed_gives_different_people(built: Path, tmp_path: Path) -> None:
    other = _build(tmp_path / "other-seed", seed=SEED + 1, workers=2)
    first, second = _sorted_tables(built), _sorted_tables(other)
    for name in ("person", "activity", "diagnosis", "observation"):
        same = first[name].equals(second[name])
        assert not same, f"{name} is the same under seeds {SEED} and {SEED + 1}"
    # The footprint is configuration, not random: it stays the same.
    assert first["practice"].equals(second["practice"])


# --- The warehouse as a plain DuckDB file ---------------------------------------------------
def test_every_canonical_table_has_its_declared_columns(con: duckdb.DuckDBPyConnection) -> None:
    for table in ALL_TABLES:
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table.name],
            ).fetchall()
        ]
        assert columns == table.column_names, table.name


def test_not_null_columns_hold_no_nulls(con: duckdb.DuckDBPyConnection) -> None:
    found: dict[str, int] = {}
    for table in ALL_TABLES:
        for column in table.columns:
            if column.nullable:
                continue
            nulls = _scalar(con, f'SELECT count(*) FROM {table.name} WHERE "{column.name}" IS NULL')
            if nulls:
                found[f"{table.name}.{column.name}"] = int(nulls)  # type: ignore[call-overload]
    assert not found, f"nulls in NOT NULL columns: {found}"


def test_people_are_unique_and_every_record_belongs_to_one(
    con: duckdb.DuckDBPyConnection,
) -> None:
    people = _scalar(con, "SELECT count(*) FROM person")
    assert people == _scalar(con, "SELECT count(DISTINCT person_id) FROM person")
    assert int(people) >= PEOPLE  # type: ignore[call-overload]  # plus babies born in the history
    orphans = {
        name: _scalar(
            con,
            f"SELECT count(*) FROM {name} r WHERE NOT EXISTS "
            "(SELECT 1 FROM person p WHERE p.person_id = r.person_id)",
        )
        for name in PERSON_TABLES
    }
    assert all(n == 0 for n in orphans.values()), f"records of unknown people: {orphans}"


def test_registered_population_at_the_start_is_the_people_asked_for(
    con: duckdb.DuckDBPyConnection,
) -> None:
    registered = _scalar(
        con,
        "SELECT count(DISTINCT r.person_id) FROM registration r, build b "
        "WHERE r.start_date <= b.history_start_date "
        "AND (r.end_date IS NULL OR r.end_date >= b.history_start_date)",
    )
    assert registered == PEOPLE


def test_activity_lies_inside_the_history_and_the_life(con: duckdb.DuckDBPyConnection) -> None:
    start, end = con.execute("SELECT history_start_date, history_end_date FROM build").fetchone()  # type: ignore[misc]
    low, high = con.execute("SELECT min(start_date), max(start_date) FROM activity").fetchone()  # type: ignore[misc]
    assert start <= low <= high <= end
    after_death = _scalar(
        con,
        "SELECT count(*) FROM activity a JOIN person p USING (person_id) "
        "WHERE p.death_date IS NOT NULL AND a.start_date > p.death_date",
    )
    assert after_death == 0
    before_birth = _scalar(
        con,
        "SELECT count(*) FROM activity a JOIN person p USING (person_id) "
        "WHERE a.start_date < make_date(p.birth_year, p.birth_month, 1)",
    )
    assert before_birth == 0


def _nhs_number_is_valid(number: str) -> bool:
    """NHS number rule: weights 10..2 on the first nine digits; check digit is
    11 - (sum mod 11), where 11 means 0 and 10 means the number is invalid."""
    if len(number) != 10 or not number.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(number[9])


def test_nhs_number_check_rejects_a_changed_digit() -> None:
    # The rule itself, on the NHS Data Dictionary's worked example 943 476 5919.
    assert _nhs_number_is_valid("9434765919")
    assert not _nhs_number_is_valid("9434765918")
    assert not _nhs_number_is_valid("943476591")


def test_nhs_numbers_are_unique_valid_test_numbers(con: duckdb.DuckDBPyConnection) -> None:
    numbers = [r[0] for r in con.execute("SELECT nhs_number FROM identity").fetchall()]
    assert len(numbers) == _scalar(con, "SELECT count(*) FROM person")
    assert len(set(numbers)) == len(numbers)
    assert all(n.startswith("9") for n in numbers)
    invalid = [n for n in numbers if not _nhs_number_is_valid(n)]
    assert not invalid, f"{len(invalid)} invalid NHS numbers, e.g. {invalid[:5]}"


def test_about_five_percent_have_opted_out(con: duckdb.DuckDBPyConnection) -> None:
    share = float(_scalar(con, "SELECT avg(national_data_opt_out::INT) FROM person"))  # type: ignore[arg-type]
    assert 0.03 <= share <= 0.08


def test_emergency_admissions_have_sensible_stays(con: duckdb.DuckDBPyConnection) -> None:
    admissions, bad_stay, bad_end = con.execute(
        "SELECT count(*), "
        "count(*) FILTER (WHERE length_of_stay_days IS NULL OR length_of_stay_days < 0), "
        "count(*) FILTER (WHERE end_date IS NOT NULL AND end_date < start_date) "
        "FROM activity WHERE activity_type = 'emergency_admission'"
    ).fetchone()  # type: ignore[misc]
    assert admissions > 1_000
    assert bad_stay == 0
    assert bad_end == 0


def test_ckd_patients_have_two_low_egfr_readings_in_a_year(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # Year = NHS financial year (April to March), the year the generator schedules tests in.
    rows = con.execute(
        """
        WITH ckd AS (
            SELECT DISTINCT person_id FROM diagnosis WHERE code IN (?, ?)
        ),
        low AS (
            SELECT person_id, year(observation_date - INTERVAL 3 MONTH) AS fy, count(*) AS n
            FROM observation
            WHERE observation_type = 'egfr' AND value < 60
            GROUP BY ALL
        ),
        twice AS (SELECT DISTINCT person_id FROM low WHERE n >= 2)
        SELECT p.person_id IN (SELECT person_id FROM ckd) AS has_ckd,
               count(*) AS people,
               avg((p.person_id IN (SELECT person_id FROM twice))::INT) AS share
        FROM person p
        WHERE make_date(p.birth_year, p.birth_month, 1) < DATE '2005-01-01'
        GROUP BY ALL
        """,
        list(CKD_CODES),
    ).fetchall()
    share = {has_ckd: (people, value) for has_ckd, people, value in rows}
    ckd_people, ckd_share = share[True]
    assert ckd_people > 200
    assert ckd_share >= 0.8, f"only {ckd_share:.0%} of CKD patients have two eGFR < 60 in a year"
    assert share[False][1] <= 0.05


def test_diabetics_hba1c_is_mostly_in_the_diabetic_range(
    con: duckdb.DuckDBPyConnection,
) -> None:
    codes = [r["code"] for r in condition_codelist().to_pylist() if r["condition"] == "diabetes"]
    readings, share = con.execute(
        f"""
        SELECT count(*), avg((value >= 48)::INT) FROM observation
        WHERE observation_type = 'hba1c' AND person_id IN (
            SELECT person_id FROM diagnosis WHERE code IN ({", ".join("?" * len(codes))})
        )
        """,
        codes,
    ).fetchone()  # type: ignore[misc]
    assert readings > 500
    assert share >= 0.9


# --- Atomic writes --------------------------------------------------------------------------
class _InterruptAfterFirstChunk:
    """A progress callback that stands for a user pressing Ctrl-C once a chunk is written."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        raise KeyboardInterrupt


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if ".building-" in p.name or ".synth-parts-" in p.name
    )


def test_an_interrupted_first_build_leaves_no_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "joinedup.duckdb"
    interrupt = _InterruptAfterFirstChunk()
    with pytest.raises(KeyboardInterrupt):
        synthesise(default_footprint(), people=PEOPLE, seed=SEED, warehouse=warehouse, workers=1,
                   progress=interrupt)  # fmt: skip
    assert interrupt.calls == [(CHUNK_SIZE, PEOPLE)]
    assert not warehouse.exists()
    assert not warehouse.with_name(warehouse.name + ".wal").exists()
    assert _leftovers(tmp_path) == []


def _provenance(warehouse: Path) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        build = con.execute("SELECT build_id, seed, people_count FROM build").fetchall()
        counts = {
            t.name: int(con.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0])  # type: ignore[index]
            for t in POPULATION_TABLES
        }
    return build, counts


def test_an_interrupted_rebuild_keeps_the_old_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "joinedup.duckdb"
    synthesise(default_footprint(), people=3_000, seed=1, warehouse=warehouse, workers=1)
    before_bytes = hashlib.sha256(warehouse.read_bytes()).hexdigest()
    before = _provenance(warehouse)

    interrupt = _InterruptAfterFirstChunk()
    with pytest.raises(KeyboardInterrupt):
        synthesise(default_footprint(), people=PEOPLE, seed=SEED, warehouse=warehouse, workers=1,
                   progress=interrupt)  # fmt: skip

    assert interrupt.calls == [(CHUNK_SIZE, PEOPLE)]
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before_bytes
    assert _provenance(warehouse) == before
    assert _leftovers(tmp_path) == []


def test_an_interrupt_while_loading_the_warehouse_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "joinedup.duckdb"
    synthesise(default_footprint(), people=3_000, seed=1, warehouse=warehouse, workers=1)
    before_bytes = hashlib.sha256(warehouse.read_bytes()).hexdigest()
    seen: list[str] = []

    def interrupted(*args: object, **kwargs: object) -> None:
        # By now the population tables are in the half-built file beside the warehouse.
        seen.extend(_leftovers(tmp_path))
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "footprint_tables", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthesise(default_footprint(), people=3_000, seed=2, warehouse=warehouse, workers=1)

    assert any(".building-" in name for name in seen)
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before_bytes
    assert _leftovers(tmp_path) == []


# --- Bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("people", [0, -10])
def test_no_people_is_refused(tmp_path: Path, people: int) -> None:
    warehouse = tmp_path / "joinedup.duckdb"
    with pytest.raises(ConfigurationError, match="--people"):
        synthesise(default_footprint(), people=people, seed=1, warehouse=warehouse)
    assert not warehouse.exists()
