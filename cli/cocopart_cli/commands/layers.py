"""`cocopart layers`: the layer graph, the route of each operation kind, each layer's TCB,
who may restrict whose memory and who owns each page (docs/authority.md)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart.authority import Authority, Ownership
from cocopart.errors import NotSupportedError
from cocopart.layers import EdgeKind, LayerGraph
from cocopart.memory import ProtocolLayout
from cocopart.model import L1, PartitionConfig, format_size
from cocopart.ops import Capability
from cocopart_cli.common import backend_for, load_guest, write_text
from cocopart_cli.models import (
    GraphModel,
    LayersReport,
    MemoryControlInfo,
    OwnershipRun,
    RouteInfo,
)
from cocopart_cli.output import begin, console, emit_json, fmt_ns


class Format(str, Enum):
    TEXT = "text"
    DOT = "dot"
    JSON = "json"
    PNG = "png"


def graph_model(graph: LayerGraph) -> GraphModel:
    return GraphModel.model_validate(graph.to_json())


def route_capabilities(config: PartitionConfig) -> list[str]:
    """Every operation kind the graph routes, with set-access once per target layer."""
    caps: list[str] = []
    for cap in Capability:
        if cap is Capability.SET_ACCESS:
            caps += [f"{cap.value}:{w}" for w in config.workloads]
        else:
            caps.append(cap.value)
    return caps


def routes(graph: LayerGraph, config: PartitionConfig) -> list[RouteInfo]:
    """The route of each operation kind from each workload layer."""
    out: list[RouteInfo] = []
    for source in config.workloads:
        for cap in route_capabilities(config):
            try:
                r = graph.route(cap, source)
            except NotSupportedError as err:
                out.append(
                    RouteInfo(capability=cap, from_layer=source, supported=False, reason=err.reason)
                )
                continue
            except KeyError as err:
                out.append(
                    RouteInfo(capability=cap, from_layer=source, supported=False, reason=str(err))
                )
                continue
            out.append(
                RouteInfo(
                    capability=cap,
                    from_layer=source,
                    supported=True,
                    provider=r.provider,
                    path=r.path,
                    mechanisms=[e.mechanism for e in r.edges],
                    cost_ns=r.cost_ns,
                )
            )
    return out


def authority_of(graph: LayerGraph, config: PartitionConfig) -> Authority:
    """The authority a guest starts with: the same :class:`~cocopart.authority.Ownership`
    (protocol layout + memory map) and memory-control edges a Partition's machine builds."""
    layout = ProtocolLayout(config.memory, config.workload_layers, config.vcpus)
    ownership = Ownership(layout, config.workloads, config.memory_map)
    return Authority.from_edges(ownership, graph.control_edges(), config.workloads)


def memory_control(
    graph: LayerGraph, auth: Authority, config: PartitionConfig
) -> list[MemoryControlInfo]:
    """For l1 and each workload layer: whom it may restrict, who may restrict it, its peers."""
    layers = [L1, *config.workloads]
    edges = graph.edges(EdgeKind.MEMORY_CONTROL)
    out: list[MemoryControlInfo] = []
    for layer in layers:
        peers = (
            []
            if layer == L1
            else [
                o
                for o in config.workloads
                if o != layer and not auth.controls(layer, o) and not auth.controls(o, layer)
            ]
        )
        out.append(
            MemoryControlInfo(
                layer=layer,
                controls=auth.controlled_by(layer),
                controlled_by=[o for o in layers if auth.controls(o, layer)],
                peers=peers,
                mechanisms=sorted({e.mechanism for e in edges if e.source == layer}),
            )
        )
    return out


def ownership_runs(auth: Authority, config: PartitionConfig) -> list[OwnershipRun]:
    """Who owns each run of guest-physical pages when the guest starts."""
    own = auth.ownership
    out: list[OwnershipRun] = []
    for s, e, v in own.runs(0, config.memory):
        out.append(
            OwnershipRun(
                start=s,
                end=e,
                owner=v.owner,
                assigned=v.assigned,
                kind="memory-map" if v.assigned else "pool",
            )
        )
    for s, e, v in own.runs(config.memory, own.layout.total):
        out.append(
            OwnershipRun(
                start=s,
                end=e,
                owner=v.owner,
                assigned=v.assigned,
                kind="privileged" if v.owner == L1 else "protocol-pages",
            )
        )
    return out


def build(guest: Path, backend_name: str | None) -> tuple[LayersReport, LayerGraph]:
    scenario = load_guest(guest)
    backend = backend_for(scenario, backend_name)
    config = scenario.config_for(backend.name)
    backend.check_config(config)
    graph = backend.graph(config)
    auth = authority_of(graph, config)
    report = LayersReport(
        backend=backend.name,
        layers=graph.layers,
        graph=graph_model(graph),
        routes=routes(graph, config),
        tcb={layer.name: graph.tcb(layer.name) for layer in graph.layers},
        memory_control=memory_control(graph, auth, config),
        ownership=ownership_runs(auth, config),
    )
    return report, graph


def render(report: LayersReport) -> None:
    out = console()
    lt = Table(title=f"Layers on {report.backend}", title_justify="left")
    for col in ("layer", "role", "vendor name", "capabilities", "TCB (must trust)"):
        lt.add_column(col, overflow="fold")
    caps = {n.layer.name: n.capabilities for n in report.graph.nodes}
    for layer in report.layers:
        lt.add_row(
            *(
                escape(x)
                for x in (
                    layer.name,
                    layer.role.value,
                    layer.vendor_name,
                    ", ".join(caps.get(layer.name, [])),
                    ", ".join(report.tcb[layer.name]),
                )
            )
        )
    out.print(lt)
    et = Table(title="Edges", title_justify="left")
    for col in ("from", "to", "kind", "mechanism", "cost"):
        et.add_column(col)
    for e in report.graph.edges:
        et.add_row(
            *(
                escape(x)
                for x in (
                    e.source,
                    e.dest,
                    e.kind.value,
                    e.mechanism,
                    fmt_ns(e.cost_ns) if e.cost_ns else "",
                )
            )
        )
    out.print(et)
    rt = Table(
        title="Routes: how each operation travels from each workload layer", title_justify="left"
    )
    for col in ("from", "operation", "carried out by", "path"):
        rt.add_column(col, overflow="fold")
    for r in report.routes:
        if r.supported:
            path = " → ".join(r.path) if len(r.path) > 1 else "directly"
            if r.mechanisms:
                path += f"  ({', '.join(r.mechanisms)}; {fmt_ns(r.cost_ns)})"
            rt.add_row(*(escape(x) for x in (r.from_layer, r.capability, r.provider or "", path)))
        else:
            rt.add_row(
                escape(r.from_layer),
                escape(r.capability),
                "[red]nobody[/red]",
                f"[red]not supported: {escape(r.reason or '')}[/red]",
            )
    out.print(rt)
    render_authority(report)


def render_authority(report: LayersReport) -> None:
    """The memory-control and ownership tables (docs/authority.md)."""
    out = console()
    mt = Table(
        title="Memory control: whose memory access each layer may restrict (docs/authority.md)",
        title_justify="left",
    )
    for col in ("layer", "may restrict", "restricted by", "peers (own pages only)", "mechanism"):
        mt.add_column(col, overflow="fold")
    for c in report.memory_control:
        mt.add_row(
            *(
                escape(x)
                for x in (
                    c.layer,
                    ", ".join(c.controls) or "nobody",
                    ", ".join(c.controlled_by) or "nobody",
                    ", ".join(c.peers),
                    ", ".join(c.mechanisms),
                )
            )
        )
    out.print(mt)
    ot = Table(
        title="Page ownership when the guest starts (pool pages belong to the first "
        "workload that validates them)",
        title_justify="left",
    )
    for col in ("range", "size", "owner", "kind"):
        ot.add_column(col, overflow="fold")
    for r in report.ownership:
        ot.add_row(
            f"[{r.start:#x}, {r.end:#x})", format_size(r.end - r.start), escape(r.owner), r.kind
        )
    out.print(ot)


def register(app: typer.Typer) -> None:
    @app.command("layers")
    def layers_cmd(
        guest: Annotated[Path, typer.Argument(metavar="GUEST.toml", help="Guest file.")],
        backend: Annotated[
            str | None,
            typer.Option(
                "--backend", "-b", help="Backend; default: the file's, else the first installed."
            ),
        ] = None,
        fmt: Annotated[
            Format, typer.Option("--format", "-f", help="text, dot (Graphviz), json or png.")
        ] = Format.TEXT,
        out: Annotated[
            Path | None,
            typer.Option(metavar="FILE", help="Write to FILE (png default: layers-BACKEND.png)."),
        ] = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Same as --format json (schema: `cocopart schema layers`)."
            ),
        ] = False,
    ) -> None:
        """Show a guest's layer graph, the route of each operation kind, each TCB, and who
        may restrict whose memory.

        Routes are given for every operation kind from every workload layer: the layers
        the request travels through and the mechanisms (world switches, calls) it uses.
        The memory-control table lists, per layer, the layers whose memory access it may
        restrict (from the graph's memory-control edges) and its peers; the ownership table
        shows the owner of every page when the guest starts (docs/authority.md).

        **Example:** `cocopart layers examples/guest.toml --backend sev-snp -f png`
        """
        begin(json_output or fmt is Format.JSON)
        report, graph = build(guest, backend)
        if json_output or fmt is Format.JSON:
            if out is not None:
                write_text(out, report.model_dump_json(indent=2) + "\n")
            else:
                emit_json(report)
        elif fmt is Format.DOT:
            dot = graph.to_dot(f"{report.backend} layers") + "\n"
            if out is not None:
                write_text(out, dot)
            else:
                typer.echo(dot, nl=False)
        elif fmt is Format.PNG:
            from cocopart_cli.plots import layers_figure, save

            target = out or Path(f"layers-{report.backend}.png")
            save(layers_figure(graph, f"{report.backend}: layers of the guest"), target)
            console().print(f"layer graph written to {target}")
        else:
            render(report)
