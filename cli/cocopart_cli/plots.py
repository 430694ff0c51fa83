"""Figures drawn with matplotlib's object API (``Figure`` renders with Agg: no display, no
pyplot state, no graphviz binary)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from cocopart.layers import EdgeKind, LayerGraph
from cocopart.model import LayerRole
from cocopart_cli.errors import CliError
from cocopart_cli.models import CompareReport
from cocopart_cli.output import fmt_ns


def compare_figure(report: CompareReport) -> Figure:
    """Two panels — estimated time and world switches per step — one line per backend."""
    fig = Figure(
        figsize=(max(8.0, 1.3 * max(len(r.steps) for r in report.runs) + 3), 7.5),
        layout="constrained",
    )
    ax_time, ax_sw = fig.subplots(2, 1, sharex=True)
    names = [s.name for s in max(report.runs, key=lambda r: len(r.steps)).steps]
    xs = list(range(len(names)))
    markers = ["o", "s", "^", "D", "v"]
    for k, run in enumerate(report.runs):
        times = [s.estimated_ns / 1e3 for s in run.steps]
        switches = [s.world_switches for s in run.steps]
        label = (
            f"{run.backend} (total {fmt_ns(run.totals.estimated_ns)}, "
            f"{run.totals.world_switches:,} switches)"
        )
        m = markers[k % len(markers)]
        ax_time.plot(xs[: len(times)], times, marker=m, label=label)
        ax_sw.plot(xs[: len(switches)], switches, marker=m, label=run.backend)
    ax_time.set_ylabel("estimated time (µs)")
    ax_time.set_title(f"{report.scenario}: estimated time per step ({report.strategy})")
    if any(s.estimated_ns > 0 for r in report.runs for s in r.steps):
        ax_time.set_yscale("log", nonpositive="mask")
    ax_sw.set_ylabel("world switches")
    ax_sw.set_title("world switches per step")
    if any(s.world_switches > 0 for r in report.runs for s in r.steps):
        ax_sw.set_yscale("symlog", linthresh=10)
        ax_sw.set_ylim(bottom=0)
    ax_sw.set_xticks(xs, names, rotation=20, ha="right")
    for ax in (ax_time, ax_sw):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return fig


def save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as PNG; an unwritable path is a usage error."""
    try:
        fig.savefig(path, format="png", dpi=110)
    except OSError as err:
        raise CliError(f"{path}: cannot write the plot: {err.strerror or err}", file=path) from None


_ROLE_ROW = {
    LayerRole.WORKLOAD: 3,
    LayerRole.SERVICE: 2,
    LayerRole.PRIVILEGED: 2,
    LayerRole.HOST: 1,
    LayerRole.FIRMWARE: 0,
}
_EDGE_STYLE = {
    EdgeKind.CALL: ("#1f77b4", "-"),
    EdgeKind.WORLD_SWITCH: ("#d62728", "-"),
    EdgeKind.MEMORY_CONTROL: ("#2ca02c", "--"),
    EdgeKind.TRUST: ("#7f7f7f", ":"),
}


def layout(graph: LayerGraph) -> dict[str, tuple[float, float]]:
    """Positions: workloads on top, the privileged layer and services below, then host and
    firmware."""
    rows: dict[int, list[str]] = {}
    for layer in graph.layers:
        rows.setdefault(_ROLE_ROW[layer.role], []).append(layer.name)
    pos: dict[str, tuple[float, float]] = {}
    width = max(len(v) for v in rows.values())
    for row, names in rows.items():
        for i, name in enumerate(names):
            pos[name] = ((i + 0.5) * width / len(names), float(row))
    return pos


def layers_figure(graph: LayerGraph, title: str) -> Figure:
    """The layer graph: boxes for layers, arrows coloured by edge kind, mechanism labels
    (trust edges are drawn dotted without labels; `cocopart layers` lists their reasons)."""
    pos = layout(graph)
    width = max(x for x, _ in pos.values()) + 0.5
    fig = Figure(figsize=(max(8.0, 3.4 * width), 8.0), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.5, 3.5)
    ax.set_title(title)
    boxes: dict[str, FancyBboxPatch] = {}
    for layer in graph.layers:
        x, y = pos[layer.name]
        box = FancyBboxPatch(
            (x - 0.3, y - 0.14),
            0.6,
            0.28,
            boxstyle="round,pad=0.02",
            fc="#f4f1e8",
            ec="black",
            zorder=3,
        )
        ax.add_patch(box)
        boxes[layer.name] = box
        ax.text(
            x,
            y + 0.04,
            layer.name,
            ha="center",
            va="center",
            fontsize=10,
            fontweight="bold",
            zorder=4,
        )
        ax.text(x, y - 0.07, layer.vendor_name, ha="center", va="center", fontsize=8, zorder=4)
    seen_pairs: dict[frozenset[str], int] = {}
    for edge in graph.edges():
        (x1, y1), (x2, y2) = pos[edge.source], pos[edge.dest]
        pair = frozenset((edge.source, edge.dest))
        n = seen_pairs.get(pair, 0)
        seen_pairs[pair] = n + 1
        color, style = _EDGE_STYLE[edge.kind]
        rad = (0.12 + 0.1 * (n // 2)) * (1 if n % 2 == 0 else -1)
        if edge.source > edge.dest:  # bend both directions of a pair to different sides
            rad = -rad
        ax.add_patch(
            FancyArrowPatch(
                (x1, y1),
                (x2, y2),
                arrowstyle="-|>",
                mutation_scale=11,
                color=color,
                linestyle=style,
                linewidth=1.1,
                connectionstyle=f"arc3,rad={rad}",
                patchA=boxes[edge.source],
                patchB=boxes[edge.dest],
                zorder=2,
            )
        )
        if edge.kind is EdgeKind.TRUST:
            continue
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        ax.text(
            mx + 0.5 * rad * (y2 - y1),
            my - 0.5 * rad * (x2 - x1),
            edge.mechanism,
            fontsize=6.5,
            color=color,
            ha="center",
            va="center",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    for kind, (color, style) in _EDGE_STYLE.items():
        ax.plot([], [], color=color, linestyle=style, label=kind.value)
    ax.legend(loc="lower right", fontsize="small")
    return fig
