"""Decode TDX evidence and PCK certificates for reading (``cocopart show``), without
verifying anything. Field names follow tdx.md §7.1 (TDREPORT) and §7.3 (quotes), as
go-tdx-guest and dcap-qvl's ``decode`` name them."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cocopart.spi import (
    Decoded,
    Evidence,
    EvidenceError,
    HclReport,
    Section,
    certificate_section,
    load_der_certificate,
)
from cocopart_tdx.pck import SGX_EXTENSIONS_OID, SGX_TYPES, SgxExtensions, load_certificates
from cocopart_tdx.quote import QeReportCertificationData, TdQuote, TdQuoteBody
from cocopart_tdx.tdreport import TDREPORT_SIZE, TdReport, decode_td_attributes

_NOT_VERIFIED = (
    "decoded only, nothing verified: `cocopart verify` checks the quote "
    "signature, the QE report, the PCK chain and the TCB against collateral"
)


def _body_sections(body: TdQuoteBody) -> list[Section]:
    fields: dict[str, Any] = {
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "mrseam": body.mrseam.hex(),
        "mrsignerseam": body.mrsignerseam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "xfam": body.xfam.hex(),
        "mrtd": body.mrtd.hex(),
        "mrconfigid": body.mrconfigid.hex(),
        "mrowner": body.mrowner.hex(),
        "mrownerconfig": body.mrownerconfig.hex(),
        **{f"rtmr{i}": r.hex() for i, r in enumerate(body.rtmrs)},
        "report_data": body.report_data.hex(),
    }
    if body.tee_tcb_svn2 is not None:
        fields["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        fields["mrservicetd"] = (body.mrservicetd or b"").hex()
    return [
        Section(title="TD quote body", fields=fields),
        Section(title="TD attributes", fields=decode_td_attributes(body.td_attributes)),
    ]


def decode_certificate(der: bytes) -> Section | None:
    """The Intel SGX extensions of a PCK certificate: FMSPC, PCE ID, TCB (None without)."""
    cert = load_der_certificate(der)
    try:
        cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    except x509.ExtensionNotFound:
        return None
    ext = SgxExtensions.from_certificate(cert)
    fields: dict[str, Any] = {
        "fmspc": ext.fmspc.hex(),
        "pce_id": ext.pce_id.hex(),
        "ppid": ext.ppid.hex(),
        "sgx_type": SGX_TYPES.get(ext.sgx_type, ext.sgx_type),
        "cpusvn": ext.tcb.cpusvn.hex(),
        **ext.tcb.named(),
    }
    if ext.platform_instance_id is not None:
        fields["platform_instance_id"] = ext.platform_instance_id.hex()
    if ext.configuration is not None:
        fields["configuration"] = ext.configuration
    return Section(title="Intel SGX extensions (PCK)", fields=fields)


def _quote(raw: bytes) -> tuple[str, list[Section], list[str]]:
    quote = TdQuote.from_bytes(raw)
    header = quote.header
    sections = [
        Section(
            title="quote header",
            fields={
                "version": header.version,
                "att_key_type": header.att_key_type,
                "tee_type": f"{header.tee_type:#x}",
                "qe_vendor_id": header.qe_vendor_id.hex(),
                "user_data": header.user_data.hex(),
                "body_type": quote.body_type,
            },
        )
    ]
    sections += _body_sections(quote.body)
    sig = quote.signature_data
    sig_fields: dict[str, Any] = {
        "signature": sig.signature.hex(),
        "attestation_key": sig.attestation_key.hex(),
        "certification_data_type": sig.certification.cert_type,
    }
    sections.append(Section(title="quote signature data", fields=sig_fields))
    qe = sig.certification
    if isinstance(qe, QeReportCertificationData):
        r = qe.qe_report
        sections.append(
            Section(
                title="QE report",
                fields={
                    "cpusvn": r.cpusvn.hex(),
                    "miscselect": r.miscselect,
                    "attributes": r.attributes.hex(),
                    "mrenclave": r.mrenclave.hex(),
                    "mrsigner": r.mrsigner.hex(),
                    "isvprodid": r.isvprodid,
                    "isvsvn": r.isvsvn,
                    "report_data": r.report_data.hex(),
                    "signature": qe.qe_report_signature.hex(),
                    "qe_auth_data": qe.qe_auth_data.hex(),
                },
            )
        )
    notes: list[str] = []
    chain = sig.pck_chain_data
    if chain:
        for index, cert in enumerate(load_certificates(chain)):
            der = cert.public_bytes(Encoding.DER)
            section = certificate_section(der, f"PCK chain certificate {index}")
            extension = decode_certificate(der)
            sections.append(section)
            if extension is not None:
                sections.append(extension)
    else:
        notes.append("the quote carries no PCK certificate chain (certification data type 5)")
    if quote.trailing:
        padding = "zero padding" if not any(quote.trailing) else "data"
        notes.append(f"{len(quote.trailing)} bytes of {padding} after the signature data")
    return f"TD quote v{quote.version}", sections, notes


def _tdreport(raw: bytes) -> list[Section]:
    report = TdReport.from_bytes(raw, strict=False)
    macs, tcb, info = report.mac_struct, report.tee_tcb_info, report.td_info
    rtype = macs.report_type
    return [
        Section(
            title="REPORTMACSTRUCT",
            fields={
                "report_type": f"type {rtype.type:#x}, subtype {rtype.subtype}, version "
                f"{rtype.version}",
                "cpusvn": macs.cpusvn.hex(),
                "tee_tcb_info_hash": macs.tee_tcb_info_hash.hex(),
                "tee_info_hash": macs.tee_info_hash.hex(),
                "report_data": macs.report_data.hex(),
                "mac": macs.mac.hex(),
            },
            notes=[p for p in [report.type_problem()] if p] + report.hash_problems(),
        ),
        Section(
            title="TEE_TCB_INFO",
            fields={
                "valid": tcb.valid.hex(),
                "tee_tcb_svn": tcb.tee_tcb_svn.hex(),
                "mrseam": tcb.mrseam.hex(),
                "mrsignerseam": tcb.mrsignerseam.hex(),
                "attributes": tcb.attributes.hex(),
                "tee_tcb_svn2": tcb.tee_tcb_svn2.hex(),
            },
        ),
        Section(
            title="TDINFO",
            fields={
                "attributes": info.attributes.hex(),
                "xfam": info.xfam.hex(),
                "mrtd": info.mrtd.hex(),
                "mrconfigid": info.mrconfigid.hex(),
                "mrowner": info.mrowner.hex(),
                "mrownerconfig": info.mrownerconfig.hex(),
                **{f"rtmr{i}": r.hex() for i, r in enumerate(info.rtmrs)},
                "servtd_hash": info.servtd_hash.hex(),
            },
        ),
        Section(title="TD attributes", fields=decode_td_attributes(info.attributes)),
    ]


def decode(evidence: Evidence) -> Decoded:
    """Every field of a TD quote (v4/v5), a TDREPORT, or an Azure HCL report holding one."""
    notes = [_NOT_VERIFIED]
    if evidence.format == "tdx-quote":
        title, sections, more = _quote(evidence.raw)
        notes += more
    elif evidence.format == "tdreport":
        title, sections = "TDREPORT", _tdreport(evidence.raw)
        notes.append("a TDREPORT's MAC can only be checked on the platform that made it")
    elif evidence.format == "azure-hcl-report":
        hcl = HclReport.parse(evidence.raw)
        raw = hcl.hardware_report(TDREPORT_SIZE)
        problem = hcl.binding_problem(raw[128:192])
        title = "Azure HCL report with a TDREPORT"
        sections = [
            Section(
                title="HCL report",
                fields=hcl.header_fields(),
                notes=[problem or f"REPORTDATA = {hcl.hash_name}(runtime data), zero-padded"],
            ),
            Section(title="runtime claims", fields=hcl.runtime_claims() or {}),
        ]
        sections += _tdreport(raw)
        notes.append(
            "the TDREPORT's MAC can only be checked on the platform: verify the TD "
            "quote made from it (`cocopart verify HCL --collateral td_quote=QUOTE`)"
        )
    else:
        raise EvidenceError(f"unknown TDX evidence format {evidence.format!r}")
    return Decoded(
        vendor=evidence.vendor, format=evidence.format, title=title, sections=sections, notes=notes
    )
