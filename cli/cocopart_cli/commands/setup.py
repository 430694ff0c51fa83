"""`cocopart setup`: plan and run the bring-up of a partitioned guest on one backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart.model import format_size
from cocopart.scenario import AttestEachLayer, BringUp, Runner, Scenario
from cocopart_cli.common import backend_for, load_guest, result_evidence, write_text
from cocopart_cli.errors import EXIT_FAILED
from cocopart_cli.evidence_tools import launch_measurement, policy_toml, read_claims, simulated_root
from cocopart_cli.models import EvidenceSummary, LayerSummary, PinAdvice, SetupReport
from cocopart_cli.output import STATUS_STYLE, ProgressBar, begin, console, emit_json, fmt_ns
from cocopart_cli.render import run_table

#: Memory runs shown in the text summary (JSON has them all).
MAX_MEMORY_ROWS = 24


def with_default_steps(scenario: Scenario) -> Scenario:
    """A guest file without steps gets bring-up plus attestation from each layer."""
    if scenario.steps:
        return scenario
    return scenario.model_copy(update={"steps": [BringUp(), AttestEachLayer()]})


def setup(
    scenario: Scenario, backend_name: str | None, guest_file: str, costs: Path | None = None
) -> SetupReport:
    """Run the guest file's steps and gather the summary."""
    scenario = with_default_steps(scenario)
    backend = backend_for(scenario, backend_name)
    runner = Runner(scenario, backend, costs=costs)
    with ProgressBar(f"setting up {scenario.name} on {backend.name}") as bar:
        run = runner.run(bar.update)
    p = runner.partition
    workloads = list(runner.config.workloads)
    specs = {s.name: s for s in scenario.layer_specs()}
    vcpus = p.vcpus()
    layers = [
        LayerSummary(
            name=layer.name,
            role=layer.role.value,
            vendor_name=layer.vendor_name,
            memory=str(specs[layer.name].memory) if layer.name in specs else None,
            vcpus_running=sum(1 for v in vcpus if v.layer == layer.name and v.state == "running"),
        )
        for layer in p.layers
    ]
    outcomes = [(s.name, o) for s in run.steps for o in s.operations]
    evidence: list[EvidenceSummary] = []
    launch: str | None = None
    measurements: dict[str, str] = {}
    #: The layers the guest's evidence speaks for: the written policy must accept them (service
    #: evidence speaks for l1 unless the guest names the requester: attest_requester_entry).
    origins: list[str] = []
    for (step_name, outcome), result in zip(outcomes, p.history):
        launch = launch or launch_measurement(result.data)
        ev = result_evidence(result)
        if ev is None:
            continue
        claims = read_claims(ev, ["l1", *workloads])
        if claims is not None:
            origins.append(claims.origin.layer)
            for name, value in claims.measurements.items():
                if value.strip(b"\0"):
                    measurements.setdefault(name, value.hex())
        evidence.append(
            EvidenceSummary(
                layer=outcome.layer,
                step=step_name,
                vendor=ev.vendor,
                format=ev.format,
                size=len(ev.raw),
                simulated_root=simulated_root(ev) is not None,
                claims=claims,
                evidence=ev,
            )
        )
    if launch:
        advice = "pin the launch measurement the backend reported (expected_measurements)"
        measurements.setdefault("measurement", launch)
    elif measurements:
        advice = (
            "pin these measurement claims of the evidence in expected_measurements "
            "(the backend reported no separate launch measurement)"
        )
    elif evidence:
        advice = (
            "the evidence's claims could not be read here; pin its measurement claims "
            "(`cocopart verify EVIDENCE --json` shows them) in expected_measurements"
        )
    else:
        advice = (
            "no evidence was produced: add an `attest-each-layer` step to pin the "
            "measurement claims of the evidence"
        )
    pin = PinAdvice(
        launch_measurement=launch,
        measurements=measurements,
        advice=advice,
        policy_toml=policy_toml(
            list(dict.fromkeys([*workloads, *origins])),
            measurements,
            f"policy for {scenario.name} on {backend.name}",
        ),
    )
    return SetupReport(
        guest_file=guest_file,
        backend=backend.name,
        run=run,
        layers=layers,
        memory=p.memory_view(),
        vcpus=vcpus,
        evidence=evidence,
        pin=pin,
        ok=not run.failed,
    )


def render(report: SetupReport) -> None:
    out = console()
    run = report.run
    out.print(
        f"[bold]{escape(run.scenario)}[/bold] on [bold]{escape(report.backend)}[/bold] "
        f"({escape(run.backend_title)}, {escape(run.backend_version)}) — "
        f"{format_size(run.config.memory)}, {run.config.vcpus} vCPUs, "
        f"{run.config.workload_layers} workload layers, interrupts "
        f"{run.config.interrupt_mode.value}, strategy {run.strategy.value}"
    )
    out.print(run_table(run, "Steps"))
    for s in run.steps:
        if s.status.value != "ok":
            out.print(
                f"  [{STATUS_STYLE[s.status.value]}]{escape(s.name)}: {s.status.value}[/] — "
                f"{escape(s.reason or '')}",
                highlight=False,
            )
    lt = Table(title="Layers", title_justify="left")
    for col in ("layer", "role", "vendor name", "memory", "vCPUs running"):
        lt.add_column(col)
    for layer in report.layers:
        lt.add_row(
            escape(layer.name),
            layer.role,
            escape(layer.vendor_name),
            escape(layer.memory or ""),
            str(layer.vcpus_running) if layer.role == "workload" else "",
        )
    out.print(lt)
    mt = Table(title="Guest memory state (memory_view)", title_justify="left")
    for col in ("start", "end", "size", "private", "validated", "access", "context"):
        mt.add_column(col)
    for r in report.memory[:MAX_MEMORY_ROWS]:
        mt.add_row(
            f"{r.start:#x}",
            f"{r.end:#x}",
            format_size(r.end - r.start),
            "yes" if r.private else "shared",
            "yes" if r.validated else "no",
            escape(" ".join(f"{k}:{v}" for k, v in sorted(r.access.items()))),
            "vCPU context" if r.context else "",
        )
    out.print(mt)
    if len(report.memory) > MAX_MEMORY_ROWS:
        out.print(f"  … {len(report.memory) - MAX_MEMORY_ROWS} more runs (see --out / --json)")
    if report.evidence:
        et = Table(title="Evidence", title_justify="left")
        for col in ("layer", "step", "vendor", "format", "bytes", "origin", "measurements"):
            et.add_column(col, overflow="fold")
        for e in report.evidence:
            c = e.claims
            origin = (
                f"{c.origin.layer} ({c.origin.vendor_level}"
                f"{', via privileged layer' if c.origin.via_privileged_layer else ''})"
                if c
                else "?"
            )
            meas = (
                ", ".join(f"{k}={v.hex()[:16]}…" for k, v in c.measurements.items())
                if c
                else "(claims not readable)"
            )
            cells = (e.layer, e.step, e.vendor, e.format, str(e.size), origin, meas)
            et.add_row(*(escape(x) for x in cells))
        out.print(et)
    out.print(f"[bold]To pin in a policy:[/bold] {escape(report.pin.advice)}")
    if report.pin.launch_measurement:
        out.print(f"  launch measurement: {report.pin.launch_measurement}")
    for name, value in sorted(report.pin.measurements.items()):
        out.print(f"  {name} = {value}")
    totals = run.totals
    style = "green" if report.ok else "red"
    out.print(
        f"[{style}]{totals.status.value}[/{style}]: {totals.operations} operations, "
        f"{totals.primitives:,} primitives, {totals.world_switches:,} world switches, "
        f"{fmt_ns(totals.estimated_ns)} estimated"
    )


def register(app: typer.Typer) -> None:
    @app.command("setup")
    def setup_cmd(
        guest_file: Annotated[
            Path,
            typer.Argument(
                metavar="GUEST.toml",
                help="Guest file: [guest], [[layers]] and optional [[steps]] "
                "(default steps: bring-up, attest-each-layer).",
            ),
        ],
        backend: Annotated[
            str | None,
            typer.Option(
                "--backend",
                "-b",
                help="Backend; default: the file's `backend`, else the first installed.",
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(metavar="RESULT.json", help="Write the full result as JSON here."),
        ] = None,
        costs: Annotated[
            Path | None,
            typer.Option(
                metavar="COSTS.toml", help="Cost overrides ([primitives] / [switches] in ns)."
            ),
        ] = None,
        policy_out: Annotated[
            Path | None,
            typer.Option(
                metavar="POLICY.toml", help="Write a policy pinning the measurements here."
            ),
        ] = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Print the result as JSON (schema: `cocopart schema setup`)."
            ),
        ] = False,
    ) -> None:
        """Validate a guest file, then plan and run its bring-up on one backend.

        Memory is validated/accepted per layer and shared as the file says, each layer's
        vCPUs are created, the interrupt mode configured and evidence requested. Prints the
        layers, the memory state, the vCPUs, the evidence and what to pin in a policy. Exit 1
        if an operation returned an error.

        **Example:** `cocopart setup examples/guest.toml --backend tdx --out guest.json`
        """
        begin(json_output)
        report = setup(load_guest(guest_file), backend, str(guest_file), costs)
        if out is not None:
            write_text(out, report.model_dump_json(indent=2) + "\n")
        if policy_out is not None:
            write_text(policy_out, report.pin.policy_toml)
        if json_output:
            emit_json(report)
        else:
            render(report)
            if out is not None:
                console().print(f"result written to {out}")
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
