"""Top-level `joinedup` command and the error handling every subcommand shares."""

from __future__ import annotations

import importlib
import inspect
import sys
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperGroup

from joinedup import __version__
from joinedup.errors import JoinedupError

DEFAULT_WAREHOUSE = Path("data/joinedup.duckdb")

console = Console()
err_console = Console(stderr=True)


def progress_count(unit: str = "resources") -> Progress:
    """A spinner and a running count of `unit` for work of unknown size (loads, exports),
    gone when done."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn(f"{{task.completed:,}} {unit}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def progress_bar() -> Progress:
    """A bar of done out of a known total, kept on screen when done (a build's people, the
    demo's records)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


#: Every subcommand, in the order `--help` lists them: the module that defines it and the
#: name there of its Typer app (a group) or function (a single command). A command's module
#: is imported when the command runs, not before: importing them all (pyarrow, scipy,
#: SQLAlchemy, FastAPI...) took 3.8 s of every `joinedup` command.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("joinedup.cli.warehouse", "summary"),
    "demo": ("joinedup.cli.warehouse", "demo"),
    "serve": ("joinedup.cli.web", "serve"),
    "footprint": ("joinedup.cli.footprint", "app"),
    "synth": ("joinedup.cli.synth", "app"),
    "warehouse": ("joinedup.cli.warehouse", "app"),
    "score": ("joinedup.cli.score", "app"),
    "phm": ("joinedup.cli.phm", "app"),
    "indicators": ("joinedup.cli.indicators", "app"),
    "views": ("joinedup.cli.views", "app"),
    "ingest": ("joinedup.cli.fhir", "ingest_app"),
    "export": ("joinedup.cli.fhir", "export_app"),
    "finance": ("joinedup.cli.finance", "app"),
    "link": ("joinedup.cli.link", "app"),
    "users": ("joinedup.cli.web", "users_app"),
    "records": ("joinedup.cli.records", "app"),
}


class _Subcommands(TyperGroup):
    """The root group: each subcommand built from its module when first asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(dict.fromkeys([*super().list_commands(ctx), *SUBCOMMANDS]))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in SUBCOMMANDS:
            found = subcommand(cmd_name)
            self.add_command(found, cmd_name)
        return found

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As the root resolved it, with its "Did you mean" taken from every subcommand's
        name (Typer's own looks only at those already built)."""
        try:
            return super().resolve_command(ctx, args)
        except Exception as err:  # click's UsageError, which Typer keeps private
            message = getattr(err, "message", None)
            if isinstance(message, str) and args and "Did you mean" not in message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    suggestions = ", ".join(repr(m) for m in matches)
                    err.message = f"{message.rstrip('.')}. Did you mean {suggestions}?"  # type: ignore[attr-defined]
            raise


def subcommand(name: str) -> Any:
    """The click command of subcommand `name`, built as the root app would build it."""
    module, attribute = SUBCOMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode="rich")
    holder.callback()(_root_of_one)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    built = typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    _reflow(built)
    return built


def _reflow(command: Any) -> None:
    """Join the lines of each paragraph of a command's help (and its subcommands'), so the
    terminal wraps them: Typer keeps a docstring's line breaks after its first paragraph,
    which a terminal narrower than the source breaks again into ragged lines."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)
    for child in getattr(command, "commands", {}).values():
        _reflow(child)


def _root_of_one() -> None:
    """(A callback, so that one subcommand is built inside a group, as under the root.)"""


app = typer.Typer(
    name="joinedup",
    help="joinedup: the platform an Integrated Care System runs on.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=_Subcommands,
)

WarehouseOption = Annotated[
    Path,
    typer.Option(
        "--warehouse",
        "-w",
        envvar="JOINEDUP_WAREHOUSE",
        help="Warehouse: a DuckDB file (name ending .duckdb) or a lake (a folder of Parquet "
        "tables with a manifest) (env JOINEDUP_WAREHOUSE).",
        show_default=True,
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        "-e",
        envvar="JOINEDUP_ENGINE",
        help="Engine that runs the job: duckdb (embedded) or spark (needs a lake warehouse).",
    ),
]
SparkMasterOption = Annotated[
    str,
    typer.Option(
        "--spark-master",
        envvar="JOINEDUP_SPARK_MASTER",
        help="Spark master URL for --engine spark (local[*], spark://host:7077, yarn ...).",
    ),
]
MemoryLimitOption = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        envvar="JOINEDUP_MEMORY_LIMIT",
        help="DuckDB's memory limit, e.g. 4GB (default: a quarter of RAM less 2.5GB for the rest "
        "of the process, at least 2GB); beyond it DuckDB spills to disk.",
    ),
]
DEFAULT_SPARK_MASTER = "local[*]"


def _version(value: bool) -> None:
    if value:
        console.print(f"joinedup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """joinedup: the platform an Integrated Care System runs on."""


def main() -> None:
    """Entry point: run the app; user errors become one red line and exit code 2."""
    try:
        app(standalone_mode=True)
    except JoinedupError as err:
        # One line however narrow the terminal or pipe (the terminal wraps it, not rich).
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
        sys.exit(2)
    except OSError as err:  # a file or folder the user named cannot be read or written
        where = f" {err.filename}:" if err.filename else ""
        err_console.print(f"[bold red]error:[/]{escape(where)} {escape(str(err.strerror or err))}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: nothing was half-written[/]")
        sys.exit(130)
