"""The places map: ONS boundaries for a real footprint, a schematic for a synthetic one."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import PhmWarehouse, joinedup

from joinedup.warehouse import open_engine
from joinedup.web.dashboard import Dashboard

pytestmark = [pytest.mark.slow, pytest.mark.reference]

BOUNDARIES = "lad_boundaries_dec2021_gb_buc.geojson"


def test_a_real_footprint_is_mapped_from_the_ons_boundaries(
    reference_dir: Path, tmp_path: Path
) -> None:
    built = joinedup(
        "synth", "--reference-dir", str(reference_dir), "--icb", "QYG", "--people", "15000",
        "-w", "qyg.duckdb", cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    ran = joinedup("phm", "run", "-w", "qyg.duckdb", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with open_engine("duckdb", warehouse=tmp_path / "qyg.duckdb") as engine:
        board = Dashboard(engine, boundaries=reference_dir / BOUNDARIES)
        names = board.place_names()
        mapped = board.map(None)
        place = next(iter(names))
        highlighted = board.map(place)
        shapes = board._boundary_shapes(set(names))
        plain = Dashboard(engine).map(None)
    assert len(names) == 9 and set(shapes) == set(names)  # Cheshire and Merseyside's 9 LADs
    assert mapped["kind"] == "boundaries" and "ONS" in mapped["description"]
    assert f"{names[place]} highlighted" in highlighted["description"]
    assert "<path" in str(mapped["svg"])
    assert plain["kind"] == "schematic"  # no boundary file given


def test_a_synthetic_footprint_gets_a_schematic_even_with_boundaries(
    phm_warehouse: PhmWarehouse, reference_dir: Path
) -> None:
    with open_engine("duckdb", warehouse=phm_warehouse.path) as engine:
        mapped = Dashboard(engine, boundaries=reference_dir / BOUNDARIES).map(None)
    assert mapped["kind"] == "schematic"
    assert mapped["description"].startswith("Schematic map of the 5 places")
