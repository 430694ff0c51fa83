"""The summary figure of a sweep: modelled time and world switches of each point against one
axis, one line per backend (x another axis, e.g. a host profile, with ``by``).

Each point is its steps summed. Where several points share an x value and a line (the
other axes vary), the line is their median and the shaded band their range. A point that
is not ok (a step not supported, an error) is left out; where no point of a line is ok the
line has a gap and an ``x`` marks the place on the axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median
from typing import Any

from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from cocopart.model import GIB, parse_size
from cocopart.ops import Status
from cocopart.scaleout.sweep import PointTotal, SweepResult
from cocopart_cli.errors import CliError

_MEMORY = "guest.memory"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(parse_size(value))
        except ValueError:
            return None
    return None


def _distinct(result: SweepResult, axis: str) -> list[Any]:
    seen: dict[str, Any] = {}
    for t in result.point_totals():
        seen.setdefault(repr(t.params.get(axis)), t.params.get(axis))
    return list(seen.values())


def check_plot_axes(axes: Sequence[str], x: str | None, by: str | None) -> None:
    """A usage error unless ``x`` and ``by`` (when given) are two different axes."""
    listing = ", ".join(axes) or "none besides backend"
    if x is not None and x not in axes:
        raise CliError(f"--x {x}: not an axis of this sweep (axes: {listing})")
    if by is not None and (by not in axes or by == x):
        raise CliError(
            f"--by {by}: not an axis of this sweep other than the x axis (axes: {listing})"
        )


def choose_x(result: SweepResult, x: str | None) -> str | None:
    """``x``; else the first numeric axis that varies, else the first that varies, else
    none (points in order)."""
    if x is not None:
        return x
    varying = [a for a in result.axes if len(_distinct(result, a)) > 1]
    numeric = [a for a in varying if all(_number(v) is not None for v in _distinct(result, a))]
    return next(iter(numeric or varying), None)


def choose_by(result: SweepResult, by: str | None, x: str | None) -> str | None:
    """``by``; else a ``host`` axis when the sweep has one."""
    if by is not None:
        return by
    return "host" if "host" in result.axes and x != "host" else None


def _x_values(
    totals: Sequence[PointTotal], x: str | None
) -> tuple[list[float], list[str] | None, str]:
    """x of every point, tick labels for a categorical axis, and the axis label."""
    if x is None:
        return [float(t.point) for t in totals], None, "point"
    raw = [t.params.get(x) for t in totals]
    numbers = [_number(v) for v in raw]
    if all(n is not None for n in numbers):
        if x == _MEMORY:
            return [n / GIB for n in numbers if n is not None], None, "guest memory (GiB)"
        return [n for n in numbers if n is not None], None, x
    labels = list(dict.fromkeys(str(v) for v in raw))
    return [float(labels.index(str(v))) for v in raw], labels, x


def sweep_figure(result: SweepResult, x: str | None = None, by: str | None = None) -> Figure:
    """Two panels (modelled time, world switches) against ``x``; see the module docstring."""
    check_plot_axes(result.axes, x, by)
    x = choose_x(result, x)
    by = choose_by(result, by, x)
    totals = result.point_totals()
    xs, labels, xlabel = _x_values(totals, x)
    groups: dict[str, dict[float, list[PointTotal]]] = {}
    for t, xv in zip(totals, xs, strict=True):
        name = t.backend + (f", {by}={t.params.get(by)}" if by else "")
        groups.setdefault(name, {}).setdefault(xv, []).append(t)
    fig = Figure(figsize=(10.0, 8.0), layout="constrained")
    ax_time, ax_sw = fig.subplots(2, 1, sharex=True)
    gaps = 0
    for k, (name, by_x) in enumerate(groups.items()):
        marker = "osD^v<>"[k % 7]
        color = f"C{k % 10}"
        order = sorted(by_x)
        for ax, metric, scale in ((ax_time, "modelled_ns", 1e6), (ax_sw, "world_switches", 1)):
            mid, low, high = [], [], []
            for xv in order:
                ok = [float(getattr(t, metric)) / scale for t in by_x[xv] if t.status is Status.OK]
                mid.append(median(ok) if ok else math.nan)
                low.append(min(ok) if ok else math.nan)
                high.append(max(ok) if ok else math.nan)
            ax.plot(order, mid, marker=marker, color=color, label=name)
            if any(lo < hi for lo, hi in zip(low, high, strict=True)):
                ax.fill_between(order, low, high, color=color, alpha=0.15, linewidth=0)
            missing = [xv for xv, m in zip(order, mid, strict=True) if math.isnan(m)]
            if missing:
                ax.scatter(
                    missing,
                    [0.02] * len(missing),
                    marker="x",
                    color=color,
                    transform=blended_transform_factory(ax.transData, ax.transAxes),
                    clip_on=False,
                )
            if metric == "modelled_ns":
                gaps += len(missing)
    title = f"{result.name}: modelled time per point"
    others = [a for a in result.axes if a not in (x, by)]
    if others:
        title += " (line: median over the other axes, band: their range)"
    if gaps:
        title += f" (x on the axis: not supported there, a gap; {gaps} in all)"
    ax_time.set_title(title)
    ax_time.set_ylabel("modelled time (ms)")
    ax_sw.set_title("world switches per point")
    ax_sw.set_ylabel("world switches")
    ax_sw.set_xlabel(xlabel)
    for ax, metric in ((ax_time, "modelled_ns"), (ax_sw, "world_switches")):
        if any(getattr(t, metric) > 0 for t in totals if t.status is Status.OK):
            ax.set_yscale("log", nonpositive="mask")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if labels is not None:
        ax_sw.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    elif xs and min(xs) > 0 and max(xs) / min(xs) >= 16:
        ax_sw.set_xscale("log", base=2)
    return fig
