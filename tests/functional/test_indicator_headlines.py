"""The headline summary of an area ("what's worst vs England, what's changed"), read from the
indicator values `joinedup phm run` wrote for the shared 30,000-person warehouse: every claim
is one the published row makes, and none is left out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_run import PhmWarehouse
from sqlglot import exp

from joinedup.errors import InputError
from joinedup.indicators import TABLE, shipped_definitions
from joinedup.indicators.headlines import figure, headlines
from joinedup.warehouse import Engine, open_engine


@pytest.fixture(scope="module")
def engine(phm_warehouse: PhmWarehouse) -> Iterator[Engine]:
    with open_engine("duckdb", warehouse=phm_warehouse.path, read_only=True) as opened:
        yield opened


def _latest(engine: Engine, level: str, code: str) -> list[dict[str, object]]:
    rows = engine.execute(
        exp.select("*")
        .from_(TABLE)
        .where(
            exp.and_(
                exp.EQ(this=exp.column("level"), expression=exp.convert(level)),
                exp.EQ(this=exp.column("area_code"), expression=exp.convert(code)),
            )
        )
    ).to_pylist()
    latest = max(str(r["period"]) for r in rows)
    return [r for r in rows if r["period"] == latest]


def _areas(engine: Engine) -> list[tuple[str, str]]:
    rows = engine.execute(exp.select("level", "area_code").distinct().from_(TABLE)).to_pylist()
    return sorted((str(r["level"]), str(r["area_code"])) for r in rows if r["level"] != "practice")


def test_every_area_states_exactly_the_published_verdicts_against_england(
    engine: Engine,
) -> None:
    titles = {i.id: i for i in shipped_definitions()}
    stated_somewhere = 0
    for level, code in _areas(engine):
        h = headlines(engine, level, code)
        latest = [r for r in _latest(engine, level, code) if r["value"] is not None]
        for verdict, said in (("worse", h.worse), ("better", h.better)):
            expected = {r["indicator_id"] for r in latest if r["england_comparison"] == verdict}
            assert {x.indicator_id for x in said} == expected, (level, code, verdict)
            for x in said:
                row = next(r for r in latest if r["indicator_id"] == x.indicator_id)
                unit = titles[x.indicator_id].unit
                assert figure(row["value"], unit) in x.text  # type: ignore[arg-type]
                assert figure(row["england_value"], unit) in x.text  # type: ignore[arg-type]
                assert f"{verdict} than England" in x.text
            stated_somewhere += len(said)
        assert h.compared == sum(r["england_comparison"] is not None for r in latest)
        assert f"Of {h.compared} indicators compared with England, {len(h.worse)}" in h.summary()
        # Furthest from England first.
        distances = [x.distance for x in h.worse]
        assert distances == sorted(distances, reverse=True)
    assert stated_somewhere, "no area of the 30,000-person world differs from England"


def test_changes_are_the_tested_trends_with_their_first_and_last_values(engine: Engine) -> None:
    h = headlines(engine, "system", _system(engine))
    latest = {r["indicator_id"]: r for r in _latest(engine, "system", _system(engine))}
    significant = {
        i for i, r in latest.items() if r["trend"] not in (None, "no significant change")
    }
    assert {x.indicator_id for x in h.changes} == significant
    assert significant, "three years of history and no significant trend at system level"
    for x in h.changes:
        assert str(latest[x.indicator_id]["trend"]) in x.text
        assert "in the year to" in x.text
    kinds = [x.kind for x in h.changes]
    worse_first = [k.endswith("worse") for k in kinds]
    assert worse_first == sorted(worse_first, reverse=True)


def _system(engine: Engine) -> str:
    return next(code for level, code in _areas(engine) if level == "system")


def test_an_unknown_area_or_level_is_refused_in_words(engine: Engine) -> None:
    with pytest.raises(InputError, match="no indicator values for place 'E00000000'"):
        headlines(engine, "place", "E00000000")
    with pytest.raises(InputError, match="'county' is not one of system, place, pcn, practice"):
        headlines(engine, "county", "X")
