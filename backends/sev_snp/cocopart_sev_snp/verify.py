"""The ``cocopart.evidence`` plug-in for AMD SEV-SNP: :class:`SnpEvidenceVerifier`.

Evidence: ``Evidence(vendor="sev-snp", format="snp-report", raw=<0x4A0-byte report>,
certificates=[VCEK or VLEK, ASK/ASVK, ARK])`` — certificates PEM or DER, in any order, PEM
bundles allowed. ``format="azure-hcl-report"`` takes Azure's vTPM HCL report
(:mod:`cocopart.attest.hcl`), which carries the SNP report at 0x20..0x4C0 and runtime data
after it; REPORT_DATA must be the runtime data's hash, zero-padded (``snp.hcl.runtime_data``),
and the runtime claims (JSON) land in ``Claims.extra["runtime_claims"]``.

What is checked, each as a named :class:`Check` (failures never raise):

* ``snp.report.parse`` – size and version (2, 3, 5); without it there are no claims.
* ``snp.chain.certificates`` – a VCEK/VLEK, its ASK/ASVK and an ARK were found.
* ``snp.signature`` – ECDSA P-384/SHA-384 over bytes 0x000..0x29F by the VCEK/VLEK key.
* ``snp.signing_key`` – the report's SIGNING_KEY (0 VCEK, 1 VLEK) names the leaf given.
* ``snp.chain.vcek_ask``, ``snp.chain.ask_ark``, ``snp.chain.ark_self`` – RSASSA-PSS links.
* ``snp.chain.ark_pinned`` – the ARK key is AMD's root for its product (SPKI fingerprint,
  unless ``trust.trust_vendor_roots`` is False) or a root listed in
  ``trust.roots_for("sev-snp")`` (a simulated root is accepted only that way).
* ``snp.chain.validity`` – every certificate is inside its validity window at ``now``. Real
  VCEKs are valid for seven years and VLEKs for one; a verifier of old evidence passes the
  ``now`` at which the evidence was produced.
* ``snp.product`` – CPUID product, the leaf's productName, the pinned ARK and, if given,
  ``evidence.collateral["product"]`` (b"Milan"/b"Genoa"/b"Turin") agree. The product picks
  the TCB layout; version-2 reports carry no CPUID, so it then comes from the certificate.
* ``snp.chip_id`` – chip_id equals the VCEK hwID (n/a for VLEKs and MASK_CHIP_KEY).
* ``snp.tcb`` – reported_tcb equals the leaf's SPL extensions.
* ``snp.origin.layer_map`` – the producer's layer map does not promote a VMPL to 'l1';
  ``snp.origin.vmpl`` fails for a VMPL above 3.
* ``snp.manifest_binding`` – with a manifest: REPORT_DATA = SHA-512(nonce || manifest); the
  manifest is a services GUID table (COCONUT's, with or without cocopart's requester entry)
  or, with ``evidence.service``, that service's own manifest; a requester entry then becomes
  the origin (VMPL0 reports only).

Certificate chains are analysed once and cached by their bytes (:mod:`.certs`), so a report
whose chain is known costs a parse, one ECDSA verification and some comparisons.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cocopart.attest.evidence import Claims, Evidence, Origin
from cocopart.attest.hcl import HclReport
from cocopart.attest.verifier import Check, TrustStore, VendorResult
from cocopart.errors import EvidenceError
from cocopart.protocol.manifest import bind_report_data, read_manifest
from cocopart_sev_snp import certs
from cocopart_sev_snp.report import (
    PRODUCTS,
    REPORT_SIZE,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNED_LENGTH,
    Product,
    SnpReport,
)

VENDOR = "sev-snp"
FORMAT_REPORT = "snp-report"
FORMAT_AZURE_HCL = "azure-hcl-report"

#: report_type of an SNP report inside an Azure HCL report (cocopart.attest.hcl).
HCL_REPORT_TYPE_SNP = 2

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
#: Four VMPLs, VMPL0 the most privileged (sev-snp.md §0: CS sev/vmsa.rs VMPL_MAX=4).
VMPL_COUNT = 4
_SIGNING_KEY_KIND = {0: "VCEK", 1: "VLEK"}


def extract_report(evidence: Evidence) -> tuple[bytes, Check | None, HclReport | None]:
    """The 0x4A0 report bytes inside ``evidence``, and for an HCL report the check of its
    runtime-data binding and the parsed envelope. Raises :class:`EvidenceError` for an
    unknown or broken layout."""
    if evidence.format == FORMAT_REPORT:
        return evidence.raw, None, None
    if evidence.format != FORMAT_AZURE_HCL:
        raise EvidenceError(f"unknown SNP evidence format {evidence.format!r} "
                            f"(known: {FORMAT_REPORT}, {FORMAT_AZURE_HCL})")
    hcl = HclReport.parse(evidence.raw)
    if hcl.report_type != HCL_REPORT_TYPE_SNP:
        raise EvidenceError(f"the Azure HCL report holds hardware report type "
                            f"{hcl.report_type}, not {HCL_REPORT_TYPE_SNP} (SEV-SNP)")
    report = hcl.hardware_report(REPORT_SIZE)
    problem = hcl.binding_problem(report[0x50:0x90])
    return report, Check(name="snp.hcl.runtime_data", ok=problem is None,
                         detail=problem or f"REPORT_DATA starts with {hcl.hash_name}(runtime "
                         "data)"), hcl


def _verify_signature(raw: bytes, report: SnpReport, chain: certs.ChainAnalysis) -> Check:
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        return Check(name="snp.signature", ok=False,
                     detail=f"signature_algo {report.signature_algo} is not ECDSA P-384/SHA-384")
    if chain.leaf_key is None:
        return Check(name="snp.signature", ok=False,
                     detail=chain.error or "leaf key is not ECDSA P-384")
    try:
        chain.leaf_key.verify(encode_dss_signature(report.signature_r, report.signature_s),
                              raw[:SIGNED_LENGTH], _ECDSA_SHA384)
    except InvalidSignature:
        return Check(name="snp.signature", ok=False,
                     detail=f"report signature does not verify with the {chain.leaf_kind} key")
    return Check(name="snp.signature", ok=True,
                 detail=f"ECDSA P-384/SHA-384 by the {chain.leaf_kind}")


def _link(name: str, problem: str | None, what: str) -> Check:
    return Check(name=name, ok=problem is None, detail=problem or f"{what}: RSASSA-PSS verifies")


def _pinned(chain: certs.ChainAnalysis, trust: TrustStore) -> Check:
    """ARK pinning: AMD's root for its product (when vendor roots are trusted) or a root
    listed in the trust store, compared by SPKI fingerprint."""
    fp = chain.ark_fingerprint
    if fp is None:
        return Check(name="snp.chain.ark_pinned", ok=False, detail=chain.error or "no ARK")
    if chain.amd_product is not None and trust.trust_vendor_roots:
        return Check(name="snp.chain.ark_pinned", ok=True,
                     detail=f"ARK is AMD's {chain.amd_product} root")
    for blob in trust.roots_for(VENDOR):
        try:
            fps = certs.root_fingerprints(blob)
        except (ValueError, UnsupportedAlgorithm):  # an unreadable entry pins nothing
            continue
        if fp in fps:
            return Check(name="snp.chain.ark_pinned", ok=True,
                         detail=f"ARK {chain.ark_cn} is pinned in the trust store"
                         + ("" if chain.amd_product else " (not an AMD root)"))
    if chain.amd_product is not None:
        detail = (f"ARK is AMD's {chain.amd_product} root but vendor roots are not trusted "
                  "(trust_vendor_roots=False) and it is not in the trust store")
    else:
        detail = (f"ARK {chain.ark_cn} (SPKI sha256 {fp[:16]}...) is neither an AMD root nor "
                  "in the trust store")
    return Check(name="snp.chain.ark_pinned", ok=False, detail=detail)


def _product(report: SnpReport, chain: certs.ChainAnalysis,
             evidence: Evidence) -> tuple[Product | None, Check]:
    named: dict[str, Product] = {}
    if report.product:
        named["CPUID"] = report.product
    if chain.product:
        named["certificate"] = chain.product
    if chain.amd_product:
        named["AMD root"] = chain.amd_product
    given = evidence.collateral.get("product", b"").decode(errors="replace")
    caller = next((p for p in PRODUCTS if p.lower() == given.lower()), None)
    if caller:
        named["caller"] = caller
    values = set(named.values())
    detail = ", ".join(f"{k} {v}" for k, v in named.items()) or "no product named anywhere"
    product = report.product or chain.product or chain.amd_product or caller
    return product, Check(name="snp.product", ok=len(values) <= 1, detail=detail)


def _chip_id(report: SnpReport, chain: certs.ChainAnalysis, product: Product | None) -> Check:
    if chain.error is not None:
        return Check(name="snp.chip_id", ok=False, detail=chain.error)
    if chain.leaf_kind == "VLEK":
        return Check(name="snp.chip_id", ok=True, detail="n/a: a VLEK has no hwID")
    if report.signer_info >> 1 & 1:
        return Check(name="snp.chip_id", ok=True, detail="n/a: chip_id masked (MASK_CHIP_KEY)")
    problem = certs.chip_id_problem(report.chip_id, chain.leaf_ext.hwid, product)
    return Check(name="snp.chip_id", ok=problem is None,
                 detail=problem or "chip_id equals the VCEK hwID")


def _origin(report: SnpReport, evidence: Evidence) -> tuple[Origin, Check | None]:
    level = f"VMPL{report.vmpl}"
    if report.vmpl >= VMPL_COUNT:
        return Origin(layer=f"l2.{report.vmpl}", vendor_level=level), Check(
            name="snp.origin.vmpl", ok=False,
            detail=f"VMPL {report.vmpl} does not exist (VMPL0..{VMPL_COUNT - 1})")
    default = "l1" if report.vmpl == 0 else f"l2.{report.vmpl}"
    mapped = evidence.layer_map.get(level, default)
    if report.vmpl != 0 and mapped == "l1":
        return Origin(layer=default, vendor_level=level), Check(
            name="snp.origin.layer_map", ok=False,
            detail=f"layer_map names {level} 'l1'; only VMPL0 speaks for the privileged layer")
    if report.vmpl == 0:
        mapped = "l1"
    return Origin(layer=mapped, vendor_level=level), None


def _manifest(report: SnpReport, evidence: Evidence,
              origin: Origin) -> tuple[Origin, Check | None]:
    if evidence.manifest is None:
        return origin, None
    name = "snp.manifest_binding"
    if evidence.nonce is None:
        return origin, Check(name=name, ok=False,
                             detail="a services manifest was given without its nonce")
    if bind_report_data(evidence.nonce, evidence.manifest) != report.report_data:
        return origin, Check(name=name, ok=False,
                             detail="REPORT_DATA is not SHA-512(nonce || manifest)")
    try:
        reading = read_manifest(evidence.manifest, evidence.service)
    except (ValueError, struct.error) as exc:  # EvidenceError, bad UTF-8 in a layer name
        return origin, Check(name=name, ok=False, detail=f"services manifest: {exc}")
    requester = reading.requester
    if requester is None:
        return origin, Check(name=name, ok=True, detail=f"REPORT_DATA binds nonce and "
                             f"{reading.describe()} (no requester entry)")
    if report.vmpl != 0:
        return origin, Check(name=name, ok=False,
                             detail=f"a VMPL{report.vmpl} report cannot attest for another layer")
    return (Origin(layer=requester.layer, vendor_level=f"VMPL{requester.level}",
                   via_privileged_layer=True),
            Check(name=name, ok=True,
                  detail=f"REPORT_DATA binds nonce and manifest; requester {requester.layer}"))


def _extra(report: SnpReport, chain: certs.ChainAnalysis, product: Product | None,
           hcl: bool) -> dict[str, Any]:
    tcbs = {w: report.tcb(w, product).components()
            for w in ("current", "committed", "launch")}
    return {
        "product": product, "vmpl": report.vmpl, "guest_svn": report.guest_svn,
        "host_data": report.host_data.hex(), "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(), "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(), "report_id_ma": report.report_id_ma.hex(),
        "current_tcb": tcbs["current"], "committed_tcb": tcbs["committed"],
        "launch_tcb": tcbs["launch"],
        "current_version": f"{report.current_major}.{report.current_minor}."
                           f"{report.current_build}",
        "committed_version": f"{report.committed_major}.{report.committed_minor}."
                             f"{report.committed_build}",
        "platform_info": report.platform_bits(), "signer_info": report.signer(),
        "cpuid": (None if report.cpuid_fam_id is None else
                  [report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step]),
        "launch_mit_vector": report.launch_mit_vector,
        "current_mit_vector": report.current_mit_vector,
        "certificate_product": chain.leaf_ext.product_name, "csp_id": chain.leaf_ext.csp_id,
        "ark_spki_sha256": chain.ark_fingerprint, "azure_hcl": hcl,
    }


class SnpEvidenceVerifier:
    """Verify SEV-SNP attestation reports (entry point ``cocopart.evidence: sev-snp``)."""

    vendor = VENDOR
    formats = (FORMAT_REPORT, FORMAT_AZURE_HCL)

    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        """Parse and check ``evidence``; every failure is a named check, never an exception."""
        try:
            raw, hcl_check, hcl = extract_report(evidence)
            report = SnpReport.parse(raw)
        except EvidenceError as exc:
            return VendorResult(claims=None, checks=[
                Check(name="snp.report.parse", ok=False, detail=str(exc))])
        checks = [Check(name="snp.report.parse", ok=True,
                        detail=f"version {report.version}, VMPL{report.vmpl}")]
        if hcl_check is not None:
            checks.append(hcl_check)

        chain = (certs.analyse_certificates(tuple(evidence.certificates))
                 if evidence.certificates else certs.incomplete_chain("no certificates given"))
        checks.append(Check(name="snp.chain.certificates", ok=chain.error is None,
                            detail=chain.error or f"{chain.leaf_kind} <- "
                            f"{chain.ask_cn} <- "
                            f"{chain.ark_cn}"))
        checks.append(_verify_signature(raw, report, chain))
        want_kind = _SIGNING_KEY_KIND.get(report.signing_key)
        checks.append(Check(name="snp.signing_key", ok=want_kind == chain.leaf_kind,
                            detail=f"report names {want_kind or report.signing_key}, "
                            f"leaf is {chain.leaf_kind}"))
        leaf_name = chain.leaf_kind or "VCEK"
        checks.append(_link("snp.chain.vcek_ask", chain.leaf_by_ask,
                            f"{leaf_name} signed by {'ASVK' if leaf_name == 'VLEK' else 'ASK'}"))
        checks.append(_link("snp.chain.ask_ark", chain.ask_by_ark, "ASK signed by ARK"))
        checks.append(_link("snp.chain.ark_self", chain.ark_self, "ARK self-signed"))
        checks.append(_pinned(chain, trust))
        expired = certs.validity_problems(chain, now)
        checks.append(Check(name="snp.chain.validity", ok=not expired and chain.leaf is not None,
                            detail="; ".join(expired) or
                            (f"all certificates valid at now (window {chain.window})"
                             if chain.leaf is not None else "no certificates")))
        product, product_check = _product(report, chain, evidence)
        checks.append(product_check)
        checks.append(_chip_id(report, chain, product))
        tcb = report.tcb("reported", product)
        tcb_problem = (certs.tcb_problem(tcb, chain.leaf_ext.spl) if chain.error is None
                       else chain.error)
        checks.append(Check(name="snp.tcb", ok=tcb_problem is None,
                            detail=tcb_problem or "reported_tcb equals the certificate SPLs"))

        origin, layer_check = _origin(report, evidence)
        if layer_check is not None:
            checks.append(layer_check)
        origin, manifest_check = _manifest(report, evidence, origin)
        if manifest_check is not None:
            checks.append(manifest_check)

        # Any chain whose ARK is not AMD's is a simulation (accepted only when pinned).
        simulated = chain.ark is not None and chain.amd_product is None
        signer = f"simulated:{chain.ark_cn}" if simulated else chain.leaf_kind or ""
        claims = Claims(
            vendor=VENDOR, format=evidence.format, version=report.version,
            measurements={"measurement": report.measurement},
            report_data=report.report_data, origin=origin, debug=report.debug,
            policy=report.policy_bits(), tcb=tcb.components(),
            platform_id=report.chip_id.hex(), signer=signer, simulated=simulated,
            extra=_extra(report, chain, product, hcl_check is not None))
        if hcl is not None:
            claims.extra["runtime_claims"] = hcl.runtime_claims()
        return VendorResult(claims=claims, checks=checks)
