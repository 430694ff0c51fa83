"""The ``cocopart.evidence`` plug-in for Intel TDX: quotes (v4, v5) and TDREPORTs.

Formats
-------
``"tdx-quote"``
    ``raw`` = the quote bytes (trailing zero padding allowed). The PCK chain comes from the
    quote's certification data (type 5, PEM or concatenated DER), else from
    ``evidence.certificates``. ``evidence.collateral`` holds the PCS responses:
    ``tcb_info`` and ``qe_identity`` (response bodies), ``tcb_info_issuer_chain`` and
    optionally ``qe_identity_issuer_chain`` (the TCB Signing certificate chain, PEM),
    and optionally ``root_crl`` and ``pck_crl`` (DER, PEM or hex). dcap-qvl's
    collateral JSON converts with :func:`cocopart_tdx.collateral.collateral_from_dcap_qvl_json`.
``"tdreport"``
    ``raw`` = a 1024-byte TDREPORT. Its structure and its two SHA-384 hashes are checked,
    but its MAC is keyed by the CPU and cannot be checked off the platform, so the check
    ``tdx.tdreport.mac`` always fails: a TDREPORT is never accepted as verified evidence on
    its own. Turn it into a quote (the quoting enclave checks the MAC) to attest remotely.
``"azure-hcl-report"``
    ``raw`` = an Azure vTPM HCL report holding a TDREPORT (:mod:`cocopart_tdx.hcl_verify`):
    verified like a TDREPORT plus its runtime-data binding, and completely when the TD quote
    made from it is given as ``collateral["td_quote"]``.

Checks (each a named :class:`Check`; a failure never raises): ``tdx.quote.parse``,
``tdx.quote.signature`` (attestation key over header||body), ``tdx.qe_report.binding``
(QE REPORTDATA = SHA-256(attestation key || QE auth data) || zeros), ``tdx.pck.chain``,
``tdx.pck.root_pinned``, ``tdx.qe_report.signature`` (PCK key over the QE report),
``tdx.crl``, ``tdx.collateral.present``, ``tdx.collateral.signature``,
``tdx.collateral.fresh``, ``tdx.collateral.match``, ``tdx.tcb_status``,
``tdx.td_attributes.sept_ve_disable`` (dcap-qvl and Intel's default appraisal reject TDs
without it; a policy accepts TDs that run without it, such as Azure's partitioned ones, with
``waive_checks = ["tdx.td_attributes.sept_ve_disable"]``, or a Python caller constructs the
verifier with ``require_sept_ve_disable=False``) and ``tdx.manifest_binding``. Debug TDs are left to the policy
(``Claims.debug``).

Trust: the Intel SGX Root CA is pinned by the SHA-256 of its public key
(:data:`cocopart_tdx.pck.INTEL_SGX_ROOT_CA_SPKI_SHA256`) and accepted while
``TrustStore.trust_vendor_roots`` is set; any other root (a simulated one) only when its
public key is among ``TrustStore.roots_for("tdx")``.

Speed: what a quote's signature data says apart from the quote signature (attestation key,
QE report binding and PCK signature, PCK chain) is the same for every quote of one quoting
enclave, so it is cached by those exact bytes, as are parsed collateral, CRLs and TCB
evaluations; on top, every check and claim of one TD on one platform with one collateral
(the key: every signed byte but REPORTDATA, the signature data but the quote signature) is
kept as a context, used while ``now`` stays inside every validity window involved. A quote
of a known TD then costs its framing, one P-256 verification (its own signature) and the
claims. Cold, links between Intel's pinned certificates are not re-verified
(:data:`cocopart_tdx.pck.INTEL_PINNED_LINKS`) and certificates, CRLs and signed collateral
are checked over their exact bytes, sliced rather than re-encoded. bench/bench_verify.py
measures both against dcap-qvl and a bare P-256 verify (docs/performance.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cocopart.spi import (
    Check,
    Claims,
    Evidence,
    EvidenceError,
    Origin,
    TrustStore,
    VendorResult,
    bind_report_data,
    build_unchecked,
    check,
    read_manifest,
)
from cocopart_tdx import policy as tdx_policy
from cocopart_tdx.collateral import (
    EnclaveIdentity,
    SignedJson,
    TcbEvaluation,
    TcbInfo,
    evaluate_tcb,
)
from cocopart_tdx.pck import (
    INTEL_SGX_ROOT_CA_SPKI_SHA256,
    ChainCert,
    SgxExtensions,
    chain_problems,
    common_name,
    crl_der,
    crl_problems,
    crl_time_problem,
    load_certificates,
    parse_chain,
    spki_sha256,
    validity_problems,
)
from cocopart_tdx.quote import (
    EnclaveReportBody,
    QuoteFrame,
    QuoteLayout,
    QuoteSignatureData,
    TdQuoteBody,
)
from cocopart_tdx.tdreport import TdReport, decode_td_attributes

VENDOR = "tdx"
FORMAT_QUOTE = "tdx-quote"
FORMAT_TDREPORT = "tdreport"
FORMAT_AZURE_HCL = "azure-hcl-report"
_CACHE_LIMIT = 256
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # built once: constructing it costs ~10 us a call


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, sig_rs: bytes, data: bytes) -> bool:
    """ECDSA P-256/SHA-256 with the signature as 64 bytes r||s (big-endian)."""
    der = encode_dss_signature(
        int.from_bytes(sig_rs[:32], "big"), int.from_bytes(sig_rs[32:], "big")
    )
    try:
        key.verify(der, data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


# --- cached, time-independent facts ---------------------------------------------------------

_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_FAR_PAST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Chain:
    """A parsed certificate chain and what can be said about it without a clock."""

    key: bytes
    items: tuple[ChainCert, ...]
    problems: tuple[str, ...]
    root_spki: str = ""
    names: tuple[str, ...] = ()
    extensions: SgxExtensions | None = None
    tcb_names: tuple[tuple[str, int], ...] = ()
    valid_from: datetime = _FAR_FUTURE
    valid_until: datetime = _FAR_PAST

    @property
    def certs(self) -> tuple[x509.Certificate, ...]:
        return tuple(item.cert for item in self.items)

    def time_problems(self, now: datetime) -> list[str]:
        """Certificates of the chain that are not valid at ``now``."""
        if self.valid_from <= now <= self.valid_until:
            return []
        return validity_problems(list(self.certs), now)


_CHAINS: dict[tuple[bytes, bool], _Chain] = {}
_ROOT_SETS: dict[tuple[bytes, ...], dict[str, str]] = {}
_CRLS: dict[
    tuple[bytes, bytes, str],
    tuple[tuple[str, ...], x509.CertificateRevocationList, datetime, datetime],
] = {}


def _chain(data: bytes, *, pck: bool) -> _Chain:
    hit = _CHAINS.get((data, pck))
    if hit is not None:
        return hit
    try:
        items = parse_chain(data)
    except EvidenceError as exc:
        return _remember(_CHAINS, (data, pck), _Chain(data, (), (str(exc),)))
    problems = chain_problems(items)
    ext: SgxExtensions | None = None
    if pck:
        if len(items) != 3:
            problems.append(
                f"a PCK chain has 3 certificates (leaf, CA, root), this one {len(items)}"
            )
        try:
            ext = SgxExtensions.from_certificate(items[0].der)
        except EvidenceError as exc:
            problems.append(str(exc))
    certs = [item.cert for item in items]
    return _remember(
        _CHAINS,
        (data, pck),
        _Chain(
            data,
            tuple(items),
            tuple(problems),
            items[-1].spki_sha256,
            tuple(item.name for item in items),
            ext,
            tuple(ext.tcb.named().items()) if ext else (),
            max(c.not_valid_before_utc for c in certs),
            min(c.not_valid_after_utc for c in certs),
        ),
    )


_NO_CHAIN = _Chain(b"", (), ("no PCK certificate chain in the quote or the evidence",))
_PARSED = {
    (v, t): check(name="tdx.quote.parse", ok=True, detail=f"TD quote v{v}, body type {t}")
    for v in (4, 5)
    for t in (2, 3)
}


def _trusted_roots(trust: TrustStore) -> tuple[tuple[bytes, ...], dict[str, str]]:
    """SPKI SHA-256 -> signer name of every root this TrustStore accepts (and a cache key)."""
    extra = tuple(trust.roots_for(VENDOR))
    key = extra + ((b"intel",) if trust.trust_vendor_roots else ())
    hit = _ROOT_SETS.get(key)
    if hit is not None:
        return key, hit
    roots: dict[str, str] = {}
    if trust.trust_vendor_roots:
        roots[INTEL_SGX_ROOT_CA_SPKI_SHA256] = "PCK"
    for blob in extra:
        try:
            for cert in load_certificates(blob):
                spki = spki_sha256(cert)
                roots.setdefault(
                    spki,
                    "PCK"
                    if spki == INTEL_SGX_ROOT_CA_SPKI_SHA256
                    else f"simulated:{common_name(cert)}",
                )
        except EvidenceError:
            continue
    return key, _remember(_ROOT_SETS, key, roots)


@dataclass(frozen=True)
class _Platform:
    """What a quote's signature data says, apart from the quote signature itself.

    Every quote of one quoting enclave carries the same attestation key, QE report, QE report
    signature and PCK chain, so this is computed once per distinct signature data.
    """

    signature_data: QuoteSignatureData | None
    parse_problem: str | None
    attestation_key: ec.EllipticCurvePublicKey | None
    binding: tuple[bool, str]
    chain: _Chain
    qe_signature: tuple[bool, str]
    qe_isvsvn: int | None
    qe_raw: bytes


_PLATFORMS: dict[tuple[bytes, tuple[bytes, ...]], _Platform] = {}


def _platform(tail: bytes, certificates: tuple[bytes, ...]) -> _Platform:
    """Parse and check the signature data after its first 64 bytes (the quote signature)."""
    key = (tail, certificates)
    hit = _PLATFORMS.get(key)
    if hit is not None:
        return hit
    try:
        sig = QuoteSignatureData.from_bytes(bytes(64) + tail)
    except EvidenceError as exc:
        no = (False, "signature data does not parse")
        return _remember(
            _PLATFORMS, key, _Platform(None, str(exc), None, no, _NO_CHAIN, no, None, b"")
        )
    try:
        ak: ec.EllipticCurvePublicKey | None = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + sig.attestation_key
        )
    except ValueError:
        ak = None
    qe = sig.qe
    if qe is None:
        binding = (
            False,
            (
                f"certification data type {sig.certification.cert_type} carries no "
                "QE report (type 6 expected)"
            ),
        )
    else:
        want = hashlib.sha256(sig.attestation_key + qe.qe_auth_data).digest() + bytes(32)
        ok = qe.qe_report.report_data == want
        binding = (
            ok,
            "QE REPORTDATA = SHA-256(attestation key || QE auth data) || zeros"
            if ok
            else "QE REPORTDATA does not bind the attestation key and QE auth data",
        )
    chain_data = sig.pck_chain_data
    if chain_data is None:
        chain_data = b"".join(certificates)
    chain = _chain(chain_data, pck=True) if chain_data else _NO_CHAIN
    if qe is not None and chain.items:
        pub = chain.items[0].key
        ok = isinstance(pub, ec.EllipticCurvePublicKey) and _ecdsa_ok(
            pub, qe.qe_report_signature, qe.qe_report_bytes
        )
        qe_check = (
            ok,
            "the PCK key signs the QE report"
            if ok
            else "the QE report signature does not verify with the PCK leaf key",
        )
    else:
        qe_check = (False, "no QE report or no PCK certificate to check it with")
    return _remember(
        _PLATFORMS,
        key,
        _Platform(
            sig,
            None,
            ak,
            binding,
            chain,
            qe_check,
            qe.qe_report.isvsvn if qe else None,
            qe.qe_report_bytes if qe else b"",
        ),
    )


@dataclass(frozen=True)
class _Collateral:
    """Parsed TCB info and QE identity, with their signature problems (no clock involved)."""

    tcb_info: TcbInfo | None
    identity: EnclaveIdentity | None
    tcb_issue_date: str
    problems: tuple[str, ...]
    chains: tuple[_Chain, ...]


_COLLATERAL: dict[tuple[bytes, bytes, bytes, bytes], _Collateral] = {}


def _collateral(c: dict[str, bytes]) -> _Collateral:
    tcb_body, qe_body = c["tcb_info"], c["qe_identity"]
    tcb_chain_pem = c.get("tcb_info_issuer_chain", b"")
    qe_chain_pem = c.get("qe_identity_issuer_chain", tcb_chain_pem)
    key = (tcb_body, qe_body, tcb_chain_pem, qe_chain_pem)
    hit = _COLLATERAL.get(key)
    if hit is not None:
        return hit
    problems: list[str] = []
    chains: list[_Chain] = []
    info: TcbInfo | None = None
    ident: EnclaveIdentity | None = None
    issue = ""
    for label, body, member, chain_pem in (
        ("TCB info", tcb_body, "tcbInfo", tcb_chain_pem),
        ("QE identity", qe_body, "enclaveIdentity", qe_chain_pem),
    ):
        try:
            signed = SignedJson.parse(body, member)
            if member == "tcbInfo":
                info = TcbInfo.from_value(signed.value)
                issue = str(signed.value.get("issueDate", ""))
            else:
                ident = EnclaveIdentity.from_value(signed.value)
        except EvidenceError as exc:
            problems.append(f"{label} does not parse: {exc}")
            continue
        if not chain_pem:
            key_name = "tcb_info" if member == "tcbInfo" else "qe_identity"
            problems.append(f"no {label} issuer chain (collateral key '{key_name}_issuer_chain')")
            continue
        chain = _chain(chain_pem, pck=False)
        chains.append(chain)
        problems += [f"{label} issuer chain: {p}" for p in chain.problems]
        signer = chain.items[0].key if chain.items else None
        if chain.items and not (
            isinstance(signer, ec.EllipticCurvePublicKey) and signed.signature_ok(signer)
        ):
            problems.append(f"{label} signature does not verify with '{chain.names[0]}'")
    return _remember(
        _COLLATERAL, key, _Collateral(info, ident, issue, tuple(problems), tuple(chains))
    )


@dataclass(frozen=True)
class _TcbOutcome:
    """Everything about collateral versus one platform and TD that needs no clock."""

    collateral: _Collateral
    signature_problems: tuple[str, ...]
    match_problems: tuple[str, ...]
    evaluation: TcbEvaluation | None


_OUTCOMES: dict[tuple[Any, ...], _TcbOutcome] = {}


def _tcb_outcome(
    collateral: dict[str, bytes],
    chain: _Chain,
    roots_key: tuple[bytes, ...],
    roots: dict[str, str],
    body: TdQuoteBody,
    qe_report: EnclaveReportBody | None,
    qe_raw: bytes,
) -> _TcbOutcome:
    key = (
        collateral["tcb_info"],
        collateral["qe_identity"],
        collateral.get("tcb_info_issuer_chain"),
        collateral.get("qe_identity_issuer_chain"),
        chain.key,
        roots_key,
        body.tee_tcb_svn,
        body.mrsignerseam,
        body.seam_attributes,
        qe_raw,
    )
    hit = _OUTCOMES.get(key)
    if hit is not None:
        return hit
    col = _collateral(collateral)
    problems = list(col.problems)
    for c in col.chains:
        if c.items and c.root_spki not in roots:
            problems.append(f"TCB signing chain ends at '{c.names[-1]}', not a trusted root")
        elif c.items and chain.items and c.root_spki != chain.root_spki:
            problems.append("TCB signing chain and PCK chain end at different roots")
    info, ext = col.tcb_info, chain.extensions
    mism: list[str] = []
    evaluation = None
    if info is None or ext is None:
        mism.append("no parsed TCB info" if info is None else "no PCK SGX extensions")
    else:
        if info.fmspc != ext.fmspc:
            mism.append(
                f"TCB info is for FMSPC {info.fmspc.hex()}, the PCK certificate has "
                f"{ext.fmspc.hex()}"
            )
        if info.pce_id != ext.pce_id:
            mism.append(
                f"TCB info is for PCE-ID {info.pce_id.hex()}, the PCK certificate has "
                f"{ext.pce_id.hex()}"
            )
        evaluation = evaluate_tcb(info, col.identity, ext.tcb, body, qe_report)
    return _remember(_OUTCOMES, key, _TcbOutcome(col, tuple(problems), tuple(mism), evaluation))


def _crl_check(
    data: bytes,
    issuer: ChainCert,
    covered: list[ChainCert],
    name: str,
    chain_key: bytes,
    now: datetime,
) -> tuple[list[str], tuple[datetime, datetime]]:
    """Problems of one CRL at ``now`` and the window in which it is current."""
    key = (data, chain_key, name)
    hit = _CRLS.get(key)
    if hit is None:
        try:
            raw = crl_der(data)
            crl = x509.load_der_x509_crl(raw)
        except (EvidenceError, ValueError) as exc:
            return [f"{name}: CRL does not parse: {exc}"], (_FAR_PAST, _FAR_FUTURE)
        hit = _remember(
            _CRLS,
            key,
            (
                tuple(crl_problems(raw, crl, issuer, covered, name)),
                crl,
                crl.last_update_utc,
                crl.next_update_utc or _FAR_FUTURE,
            ),
        )
    static, crl, last, nxt = hit
    if not static and last <= now <= nxt:
        return [], (last, nxt)
    late = crl_time_problem(crl, now, name)
    return list(static) + ([late] if late else []), (last, nxt)


# --- shared claim helpers -----------------------------------------------------------------

_TEE_NAMES: dict[bytes, dict[str, int]] = {}
_POLICIES: dict[tuple[bytes, bytes, bytes], dict[str, Any]] = {}


def _tee_tcb_names(svn: bytes) -> dict[str, int]:
    """TEE_TCB_SVN by byte (``tee_tcb_svn00``..``15``) plus the TDX module's minor/major SVN."""
    hit = _TEE_NAMES.get(svn)
    if hit is None:
        hit = {f"tee_tcb_svn{i:02d}": v for i, v in enumerate(svn)}
        hit["tdx_module_minor_svn"] = svn[0]
        hit["tdx_module_major_svn"] = svn[1]
        _remember(_TEE_NAMES, svn, hit)
    return dict(hit)


_ORIGINS: dict[str, Origin] = {}


def _origin(evidence: Evidence, report_data: bytes) -> tuple[Origin, Check | None]:
    """Default: the TD as a whole (L1). A bound manifest with a requester names the L2 VM."""
    layer = evidence.layer_map.get("L1", "l1") if evidence.layer_map else "l1"
    l1 = _ORIGINS.get(layer)
    if l1 is None:
        l1 = _remember(
            _ORIGINS,
            layer,
            build_unchecked(
                Origin, {"layer": layer, "vendor_level": "L1", "via_privileged_layer": False}
            ),
        )
    if evidence.manifest is None:
        return l1, None
    name = "tdx.manifest_binding"
    if evidence.nonce is None:
        return l1, check(
            name=name,
            ok=False,
            detail="a services manifest came without the nonce "
            "it was bound to; cannot check REPORTDATA = SHA-512(nonce || manifest)",
        )
    if report_data != bind_report_data(evidence.nonce, evidence.manifest):
        return l1, check(
            name=name,
            ok=False,
            detail="REPORTDATA is not SHA-512(nonce || manifest): "
            "the evidence is not bound to this nonce and services manifest",
        )
    try:
        reading = read_manifest(evidence.manifest, evidence.service)
    except EvidenceError as exc:
        return l1, check(
            name=name,
            ok=False,
            detail=f"REPORTDATA binds the manifest, but it does not parse: {exc}",
        )
    requester = reading.requester
    if requester is None or requester.level == 0:
        return l1, check(
            name=name,
            ok=True,
            detail=f"REPORTDATA = SHA-512(nonce || "
            f"{reading.describe()}); no L2 requester is named: the L1 attested "
            "for itself",
        )
    level = f"L2 VM {requester.level}"
    origin = Origin(
        layer=evidence.layer_map.get(level, requester.layer),
        vendor_level=level,
        via_privileged_layer=True,
    )
    return origin, check(
        name=name,
        ok=True,
        detail=f"REPORTDATA = SHA-512(nonce || manifest); the "
        f"L1 attested on behalf of {level} ({origin.layer})",
    )


def _policy(td_attributes: bytes, xfam: bytes, seam_attributes: bytes) -> dict[str, Any]:
    """Decoded TD ATTRIBUTES plus XFAM and SEAM attributes (hex), as ``Claims.policy``."""
    key = (td_attributes, xfam, seam_attributes)
    hit = _POLICIES.get(key)
    if hit is None:
        hit = decode_td_attributes(td_attributes)
        hit["xfam"] = xfam.hex()
        hit["seam_attributes"] = seam_attributes.hex()
        _remember(_POLICIES, key, hit)
    return dict(hit)


def clear_caches() -> None:
    """Forget every cached chain, platform, collateral, CRL and TCB evaluation, so the next
    verification is a cold one (benchmarks; a long-running verifier never needs this)."""
    for cache in (
        _CHAINS,
        _ROOT_SETS,
        _CRLS,
        _PLATFORMS,
        _COLLATERAL,
        _OUTCOMES,
        _TEE_NAMES,
        _POLICIES,
        _CONTEXTS,
        _ORIGINS,
    ):
        cache.clear()


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _QuoteContext:
    """See :meth:`TdxEvidenceVerifier._context`; ``parse_check`` set: the quote is unusable."""

    parse_check: Check | None
    parsed: Check | None = None
    measurements: dict[str, bytes] = field(default_factory=dict)
    attestation_key: ec.EllipticCurvePublicKey | None = None
    static: tuple[Check, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)
    tcb: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    tcb_status: str | None = None
    platform_id: str = ""
    signer: str = ""
    simulated: bool = False
    valid_from: datetime = _FAR_FUTURE
    valid_until: datetime = _FAR_PAST
    rest: tuple[Any, ...] = ()
    tail: bytes = b""


_CONTEXTS: dict[tuple[Any, ...], _QuoteContext] = {}
_NESTED_EXTRA = ("pck_chain", "advisory_ids", "tcb_level_status")
_SIGNED = check(
    name="tdx.quote.signature", ok=True, detail="the attestation key signs header and body"
)
_NOT_SIGNED = check(
    name="tdx.quote.signature",
    ok=False,
    detail=("the quote signature does not verify with the attestation key: header or body altered"),
)
_NOT_A_KEY = check(
    name="tdx.quote.signature", ok=False, detail="the attestation key is not a P-256 point"
)


class TdxEvidenceVerifier:
    """Verifies TDX quotes and TDREPORTs (entry point ``cocopart.evidence: tdx``)."""

    vendor = VENDOR
    policy_schema = tdx_policy.SCHEMA
    check_policy = staticmethod(tdx_policy.check_policy)

    def __init__(self, *, require_sept_ve_disable: bool = True) -> None:
        self.require_sept_ve_disable = require_sept_ve_disable

    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        """Parse and check ``evidence``; every failure is a named check, nothing raises."""
        now = _aware(now)
        try:
            if evidence.format == FORMAT_QUOTE:
                return self._verify_quote(evidence, trust, now)
            if evidence.format == FORMAT_TDREPORT:
                return self._verify_tdreport(evidence)
            if evidence.format == FORMAT_AZURE_HCL:
                from cocopart_tdx.hcl_verify import verify_hcl

                return verify_hcl(self, evidence, trust, now)
            return VendorResult(
                claims=None,
                checks=[
                    check(
                        name="tdx.format",
                        ok=False,
                        detail=f"format {evidence.format!r} is not {FORMAT_QUOTE!r}, {FORMAT_TDREPORT!r} "
                        f"or {FORMAT_AZURE_HCL!r}",
                    )
                ],
            )
        except Exception as exc:  # noqa: BLE001 - the contract: bad evidence never raises
            return VendorResult(
                claims=None,
                checks=[
                    check(
                        name="tdx.verify",
                        ok=False,
                        detail=f"verification stopped: {type(exc).__name__}: {exc}",
                    )
                ],
            )

    # --- quotes ---------------------------------------------------------------------------

    def _verify_quote(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        raw = evidence.raw
        try:
            frame = QuoteFrame.of(raw)
        except EvidenceError as exc:
            return VendorResult(
                claims=None, checks=[check(name="tdx.quote.parse", ok=False, detail=str(exc))]
            )
        ctx = self._context(raw, frame, evidence, trust, now)
        if ctx.parse_check is not None:
            return VendorResult(claims=None, checks=[ctx.parse_check])
        ak = ctx.attestation_key
        ok = ak is not None and _ecdsa_ok(
            ak, raw[frame.sig_start : frame.sig_start + 64], raw[: frame.signed_length]
        )
        checks = [
            ctx.parsed,
            _SIGNED if ok else _NOT_A_KEY if ak is None else _NOT_SIGNED,
            *ctx.static,
        ]
        report_data = raw[frame.report_data : frame.report_data + 64]
        origin, binding = _origin(evidence, report_data)
        if binding is not None:
            checks.append(binding)
        extra = dict(ctx.extra)  # a result's own copy, its lists and dicts too
        for name in _NESTED_EXTRA:
            if name in extra:
                extra[name] = extra[name].copy()
        claims = build_unchecked(
            Claims,
            {
                "vendor": VENDOR,
                "format": FORMAT_QUOTE,
                "version": frame.version,
                "measurements": dict(ctx.measurements),
                "report_data": report_data,
                "origin": origin,
                "debug": ctx.debug,
                "policy": dict(ctx.policy),
                "tcb": dict(ctx.tcb),
                "tcb_status": ctx.tcb_status,
                "platform_id": ctx.platform_id,
                "signer": ctx.signer,
                "simulated": ctx.simulated,
                "extra": extra,
            },
        )
        return build_unchecked(VendorResult, {"claims": claims, "checks": checks})

    def _context(
        self, raw: bytes, frame: QuoteFrame, evidence: Evidence, trust: TrustStore, now: datetime
    ) -> _QuoteContext:
        """Everything a quote's checks and claims say apart from its own signature and
        REPORTDATA: the same for every quote of one TD on one platform with the same
        collateral (the key is every signed byte but REPORTDATA, and the signature data but
        the quote signature), while ``now`` stays inside every validity window involved."""
        rd = frame.report_data
        roots_key, roots = _trusted_roots(trust)
        # Looked up by the signed bytes before REPORTDATA and the attestation key, then
        # compared byte for byte with the rest (cheaper than hashing the 4 KiB signature data)
        ak_at = frame.sig_start + 64
        key = (raw[:rd], raw[ak_at : ak_at + 64], roots_key, self.require_sept_ve_disable)
        rest = (
            raw[rd + 64 : frame.sig_start],
            tuple(evidence.certificates),
            tuple(evidence.collateral.items()),
        )
        hit = _CONTEXTS.get(key)
        if (
            hit is not None
            and hit.valid_from <= now <= hit.valid_until
            and hit.rest == rest
            and raw[ak_at : frame.sig_end] == hit.tail
        ):
            return hit
        try:
            layout = QuoteLayout.parse(raw)
        except EvidenceError as exc:
            return _QuoteContext(check(name="tdx.quote.parse", ok=False, detail=str(exc)))
        tail = raw[ak_at : frame.sig_end]
        ctx = self._build_context(layout, tail, evidence, trust, roots_key, roots, now)
        if ctx.valid_from <= now <= ctx.valid_until:
            _remember(_CONTEXTS, key, replace(ctx, rest=rest, tail=tail))
        return ctx

    def _build_context(
        self,
        layout: QuoteLayout,
        tail: bytes,
        evidence: Evidence,
        trust: TrustStore,
        roots_key: tuple[bytes, ...],
        roots: dict[str, str],
        now: datetime,
    ) -> _QuoteContext:
        plat = _platform(tail, tuple(evidence.certificates))
        if plat.parse_problem is not None:
            return _QuoteContext(check(name="tdx.quote.parse", ok=False, detail=plat.parse_problem))
        body = layout.body
        checks = [check(name="tdx.qe_report.binding", ok=plat.binding[0], detail=plat.binding[1])]
        chain = plat.chain
        chain_problems = list(chain.problems) + chain.time_problems(now)
        checks.append(
            check(
                name="tdx.pck.chain",
                ok=not chain_problems,
                detail="; ".join(chain_problems) or " <- ".join(chain.names),
            )
        )
        signer = roots.get(chain.root_spki) if chain.items else None
        root_name = chain.names[-1] if chain.items else "nothing"
        checks.append(
            check(
                name="tdx.pck.root_pinned",
                ok=signer is not None,
                detail=(
                    f"chain ends at '{root_name}', a trusted root ({signer})"
                    if signer
                    else f"chain ends at '{root_name}' (public key SHA-256 {chain.root_spki or 'n/a'}), which is "
                    "neither the Intel SGX Root CA pinned by cocopart"
                    + ("" if trust.trust_vendor_roots else " (vendor roots are switched off)")
                    + " nor a root in the trust store"
                ),
            )
        )
        checks.append(
            check(
                name="tdx.qe_report.signature", ok=plat.qe_signature[0], detail=plat.qe_signature[1]
            )
        )
        sig = plat.signature_data
        qe = sig.qe if sig is not None else None
        crl, crl_window = self._crl_check(evidence.collateral, chain, now)
        checks.append(crl)
        evaluation, issue_date, tcb_info, col_window = self._collateral_checks(
            evidence.collateral,
            chain,
            roots_key,
            roots,
            body,
            qe.qe_report if qe else None,
            plat.qe_raw,
            now,
            checks,
        )

        policy = _policy(body.td_attributes, body.xfam, body.seam_attributes)
        if self.require_sept_ve_disable:
            on = bool(policy["sept_ve_disable"])
            checks.append(
                check(
                    name="tdx.td_attributes.sept_ve_disable",
                    ok=on,
                    detail=(
                        "SEPT_VE_DISABLE is set"
                        if on
                        else "SEPT_VE_DISABLE is not enabled: the TD takes "
                        "#VE on pending private pages (rejected by default, as dcap-qvl does; to accept "
                        "such TDs, e.g. Azure's partitioned ones, add it to the policy's waive_checks: "
                        'waive_checks = ["tdx.td_attributes.sept_ve_disable"], CLI: --waive '
                        "tdx.td_attributes.sept_ve_disable)"
                    ),
                )
            )

        tcb = _tee_tcb_names(body.tee_tcb_svn)
        ext = chain.extensions
        tcb.update(chain.tcb_names)
        if plat.qe_isvsvn is not None:
            tcb["qe_isvsvn"] = plat.qe_isvsvn
        extra: dict[str, Any] = {
            "body_type": layout.body_type,
            "pck_chain": list(chain.names),
            "qe_vendor_id": layout.header.qe_vendor_id.hex(),
        }
        if body.tee_tcb_svn2 is not None:
            extra["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        if issue_date:
            extra["collateral_issue_date"] = issue_date
        if tcb_info is not None:
            extra["tcb_evaluation_data_number"] = tcb_info.tcb_evaluation_data_number
        if evaluation is not None:
            extra["advisory_ids"] = list(evaluation.advisory_ids)
            extra["tcb_date"] = evaluation.tcb_date
            extra["tcb_level_status"] = {
                "platform": evaluation.platform_status,
                "tdx_module": evaluation.module_status,
                "qe": evaluation.qe_status,
            }
        windows = [(chain.valid_from, chain.valid_until), crl_window, col_window]
        return _QuoteContext(
            None,
            _PARSED[layout.header.version, layout.body_type],
            body.measurements(),
            plat.attestation_key,
            tuple(checks),
            policy,
            tcb,
            extra,
            bool(policy["debug"]),
            evaluation.status if evaluation else None,
            ext.fmspc.hex() if ext else "",
            signer or "",
            signer is not None and signer.startswith("simulated:"),
            max(w[0] for w in windows),
            min(w[1] for w in windows),
        )

    def _crl_check(
        self, collateral: dict[str, bytes], chain: _Chain, now: datetime
    ) -> tuple[Check, tuple[datetime, datetime]]:
        """The CRL check and the window in which the CRLs are current."""
        root_crl, pck_crl = collateral.get("root_crl"), collateral.get("pck_crl")
        always = (_FAR_PAST, _FAR_FUTURE)
        if root_crl is None and pck_crl is None:
            return check(
                name="tdx.crl", ok=True, detail="no CRLs given: revocation not checked"
            ), always
        if len(chain.items) < 2:
            return check(
                name="tdx.crl", ok=False, detail="no PCK chain to check the CRLs against"
            ), always
        problems: list[str] = []
        windows = [always]
        leaf, ca, root = chain.items[0], chain.items[1], chain.items[-1]
        for data, issuer, covered, name in (
            (root_crl, root, [ca], "root CA CRL"),
            (pck_crl, ca, [leaf], "PCK CRL"),
        ):
            if data is not None:
                found, window = _crl_check(data, issuer, covered, name, chain.key, now)
                problems += found
                windows.append(window)
        given = [n for n, c in (("root CA CRL", root_crl), ("PCK CRL", pck_crl)) if c is not None]
        return check(
            name="tdx.crl",
            ok=not problems,
            detail="; ".join(problems) or f"checked {' and '.join(given)}: nothing revoked",
        ), (max(w[0] for w in windows), min(w[1] for w in windows))

    def _collateral_checks(
        self,
        collateral: dict[str, bytes],
        chain: _Chain,
        roots_key: tuple[bytes, ...],
        roots: dict[str, str],
        body: TdQuoteBody,
        qe_report: EnclaveReportBody | None,
        qe_raw: bytes,
        now: datetime,
        checks: list[Check],
    ) -> tuple[TcbEvaluation | None, str, TcbInfo | None, tuple[datetime, datetime]]:
        """The collateral checks (appended) and the window in which the collateral and its
        signing chains are valid."""
        missing = [k for k in ("tcb_info", "qe_identity") if k not in collateral]
        if missing:
            checks.append(
                check(
                    name="tdx.collateral.present",
                    ok=False,
                    detail=(
                        f"no {' or '.join(missing)} collateral: the TCB status cannot be determined"
                    ),
                )
            )
            return None, "", None, (_FAR_PAST, _FAR_FUTURE)
        checks.append(
            check(name="tdx.collateral.present", ok=True, detail="TCB info and QE identity given")
        )
        out = _tcb_outcome(collateral, chain, roots_key, roots, body, qe_report, qe_raw)
        col = out.collateral
        problems = list(out.signature_problems)
        for c in col.chains:
            problems += [f"TCB signing chain: {p}" for p in c.time_problems(now)]
        checks.append(
            check(
                name="tdx.collateral.signature",
                ok=not problems,
                detail="; ".join(problems)
                or "TCB info and QE identity are signed by the TCB signing key under the root",
            )
        )
        info, ident = col.tcb_info, col.identity
        stale = [
            f"{label} is valid {obj.issue_date:%Y-%m-%dT%H:%M:%SZ}..{obj.next_update:%Y-%m-%dT%H:%M:%SZ}"
            f", not at {now:%Y-%m-%dT%H:%M:%SZ}"
            for label, obj in (("TCB info", info), ("QE identity", ident))
            if obj is not None and not obj.issue_date <= now <= obj.next_update
        ]
        parsed = info is not None and ident is not None
        checks.append(
            check(
                name="tdx.collateral.fresh",
                ok=not stale and parsed,
                detail="; ".join(stale)
                or (
                    "TCB info and QE identity are current" if parsed else "collateral did not parse"
                ),
            )
        )
        checks.append(
            check(
                name="tdx.collateral.match",
                ok=not out.match_problems,
                detail="; ".join(out.match_problems)
                or f"TCB info is for this platform (FMSPC {info.fmspc.hex() if info else ''})",
            )
        )
        windows = [(c.valid_from, c.valid_until) for c in col.chains]
        windows += [(obj.issue_date, obj.next_update) for obj in (info, ident) if obj is not None]
        window = (
            max((w[0] for w in windows), default=_FAR_PAST),
            min((w[1] for w in windows), default=_FAR_FUTURE),
        )
        evaluation = out.evaluation
        if evaluation is None:
            checks.append(
                check(
                    name="tdx.tcb_status",
                    ok=False,
                    detail="no TCB status: " + "; ".join(out.match_problems),
                )
            )
            return None, col.tcb_issue_date, info, window
        ok = (
            evaluation.status is not None
            and evaluation.status != "Revoked"
            and not out.match_problems
        )
        detail = (
            "; ".join(evaluation.problems)
            if evaluation.problems
            else f"TCB status {evaluation.status}"
            + (f" ({', '.join(evaluation.advisory_ids)})" if evaluation.advisory_ids else "")
        )
        checks.append(check(name="tdx.tcb_status", ok=ok, detail=detail))
        return evaluation, col.tcb_issue_date, info, window

    # --- TDREPORT -----------------------------------------------------------------------------

    def _verify_tdreport(self, evidence: Evidence) -> VendorResult:
        try:
            report = TdReport.from_bytes(evidence.raw, strict=False)
        except EvidenceError as exc:
            return VendorResult(
                claims=None, checks=[check(name="tdx.tdreport.parse", ok=False, detail=str(exc))]
            )
        checks = [check(name="tdx.tdreport.parse", ok=True, detail="1024-byte TDREPORT_STRUCT")]
        type_problem = report.type_problem()
        checks.append(
            check(
                name="tdx.tdreport.type",
                ok=type_problem is None,
                detail=type_problem or "REPORTTYPE 0x81 (TDX)",
            )
        )
        macs = report.mac_struct
        ok = report.tee_tcb_info.digest() == macs.tee_tcb_info_hash
        checks.append(
            check(
                name="tdx.tdreport.tee_tcb_info_hash",
                ok=ok,
                detail=(
                    "SHA-384 of TEE_TCB_INFO matches"
                    if ok
                    else "TEE_TCB_INFO_HASH is not SHA-384 of the 239-byte TEE_TCB_INFO at 0x100"
                ),
            )
        )
        ok = report.td_info.digest() == macs.tee_info_hash
        checks.append(
            check(
                name="tdx.tdreport.tee_info_hash",
                ok=ok,
                detail=(
                    "SHA-384 of TDINFO matches"
                    if ok
                    else "TEE_INFO_HASH is not SHA-384 of the 512-byte TDINFO at 0x200"
                ),
            )
        )
        checks.append(
            check(
                name="tdx.tdreport.mac",
                ok=False,
                detail=(
                    "the TDREPORT MAC is keyed by a CPU-internal key and can only be checked on the same "
                    "platform (by the TD quoting enclave or TDG.MR.VERIFYREPORT); off-platform this "
                    "evidence is unauthenticated - verify a quote made from it instead"
                ),
            )
        )
        if type_problem is not None:
            return VendorResult(claims=None, checks=checks)
        tcb, info = report.tee_tcb_info, report.td_info
        origin, binding = _origin(evidence, macs.report_data)
        if binding is not None:
            checks.append(binding)
        measurements = {
            "mrtd": info.mrtd,
            "rtmr0": info.rtmrs[0],
            "rtmr1": info.rtmrs[1],
            "rtmr2": info.rtmrs[2],
            "rtmr3": info.rtmrs[3],
            "mrseam": tcb.mrseam,
            "mrsignerseam": tcb.mrsignerseam,
            "mrconfigid": info.mrconfigid,
            "mrowner": info.mrowner,
            "mrownerconfig": info.mrownerconfig,
        }
        if macs.report_type.version >= 1:
            measurements["servtd_hash"] = info.servtd_hash
        attrs = decode_td_attributes(info.attributes)
        claims = Claims(
            vendor=VENDOR,
            format=FORMAT_TDREPORT,
            version=macs.report_type.version,
            measurements=measurements,
            report_data=macs.report_data,
            origin=origin,
            debug=bool(attrs["debug"]),
            policy=_policy(info.attributes, info.xfam, tcb.attributes),
            tcb=_tee_tcb_names(tcb.tee_tcb_svn),
            tcb_status=None,
            platform_id="",
            signer="",
            extra={
                "unauthenticated": True,
                "cpusvn": macs.cpusvn.hex(),
                "tee_tcb_svn2": tcb.tee_tcb_svn2.hex(),
            },
        )
        return VendorResult(claims=claims, checks=checks)
