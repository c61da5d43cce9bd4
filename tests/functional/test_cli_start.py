"""The `joinedup` command starts quickly: a subcommand's module (and what it imports) is
loaded when that subcommand runs, and every subcommand is still there."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from joinedup.cli import app
from joinedup.cli.main import SUBCOMMANDS

_LOADED = (
    "import sys\n"
    "from joinedup.cli import main\n"
    "sys.argv = ['joinedup', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = ('joinedup.cli.warehouse', 'joinedup.cli.records', 'joinedup.web', 'scipy',\n"
    "         'sqlalchemy', 'matplotlib', 'fastapi', 'pandas')\n"
    "print('LOADED', ' '.join(sorted(m for m in heavy if m in sys.modules)))\n"
)


def _loaded(*args: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, check=False
    )
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("LOADED")]
    assert line, run.stdout + run.stderr
    return line[0].split()[1:]


def test_version_loads_no_subcommand() -> None:
    assert _loaded("--version") == []


def test_views_loads_only_what_views_needs() -> None:
    """`views` (the SQL-on-FHIR runner) needs neither the warehouse, the records store,
    the web app nor the statistics of the population pipeline."""
    assert _loaded("views", "--help") == []


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_is_there(name: str) -> None:
    """Each subcommand named in the root's list is built from its module, with its help."""
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert f"joinedup {name}" in " ".join(result.output.split())


def test_an_unknown_subcommand_is_refused() -> None:
    result = CliRunner().invoke(app, ["nosuch"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output


def test_a_mistyped_subcommand_gets_a_suggestion() -> None:
    """Suggested from every subcommand's name, built or not."""
    result = CliRunner().invoke(app, ["view", "run"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 2
    assert "No such command 'view'. Did you mean 'views'?" in " ".join(result.output.split())


def test_help_paragraphs_wrap_to_the_terminal() -> None:
    """A paragraph of a command's help after its first is wrapped by the terminal, not at
    its docstring's line breaks: at 200 columns a sentence is one line, where Typer alone
    broke it after `and`."""
    result = CliRunner().invoke(
        app, ["ingest", "fhir", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "by type, id and version) and flattened by the shipped SQL-on-FHIR views" in (
        result.output
    )
