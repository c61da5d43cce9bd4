"""The lake: versions made current at once, readers' versions kept, bad folders refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joinedup.warehouse.lake import Lake, LakeError, is_lake


def _write(lake: Lake, tables: dict[str, pa.Table]) -> None:
    with lake.writing() as write:
        for name, data in tables.items():
            pq.write_table(data, write.stage(name) / "part-0.parquet")
        write.commit()


def _read(lake: Lake, name: str) -> list[dict[str, object]]:
    entry = lake.manifest().tables[name]
    return pa.concat_tables([pq.read_table(f) for f in lake.files(entry)]).to_pylist()


def _known(name: str) -> bool:
    return name in {"person", "place", "phm_risk"}


def test_a_path_is_a_lake_unless_it_names_a_duckdb_file(tmp_path: Path) -> None:
    assert is_lake(tmp_path / "lake")
    assert is_lake(tmp_path / "lake/")
    assert not is_lake(tmp_path / "ics.duckdb")
    (tmp_path / "plain").write_text("x")
    assert not is_lake(tmp_path / "plain")


def test_a_commit_makes_every_staged_table_current_and_records_rows_and_columns(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1, 2, 3]}), "place": pa.table({"x": ["a"]})})
    manifest = lake.manifest()
    assert set(manifest.tables) == {"person", "place"}
    assert manifest.tables["person"].rows == 3
    assert manifest.tables["person"].columns == (("person_id", "int64"),)
    lake.check(manifest, _known)
    document = json.loads(lake.manifest_path.read_text())
    assert document["format"] == "joinedup-lake/1"


def test_an_error_before_commit_leaves_the_old_tables_and_no_staged_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})
    with pytest.raises(RuntimeError), lake.writing() as write:
        pq.write_table(pa.table({"person_id": [9, 9]}), write.stage("person") / "p.parquet")
        raise RuntimeError("killed half-way")
    assert _read(lake, "person") == [{"person_id": 1}]
    assert len(list((lake.root / "person").iterdir())) == 1


def test_a_second_writer_is_refused_while_one_writes(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    with lake.writing(), pytest.raises(LakeError, match="being written by another run"):  # noqa: SIM117
        with lake.writing():
            pass


def test_a_reader_keeps_its_versions_until_it_lets_go_and_then_they_are_removed(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})
    old = lake.manifest()
    old_files = lake.files(old.tables["person"])
    with lake.pinned(old):
        _write(lake, {"person": pa.table({"person_id": [2]})})
        assert all(f.exists() for f in old_files), "a live reader's version was removed"
        assert _read(lake, "person") == [{"person_id": 2}]
    with lake.writing():
        pass  # the next writer cleans up
    assert not any(f.exists() for f in old_files)
    assert len(list((lake.root / "person").iterdir())) == 1


def test_a_killed_writers_leftovers_go_at_the_next_write(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})
    orphan = lake.root / "person" / "v20260101T000000Z-dead-000000"
    orphan.mkdir()
    pq.write_table(pa.table({"person_id": [7]}), orphan / "p.parquet")
    (lake.root / "_readers").mkdir(exist_ok=True)
    (lake.root / "_readers" / "999999-dead.json").write_text('{"person": "x"}')
    with lake.writing():
        pass
    assert not orphan.exists()
    assert not list((lake.root / "_readers").iterdir()), "a dead reader's file was kept"
    assert _read(lake, "person") == [{"person_id": 1}]


def test_a_foreign_folder_or_table_is_refused_naming_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})
    (lake.root / "sales_2025").mkdir()
    with pytest.raises(LakeError, match="'sales_2025' is not a table joinedup writes"):
        lake.check(lake.manifest(), _known)
    (lake.root / "sales_2025").rmdir()
    document = json.loads(lake.manifest_path.read_text())
    document["tables"]["sales"] = document["tables"]["person"]
    lake.manifest_path.write_text(json.dumps(document))
    with pytest.raises(LakeError, match="table 'sales' is not a table joinedup writes"):
        lake.check(lake.manifest(), _known)


def test_a_changed_column_is_refused_naming_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})
    entry = lake.manifest().tables["person"]
    pq.write_table(pa.table({"person_id": ["one"]}), lake.files(entry)[0])
    with pytest.raises(LakeError, match=r"table person, column person_id: the files hold string"):
        lake.check(lake.manifest(), _known)


def test_a_missing_table_is_refused_naming_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"place": pa.table({"x": ["a"]})})
    shutil.rmtree(lake.root / "place")
    with pytest.raises(LakeError, match="table place is missing"):
        lake.check(lake.manifest(), _known)


def test_the_registry_check_names_the_column_that_differs(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write(lake, {"person": pa.table({"person_id": [1]})})

    def expected(name: str, columns: tuple[tuple[str, str], ...]) -> list[str]:
        return [f"table {name}, column birth_date: missing"]

    with pytest.raises(LakeError, match="table person, column birth_date: missing"):
        lake.check(lake.manifest(), _known, expected)


def test_an_unreadable_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.root.mkdir()
    lake.manifest_path.write_text("{not json")
    with pytest.raises(LakeError, match=r"_manifest\.json: unreadable manifest"):
        lake.manifest()
