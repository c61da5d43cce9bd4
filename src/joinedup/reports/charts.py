"""Charts for results a person would rather see than read (rendered with matplotlib to SVG)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from markupsafe import Markup
from matplotlib.figure import Figure
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
