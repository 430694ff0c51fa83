"""`cocopart sweep`: a design-space sweep of one scenario over axes, as Dask tasks."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart.ops import Status
from cocopart_cli.cluster_options import (
    ChunkSize,
    Scheduler,
    Serial,
    Workers,
    cluster_from,
    describe_engine,
    progress_bar,
)
from cocopart_cli.errors import EXIT_FAILED
from cocopart_cli.models import SweepBackendSummary, SweepReport
from cocopart_cli.output import STATUS_STYLE, begin, console, emit_json, fmt_count, fmt_ns

if TYPE_CHECKING:  # the sweep runner loads with the command
    from cocopart.scaleout.sweep import PointTotal, SweepResult

#: Reasons for points that are not ok printed on the console (the table has every row).
SHOWN_REASONS = 5


def per_backend(result: SweepResult) -> list[SweepBackendSummary]:
    """Each backend's points: how many were ok, not supported or failed, and medians."""
    out = []
    totals = result.point_totals()
    for backend in result.backends:
        mine = [t for t in totals if t.backend == backend]
        ok = [t for t in mine if t.status is Status.OK]
        out.append(
            SweepBackendSummary(
                backend=backend,
                points=len(mine),
                ok=len(ok),
                not_supported=sum(t.status is Status.NOT_SUPPORTED for t in mine),
                failed=sum(t.status in (Status.ERROR, Status.PARTIAL) for t in mine),
                median_modelled_ns=median(t.modelled_ns for t in ok) if ok else None,
                median_world_switches=median(t.world_switches for t in ok) if ok else None,
            )
        )
    return out


def render(report: SweepReport, result: SweepResult) -> None:
    out = console()
    out.print(
        escape(
            f"sweep {report.name}: {fmt_count(report.points)} points "
            f"({', '.join(report.axes) or 'no axis'} x backend) of {report.scenario}, "
            f"{fmt_count(report.rows)} rows"
        )
    )
    t = Table(
        title="per backend (a point is one scenario run; medians over ok points)",
        title_justify="left",
    )
    for col in (
        "backend",
        "points",
        "ok",
        "not supported",
        "failed",
        "median modelled time",
        "median world switches",
    ):
        t.add_column(col, justify="left" if col == "backend" else "right")
    for b in report.per_backend:
        t.add_row(
            escape(b.backend),
            fmt_count(b.points),
            fmt_count(b.ok),
            f"[yellow]{b.not_supported:,}[/yellow]" if b.not_supported else "0",
            f"[red]{b.failed:,}[/red]" if b.failed else "0",
            fmt_ns(b.median_modelled_ns) if b.median_modelled_ns is not None else "-",
            f"{b.median_world_switches:,.0f}" if b.median_world_switches is not None else "-",
        )
    out.print(t)
    groups: dict[tuple[str, str, str], list[PointTotal]] = {}
    for p in result.point_totals():
        if p.status is not Status.OK:
            groups.setdefault((p.status.value, p.backend, p.reason or ""), []).append(p)
    for (status, backend, reason), points in list(groups.items())[:SHOWN_REASONS]:
        style = STATUS_STYLE[status]
        first = points[0]
        params = ", ".join(f"{k}={v!r}" for k, v in first.params.items())
        out.print(
            f"[{style}]{status}[/{style}]: {len(points):,} point(s) on "
            f"{escape(backend)}, e.g. point {first.point} ({escape(params)}): "
            f"{escape(reason)}"
        )
    if len(groups) > SHOWN_REASONS:
        out.print(f"... and {len(groups) - SHOWN_REASONS:,} more reasons (see the table)")
    out.print(escape(describe_engine(report.engine)))
    out.print(
        escape(
            f"tables: {report.files.parquet}, {report.files.csv}"
            + (f"; plot: {report.plot}" if report.plot else "")
        )
    )


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep_cmd(
        sweep_file: Annotated[
            Path,
            typer.Argument(
                metavar="SWEEP.toml",
                help="Sweep file: a base scenario and the axes to vary (docs/scale-out.md).",
            ),
        ],
        out: Annotated[
            Path | None,
            typer.Option(
                metavar="DIR",
                help="Where to write sweep.parquet, sweep.csv and sweep.png; "
                "default: <sweep file name>-sweep/ in the current folder.",
            ),
        ] = None,
        plot: Annotated[bool, typer.Option(help="Draw the summary plot (sweep.png).")] = True,
        x: Annotated[
            str | None,
            typer.Option(
                metavar="AXIS",
                help="The plot's x axis; default: the first numeric axis that varies.",
            ),
        ] = None,
        by: Annotated[
            str | None,
            typer.Option(
                metavar="AXIS",
                help="One plot line per backend and value of this axis; "
                "default: a 'host' axis when there is one.",
            ),
        ] = None,
        scheduler: Scheduler = None,
        workers: Workers = None,
        serial: Serial = False,
        chunk_size: ChunkSize = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Print the summary as JSON (schema: `cocopart schema sweep`)."
            ),
        ] = False,
    ) -> None:
        """Run a scenario at every point of a grid of axes (backends included) as Dask
        tasks; write one row per point x step as Parquet and CSV, and a summary plot.

        Without options a local Dask cluster with one worker process per core runs the
        points; `--scheduler` uses an existing cluster, `--serial` this process. Every
        point is validated first: a bad axis value exits 2 naming the file, line and axis.
        Exit 1 when a step returned error or partial (not-supported is a result: a gap in
        the plot).

        **Example:** `cocopart sweep examples/sweep.toml --workers 2`
        """
        begin(json_output)
        from cocopart.scaleout import load_sweep, run_sweep, write_sweep_tables

        cluster = cluster_from(scheduler, workers, serial, chunk_size)
        sweep = load_sweep(sweep_file)
        out_dir = out if out is not None else Path(f"{sweep_file.stem}-sweep")
        if plot:  # a bad --x/--by fails before the work, not after it
            from cocopart_cli.sweep_plot import check_plot_axes

            check_plot_axes([a.path for a in sweep.param_axes], x, by)
        with progress_bar(f"sweep {sweep.name}") as progress:
            result = run_sweep(sweep, cluster, progress=progress)
        files = write_sweep_tables(result, out_dir)
        plot_path = None
        if plot:
            from cocopart_cli.plots import save
            from cocopart_cli.sweep_plot import sweep_figure

            plot_path = out_dir / "sweep.png"
            save(sweep_figure(result, x, by), plot_path)
        report = SweepReport(
            name=result.name,
            source=result.source,
            scenario=result.scenario,
            axes=result.axes,
            backends=result.backends,
            points=result.points,
            rows=len(result.rows),
            status_counts=result.status_counts(),
            per_backend=per_backend(result),
            files=files,
            plot=str(plot_path) if plot_path else None,
            engine=result.engine,
            ok=not result.failed,
        )
        if json_output:
            emit_json(report)
        else:
            render(report, result)
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
