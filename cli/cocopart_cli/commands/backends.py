"""`cocopart backends`: installed backends, versions and the capability matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart_cli import common
from cocopart_cli.backends_report import BackendInfo, BackendsReport
from cocopart_cli.output import begin, console, emit_json

if TYPE_CHECKING:
    from cocopart.model import PartitionConfig


def collect(config: PartitionConfig | None = None) -> BackendsReport:
    """Every installed backend with its capability answers for ``config`` (default guest)."""
    from cocopart.scenario import default_guest

    infos: list[BackendInfo] = []
    for status in common.load_all():
        if not status.ok:
            infos.append(BackendInfo(name=status.name, loaded=False, error=str(status.error)))
            continue
        backend = status.plugin
        cfg = config or default_guest(backend.name)
        try:
            caps = backend.capabilities(cfg)
        except Exception as err:  # noqa: BLE001 - a broken plug-in is shown, not fatal
            infos.append(
                BackendInfo(
                    name=status.name,
                    loaded=False,
                    title=backend.title,
                    vendor=backend.vendor,
                    version=backend.version,
                    error=f"capabilities() failed: {type(err).__name__}: {err}",
                )
            )
            continue
        infos.append(
            BackendInfo(
                name=status.name,
                loaded=True,
                title=backend.title,
                vendor=backend.vendor,
                version=backend.version,
                capabilities=caps,
            )
        )
    names: list[str] = []
    for info in infos:
        names += [c for c in info.capabilities if c not in names]
    return BackendsReport(backends=infos, capabilities=names)


def capability_cell(answer: object) -> str:
    from cocopart.backend import CapabilityAnswer

    if not isinstance(answer, CapabilityAnswer):
        return "[dim]—[/dim]"
    if answer.supported:
        return "[green]✓[/green] " + escape(answer.mechanism or "supported")
    return "[red]✗[/red] " + escape(answer.reason or "not supported")


def render(report: BackendsReport) -> None:
    out = console()
    listing = Table(title="Installed backends", title_justify="left")
    for col in ("name", "version", "vendor", "title / load error"):
        listing.add_column(col)
    for b in report.backends:
        if b.loaded:
            listing.add_row(escape(b.name), escape(b.version), escape(b.vendor), escape(b.title))
        else:
            listing.add_row(
                f"[red]{escape(b.name)}[/red]",
                escape(b.version or "?"),
                escape(b.vendor or "?"),
                f"[red]failed to load: {escape(b.error or '')}[/red]",
            )
    out.print(listing)
    loaded = [b for b in report.backends if b.loaded]
    if not loaded:
        out.print("[yellow]No backend loaded, so there is no capability matrix.[/yellow]")
        return
    matrix = Table(title="Capabilities (default guest)", title_justify="left", show_lines=True)
    matrix.add_column("capability", style="bold")
    for b in loaded:
        matrix.add_column(b.name, overflow="fold")
    for cap in report.capabilities:
        matrix.add_row(escape(cap), *[capability_cell(b.capabilities.get(cap)) for b in loaded])
    out.print(matrix)


def register(app: typer.Typer) -> None:
    @app.command("backends")
    def backends(
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema backends`).")
        ] = False,
    ) -> None:
        """List the installed backends, their versions and the capability matrix.

        Each cell says supported (with the vendor mechanism) or not supported (with the
        reason). A backend that fails to load is listed in red with its error; the command
        still exits 0.

        **Example:** `cocopart backends --json`
        """
        begin(json_output)
        report = collect()
        if json_output:
            emit_json(report)
        else:
            render(report)
