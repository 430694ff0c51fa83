"""`cocopart detect`: which confidential-VM platform this is and how it can attest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart.attest.detect import PlatformInfo, detect
from cocopart_cli.output import begin, console, emit_json


def render(info: PlatformInfo) -> None:
    out = console()
    t = Table(title="Platform", title_justify="left", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("platform", escape(info.platform))
    level = info.privilege_level_name
    if info.privilege_level_source:
        level += f" (from {info.privilege_level_source})"
    if info.privilege_level_reason:
        level += f" — {info.privilege_level_reason}"
    t.add_row("privilege level", escape(level))
    if info.privileged_layer_present is not None:
        t.add_row("privileged layer present", "yes" if info.privileged_layer_present else "no")
    t.add_row("CPU flags", escape(", ".join(info.cpu_flags) or "none"))
    t.add_row("hypervisor", {True: "yes", False: "no", None: "unknown"}[info.hypervisor])
    t.add_row("configfs-tsm provider", escape(info.tsm_provider or "none"))
    out.print(t)
    if info.attestation:
        a = Table(title="Attestation providers", title_justify="left")
        for col in ("kind", "path", "provider", "detail"):
            a.add_column(col, overflow="fold")
        for item in info.attestation:
            cells = (item.kind, item.path, item.provider or "", item.detail)
            a.add_row(*(escape(x) for x in cells))
        out.print(a)
    else:
        out.print("No attestation provider found.")
    if info.notes:
        out.print("[bold]Notes[/bold]")
        for note in info.notes:
            out.print(f"  • {note}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect_cmd(
        sysfs: Annotated[Path, typer.Option(help="sysfs root.", hidden=True)] = Path("/sys"),
        configfs: Annotated[Path, typer.Option(help="configfs root.", hidden=True)] = Path(
            "/sys/kernel/config"
        ),
        cpuinfo: Annotated[Path, typer.Option(help="cpuinfo file.", hidden=True)] = Path(
            "/proc/cpuinfo"
        ),
        dev: Annotated[Path, typer.Option(help="/dev directory.", hidden=True)] = Path("/dev"),
        probe: Annotated[
            bool,
            typer.Option(
                help="Create and remove a scratch configfs-tsm entry to read the provider (root)."
            ),
        ] = False,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema detect`).")
        ] = False,
    ) -> None:
        """Detect the confidential-VM platform, privilege level and attestation providers.

        Reads sysfs, configfs-tsm and /proc/cpuinfo only; on a machine that is not a
        confidential VM it says so, with the reasons.

        **Example:** `cocopart detect --json`
        """
        begin(json_output)
        info = detect(sysfs, configfs, cpuinfo, dev=dev, probe=probe)
        if json_output:
            emit_json(info)
        else:
            render(info)
