"""Decode SEV-SNP evidence and AMD certificates for reading (``cocopart show``), without
verifying anything: field names follow the report layout of sev-snp.md §6.3 (as
:class:`~cocopart_sev_snp.report.SnpReport` and ``snpguest display report`` name them)."""

from __future__ import annotations

from typing import Any

from cocopart.spi import Decoded, Evidence, EvidenceError, HclReport, Section
from cocopart_sev_snp.report import REPORT_SIZE, SIGNING_KEY_NAMES, SnpReport

_NOT_VERIFIED = (
    "decoded only, nothing verified: `cocopart verify` checks the signature, the "
    "AMD certificate chain and the TCB"
)


def _report_sections(report: SnpReport) -> list[Section]:
    product = report.product
    fields: dict[str, Any] = {
        "version": report.version,
        "guest_svn": report.guest_svn,
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "signing_key": SIGNING_KEY_NAMES.get(report.signing_key, report.signing_key),
        "product (from CPUID)": product or "unknown (version 2 reports carry no CPUID)",
        "cpuid": (
            None
            if report.cpuid_fam_id is None
            else f"family {report.cpuid_fam_id:#x}, model {report.cpuid_mod_id:#x}, "
            f"stepping {report.cpuid_step:#x}"
        ),
        "firmware (current)": f"{report.current_major}.{report.current_minor}."
        f"{report.current_build}",
        "firmware (committed)": f"{report.committed_major}.{report.committed_minor}."
        f"{report.committed_build}",
        "report_data": report.report_data.hex(),
        "measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "chip_id": report.chip_id.hex(),
    }
    if report.launch_mit_vector is not None:
        fields["launch_mit_vector"] = f"{report.launch_mit_vector:#x}"
        fields["current_mit_vector"] = f"{report.current_mit_vector:#x}"
    policy = Section(
        title="guest policy",
        fields={k: (f"{v:#x}" if k == "raw" else v) for k, v in report.policy_bits().items()},
    )
    platform = Section(
        title="platform info",
        fields={k: (f"{v:#x}" if k == "raw" else v) for k, v in report.platform_bits().items()},
    )
    signer = Section(
        title="signer info",
        fields={
            k: (f"{v:#x}" if k == "raw" and isinstance(v, int) else v)
            for k, v in report.signer().items()
        },
    )
    tcbs = Section(
        title="TCB versions",
        fields={
            which: {"raw": f"{report.tcb(which).raw:#018x}", **report.tcb(which).components()}
            for which in ("reported", "current", "committed", "launch")
        },
    )
    if product is None:
        tcbs.notes.append("decoded with the Milan/Genoa layout (the report names no product)")
    signature = Section(
        title="signature", fields={"r": f"{report.signature_r:x}", "s": f"{report.signature_s:x}"}
    )
    return [
        Section(title="attestation report", fields=fields),
        policy,
        platform,
        signer,
        tcbs,
        signature,
    ]


def decode(evidence: Evidence) -> Decoded:
    """Every field of an SNP report or an Azure HCL report holding one."""
    notes = [_NOT_VERIFIED]
    sections: list[Section] = []
    raw = evidence.raw
    title = "SEV-SNP attestation report"
    if evidence.format == "azure-hcl-report":
        hcl = HclReport.parse(raw)
        raw = hcl.hardware_report(REPORT_SIZE)
        title = "Azure HCL report with an SEV-SNP attestation report"
        problem = hcl.binding_problem(raw[0x50:0x90])
        envelope = Section(
            title="HCL report",
            fields=hcl.header_fields(),
            notes=[problem or f"REPORT_DATA = {hcl.hash_name}(runtime data), zero-padded"],
        )
        sections += [envelope, Section(title="runtime claims", fields=hcl.runtime_claims() or {})]
    elif evidence.format != "snp-report":
        raise EvidenceError(f"unknown SEV-SNP evidence format {evidence.format!r}")
    report = SnpReport.parse(raw)
    return Decoded(
        vendor=evidence.vendor,
        format=evidence.format,
        title=title,
        sections=_report_sections(report) + sections,
        notes=notes,
    )


def decode_certificate(der: bytes) -> Section | None:
    """The AMD extensions of a VCEK/VLEK (None for a certificate without them)."""
    from cocopart_sev_snp.certs import AMD_OID_PREFIX, load_certificate, parse_leaf_extensions

    cert = load_certificate(der)
    if not any(e.oid.dotted_string.startswith(AMD_OID_PREFIX) for e in cert.extensions):
        return None
    ext = parse_leaf_extensions(cert)
    fields: dict[str, Any] = {
        "product_name": ext.product_name,
        "struct_version": ext.struct_version,
        **{f"{name}_spl": v for name, v in ext.spl.items()},
    }
    if ext.hwid is not None:
        fields["hwid"] = ext.hwid.hex()
    if ext.csp_id is not None:
        fields["csp_id"] = ext.csp_id
    return Section(title="AMD SEV-SNP extensions", fields=fields, notes=list(ext.problems))
