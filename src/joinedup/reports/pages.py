"""What the HTML reports share: one page style, the template loader and an atomic write, so
every report looks alike and none is ever left half-written."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup


def page_style() -> Markup:
    """The reports' CSS (NHS colours, readable tables, print rules), inlined in each page."""
    css = (resources.files("joinedup.reports") / "templates" / "report.css").read_text("utf-8")
    return Markup(css)  # our own file, no user content


def loader() -> jinja2.BaseLoader:
    """The reports' templates, for the reports here and for the dashboard, which includes
    their sections in its own pages."""
    return jinja2.PackageLoader("joinedup.reports", "templates")


def template(name: str) -> jinja2.Template:
    env = jinja2.Environment(loader=loader(), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name)


def write_page(page: str, output: Path) -> Path:
    """Write `page` to `output` through a temporary file, so readers never see half of it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output
