"""`cocopart explain`: the primitive sequence of one operation on each backend, side by side."""

from __future__ import annotations

import hashlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cocopart.backend import Backend
from cocopart.errors import CocopartError
from cocopart.model import GpaRange, InterruptMode, Strategy, parse_size
from cocopart.ops import (
    Attest,
    ConfigureInterrupts,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    EndOfInterrupt,
    ExtendMeasurement,
    InjectInterrupt,
    Operation,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.scenario import Scenario, default_scenario
from cocopart_cli import seqdiag
from cocopart_cli.common import load_guest, resolve_backends
from cocopart_cli.errors import CliError
from cocopart_cli.models import ExplainReport, ExplainSide
from cocopart_cli.output import begin, console, emit_json, fmt_count, fmt_ns


class OpName(str, Enum):
    VALIDATE = "validate"
    RESCIND = "rescind"
    SHARE = "share"
    UNSHARE = "unshare"
    SET_ACCESS = "set-access"
    CREATE_VCPU = "create-vcpu"
    DELETE_VCPU = "delete-vcpu"
    ATTEST = "attest"
    ATTEST_HARDWARE = "attest-hardware"
    INJECT_INTERRUPT = "inject-interrupt"
    EOI = "eoi"
    CONFIGURE_INTERRUPTS = "configure-interrupts"
    EXTEND_MEASUREMENT = "extend-measurement"


class Args:
    """The explained operation's arguments, with defaults filled in from the guest."""

    def __init__(
        self,
        scenario: Scenario,
        layer: str,
        size: str,
        start: str | None,
        target: str | None,
        vcpu: int | None,
        vector: int,
        mode: InterruptMode | None,
        access: str,
        register: int,
    ) -> None:
        specs = {s.name: s for s in scenario.layer_specs()}
        if layer not in scenario.known_layers():
            raise CliError(
                f"--layer {layer}: no such layer in this guest (layers: "
                f"{', '.join(sorted(scenario.known_layers()))})"
            )
        self.layer = layer
        try:
            size_b = parse_size(size)
            memory = specs[layer].memory if layer in specs else None
            base = memory.start if memory is not None else 0
            start_b = parse_size(start) if start is not None else base
            self.range = GpaRange.of(start_b, size_b)
            self.range.check_inside(scenario.guest.memory)
        except ValueError as err:
            raise CliError(f"--start/--size: {err}") from None
        workloads = list(scenario.guest.workloads)
        self.target = target or layer
        self.access_target = target or next((w for w in workloads if w != layer), layer)
        self.vcpu = vcpu
        self.vector = vector
        self.mode = mode or scenario.guest.interrupt_mode
        self.access = access
        self.register = register


def build(name: OpName, a: Args) -> tuple[list[Operation], Operation]:
    """(prerequisite operations, the operation) for ``name``."""
    validate = ValidatePages(range=a.range, layer=a.layer)
    share = ConvertPages(range=a.range, to="shared", layer=a.layer)
    vcpu = 1 if a.vcpu is None else a.vcpu
    report_data = hashlib.sha512(b"cocopart explain").digest()
    try:
        table: dict[OpName, tuple[list[Operation], Any]] = {
            OpName.VALIDATE: ([], lambda: validate),
            OpName.RESCIND: ([validate], lambda: RescindPages(range=a.range, layer=a.layer)),
            OpName.SHARE: ([validate], lambda: share),
            OpName.UNSHARE: (
                [validate, share],
                lambda: ConvertPages(range=a.range, to="private", layer=a.layer),
            ),
            OpName.SET_ACCESS: (
                [validate],
                lambda: SetAccess(
                    range=a.range, target=a.access_target, access=a.access, layer=a.layer
                ),
            ),
            OpName.CREATE_VCPU: ([], lambda: CreateVcpu(vcpu=vcpu, target=a.target, layer=a.layer)),
            OpName.DELETE_VCPU: (
                [CreateVcpu(vcpu=vcpu, target=a.target, layer=a.layer)],
                lambda: DeleteVcpu(vcpu=vcpu, target=a.target, layer=a.layer),
            ),
            OpName.ATTEST: (
                [],
                lambda: Attest(layer=a.layer, source="service", report_data=report_data),
            ),
            OpName.ATTEST_HARDWARE: (
                [],
                lambda: Attest(layer=a.layer, source="hardware", report_data=report_data),
            ),
            OpName.INJECT_INTERRUPT: (
                [ConfigureInterrupts(mode=a.mode, layer=a.layer)],
                lambda: InjectInterrupt(
                    vcpu=0 if a.vcpu is None else a.vcpu,
                    target=a.target,
                    vector=a.vector,
                    layer="host",
                ),
            ),
            OpName.EOI: (
                [
                    ConfigureInterrupts(mode=a.mode, layer=a.layer),
                    InjectInterrupt(
                        vcpu=0 if a.vcpu is None else a.vcpu,
                        target=a.target,
                        vector=a.vector,
                        layer="host",
                    ),
                ],
                lambda: EndOfInterrupt(
                    vcpu=0 if a.vcpu is None else a.vcpu, target=a.target, layer=a.target
                ),
            ),
            OpName.CONFIGURE_INTERRUPTS: (
                [],
                lambda: ConfigureInterrupts(mode=a.mode, layer=a.layer),
            ),
            OpName.EXTEND_MEASUREMENT: (
                [],
                lambda: ExtendMeasurement(
                    index=a.register,
                    digest=hashlib.sha384(b"cocopart explain").digest(),
                    layer=a.layer,
                ),
            ),
        }
        pre, make = table[name]
        return pre, make()
    except ValueError as err:  # pydantic: a bad --access, --vector ...
        raise CliError(f"bad argument for {name.value}: {err}") from None


def explain_on(
    backend: Backend, scenario: Scenario, name: OpName, a: Args, strategy: Strategy | None
) -> ExplainSide:
    """Set the stage on a fresh guest, then plan the operation."""
    config = scenario.config_for(backend.name, strategy)
    pre, op = build(name, a)
    try:
        p = Partition(config, backend)
        results = [p.run(x) for x in pre]
        plan = p.plan(op)
    except CocopartError as err:
        return ExplainSide(
            backend=backend.name,
            operation=op.describe(),
            prerequisites=[x.describe() for x in pre],
            error=str(err),
            diagram=f"(cannot plan: {err})",
        )
    layers = [layer.name for layer in p.layers]
    diagram = seqdiag.render(plan.events, layers)
    return ExplainSide(
        backend=backend.name,
        operation=op.describe(),
        prerequisites=[x.describe() for x in pre],
        prerequisites_ok=all(r.ok for r in results),
        plan=plan,
        diagram=diagram,
    )


def render(report: ExplainReport) -> None:
    out = console()
    out.print(f"[bold]{escape(report.operation)}[/bold]")
    for side in report.sides:
        if side.prerequisites:
            mark = "" if side.prerequisites_ok else " [red](did not all succeed)[/red]"
            out.print(
                f"  {escape(side.backend)}: first ran {escape('; '.join(side.prerequisites))}{mark}"
            )
    width = sum(
        max((len(line) for line in s.diagram.splitlines()), default=0) + 4 for s in report.sides
    )
    table = Table(show_lines=False, pad_edge=False)
    for side in report.sides:
        if side.plan is not None:
            head = (
                f"{side.backend}: {fmt_count(side.plan.primitives)} primitives, "
                f"{fmt_count(side.plan.world_switches)} world switches, "
                f"{fmt_ns(side.plan.estimated_ns)}"
            )
            if side.plan.route is not None:
                head += f"\nroute: {side.plan.route.describe()}"
        else:
            head = f"{side.backend}: {side.error}"
        table.add_column(Text(head), no_wrap=True, overflow="ignore")
    if width <= out.width:
        table.add_row(*[Text(s.diagram) for s in report.sides])
        out.print(table)
        return
    for side, column in zip(report.sides, table.columns):
        out.print(Text(str(column.header), style="bold"))
        out.print(side.diagram, markup=False, highlight=False, crop=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        operation: Annotated[OpName, typer.Argument(help="The operation to explain.")],
        backend: Annotated[
            list[str] | None,
            typer.Option(
                "--backend", "-b", help="Backend; repeat for several. Default: all installed."
            ),
        ] = None,
        guest: Annotated[
            str | None,
            typer.Option(metavar="GUEST.toml", help="Guest file; default: the default guest."),
        ] = None,
        layer: Annotated[str, typer.Option(help="Requesting layer.")] = "l2.1",
        size: Annotated[str, typer.Option(help="Range size for memory operations.")] = "2MiB",
        start: Annotated[
            str | None, typer.Option(help="Range start; default: the start of the layer's memory.")
        ] = None,
        target: Annotated[
            str | None,
            typer.Option(
                help="Target layer (set-access: default another workload; vCPU and interrupt "
                "operations: default the requesting layer)."
            ),
        ] = None,
        vcpu: Annotated[
            int | None, typer.Option(help="vCPU index (create/delete default 1, inject default 0).")
        ] = None,
        vector: Annotated[int, typer.Option(help="Interrupt vector (16-255).")] = 0x20,
        mode: Annotated[
            InterruptMode | None, typer.Option(help="Interrupt mode; default: the guest's.")
        ] = None,
        access: Annotated[str, typer.Option(help="Access for set-access, e.g. r, rw, rwx.")] = "r",
        register_: Annotated[int, typer.Option("--register", help="Measurement register.")] = 0,
        strategy: Annotated[Strategy | None, typer.Option(help="Planning strategy.")] = None,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema explain`).")
        ] = False,
    ) -> None:
        """Show the primitive sequence of one operation on each backend side by side.

        Lanes are layers, arrows world switches, notes the primitives with their counts.
        The operation runs on a fresh guest after the steps it needs (validate before
        share, create before delete, ...); nothing is executed for the operation itself.

        **Example:** `cocopart explain validate --size 1GiB --layer l2.2`
        """
        begin(json_output)
        scenario = load_guest(Path(guest)) if guest else default_scenario()
        args = Args(scenario, layer, size, start, target, vcpu, vector, mode, access, register_)
        backends = resolve_backends(backend)
        sides = [explain_on(b, scenario, operation, args, strategy) for b in backends]
        report = ExplainReport(
            operation=sides[0].operation if sides else operation.value, sides=sides
        )
        if json_output:
            emit_json(report)
        else:
            render(report)
