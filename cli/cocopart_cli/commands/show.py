"""`cocopart show`: decode evidence or certificates for reading, without verifying."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cocopart_cli.models import ShowReport


def collect(source: str, vendor: str | None, fmt: str | None) -> ShowReport:
    """Read ``source`` (bounded; ``-`` is stdin) and decode it with the platform plug-ins."""
    from cocopart.attest.inputs import read_input
    from cocopart.attest.show import decode_bytes
    from cocopart_cli.models import ShowReport

    data = read_input(source, "evidence or certificate")
    return ShowReport(
        source=source, decoded=decode_bytes(data, vendor=vendor, fmt=fmt, source=source)
    )


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return "" if value is None else str(value)


def render(report: ShowReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cocopart_cli.output import console

    out = console()
    d = report.decoded
    kind = f" ({d.vendor}/{d.format})" if d.vendor else ""
    out.print(f"[bold]{escape(d.title)}[/bold]{escape(kind)} — {escape(report.source)}")
    for section in d.sections:
        table = Table(title=escape(section.title), title_justify="left", show_header=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in section.fields.items():
            table.add_row(escape(name), escape(_text(value)))
        if section.fields:
            out.print(table)
        else:
            out.print(f"[bold]{escape(section.title)}[/bold]")
        for note in section.notes:
            out.print(f"  [dim]{escape(note)}[/dim]")
    for note in d.notes:
        out.print(f"[dim]{escape(note)}[/dim]")


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show_cmd(
        source: Annotated[
            str,
            typer.Argument(
                metavar="EVIDENCE",
                help="Evidence in any form `cocopart verify` reads (SNP "
                "report, TD quote v4/v5, TDREPORT, Azure HCL report, Evidence JSON, hex/base64/"
                "JSON-wrapped), a certificate table, or certificates (PEM/DER, e.g. a PCK or "
                "VCEK); - for stdin.",
            ),
        ],
        vendor: Annotated[
            str | None,
            typer.Option(
                help="Evidence vendor (a platform plug-in's name); overrides recognition."
            ),
        ] = None,
        fmt: Annotated[
            str | None, typer.Option("--format", help="Evidence format; overrides recognition.")
        ] = None,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema show`).")
        ] = False,
    ) -> None:
        """Decode evidence or certificates to a table, without verifying anything.

        Every field of the report or quote, the runtime claims of an Azure HCL report, the
        certificates an Evidence JSON or a quote carries, and each certificate's platform
        extensions (AMD TCB and hwID; Intel FMSPC, PCE ID and TCB). Exit 2 for input no
        installed platform plug-in recognises.

        **Example:** `cocopart show report.bin --json`
        """
        from cocopart_cli.output import begin, emit_json

        begin(json_output)
        report = collect(source, vendor, fmt)
        if json_output:
            emit_json(report)
        else:
            render(report)
