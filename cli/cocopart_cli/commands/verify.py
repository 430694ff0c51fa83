"""`cocopart verify`: check evidence against a policy, printing every check."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verifier
from cocopart_cli.common import hex_64, read_bytes
from cocopart_cli.errors import EXIT_FAILED, EXIT_POLICY, CliError
from cocopart_cli.output import begin, console, emit_json
from cocopart_cli.policyfile import load_policy
from cocopart_cli.quickpins import QuickPins, apply_pins
from cocopart_cli.verify_report import VerifyReport

SNP_REPORT_SIZE = 0x4A0
TDREPORT_SIZE = 1024
_HEX_TEXT = re.compile(rb"^[0-9a-fA-F\s]+$")


def _decode_text(data: bytes, path: Path) -> bytes:
    """Raw evidence may be stored as hex or base64 text; binary passes through."""
    stripped = data.strip()
    if stripped and _HEX_TEXT.match(stripped) and len(re.sub(rb"\s", b"", stripped)) % 2 == 0:
        return bytes.fromhex(stripped.decode())
    if path.suffix == ".b64":
        try:
            return base64.b64decode(stripped, validate=False)
        except binascii.Error:
            raise CliError(f"{path}: not valid base64") from None
    return data


def guess_vendor(raw: bytes) -> str | None:
    if len(raw) == SNP_REPORT_SIZE or raw[:4] == b"HCLA":
        return "sev-snp"
    if len(raw) == TDREPORT_SIZE or raw[:2] in (b"\x04\x00", b"\x05\x00"):
        return "tdx"
    return None


def default_format(vendor: str, raw: bytes) -> str:
    if vendor == "sev-snp":
        return "azure-hcl-report" if raw[:4] == b"HCLA" else "snp-report"
    if vendor == "tdx":
        return "tdreport" if len(raw) == TDREPORT_SIZE else "tdx-quote"
    return "raw"


def load_evidence(path: Path, vendor: str | None, fmt: str | None) -> Evidence:
    """An Evidence JSON file, or raw report/quote bytes (vendor given or recognised)."""
    data = read_bytes(path, "evidence")
    if data.lstrip().startswith(b"{"):
        try:
            ev = Evidence.model_validate_json(data)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise CliError(f"{path}: not an Evidence JSON file: field '{field}': "
                           f"{first['msg']}") from None
        update: dict[str, str] = {}
        if vendor:
            update["vendor"] = vendor
        if fmt:
            update["format"] = fmt
        return ev.model_copy(update=update) if update else ev
    raw = _decode_text(data, path)
    chosen = vendor or guess_vendor(raw)
    if chosen is None:
        raise CliError(f"{path}: raw evidence of {len(raw)} bytes; say what it is with "
                       "--vendor sev-snp (SNP report .bin) or --vendor tdx (TDX quote .dat)")
    return Evidence(vendor=chosen, format=fmt or default_format(chosen, raw), raw=raw)


def parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        now = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--now {text}: not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)") \
            from None
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def parse_collateral(items: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise CliError(f"--collateral {item}: use NAME=FILE (e.g. tcb_info=tcbinfo.json)")
        out[name] = read_bytes(Path(file), f"collateral {name}")
    return out


def verify(evidence_file: Path, *, vendor: str | None = None, fmt: str | None = None,
           policy: Policy | None = None, certs: list[Path] | None = None,
           collateral: list[str] | None = None, now: str | None = None,
           trust_roots: list[Path] | None = None, vendor_roots: bool = True,
           cert_cache: Path | None = None, pins: QuickPins | None = None) -> VerifyReport:
    """Load, verify and return the report (does not print)."""
    evidence = load_evidence(evidence_file, vendor, fmt)
    if pins:
        policy = apply_pins(policy, evidence.vendor, pins)
    extra_certs = [read_bytes(p, "certificate") for p in certs or []]
    extra_coll = parse_collateral(collateral or [])
    if extra_certs or extra_coll:
        evidence = evidence.model_copy(update={
            "certificates": [*evidence.certificates, *extra_certs],
            "collateral": {**evidence.collateral, **extra_coll}})
    if cert_cache is not None and not cert_cache.is_dir():
        raise CliError(f"--cert-cache {cert_cache}: not a directory")
    trust = TrustStore(trust_vendor_roots=vendor_roots, certificate_cache=cert_cache)
    for root in trust_roots or []:
        trust = trust.with_root(evidence.vendor, read_bytes(root, "trust root"))
    verdict = Verifier(policy or Policy(), trust).verify(evidence, parse_now(now))
    return VerifyReport(evidence_file=str(evidence_file), vendor=evidence.vendor,
                        format=evidence.format, verdict=verdict, ok=verdict.ok)


def exit_code(report: VerifyReport) -> int:
    """1 when the evidence is not authentic (a vendor check failed or it did not parse),
    4 when it is authentic and only the policy rejects it (as go-sev-guest tells a bad
    signature from a policy mismatch)."""
    if report.ok:
        return 0
    authentic = report.verdict.claims is not None and all(
        c.ok for c in report.verdict.checks if not c.name.startswith("policy."))
    return EXIT_POLICY if authentic else EXIT_FAILED


def render(report: VerifyReport) -> None:
    out = console()
    t = Table(title=escape(f"{report.evidence_file} ({report.vendor}/{report.format})"),
              title_justify="left")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for c in report.verdict.checks:
        t.add_row(escape(c.name), "[green]pass[/green]" if c.ok else "[red]FAIL[/red]",
                  escape(c.detail))
    out.print(t)
    claims = report.verdict.claims
    if claims is not None:
        out.print(escape(f"origin: {claims.origin.layer} ({claims.origin.vendor_level}"
                  f"{', via the privileged layer' if claims.origin.via_privileged_layer else ''})"
                  f"; signer {claims.signer or '?'}; debug {'yes' if claims.debug else 'no'}"
                         + (f"; TCB status {claims.tcb_status}" if claims.tcb_status else "")))
        for name, value in claims.measurements.items():
            out.print(f"  {name} = {value.hex()}")
    if report.ok:
        out.print(f"[green]verified[/green]: all {len(report.verdict.checks)} checks passed")
    else:
        failed = [c.name for c in report.verdict.checks if not c.ok]
        out.print(f"[red]rejected[/red]: {len(failed)} failed check(s): "
                  f"{escape(', '.join(failed))}")


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        evidence: Annotated[Path, typer.Argument(
            metavar="EVIDENCE", help="Evidence JSON (from `cocopart attest`), or a raw SNP "
            "report .bin / TDX quote .dat (hex text accepted).")],
        policy: Annotated[Path | None, typer.Option(
            metavar="POLICY.toml", help="Policy file (Policy fields, hex for bytes); default: "
            "the strict default policy.")] = None,
        certs: Annotated[list[Path] | None, typer.Option(
            "--certs", metavar="FILE", help="Certificates (PEM bundle or DER); repeatable.")
                         ] = None,
        collateral: Annotated[list[str] | None, typer.Option(
            metavar="NAME=FILE", help="Collateral by name, e.g. tcb_info=tcbinfo.json; "
            "repeatable.")] = None,
        now: Annotated[str | None, typer.Option(
            metavar="ISO", help="Verify as of this time (certificate validity, collateral "
            "freshness).")] = None,
        trust_root: Annotated[list[Path] | None, typer.Option(
            metavar="FILE", help="Extra root to trust, e.g. a simulated root; repeatable.")
                              ] = None,
        vendor: Annotated[str | None, typer.Option(
            help="sev-snp or tdx, for raw evidence (recognised by size when omitted).")
                          ] = None,
        fmt: Annotated[str | None, typer.Option(
            "--format", help="Evidence format, e.g. snp-report, azure-hcl-report, tdx-quote, "
            "tdreport.")] = None,
        cert_cache: Annotated[Path | None, typer.Option(
            metavar="DIR", help="Certificate cache in the vendor's distribution layout, for "
            "certificates the evidence lacks (AMD KDS: DIR/vcek/v1/<product>/<hwid>, "
            "DIR/vcek/v1/<product>/cert_chain). AMD's ASK/ASVK/ARK are built in.")] = None,
        vendor_roots: Annotated[bool, typer.Option(
            help="Trust the vendors' real roots (AMD ARKs, Intel SGX Root CA).")] = True,
        nonce: Annotated[str | None, typer.Option(
            metavar="HEX", help="The freshness nonce you asked for (the policy's "
            "expected_nonce): service evidence must bind SHA-512(nonce || manifest), hardware "
            "evidence the nonce itself.")] = None,
        report_data: Annotated[str | None, typer.Option(
            metavar="HEX", help="Quick pin: the raw REPORT_DATA (policy expected_report_data)."
            )] = None,
        measurement: Annotated[list[str] | None, typer.Option(
            metavar="[NAME=]HEX", help="Quick pin: an accepted measurement (default name: "
            "measurement on SNP, mrtd on TDX); repeat for several names or values.")] = None,
        host_data: Annotated[list[str] | None, typer.Option(
            metavar="HEX", help="Quick pin (SNP): an accepted HOST_DATA; repeatable.")] = None,
        vmpl: Annotated[list[int] | None, typer.Option(
            metavar="N", help="Quick pin (SNP): an accepted report VMPL; repeatable.")] = None,
        allow_layer: Annotated[list[str] | None, typer.Option(
            metavar="LAYER", help="Also accept evidence from this layer, e.g. l2.1 or VMPL2; "
            "repeatable.")] = None,
        allow_debug: Annotated[bool, typer.Option(
            "--allow-debug", help="Accept debug guests.")] = False,
        min_tcb: Annotated[list[str] | None, typer.Option(
            metavar="NAME=N", help="Quick pin: a minimum TCB component, e.g. snp=8 or "
            "pcesvn=11; repeatable.")] = None,
        accept_tcb_status: Annotated[list[str] | None, typer.Option(
            metavar="STATUS", help="Also accept this TCB status, e.g. OutOfDate; repeatable.")
                                     ] = None,
        waive: Annotated[list[str] | None, typer.Option(
            metavar="CHECK", help="Accept this check failing (policy waive_checks), e.g. "
            "tdx.td_attributes.sept_ve_disable; repeatable.")] = None,
        json_output: Annotated[bool, typer.Option(
            "--json", help="Print JSON (schema: `cocopart schema verify`).")] = False,
    ) -> None:
        """Verify evidence against a policy and print every check.

        Exit 0 if verified, 1 if the evidence is not authentic (a vendor check failed),
        4 if it is authentic but the policy rejects it (the failed checks are named), 2 for
        unusable input.

        **Example:**
        `cocopart verify ev.json --trust-root ev.root.pem --policy examples/policy.toml`
        """
        begin(json_output)
        chosen = load_policy(policy) if policy else None
        if nonce is not None:
            chosen = (chosen or Policy()).model_copy(update={"expected_nonce": hex_64(nonce, "--nonce")})
        pins = QuickPins(report_data=report_data, measurements=measurement or [],
                         host_data=host_data or [], vmpl=vmpl or [], allow_debug=allow_debug,
                         allow_layers=allow_layer or [], min_tcb=min_tcb or [],
                         tcb_status=accept_tcb_status or [], waive=waive or [])
        report = verify(evidence, vendor=vendor, fmt=fmt, policy=chosen, certs=certs,
                        collateral=collateral, now=now, trust_roots=trust_root,
                        vendor_roots=vendor_roots, cert_cache=cert_cache, pins=pins)
        if json_output:
            emit_json(report)
        else:
            render(report)
        if not report.ok:
            raise typer.Exit(exit_code(report))
