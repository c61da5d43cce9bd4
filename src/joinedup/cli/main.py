"""Top-level `joinedup` command and the error handling every subcommand shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from joinedup import __version__
from joinedup.errors import JoinedupError

DEFAULT_WAREHOUSE = Path("data/joinedup.duckdb")

console = Console()
err_console = Console(stderr=True)


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


app = typer.Typer(
    name="joinedup",
    help="joinedup: the platform an Integrated Care System runs on.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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
