"""`cocopart scenario new|check`: write a commented example scenario, or check a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cocopart.model import format_size
from cocopart.scenario import EXAMPLE_SCENARIO, OperationStep
from cocopart_cli.common import load_guest, write_text
from cocopart_cli.errors import CliError
from cocopart_cli.models import ScenarioFileReport
from cocopart_cli.output import begin, console, emit_json

scenario_app = typer.Typer(
    name="scenario", help="Write or check scenario files.", no_args_is_help=True
)


@scenario_app.command("new")
def new(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path("scenario.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema scenario`).")
    ] = False,
) -> None:
    """Write a commented example scenario (the default scenario) to PATH.

    Refuses to overwrite an existing file unless --force is given.

    **Example:** `cocopart scenario new my.toml && cocopart compare my.toml`
    """
    begin(json_output)
    if path.exists() and not force:
        raise CliError(f"{path} already exists; pass --force to overwrite it", file=path)
    if path.is_dir():
        raise CliError(f"{path} is a directory", file=path)
    write_text(path, EXAMPLE_SCENARIO)
    report = ScenarioFileReport(path=str(path), written=True)
    if json_output:
        emit_json(report)
    else:
        console().print(f"wrote {path}; run it with: cocopart compare {path}")


@scenario_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(metavar="SCENARIO.toml", help="File to check.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema scenario`).")
    ] = False,
) -> None:
    """Validate a scenario or guest file and summarise it (exit 2 naming file, line and field
    when it is wrong).

    **Example:** `cocopart scenario check examples/default.toml`
    """
    begin(json_output)
    scenario = load_guest(path)
    if json_output:
        emit_json(ScenarioFileReport(path=str(path), written=False, scenario=scenario))
        return
    out = console()
    g = scenario.guest
    out.print(
        f"[green]{escape(str(path))} is valid[/green]: {escape(scenario.name)} — "
        f"{format_size(g.memory)}, "
        f"{g.vcpus} vCPUs, {g.workload_layers} workload layers, "
        f"{len(scenario.steps)} steps"
    )
    for spec in scenario.layer_specs():
        out.print(
            f"  layer {spec.name}: memory {spec.memory}, {spec.vcpus} vCPUs"
            + (f", {len(spec.shared)} shared ranges" if spec.shared else ""),
            markup=False,
        )
    for i, step in enumerate(scenario.steps, 1):
        kind = step.operation.describe() if isinstance(step, OperationStep) else step.macro
        out.print(
            f"  step {i}: {step.name or kind}" + (f" ({kind})" if step.name else ""), markup=False
        )


def register(app: typer.Typer) -> None:
    app.add_typer(scenario_app)
