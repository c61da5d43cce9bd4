"""The population health HTML report, built from a warehouse that `joinedup phm run` filled
(the shared 30,000-person `phm_warehouse`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_run import PhmWarehouse
from sqlglot import exp

from joinedup.errors import ConfigurationError, InputError
from joinedup.population.conditions import SEGMENTS
from joinedup.reports.phm import write_report
from joinedup.warehouse import Engine, open_engine

CHARTS = ("pyramid-chart", "segment-chart", "tier-chart", "inequality-chart-")


class _Page(HTMLParser):
    """Which figures hold an SVG, and the text of each cell of the segment table."""

    def __init__(self) -> None:
        super().__init__()
        self.figure: str | None = None
        self.figures_with_svg: set[str] = set()
        self.table: str | None = None
        self.cell: list[str] | None = None
        self.segment_counts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure":
            self.figure = a.get("id") or ""
        elif tag == "svg" and self.figure is not None:
            self.figures_with_svg.add(self.figure)
        elif tag == "table":
            self.table = a.get("id")
        elif tag == "td" and self.table == "segment-table" and a.get("class") == "count":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.figure = None
        elif tag == "table":
            self.table = None
        elif tag == "td" and self.cell is not None:
            self.segment_counts.append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture(scope="module")
def engine(phm_warehouse: PhmWarehouse) -> Iterator[Engine]:
    with open_engine("duckdb", warehouse=phm_warehouse.path, read_only=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def place(engine: Engine) -> tuple[str, str]:
    row = engine.execute(exp.select("place_code", "place_name").from_("place").limit(1))
    return str(row.column("place_code")[0]), str(row.column("place_name")[0])


@pytest.fixture(scope="module")
def system_report(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(engine, tmp_path_factory.mktemp("report") / "out" / "phm.html")
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp"))
    return path.read_text(encoding="utf-8")


def _ics_name(engine: Engine) -> str:
    return str(engine.execute(exp.select("ics_name").from_("ics").limit(1)).column(0)[0])


def test_the_report_names_the_system_and_says_the_data_are_synthetic(
    engine: Engine, system_report: str
) -> None:
    assert escape(_ics_name(engine)) in system_report
    assert 'id="synthetic-banner"' in system_report
    assert "Synthetic data" in system_report
    assert "counts 1–7 suppressed" in system_report


def test_every_chart_is_an_inline_svg_with_a_title(system_report: str) -> None:
    page = _Page()
    page.feed(system_report)
    for chart in CHARTS:
        assert any(f.startswith(chart) for f in page.figures_with_svg), chart
    assert sum(f.startswith("inequality-chart-") for f in page.figures_with_svg) >= 1
    assert system_report.count('role="img"') == len(page.figures_with_svg)
    assert system_report.count("<figcaption>") == len(page.figures_with_svg)
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'<(?:script|link)\b|\bsrc="http|url\(http', system_report)


def test_the_model_card_is_rendered(system_report: str) -> None:
    assert re.search(r"<h\d>Model card[^<]*</h\d>", system_report)
    assert "<table><thead>" in system_report  # its metric tables became HTML tables
    assert "Acceptance:" in system_report


def test_no_small_counts_in_the_segment_table(system_report: str) -> None:
    page = _Page()
    page.feed(system_report)
    assert page.segment_counts, "the segment table has no count cells"
    for cell in page.segment_counts:
        if cell == "*":
            continue
        value = int(cell.replace(",", ""))
        assert not 1 <= value <= 7, f"small count {value} published"
        assert value % 5 == 0, f"count {value} not rounded to 5"


def test_segment_transitions_are_a_matrix_of_the_published_counts(
    engine: Engine, system_report: str
) -> None:
    """Rows are the segment a year ago and columns the segment now, in Lynn order, each cell
    the published count of `phm_segment_transitions` (suppressed shown as such), the
    diagonal marked as those who stayed, and the stayed total stated in words."""
    order = sorted(SEGMENTS, key=lambda s: s.lynn_number)
    table = engine.execute(
        exp.select("from_segment", "to_segment", "people_count", "people_count_suppressed").from_(
            "phm_segment_transitions"
        )
    ).to_pylist()
    assert table, "the 30,000-person world has no transitions"
    published = {(r["from_segment"], r["to_segment"]): r for r in table}
    body = system_report[system_report.index('id="transition-table"') :]
    body = body[: body.index("</table>")]
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", body)
    assert [label for label, _ in rows] == [escape(f"{s.lynn_number}. {s.label}") for s in order]
    stayed = 0
    for (label, cells), s in zip(rows, order, strict=True):
        found = re.findall(r'<td class="count( jd-stayed)?">([^<]*)</td>', cells)
        assert len(found) == len(order), label
        for (mark, text), t in zip(found, order, strict=True):
            assert bool(mark) == (s.key == t.key)
            r = published.get((s.key, t.key))
            if r is None:
                assert text == "0"
            elif r["people_count_suppressed"]:
                assert text == "*"
            else:
                assert text == f"{r['people_count']:,}"
                stayed += r["people_count"] if s.key == t.key else 0
    assert f"{stayed:,} people stayed in the same segment" in system_report


def test_a_place_report_names_the_place(
    engine: Engine, place: tuple[str, str], tmp_path: Path
) -> None:
    code, name = place
    text = write_report(engine, tmp_path / "place.html", place=code).read_text(encoding="utf-8")
    assert escape(name) in text
    assert escape(_ics_name(engine)) in text
    assert 'class="comparison"' in text  # each measure: the place against the system


def test_an_unknown_place_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such place; choose from"):
        write_report(engine, tmp_path / "nowhere.html", place="E99999999")
    assert not (tmp_path / "nowhere.html").exists()


def test_a_warehouse_without_a_run_is_refused(tmp_path: Path) -> None:
    with (
        open_engine("duckdb") as empty,
        pytest.raises(ConfigurationError, match="joinedup phm run"),
    ):
        write_report(empty, tmp_path / "none.html")
