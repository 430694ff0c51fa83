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

Certificate chains are analysed once and cached by their bytes (:mod:`.certs`), and every
check and claim of one guest on one chip (the key: every signed byte but REPORT_DATA, the
certificates and the trust store) is kept as a context while ``now`` stays inside the chain's
validity, so a report of a known guest costs one ECDSA verification (its own signature) and
the claims (bench/bench_verify.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cocopart.spi import (
    Check,
    Claims,
    Evidence,
    EvidenceError,
    HclReport,
    Origin,
    TrustStore,
    VendorResult,
    bind_report_data,
    build_unchecked,
    check,
    read_manifest,
)
from cocopart_sev_snp import amd_kds, certs
from cocopart_sev_snp import policy as snp_policy
from cocopart_sev_snp.report import (
    PRODUCTS,
    REPORT_SIZE,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNATURE_FIELD_SIZE,
    SIGNATURE_R_OFFSET,
    SIGNATURE_S_OFFSET,
    SIGNED_LENGTH,
    SIGNING_KEY_NAMES,
    Product,
    SnpReport,
)

VENDOR = "sev-snp"
FORMAT_REPORT = "snp-report"
FORMAT_AZURE_HCL = "azure-hcl-report"

#: report_type of an SNP report inside an Azure HCL report (cocopart.attest.hcl).
HCL_REPORT_TYPE_SNP = 2

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
#: REPORT_DATA, the one signed field a guest sets per report (sev-snp.md §6.3).
REPORT_DATA_OFFSET, REPORT_DATA_SIZE = 0x50, 64
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
        raise EvidenceError(
            f"unknown SNP evidence format {evidence.format!r} "
            f"(known: {FORMAT_REPORT}, {FORMAT_AZURE_HCL})"
        )
    hcl = HclReport.parse(evidence.raw)
    if hcl.report_type != HCL_REPORT_TYPE_SNP:
        raise EvidenceError(
            f"the Azure HCL report holds hardware report type "
            f"{hcl.report_type}, not {HCL_REPORT_TYPE_SNP} (SEV-SNP)"
        )
    report = hcl.hardware_report(REPORT_SIZE)
    problem = hcl.binding_problem(report[0x50:0x90])
    return (
        report,
        check(
            name="snp.hcl.runtime_data",
            ok=problem is None,
            detail=problem or f"REPORT_DATA starts with {hcl.hash_name}(runtime data)",
        ),
        hcl,
    )


def _verify_signature(raw: bytes, algorithm: int, chain: certs.ChainAnalysis) -> Check:
    if algorithm != SIG_ALGO_ECDSA_P384_SHA384:
        return check(
            name="snp.signature",
            ok=False,
            detail=f"signature_algo {algorithm} is not ECDSA P-384/SHA-384",
        )
    if chain.leaf_key is None:
        return check(
            name="snp.signature", ok=False, detail=chain.error or "leaf key is not ECDSA P-384"
        )
    r = int.from_bytes(
        raw[SIGNATURE_R_OFFSET : SIGNATURE_R_OFFSET + SIGNATURE_FIELD_SIZE], "little"
    )
    s = int.from_bytes(
        raw[SIGNATURE_S_OFFSET : SIGNATURE_S_OFFSET + SIGNATURE_FIELD_SIZE], "little"
    )
    try:
        chain.leaf_key.verify(encode_dss_signature(r, s), raw[:SIGNED_LENGTH], _ECDSA_SHA384)
    except (InvalidSignature, ValueError):  # ValueError: r or s too large for a DER integer
        return check(
            name="snp.signature",
            ok=False,
            detail=f"report signature does not verify with the {chain.leaf_kind} key",
        )
    return check(
        name="snp.signature", ok=True, detail=f"ECDSA P-384/SHA-384 by the {chain.leaf_kind}"
    )


def _link(name: str, problem: str | None, what: str) -> Check:
    return check(name=name, ok=problem is None, detail=problem or f"{what}: RSASSA-PSS verifies")


def _pinned(chain: certs.ChainAnalysis, trust: TrustStore) -> Check:
    """ARK pinning: AMD's root for its product (when vendor roots are trusted) or a root
    listed in the trust store, compared by SPKI fingerprint."""
    fp = chain.ark_fingerprint
    if fp is None:
        return check(name="snp.chain.ark_pinned", ok=False, detail=chain.error or "no ARK")
    if chain.amd_product is not None and trust.trust_vendor_roots:
        return check(
            name="snp.chain.ark_pinned", ok=True, detail=f"ARK is AMD's {chain.amd_product} root"
        )
    for blob in trust.roots_for(VENDOR):
        try:
            fps = certs.root_fingerprints(blob)
        except (ValueError, UnsupportedAlgorithm):  # an unreadable entry pins nothing
            continue
        if fp in fps:
            return check(
                name="snp.chain.ark_pinned",
                ok=True,
                detail=f"ARK {chain.ark_cn} is pinned in the trust store"
                + ("" if chain.amd_product else " (not an AMD root)"),
            )
    if chain.amd_product is not None:
        detail = (
            f"ARK is AMD's {chain.amd_product} root but vendor roots are not trusted "
            "(CLI --no-vendor-roots; TrustStore trust_vendor_roots=False) and it is not "
            "in the trust store (CLI --trust-root FILE)"
        )
    else:
        detail = (
            f"ARK {chain.ark_cn} (SPKI sha256 {fp[:16]}...) is neither an AMD root nor "
            "in the trust store"
        )
    return check(name="snp.chain.ark_pinned", ok=False, detail=detail)


def _product(
    report: SnpReport, chain: certs.ChainAnalysis, evidence: Evidence
) -> tuple[Product | None, Check]:
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
    product = report.product or chain.product or chain.amd_product or caller
    if not named:
        return None, check(
            name="snp.product",
            ok=False,
            detail=(
                "no product named anywhere (a version-2 report has no CPUID and no certificate "
                "names one): the TCB layout is unknown"
            ),
        )
    detail = ", ".join(f"{k} {v}" for k, v in named.items())
    return product, check(
        name="snp.product",
        ok=len(values) == 1,
        detail=(detail if len(values) == 1 else f"products disagree: {detail}"),
    )


def _chip_id(report: SnpReport, chain: certs.ChainAnalysis, product: Product | None) -> Check:
    if chain.error is not None:
        return check(name="snp.chip_id", ok=False, detail=chain.error)
    if chain.leaf_kind == "VLEK":
        return check(name="snp.chip_id", ok=True, detail="n/a: a VLEK has no hwID")
    if report.signer_info >> 1 & 1:
        return check(name="snp.chip_id", ok=True, detail="n/a: chip_id masked (MASK_CHIP_KEY)")
    problem = certs.chip_id_problem(report.chip_id, chain.leaf_ext.hwid, product)
    return check(
        name="snp.chip_id", ok=problem is None, detail=problem or "chip_id equals the VCEK hwID"
    )


def _origin(report: SnpReport, evidence: Evidence) -> tuple[Origin, Check | None]:
    level = f"VMPL{report.vmpl}"
    if report.vmpl >= VMPL_COUNT:
        return Origin(layer=f"l2.{report.vmpl}", vendor_level=level), check(
            name="snp.origin.vmpl",
            ok=False,
            detail=f"VMPL {report.vmpl} does not exist (VMPL0..{VMPL_COUNT - 1})",
        )
    default = "l1" if report.vmpl == 0 else f"l2.{report.vmpl}"
    mapped = evidence.layer_map.get(level, default)
    if report.vmpl != 0 and mapped == "l1":
        return Origin(layer=default, vendor_level=level), check(
            name="snp.origin.layer_map",
            ok=False,
            detail=f"layer_map names {level} 'l1'; only VMPL0 speaks for the privileged layer",
        )
    if report.vmpl == 0:
        mapped = "l1"
    return Origin(layer=mapped, vendor_level=level), None


def _manifest(
    vmpl: int, report_data: bytes, evidence: Evidence, origin: Origin
) -> tuple[Origin, Check | None]:
    if evidence.manifest is None:
        return origin, None
    name = "snp.manifest_binding"
    if evidence.nonce is None:
        return origin, check(
            name=name, ok=False, detail="a services manifest was given without its nonce"
        )
    if bind_report_data(evidence.nonce, evidence.manifest) != report_data:
        return origin, check(
            name=name, ok=False, detail="REPORT_DATA is not SHA-512(nonce || manifest)"
        )
    try:
        reading = read_manifest(evidence.manifest, evidence.service)
    except (ValueError, struct.error) as exc:  # EvidenceError, bad UTF-8 in a layer name
        return origin, check(name=name, ok=False, detail=f"services manifest: {exc}")
    requester = reading.requester
    if requester is None:
        return origin, check(
            name=name,
            ok=True,
            detail=f"REPORT_DATA binds nonce and {reading.describe()} (no requester entry)",
        )
    if vmpl != 0:
        return origin, check(
            name=name, ok=False, detail=f"a VMPL{vmpl} report cannot attest for another layer"
        )
    return (
        Origin(
            layer=requester.layer, vendor_level=f"VMPL{requester.level}", via_privileged_layer=True
        ),
        check(
            name=name,
            ok=True,
            detail=f"REPORT_DATA binds nonce and manifest; requester {requester.layer}",
        ),
    )


def _extra(
    report: SnpReport, chain: certs.ChainAnalysis, product: Product | None, hcl: bool
) -> dict[str, Any]:
    tcbs = {w: report.tcb(w, product).components() for w in ("current", "committed", "launch")}
    return {
        "product": product,
        "vmpl": report.vmpl,
        "guest_svn": report.guest_svn,
        "host_data": report.host_data.hex(),
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "current_tcb": tcbs["current"],
        "committed_tcb": tcbs["committed"],
        "launch_tcb": tcbs["launch"],
        "current_version": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        "committed_version": f"{report.committed_major}.{report.committed_minor}."
        f"{report.committed_build}",
        "platform_info": report.platform_bits(),
        "signer_info": report.signer(),
        "cpuid": (
            None
            if report.cpuid_fam_id is None
            else [report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step]
        ),
        "launch_mit_vector": report.launch_mit_vector,
        "current_mit_vector": report.current_mit_vector,
        "certificate_product": chain.leaf_ext.product_name,
        "csp_id": chain.leaf_ext.csp_id,
        "ark_spki_sha256": chain.ark_fingerprint,
        "azure_hcl": hcl,
    }


_NO_CERTIFICATES = certs.incomplete_chain("no certificates given")


def _resolve_chain(report: SnpReport, evidence: Evidence, trust: TrustStore) -> certs.ChainAnalysis:
    """The evidence's certificates, completed with AMD's built-in ASK/ASVK/ARK and, when the
    trust store names a certificate cache, with the chip's VCEK and the chains found there."""
    blobs = tuple(evidence.certificates)
    builtin = amd_kds.builtin_ders()
    chain = certs.analyse_certificates(blobs, builtin) if blobs else _NO_CERTIFICATES
    cache = trust.certificate_cache
    if cache is None or chain.error is None:
        return chain
    extra: list[bytes] = []
    if chain.leaf is None and report.signing_key == 0:
        tcbs = {p: report.tcb("reported", p) for p in (*PRODUCTS, None)}
        extra += amd_kds.cached_vceks(Path(cache), report.chip_id, tcbs)
    extra += amd_kds.cached_chains(Path(cache))
    return certs.analyse_certificates(blobs + tuple(extra), builtin) if extra else chain


def _chain_check(report: SnpReport, chain: certs.ChainAnalysis) -> Check:
    name = "snp.chain.certificates"
    if chain.error is None:
        note = (
            f" ({' and '.join(chain.built_in)} built in: AMD's KDS certificates)"
            if chain.built_in
            else ""
        )
        return check(
            name=name,
            ok=True,
            detail=f"{chain.leaf_kind} <- {chain.ask_cn} <- {chain.ark_cn}{note}",
        )
    if chain.leaf is not None or report.signing_key != 0:
        return check(name=name, ok=False, detail=chain.error)
    product = report.product
    where = (
        amd_kds.vcek_url(report.chip_id, report.tcb("reported"), product)
        if product
        else f"{amd_kds.KDS_URL}/vcek/v1/<Milan|Genoa|Turin>/<chip_id hex>?blSPL=.."
    )
    return check(
        name=name,
        ok=False,
        detail=(
            f"{chain.error}: this report is signed by its chip's VCEK; get it from AMD's KDS "
            f"({where}) and give it with the evidence (CLI: --certs FILE) or put it in a "
            "certificate cache directory (CLI: --cert-cache DIR, as DIR/vcek/v1/<product>/<hwid>)"
        ),
    )


def _signing_key(report: SnpReport, chain: certs.ChainAnalysis) -> Check:
    name = "snp.signing_key"
    want = _SIGNING_KEY_KIND.get(report.signing_key)
    if want is None:
        what = SIGNING_KEY_NAMES.get(report.signing_key, f"reserved value {report.signing_key}")
        return check(
            name=name,
            ok=False,
            detail=f"the report's SIGNING_KEY is {what}: no VCEK or VLEK signed it",
        )
    if chain.leaf_kind is None:
        return check(
            name=name,
            ok=False,
            detail=f"the report names the {want}, and no {want} "
            "certificate is available to check it against",
        )
    return check(
        name=name,
        ok=want == chain.leaf_kind,
        detail=f"report names the {want}, the certificate is a {chain.leaf_kind}",
    )


class SnpEvidenceVerifier:
    """Verify SEV-SNP attestation reports (entry point ``cocopart.evidence: sev-snp``)."""

    vendor = VENDOR
    formats = (FORMAT_REPORT, FORMAT_AZURE_HCL)
    policy_schema = snp_policy.SCHEMA
    check_policy = staticmethod(snp_policy.check_policy)

    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        """Parse and check ``evidence``; every failure is a named check, never an exception."""
        if now.tzinfo is None:  # naive times are UTC
            now = now.replace(tzinfo=UTC)
        try:
            raw, hcl_check, hcl = extract_report(evidence)
            ctx = _context(raw, evidence, trust, now)
        except EvidenceError as exc:
            return VendorResult(
                claims=None, checks=[check(name="snp.report.parse", ok=False, detail=str(exc))]
            )
        checks = [ctx.parsed]
        if hcl_check is not None:
            checks.append(hcl_check)
        checks += ctx.head
        checks.append(_verify_signature(raw, ctx.signature_algo, ctx.chain))
        checks += ctx.tail
        report_data = raw[REPORT_DATA_OFFSET : REPORT_DATA_OFFSET + REPORT_DATA_SIZE]
        origin, manifest_check = _manifest(ctx.vmpl, report_data, evidence, ctx.origin)
        if manifest_check is not None:
            checks.append(manifest_check)
        values = dict(ctx.claims)
        extra = _copy_extra(values["extra"], hcl_check)
        if hcl is not None:
            extra["runtime_claims"] = hcl.runtime_claims()
        values.update(
            format=evidence.format,
            report_data=report_data,
            origin=origin,
            measurements=dict(values["measurements"]),
            policy=dict(values["policy"]),
            tcb=dict(values["tcb"]),
            extra=extra,
        )
        return build_unchecked(
            VendorResult, {"claims": build_unchecked(Claims, values), "checks": checks}
        )


@dataclass(frozen=True)
class _ReportContext:
    """What a report's checks and claims say apart from its signature and REPORT_DATA: the
    same for every report of one guest on one chip with the same certificates (REPORT_DATA
    is the only signed field a guest changes between reports), while ``now`` stays inside the
    chain's validity."""

    parsed: Check
    head: tuple[Check, ...]
    tail: tuple[Check, ...]
    chain: certs.ChainAnalysis
    signature_algo: int
    vmpl: int
    origin: Origin
    claims: dict[str, Any]
    valid_from: datetime
    valid_until: datetime


_CONTEXTS: dict[tuple[Any, ...], _ReportContext] = {}
_CONTEXT_LIMIT = 256


def clear_caches() -> None:
    """Forget cached report contexts and certificate analyses (benchmarks of the cold path)."""
    _CONTEXTS.clear()
    certs.analyse_certificates.cache_clear()
    certs.analyse_chain.cache_clear()


def _context(raw: bytes, evidence: Evidence, trust: TrustStore, now: datetime) -> _ReportContext:
    key = (
        raw[:REPORT_DATA_OFFSET],
        raw[REPORT_DATA_OFFSET + REPORT_DATA_SIZE : SIGNED_LENGTH],
        tuple(evidence.certificates),
        trust.trust_vendor_roots,
        tuple(trust.roots_for(VENDOR)),
        trust.certificate_cache,
        evidence.collateral.get("product"),
        tuple(evidence.layer_map.items()),
        amd_kds.builtin_ders(),
    )
    hit = _CONTEXTS.get(key)
    if hit is not None and hit.valid_from <= now <= hit.valid_until and len(raw) == REPORT_SIZE:
        return hit
    report = SnpReport.parse(raw)
    ctx = _build_context(report, evidence, trust, now)
    if ctx.valid_from <= now <= ctx.valid_until:
        if len(_CONTEXTS) >= _CONTEXT_LIMIT:
            _CONTEXTS.clear()
        _CONTEXTS[key] = ctx
    return ctx


def _build_context(
    report: SnpReport, evidence: Evidence, trust: TrustStore, now: datetime
) -> _ReportContext:
    chain = _resolve_chain(report, evidence, trust)
    head = (_chain_check(report, chain),)
    tail = [_signing_key(report, chain)]
    leaf_name = chain.leaf_kind or "VCEK"
    tail.append(
        _link(
            "snp.chain.vcek_ask",
            chain.leaf_by_ask,
            f"{leaf_name} signed by {'ASVK' if leaf_name == 'VLEK' else 'ASK'}",
        )
    )
    tail.append(_link("snp.chain.ask_ark", chain.ask_by_ark, "ASK signed by ARK"))
    tail.append(_link("snp.chain.ark_self", chain.ark_self, "ARK self-signed"))
    tail.append(_pinned(chain, trust))
    expired = certs.validity_problems(chain, now)
    tail.append(
        check(
            name="snp.chain.validity",
            ok=not expired,
            detail="; ".join(expired) or f"all certificates valid at now (window {chain.window})",
        )
    )
    product, product_check = _product(report, chain, evidence)
    tail.append(product_check)
    tail.append(_chip_id(report, chain, product))
    tcb = report.tcb("reported", product)
    tcb_problem = certs.tcb_problem(tcb, chain.leaf_ext.spl) if chain.error is None else chain.error
    tail.append(
        check(
            name="snp.tcb",
            ok=tcb_problem is None,
            detail=tcb_problem or "reported_tcb equals the certificate SPLs",
        )
    )
    origin, layer_check = _origin(report, evidence)
    if layer_check is not None:
        tail.append(layer_check)
    # Any chain whose ARK is not AMD's is a simulation (accepted only when pinned).
    simulated = chain.ark is not None and chain.amd_product is None
    signer = f"simulated:{chain.ark_cn}" if simulated else chain.leaf_kind or ""
    claims = {
        "vendor": VENDOR,
        "format": evidence.format,
        "version": report.version,
        "measurements": {"measurement": report.measurement},
        "report_data": b"",
        "origin": origin,
        "debug": report.debug,
        "policy": report.policy_bits(),
        "tcb": tcb.components(),
        "tcb_status": None,
        "platform_id": report.chip_id.hex(),
        "signer": signer,
        "simulated": simulated,
        "extra": _extra(report, chain, product, False),
    }
    members = [c for c in (chain.leaf, chain.ask, chain.ark) if c is not None]
    complete = chain.error is None and not expired
    return _ReportContext(
        parsed=check(
            name="snp.report.parse", ok=True, detail=f"version {report.version}, VMPL{report.vmpl}"
        ),
        head=head,
        tail=tuple(tail),
        chain=chain,
        signature_algo=report.signature_algo,
        vmpl=report.vmpl,
        origin=origin,
        claims=claims,
        valid_from=max(c.not_valid_before_utc for c in members) if complete else _NEVER[0],
        valid_until=min(c.not_valid_after_utc for c in members) if complete else _NEVER[1],
    )


_NEVER = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC))


def _copy_extra(extra: dict[str, Any], hcl_check: Check | None) -> dict[str, Any]:
    """A result's own copy of the cached extra claims (nested dicts too)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in extra.items()}
    out["azure_hcl"] = hcl_check is not None
    return out
