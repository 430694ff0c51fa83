"""`cocopart compare`: one scenario on every selected backend, side by side."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cocopart.backend import Backend
from cocopart.model import Strategy
from cocopart.scenario import Runner, Scenario, ScenarioRun
from cocopart_cli.common import load_guest, resolve_backends, write_text
from cocopart_cli.errors import EXIT_FAILED
from cocopart_cli.models import CapabilityDifference, CompareReport
from cocopart_cli.output import ProgressBar, begin, console, emit_json


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


def capability_differences(
    scenario: Scenario, backends: list[Backend]
) -> list[CapabilityDifference]:
    """Capabilities that some compared backends support and others do not."""
    answers = {b.name: b.capabilities(scenario.config_for(b.name)) for b in backends}
    names: list[str] = []
    for caps in answers.values():
        names += [c for c in caps if c not in names]
    out = []
    for cap in names:
        per = {b: a[cap] for b, a in answers.items() if cap in a}
        if len({a.supported for a in per.values()}) > 1 or len(per) < len(answers):
            out.append(CapabilityDifference(capability=cap, answers=per))
    return out


def compare(
    scenario: Scenario,
    backends: list[Backend],
    strategy: Strategy | None = None,
    costs: Path | None = None,
) -> CompareReport:
    """Run ``scenario`` on each backend and collect the comparison."""
    runs: list[ScenarioRun] = []
    for backend in backends:
        runner = Runner(scenario, backend, strategy=strategy, costs=costs, keep_data=False)
        with ProgressBar(f"{scenario.name} on {backend.name}") as bar:
            runs.append(runner.run(bar.update))
    return CompareReport(
        scenario=scenario.name,
        description=scenario.description,
        strategy=(strategy or scenario.guest.strategy).value,
        backends=[b.name for b in backends],
        runs=runs,
        capability_differences=capability_differences(scenario, backends),
        ok=not any(r.failed for r in runs),
    )


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        scenario_file: Annotated[
            Path,
            typer.Argument(
                metavar="SCENARIO.toml", help="Scenario file (see `cocopart scenario new`)."
            ),
        ],
        backend: Annotated[
            list[str] | None,
            typer.Option(
                "--backend",
                "-b",
                help="Backend to run on; repeat for several. Default: every installed backend.",
            ),
        ] = None,
        strategy: Annotated[
            Strategy | None,
            typer.Option(help="Planning strategy; default: the file's guest.strategy."),
        ] = None,
        fmt: Annotated[
            Format, typer.Option("--format", "-f", help="Output format.")
        ] = Format.TABLE,
        plot: Annotated[
            Path | None,
            typer.Option(
                metavar="OUT.png",
                help="Also draw estimated time and world switches per step "
                "for each backend into this PNG.",
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                metavar="FILE", help="Write the formatted output to FILE instead of stdout."
            ),
        ] = None,
        costs: Annotated[
            Path | None,
            typer.Option(
                metavar="COSTS.toml",
                help="Cost overrides ([primitives] / [switches] in ns), "
                "applied to every backend's table before the file's [costs].",
            ),
        ] = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Same as --format json (schema: `cocopart schema compare`)."
            ),
        ] = False,
    ) -> None:
        """Run one scenario on every selected backend and compare them step by step.

        Per step: primitives, world switches, estimated time and result; totals; and where
        the backends' capabilities differ. Exit 1 if a step returned error or partial on
        any backend (not-supported is shown, not an error).

        **Example:** `cocopart compare examples/default.toml --plot default.png`
        """
        begin(json_output or fmt is Format.JSON)
        scenario = load_guest(scenario_file)
        backends = resolve_backends(backend)
        report = compare(scenario, backends, strategy, costs)
        if plot is not None:
            from cocopart_cli.plots import compare_figure, save

            save(compare_figure(report), plot)
        if json_output or fmt is Format.JSON:
            if out is not None:
                write_text(out, report.model_dump_json(indent=2) + "\n")
            else:
                emit_json(report)
        elif fmt is Format.MARKDOWN or fmt is Format.HTML:
            from cocopart_cli.render import compare_html, compare_markdown

            text = compare_markdown(report) if fmt is Format.MARKDOWN else compare_html(report)
            if out is not None:
                write_text(out, text)
            else:
                typer.echo(text, nl=False)
        else:
            from cocopart_cli.render import print_compare

            if out is not None:
                from rich.console import Console

                with out.open("w", encoding="utf-8") as fh:
                    print_compare(report, Console(file=fh, width=160, soft_wrap=False))
            else:
                print_compare(report, console())
                if plot is not None:
                    console().print(f"plot written to {plot}")
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
