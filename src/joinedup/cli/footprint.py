"""`joinedup footprint`: build, show, check and write ICS footprint files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from joinedup.cli.main import console
from joinedup.footprint import (
    NEIGHBOURHOOD_MAX,
    NEIGHBOURHOOD_MIN,
    Footprint,
    default_footprint,
    footprint_from_reference,
    icb_summaries,
)
from joinedup.reference import PRACTICE_FILE_NAME, load_practices_from_dir

app = typer.Typer(
    help="The ICS footprint: system, places, PCNs, practices, organisations, collaboratives.",
    no_args_is_help=True,
)

ReferenceDirOption = Annotated[
    Path,
    typer.Option(
        "--reference-dir",
        envvar="JOINEDUP_REFERENCE_DIR",
        help=f"Directory holding {PRACTICE_FILE_NAME} (env JOINEDUP_REFERENCE_DIR).",
        file_okay=False,
    ),
]


@app.command("from-reference")
def from_reference(
    icb: Annotated[str, typer.Option("--icb", help="ICB code, e.g. QYG (see list-icbs).")],
    reference_dir: ReferenceDirOption,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Footprint file to write [default: footprint-ICB.json]"
        ),
    ] = None,
) -> None:
    """Build a real ICB's footprint from NHS England's practice-level weighted populations."""
    practices = load_practices_from_dir(reference_dir)
    footprint = footprint_from_reference(practices, icb)
    path = output or Path(f"footprint-{footprint.system.code}.json")
    footprint.save(path)
    _summary(footprint)
    console.print(f"Wrote [bold]{escape(str(path))}[/]")


@app.command()
def show(
    file: Annotated[
        Path | None, typer.Argument(help="Footprint file; the built-in default if omitted.")
    ] = None,
) -> None:
    """Summarise a footprint: places, practices, PCNs and populations."""
    _summary(Footprint.load(file) if file else default_footprint())


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Footprint file to check.")]) -> None:
    """Check a footprint file: every field and cross-reference; errors name the field."""
    footprint = Footprint.load(file)
    system = footprint.system
    console.print(
        f"[green]OK[/] {escape(str(file))}: {escape(system.name)} ({system.code}), "
        f"{len(footprint.places)} places, {len(footprint.pcns)} PCNs, "
        f"{len(footprint.practices)} practices, {footprint.population:,} people"
    )


@app.command()
def default(
    output: Annotated[Path, typer.Option("--output", "-o", help="Footprint file to write.")] = Path(
        "footprint-default.json"
    ),
) -> None:
    """Write the built-in fictional footprint (NHS Riverside and Coast ICB) to a file."""
    footprint = default_footprint()
    footprint.save(output)
    console.print(
        f"Wrote [bold]{escape(str(output))}[/]: {footprint.system.name}, "
        f"{len(footprint.places)} places, "
        f"{len(footprint.practices)} practices, {footprint.population:,} people"
    )


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write; stdout if omitted.")
    ] = None,
) -> None:
    """Print or write the JSON schema every footprint file must match."""
    text = json.dumps(Footprint.model_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"Wrote [bold]{escape(str(output))}[/]")


@app.command("list-icbs")
def list_icbs(reference_dir: ReferenceDirOption) -> None:
    """List the ICBs in the practice file with their practice counts and populations."""
    summaries = icb_summaries(load_practices_from_dir(reference_dir))
    table = Table(title=f"ICBs in {PRACTICE_FILE_NAME}")
    table.add_column("ICB")
    table.add_column("Name")
    table.add_column("Practices", justify="right")
    table.add_column("Population", justify="right")
    for s in summaries:
        table.add_row(
            s.icb_code, escape(s.icb_name), f"{s.practice_count:,}", f"{s.population:,.0f}"
        )
    console.print(table)
    console.print(f"{len(summaries)} ICBs")


def _summary(footprint: Footprint) -> None:
    """Print the one-screen overview used by `show` and `from-reference`."""
    system = footprint.system
    place_pop = footprint.place_population()
    pcn_pop = footprint.pcn_population()
    practice_count: dict[str, int] = dict.fromkeys(place_pop, 0)
    for pr in footprint.practices:
        practice_count[pr.place] += 1
    pcn_count: dict[str, int] = dict.fromkeys(place_pop, 0)
    for pcn in footprint.pcns:
        pcn_count[pcn.place] += 1

    kind = "real, from NHS England data" if system.is_real else "fictional"
    console.print(
        f"[bold]{escape(system.name)}[/] ({system.code}, {kind}): {len(footprint.places)} places, "
        f"{len(footprint.pcns)} PCNs, {len(footprint.practices)} practices, "
        f"{footprint.population:,} people"
    )
    table = Table()
    table.add_column("Place")
    table.add_column("Code", no_wrap=True)
    table.add_column("Profile", no_wrap=True)
    table.add_column("Practices", justify="right")
    table.add_column("PCNs", justify="right")
    table.add_column("Population", justify="right")
    for place in footprint.places:
        table.add_row(
            escape(place.name),
            place.code,
            place.profile.value,
            str(practice_count[place.code]),
            str(pcn_count[place.code]),
            f"{place_pop[place.code]:,}",
        )
    console.print(table)
    sizes = sorted(pcn_pop.values())
    inside = sum(NEIGHBOURHOOD_MIN <= s <= NEIGHBOURHOOD_MAX for s in sizes)
    console.print(
        f"PCN sizes {sizes[0]:,}–{sizes[-1]:,} people; {inside} of {len(sizes)} within "
        f"{NEIGHBOURHOOD_MIN:,}–{NEIGHBOURHOOD_MAX:,}"
    )
    console.print(
        f"Organisations: {len(footprint.organisations)}; "
        f"collaboratives: {len(footprint.collaboratives)}"
    )
    for note in footprint.notes:
        console.print(f"[dim]Note:[/] {escape(note)}")
