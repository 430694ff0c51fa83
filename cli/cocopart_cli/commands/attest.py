"""`cocopart attest`: evidence from a real CVM (configfs-tsm) or from a simulated guest."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from cocopart.attest.configfs import DEFAULT_ROOT, TsmReportClient
from cocopart.ops import Attest
from cocopart.scenario import BringUp, Runner
from cocopart_cli.common import (
    backend_for,
    hex_64,
    load_guest,
    result_evidence,
    to_pem,
    write_bytes,
    write_text,
)
from cocopart_cli.errors import EXIT_FAILED, EXIT_USAGE, CliError
from cocopart_cli.evidence_tools import simulated_root
from cocopart_cli.models import AttestReport
from cocopart_cli.output import begin, console, emit_json


def parse_report_data(text: str | None) -> bytes:
    """``--report-data`` hex (at most 64 bytes), or 64 random bytes."""
    return secrets.token_bytes(64) if text is None else hex_64(text, "--report-data")


def real(
    report_data: bytes,
    root: Path,
    entry: str | None,
    privlevel: int | None,
    svsm: bool,
    static: bool = False,
) -> AttestReport:
    """One report through configfs-tsm."""
    if not root.is_dir():
        raise CliError(
            f"{root} does not exist: this machine offers no configfs-tsm attestation (not a "
            "confidential VM, or the kernel lacks CONFIG_TSM_REPORTS / configfs is not "
            "mounted). To try attestation without hardware, run "
            "`cocopart attest --simulate GUEST.toml`.",
            EXIT_USAGE,
        )
    client = TsmReportClient(root, entry=entry, check_write_count=not static)
    report = client.attest(
        report_data.ljust(64, b"\0"), privlevel=privlevel, service_provider="svsm" if svsm else None
    )
    return AttestReport(
        source="configfs-tsm",
        provider=report.provider,
        report_data=report_data.hex(),
        evidence=report.to_evidence(),
    )


def simulated(
    guest: Path,
    backend_name: str | None,
    layer: str,
    source: Literal["hardware", "service"],
    report_data: bytes,
) -> AttestReport:
    """Bring the guest file's layers up on its backend and attest from ``layer``."""
    scenario = load_guest(guest)
    if layer not in scenario.guest.workloads and layer != "l1":
        raise CliError(
            f"--layer {layer}: the guest's layers are "
            f"{', '.join(('l1', *scenario.guest.workloads))}"
        )
    steps = [s for s in scenario.steps if isinstance(s, BringUp)] or [BringUp()]
    scenario = scenario.model_copy(update={"steps": steps})
    backend = backend_for(scenario, backend_name)
    runner = Runner(scenario, backend)
    run = runner.run()
    if run.failed:
        raise CliError(
            f"the bring-up failed on {backend.name}: "
            f"{'; '.join(s.reason or s.name for s in run.steps if s.reason)}",
            EXIT_FAILED,
        )
    result = runner.partition.run(Attest(layer=layer, source=source, report_data=report_data))
    if not result.ok:
        raise CliError(
            f"attestation from {layer} on {backend.name} returned "
            f"{result.status.value}: {result.reason}",
            EXIT_FAILED,
        )
    evidence = result_evidence(result)
    if evidence is None:
        raise CliError(f"the {backend.name} backend returned no evidence for {layer}", EXIT_FAILED)
    root_cert = simulated_root(evidence)
    root = to_pem(root_cert) if root_cert is not None else None
    return AttestReport(
        source="simulated",
        backend=backend.name,
        layer=layer,
        report_data=report_data.hex(),
        evidence=evidence,
        trust_root_pem=root,
    )


def register(app: typer.Typer) -> None:
    @app.command("attest")
    def attest_cmd(
        simulate: Annotated[
            Path | None,
            typer.Option(
                metavar="GUEST.toml",
                help="Simulate: bring up this guest file on its backend and attest from --layer.",
            ),
        ] = None,
        backend: Annotated[
            str | None,
            typer.Option(
                "--backend",
                "-b",
                help="Backend for --simulate; default: the file's, else the first installed.",
            ),
        ] = None,
        layer: Annotated[str, typer.Option(help="Layer that attests (--simulate).")] = "l2.1",
        source: Annotated[
            str,
            typer.Option(
                help="--simulate: 'service' (privileged-layer attestation) or 'hardware'."
            ),
        ] = "service",
        report_data: Annotated[
            str | None,
            typer.Option(
                metavar="HEX",
                help="Report data to bind, hex, at most 64 bytes; default: 64 random bytes.",
            ),
        ] = None,
        out: Annotated[
            Path | None, typer.Option(metavar="EVIDENCE.json", help="Write the Evidence JSON here.")
        ] = None,
        raw_out: Annotated[
            Path | None,
            typer.Option(
                metavar="FILE",
                help="Also write the raw report/quote bytes here (report.bin / "
                "quote.dat, as snpguest and go-tdx-guest write them).",
            ),
        ] = None,
        root_out: Annotated[
            Path | None,
            typer.Option(
                metavar="ROOT.pem",
                help="Simulated: write the root to trust here; default: next "
                "to --out as NAME.root.pem.",
            ),
        ] = None,
        configfs: Annotated[
            Path, typer.Option(help="configfs-tsm report directory (real CVMs).")
        ] = DEFAULT_ROOT,
        entry: Annotated[
            str | None,
            typer.Option(
                help="Reuse this existing report entry (e.g. one an administrator created)."
            ),
        ] = None,
        privlevel: Annotated[
            int | None, typer.Option(help="Real CVM: privilege level to request (SEV-SNP VMPL).")
        ] = None,
        svsm: Annotated[
            bool, typer.Option(help="Real SEV-SNP CVM: ask the SVSM for a services report.")
        ] = False,
        static: Annotated[
            bool,
            typer.Option(
                "--static-snapshot",
                hidden=True,
                help="The --entry is a static snapshot (tests): skip the generation check.",
            ),
        ] = False,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema attest`).")
        ] = False,
    ) -> None:
        """Obtain attestation evidence and write it as Evidence JSON.

        On a real confidential VM the report comes from Linux configfs-tsm
        (/sys/kernel/config/tsm/report); without it the command exits 2 and suggests
        --simulate. Simulated evidence is produced by the guest file's backend in the
        real format, signed by a simulated root that is written next to the evidence: pass
        it to `cocopart verify --trust-root`.

        **Example:** `cocopart attest --simulate examples/guest.toml --out ev.json`
        """
        begin(json_output)
        data = parse_report_data(report_data)
        if source not in ("service", "hardware"):
            raise CliError("--source must be 'service' or 'hardware'")
        if simulate is not None:
            src: Literal["hardware", "service"] = "service" if source == "service" else "hardware"
            report = simulated(simulate, backend, layer, src, data)
        else:
            report = real(data, configfs, entry, privlevel, svsm, static)
        if out is not None:
            write_text(out, report.evidence.model_dump_json(indent=2) + "\n")
            report.out = str(out)
        if raw_out is not None:
            write_bytes(raw_out, report.evidence.raw)
            report.raw_out = str(raw_out)
        if report.trust_root_pem is not None and (out is not None or root_out is not None):
            target = root_out or out.with_name(out.stem + ".root.pem")  # type: ignore[union-attr]
            write_bytes(target, report.trust_root_pem.encode())
            report.trust_root_file = str(target)
        if json_output:
            emit_json(report)
            return
        c = console()
        ev = report.evidence
        where = (
            f"simulated {report.backend} guest, layer {report.layer}"
            if report.source == "simulated"
            else f"configfs-tsm provider {report.provider}"
        )
        c.print(
            f"[green]evidence[/green] {escape(ev.vendor)}/{escape(ev.format)}, {len(ev.raw)} "
            f"bytes, {len(ev.certificates)} certificates, from {escape(where)}"
        )
        c.print(f"report data: {report.report_data}")
        if report.out:
            c.print(f"evidence written to {report.out}", markup=False)
        if report.raw_out:
            c.print(f"raw {ev.format} written to {report.raw_out}", markup=False)
        if report.trust_root_file:
            c.print(
                f"simulated root written to {report.trust_root_file}; verify with:\n"
                f"  cocopart verify {report.out or 'EVIDENCE.json'} --trust-root "
                f"{report.trust_root_file} --policy POLICY.toml"
            )
        elif report.source == "simulated" and report.trust_root_pem:
            c.print(
                "the simulated root is the last certificate of the evidence "
                "(write it with --out or --root-out)"
            )
        elif report.source == "simulated":
            c.print("[yellow]the evidence carries no certificate chain: no root to write[/]")
