"""Charts for results a person would rather see than read (rendered with matplotlib to SVG)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter

from joinedup.synth.calibration import Check

NHS_BLUE = "#005eb8"
NHS_DARK_GREY = "#425563"

_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|xlink:href="#|href="#)([^)"]+)')


def figure_svg(fig: Figure, key: str, title: str, description: str) -> Markup:
    """A figure as inline SVG that is safe to put beside others and readable by a screen reader.

    Text stays text (smaller, searchable); element ids get the prefix `key` so several charts
    can share one page; the root gets `role="img"`, a `<title>` and a `<desc>`.
    """
    readable(fig)
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # inline SVG needs no XML declaration or DOCTYPE
    text = _ID.sub(lambda m: f'id="{key}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{key}-{m.group(2)}", text)
    head_end = text.index(">") + 1
    label = (
        f'<title id="{key}-title">{html.escape(title)}</title>'
        f'<desc id="{key}-desc">{html.escape(description)}</desc>'
    )
    root = text[:head_end].replace(
        "<svg", f'<svg role="img" aria-labelledby="{key}-title {key}-desc"', 1
    )
    return Markup(root + label + text[head_end:])  # matplotlib output; labels escaped


#: The smallest text a chart may hold, in points: 9 pt is 12 CSS px at the chart's own size,
#: which pages never shrink it below (a narrow screen scrolls the chart instead).
MIN_TEXT_PT = 9.0


def readable(fig: Figure) -> None:
    """Raise every piece of text in `fig` (ticks, labels, legends, annotations) to at least
    MIN_TEXT_PT, so no chart is drawn with text too small to read."""
    fig.draw_without_rendering()  # tick labels exist only once the figure is laid out
    for text in fig.findobj(Text):
        size = text.get_fontsize()
        if text.get_text() and isinstance(size, float | int) and size < MIN_TEXT_PT:
            text.set_fontsize(MIN_TEXT_PT)


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")  # no pyplot: no global state
    fig.set_facecolor("white")
    return fig


def calibration_chart(checks: Sequence[Check], path: Path) -> None:
    """Three panels: the age-sex pyramid, emergency admissions by age and condition prevalence,
    synthetic against target."""
    pyramid = [c for c in checks if c.group == "age-sex pyramid"]
    bands = list(dict.fromkeys(c.measure.split(" ", 1)[1] for c in pyramid))
    share = {(c.measure.split(" ", 1)[0], c.measure.split(" ", 1)[1]): c for c in pyramid}
    emergency = [c for c in checks if c.group == "emergency admissions per 1,000"]
    prevalence = [c for c in checks if c.group == "prevalence"]

    fig = Figure(figsize=(15, 5.5))  # no pyplot: no global state, no display backend
    ax1, ax2, ax3 = fig.subplots(1, 3)
    y = range(len(bands))
    for sex, sign in (("male", -1), ("female", 1)):
        observed = [sign * share[(sex, b)].observed for b in bands]
        target = [sign * share[(sex, b)].target for b in bands]
        ax1.barh(y, observed, color=NHS_BLUE if sex == "female" else "#41b6e6", label=f"{sex}s")
        ax1.step(target, y, where="mid", color=NHS_DARK_GREY, linewidth=1)
    ax1.set_yticks(list(y), bands, fontsize=7)
    ax1.axvline(0, color="black", linewidth=0.5)
    ax1.set_xlabel("% of people (line: ONS England 2023)")
    ax1.set_title("Age and sex")
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))
    ax1.legend(loc="upper right", fontsize=8)

    x = range(len(emergency))
    ax2.bar([i - 0.2 for i in x], [c.target for c in emergency], 0.4, color=NHS_DARK_GREY,
            label="target")  # fmt: skip
    ax2.bar([i + 0.2 for i in x], [c.observed for c in emergency], 0.4, color=NHS_BLUE,
            label="synthetic")  # fmt: skip
    ax2.set_xticks(list(x), [c.measure.removeprefix("aged ") for c in emergency], fontsize=8)
    ax2.set_ylabel("per 1,000 a year")
    ax2.set_title("Emergency admissions by age")
    ax2.legend(fontsize=8)

    targets = [c.target for c in prevalence]
    ax3.scatter(targets, [c.observed for c in prevalence], color=NHS_BLUE, s=18)
    top = max([*targets, *(c.observed for c in prevalence), 1.0]) * 1.08
    ax3.plot([0, top], [0, top], color=NHS_DARK_GREY, linewidth=0.8)
    ax3.set_xlim(0, top)
    ax3.set_ylim(0, top)
    ax3.set_xlabel("target prevalence (%)")
    ax3.set_ylabel("synthetic prevalence (%)")
    ax3.set_title("Long-term conditions")

    passed = sum(c.ok for c in checks)
    fig.suptitle(f"Synthetic population against England: {passed} of {len(checks)} figures "
                 "within tolerance")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    # Text stays text in SVG: smaller, searchable, readable by assistive technology.
    with mpl.rc_context({"svg.fonttype": "none"}):
        fig.savefig(tmp, metadata={"Date": None} if path.suffix == ".svg" else None)
    tmp.replace(path)


# --- indicators: spine and trend charts ---------------------------------------------------------

#: Fingertips' colours for a comparison (better, similar, worse; higher, lower where the
#: indicator has no better direction); grey where there is none.
COMPARISON_COLOURS: dict[str, str] = {
    "better": "#007f3b",
    "similar": "#ffb81c",
    "worse": "#d5281b",
    "higher": "#003087",
    "lower": "#41b6e6",
}
NOT_COMPARED = "#aeb7bd"


@dataclass(frozen=True)
class SpineRow:
    """One indicator of a spine chart: the area's value, the range it is placed on (lowest,
    quartiles, highest) and the comparator marked on it."""

    label: str
    value: float | None
    lowest: float | None
    q1: float | None
    q3: float | None
    highest: float | None
    comparator: float | None
    comparison: str | None


def spine_chart(rows: Sequence[SpineRow], key: str, title: str, description: str) -> Markup:
    """A spine chart: one line per indicator, each scaled to its own range (so indicators of
    different units sit side by side), the range as a light bar with its middle half darker,
    the comparator as a black line and the area as a dot coloured by its comparison."""
    fig = new_figure(9.0, 0.9 + 0.42 * max(len(rows), 1))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        points = [v for v in (r.lowest, r.highest, r.comparator, r.value) if v is not None]
        if not points:
            continue
        low, high = min(points), max(points)
        span = (high - low) or 1.0

        def at(v: float, low: float = low, span: float = span) -> float:
            return 0.05 + 0.9 * (v - low) / span

        if r.lowest is not None and r.highest is not None:
            ax.barh(i, at(r.highest) - at(r.lowest), left=at(r.lowest), height=0.5,
                    color="#d8dde0")  # fmt: skip
        if r.q1 is not None and r.q3 is not None:
            ax.barh(i, max(at(r.q3) - at(r.q1), 0.004), left=at(r.q1), height=0.5,
                    color="#aeb7bd")  # fmt: skip
        if r.comparator is not None:
            ax.plot([at(r.comparator)] * 2, [i - 0.35, i + 0.35], color="black", linewidth=2)
        if r.value is not None:
            colour = COMPARISON_COLOURS.get(r.comparison or "", NOT_COMPARED)
            ax.plot([at(r.value)], [i], "o", color=colour, markeredgecolor="#212b32",
                    markersize=9)  # fmt: skip
    ax.set_yticks(list(range(len(rows))), [r.label for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.set_xlabel("each line on its own scale: lowest to highest", fontsize=9)
    return figure_svg(fig, key, title, description)


@dataclass(frozen=True)
class TrendSeries:
    """One area's values of an indicator over the periods, with 95% limits (None: not
    published)."""

    label: str
    values: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    colour: str = NHS_BLUE


def trend_chart(
    periods: Sequence[str],
    series: Sequence[TrendSeries],
    comparator: Sequence[float | None],
    ylabel: str,
    key: str,
    title: str,
    description: str,
) -> Markup:
    """Each series' values over `periods` as a line with 95% whiskers, and England's as a
    dashed line where known; a linear scale from zero so changes are not exaggerated."""
    fig = new_figure(7.5, 3.6)
    ax = fig.subplots()
    x = list(range(len(periods)))
    offsets = [0.0] if len(series) == 1 else [-0.06 + 0.12 * i / (len(series) - 1)
                                              for i in range(len(series))]  # fmt: skip
    top = 0.0
    for s, dx in zip(series, offsets, strict=True):
        points = zip(x, s.values, s.lower, s.upper, strict=True)
        shown = [(i + dx, v, lo, hi) for i, v, lo, hi in points if v is not None]
        if not shown:
            continue
        xs = [p[0] for p in shown]
        ys = [p[1] for p in shown]
        below = [max(p[1] - (p[2] if p[2] is not None else p[1]), 0) for p in shown]
        above = [max((p[3] if p[3] is not None else p[1]) - p[1], 0) for p in shown]
        ax.errorbar(xs, ys, yerr=[below, above], fmt="o-", color=s.colour, ecolor=s.colour,
                    capsize=4, markersize=6, linewidth=1.5, label=s.label)  # fmt: skip
        top = max(top, *(y + a for y, a in zip(ys, above, strict=True)))
    known = [(i, v) for i, v in zip(x, comparator, strict=True) if v is not None]
    if known:
        ax.plot([k[0] for k in known], [k[1] for k in known], "--", color="black",
                linewidth=1, marker="D", markersize=4, label="England")  # fmt: skip
        top = max(top, *(k[1] for k in known))
    ax.set_xticks(x, list(periods), fontsize=10)
    ax.set_xlim(-0.5, len(periods) - 0.5)
    ax.set_ylim(0, top * 1.12 or 1)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.tick_params(axis="y", labelsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=9, frameon=False, loc="lower left")
    return figure_svg(fig, key, title, description)


#: matplotlib's link (it opens a new window, `target="_blank"`; a page's own links do not).
_LINK = re.compile(r'<a xlink:href="([^"]+)"(?: target="_blank")?>')


def linked(svg: Markup, labels: dict[str, str]) -> Markup:
    """A chart whose parts link somewhere (matplotlib's `set_url`) made usable: each link
    gains an `href` and a name from `labels` (by target), and the root is a group rather
    than an image, so the links are reachable by keyboard and screen reader."""

    def link(m: re.Match[str]) -> str:
        href = m.group(1)
        name = html.escape(labels.get(href, href))
        return f'<a href="{href}" xlink:href="{href}" aria-label="{name}">'

    text = _LINK.sub(link, str(svg)).replace('<svg role="img"', '<svg role="group"', 1)
    return Markup(text)  # matplotlib output; the labels escaped
