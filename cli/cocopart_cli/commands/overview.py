"""`cocopart` without a command: installed backends and the default guest's layer graph."""

from __future__ import annotations

from rich.markup import escape
from rich.tree import Tree

from cocopart.layers import EdgeKind
from cocopart.model import format_size
from cocopart.scenario import default_scenario
from cocopart_cli import common
from cocopart_cli.commands.layers import graph_model
from cocopart_cli.models import Overview, OverviewBackend
from cocopart_cli.output import console, emit_json

HINT = "compare the backends side by side: cocopart compare examples/default.toml"


def collect() -> Overview:
    scenario = default_scenario()
    backends: list[OverviewBackend] = []
    for status in common.load_all():
        if not status.ok:
            backends.append(
                OverviewBackend(name=status.name, loaded=False, error=str(status.error))
            )
            continue
        backend = status.plugin
        try:
            graph = backend.graph(scenario.config_for(backend.name))
        except Exception as err:  # noqa: BLE001 - a broken plug-in is shown, not fatal
            backends.append(
                OverviewBackend(
                    name=status.name,
                    loaded=False,
                    title=backend.title,
                    error=f"graph() failed: {type(err).__name__}: {err}",
                )
            )
            continue
        backends.append(
            OverviewBackend(
                name=status.name,
                loaded=True,
                title=backend.title,
                layers=graph.layers,
                graph=graph_model(graph),
            )
        )
    return Overview(default_guest=scenario.guest, backends=backends, hint=HINT)


def render(ov: Overview) -> None:
    out = console()
    g = ov.default_guest
    titles = ", ".join(b.title for b in ov.backends if b.loaded and b.title)
    out.print(
        "[bold]cocopart[/bold] — one L2<->L1 interface for partitioned confidential VMs"
        + (f" ({escape(titles)})" if titles else "")
    )
    out.print(
        f"default guest: {format_size(g.memory)}, {g.vcpus} vCPUs, "
        f"{g.workload_layers} workload layers, interrupts {g.interrupt_mode.value}"
    )
    if not ov.backends:
        out.print(
            "[yellow]no backend is installed[/yellow]: a backend is a distribution "
            "registering an entry point in the group cocopart.backends (the README lists "
            "the project's own)"
        )
    for b in ov.backends:
        if not b.loaded:
            out.print(f"[red]{escape(b.error or '')}[/red]")
            continue
        tree = Tree(f"[bold]{escape(b.name)}[/bold] — {escape(b.title)}")
        assert b.graph is not None
        by_source: dict[str, list[str]] = {}
        for e in b.graph.edges:
            if e.kind in (EdgeKind.CALL, EdgeKind.WORLD_SWITCH, EdgeKind.MEMORY_CONTROL):
                by_source.setdefault(e.source, []).append(
                    escape(f"{e.kind.value} → {e.dest} ({e.mechanism})")
                )
        for layer in b.layers:
            node = tree.add(
                f"{escape(layer.name)} [dim]{escape(layer.vendor_name)} · {layer.role.value}[/dim]"
            )
            for line in by_source.get(layer.name, []):
                node.add(line)
        out.print(tree)
    out.print(f"next: {ov.hint}")
    out.print("more: cocopart --help · cocopart backends · cocopart explain validate")


def show(json_output: bool) -> None:
    ov = collect()
    if json_output:
        emit_json(ov)
    else:
        render(ov)
