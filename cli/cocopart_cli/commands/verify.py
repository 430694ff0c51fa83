"""`cocopart verify`: check evidence against a policy, printing every check."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocopart_cli.errors import EXIT_FAILED, EXIT_POLICY, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from cocopart.attest.policy import Policy
    from cocopart_cli.quickpins import QuickPins
    from cocopart_cli.verify_report import VerifyReport


def parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        now = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--now {text}: not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)") from None
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def verify(
    evidence_file: str,
    *,
    vendor: str | None = None,
    fmt: str | None = None,
    policy: Policy | None = None,
    certs: list[str] | None = None,
    collateral: list[str] | None = None,
    now: str | None = None,
    trust_roots: list[str] | None = None,
    vendor_roots: bool = True,
    cert_cache: Path | None = None,
    pins: QuickPins | None = None,
) -> VerifyReport:
    """Load, verify and return the report (does not print). Every input is read bounded
    and recognised by the installed platform plug-ins (cocopart.attest.inputs); anything
    unusable raises InputError (exit 2). ``pins``: the quick-pin flags, added to ``policy``."""
    from cocopart.attest.inputs import load_certificates, load_collateral, load_evidence
    from cocopart.attest.policy import Policy
    from cocopart.attest.verifier import TrustStore, Verifier
    from cocopart_cli.verify_report import VerifyReport

    evidence, notes = load_evidence(evidence_file, vendor=vendor, fmt=fmt)
    if pins:
        from cocopart_cli.quickpins import apply_pins

        policy = apply_pins(policy, evidence.vendor, pins)
    extra_certs: list[bytes] = []
    for path in certs or []:
        extra_certs += load_certificates(path)
    extra_coll = load_collateral(collateral or [], evidence.vendor)
    if extra_certs:
        own = len(evidence.certificates)
        added = [c for c in dict.fromkeys(extra_certs) if c not in evidence.certificates]
        notes.append(
            f"--certs: {len(added)} certificate(s) added to the {own} the evidence "
            "carries (certificates embedded in the evidence itself, such as a TD "
            "quote's PCK chain, take precedence)"
        )
        evidence = evidence.model_copy(update={"certificates": [*evidence.certificates, *added]})
    if extra_coll:
        evidence = evidence.model_copy(update={"collateral": {**evidence.collateral, **extra_coll}})
    if cert_cache is not None and not cert_cache.is_dir():
        raise CliError(f"--cert-cache {cert_cache}: not a directory")
    trust = TrustStore(trust_vendor_roots=vendor_roots, certificate_cache=cert_cache)
    for root in trust_roots or []:
        for der in load_certificates(root):
            trust = trust.with_root(evidence.vendor, der)
    verdict = Verifier(policy or Policy(), trust).verify(evidence, parse_now(now))
    return VerifyReport(
        evidence_file=str(evidence_file),
        vendor=evidence.vendor,
        format=evidence.format,
        verdict=verdict,
        ok=verdict.ok,
        notes=notes,
    )


def exit_code(report: VerifyReport) -> int:
    """2 when nothing could be read from the evidence (it does not parse: unusable input),
    1 when it is not authentic (a vendor check failed), 4 when it is authentic and only the
    policy rejects it (as go-sev-guest tells a bad signature from a policy mismatch)."""
    if report.ok:
        return 0
    if report.verdict.claims is None:
        return EXIT_USAGE
    authentic = report.verdict.claims is not None and all(
        c.ok for c in report.verdict.checks if not c.name.startswith("policy.")
    )
    return EXIT_POLICY if authentic else EXIT_FAILED


def render(report: VerifyReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cocopart_cli.output import console

    out = console()
    for note in report.notes:
        out.print(f"[dim]{escape(note)}[/dim]")
    t = Table(
        title=escape(f"{report.evidence_file} ({report.vendor}/{report.format})"),
        title_justify="left",
    )
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for c in report.verdict.checks:
        t.add_row(
            escape(c.name), "[green]pass[/green]" if c.ok else "[red]FAIL[/red]", escape(c.detail)
        )
    out.print(t)
    claims = report.verdict.claims
    if claims is not None:
        out.print(
            escape(
                f"origin: {claims.origin.layer} ({claims.origin.vendor_level}"
                f"{', via the privileged layer' if claims.origin.via_privileged_layer else ''})"
                f"; signer {claims.signer or '?'}; debug {'yes' if claims.debug else 'no'}"
                + (f"; TCB status {claims.tcb_status}" if claims.tcb_status else "")
            )
        )
        for name, value in claims.measurements.items():
            out.print(f"  {name} = {value.hex()}")
    if report.ok:
        out.print(f"[green]verified[/green]: all {len(report.verdict.checks)} checks passed")
    else:
        failed = [c.name for c in report.verdict.checks if not c.ok]
        out.print(
            f"[red]rejected[/red]: {len(failed)} failed check(s): {escape(', '.join(failed))}"
        )


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        evidence: Annotated[
            str,
            typer.Argument(
                metavar="EVIDENCE",
                help="Evidence JSON (from `cocopart attest`), raw evidence "
                "(an SNP report, a TD quote, a TDREPORT, an Azure HCL report; padded or not) as "
                "binary, hex (0x allowed) or base64 text, a JSON document holding it (e.g. "
                '{"quote": "..."}), or - for stdin. Recognised by the installed platform '
                "plug-ins; at most 1 MiB.",
            ),
        ],
        policy: Annotated[
            Path | None,
            typer.Option(
                metavar="POLICY.toml",
                help="Policy file (Policy fields, hex for bytes); default: "
                "the strict default policy.",
            ),
        ] = None,
        certs: Annotated[
            list[str] | None,
            typer.Option(
                "--certs",
                metavar="FILE|DIR",
                help="Certificates: PEM bundle, DER, an SNP "
                "certificate table (configfs-tsm auxblob), or a directory of such files; "
                "repeatable. Added to the evidence's own; a file that holds no certificate is "
                "an error.",
            ),
        ] = None,
        collateral: Annotated[
            list[str] | None,
            typer.Option(
                metavar="NAME=FILE|FILE",
                help="Collateral by name (the names the vendor's "
                "verifier reads, e.g. tcb_info=tcbinfo.json, td_quote=quote.dat; an unknown name "
                "is an error), or a bundle file such as dcap-qvl's collateral JSON; repeatable.",
            ),
        ] = None,
        now: Annotated[
            str | None,
            typer.Option(
                metavar="ISO",
                help="Verify as of this time (certificate validity, collateral freshness).",
            ),
        ] = None,
        trust_root: Annotated[
            list[str] | None,
            typer.Option(
                metavar="FILE",
                help="Extra root to trust, e.g. a simulated root (PEM or DER); "
                "repeatable. A file that holds no certificate is an error.",
            ),
        ] = None,
        vendor: Annotated[
            str | None,
            typer.Option(
                help="Evidence vendor: a platform plug-in's name (e.g. sev-snp, tdx); overrides "
                "recognition."
            ),
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="Evidence format, e.g. snp-report, azure-hcl-report, tdx-quote, "
                "tdreport; overrides recognition (an unknown format is an error).",
            ),
        ] = None,
        cert_cache: Annotated[
            Path | None,
            typer.Option(
                metavar="DIR",
                help="Certificate cache in the vendor's distribution layout, for "
                "certificates the evidence lacks (AMD KDS: DIR/vcek/v1/<product>/<hwid>, "
                "DIR/vcek/v1/<product>/cert_chain). AMD's ASK/ASVK/ARK are built in.",
            ),
        ] = None,
        vendor_roots: Annotated[
            bool, typer.Option(help="Trust the vendors' real roots (AMD ARKs, Intel SGX Root CA).")
        ] = True,
        nonce: Annotated[
            str | None,
            typer.Option(
                metavar="HEX",
                help="The freshness nonce you asked for (the policy's "
                "expected_nonce): service evidence must bind SHA-512(nonce || manifest), hardware "
                "evidence the nonce itself.",
            ),
        ] = None,
        report_data: Annotated[
            str | None,
            typer.Option(
                metavar="HEX", help="Quick pin: the raw REPORT_DATA (policy expected_report_data)."
            ),
        ] = None,
        measurement: Annotated[
            list[str] | None,
            typer.Option(
                metavar="[NAME=]HEX",
                help="Quick pin: an accepted measurement (default name: "
                "measurement on SNP, mrtd on TDX); repeat for several names or values.",
            ),
        ] = None,
        host_data: Annotated[
            list[str] | None,
            typer.Option(metavar="HEX", help="Quick pin (SNP): an accepted HOST_DATA; repeatable."),
        ] = None,
        vmpl: Annotated[
            list[int] | None,
            typer.Option(metavar="N", help="Quick pin (SNP): an accepted report VMPL; repeatable."),
        ] = None,
        allow_layer: Annotated[
            list[str] | None,
            typer.Option(
                metavar="LAYER",
                help="Also accept evidence from this layer, e.g. l2.1 or VMPL2; repeatable.",
            ),
        ] = None,
        allow_debug: Annotated[
            bool, typer.Option("--allow-debug", help="Accept debug guests.")
        ] = False,
        min_tcb: Annotated[
            list[str] | None,
            typer.Option(
                metavar="NAME=N",
                help="Quick pin: a minimum TCB component, e.g. snp=8 or pcesvn=11; repeatable.",
            ),
        ] = None,
        accept_tcb_status: Annotated[
            list[str] | None,
            typer.Option(
                metavar="STATUS", help="Also accept this TCB status, e.g. OutOfDate; repeatable."
            ),
        ] = None,
        waive: Annotated[
            list[str] | None,
            typer.Option(
                metavar="CHECK",
                help="Accept this check failing (policy waive_checks), e.g. "
                "tdx.td_attributes.sept_ve_disable; repeatable.",
            ),
        ] = None,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema verify`).")
        ] = False,
    ) -> None:
        """Verify evidence against a policy and print every check.

        Exit 0 if verified, 1 if the evidence is not authentic (a vendor check failed),
        4 if it is authentic but the policy rejects it (the failed checks are named), 2 for
        unusable input (unreadable, unrecognised or unparsable evidence, a bad option,
        certificate, collateral or trust root).

        **Example:**
        `cocopart verify ev.json --trust-root ev.root.pem --policy examples/policy.toml`
        """
        from cocopart.attest.policy import Policy
        from cocopart_cli.common import hex_64
        from cocopart_cli.output import begin, emit_json
        from cocopart_cli.policyfile import load_policy
        from cocopart_cli.quickpins import QuickPins

        begin(json_output)
        chosen = load_policy(policy) if policy else None
        if nonce is not None:
            chosen = (chosen or Policy()).model_copy(
                update={"expected_nonce": hex_64(nonce, "--nonce")}
            )
        pins = QuickPins(
            report_data=report_data,
            measurements=measurement or [],
            host_data=host_data or [],
            vmpl=vmpl or [],
            allow_debug=allow_debug,
            allow_layers=allow_layer or [],
            min_tcb=min_tcb or [],
            tcb_status=accept_tcb_status or [],
            waive=waive or [],
        )
        report = verify(
            evidence,
            vendor=vendor,
            fmt=fmt,
            policy=chosen,
            certs=certs,
            collateral=collateral,
            now=now,
            trust_roots=trust_root,
            vendor_roots=vendor_roots,
            cert_cache=cert_cache,
            pins=pins,
        )
        if json_output:
            emit_json(report)
        else:
            render(report)
        if not report.ok:
            raise typer.Exit(exit_code(report))
