"""The AMD certificate chain of an SNP report: VCEK/VLEK <- ASK/ASVK <- ARK.

Facts (``shared/reference/sev-snp.md`` §6.4, GSG ``verify.go``/``kds.go``, VS PEMs):

* ARK (self-signed, CN "ARK-<product>") -> ASK (CN "SEV-<product>") or, for VLEKs, ASVK
  (CN "SEV-VLEK-<product>") -> VCEK (CN "SEV-VCEK") / VLEK (CN "SEV-VLEK").
* ARK and ASK/ASVK are RSA-4096; every link is RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48.
* The VCEK/VLEK key is ECDSA P-384. Its TCB is carried in extensions under
  1.3.6.1.4.1.3704.1.3.{1 bootloader, 2 TEE, 3 SNP, 8 microcode} (+ .9 FMC on Turin), its
  chip in hwID 1.3.6.1.4.1.3704.1.4 and the product in productName 1.3.6.1.4.1.3704.1.2.

Certificates come from the caller (PEM bundles or DER, in any order), and AMD's public ASK,
ASVK and ARK fill the roles the caller leaves empty (:mod:`cocopart_sev_snp.amd_kds`);
nothing is fetched. Chains are analysed once and cached by their bytes, so the per-report cost of a
known chain is a dictionary look-up plus the date checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cocopart_sev_snp.report import PRODUCTS, Product, TcbVersion

# --- pinned AMD roots ---------------------------------------------------------------------
# SHA-256 of the DER SubjectPublicKeyInfo of AMD's ARK per product. Computed once from
# shared/vectors/snp/amd-roots/ask_ark_{milan,genoa,turin_vcek}.pem (copied by the vectors
# collection from google/go-sev-guest verify/trust/, as served by AMD KDS); the VLEK bundles
# (ask_ark_*_vlek.pem) carry the same ARK keys.
AMD_ARK_MILAN_SPKI_SHA256 = "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9"
AMD_ARK_GENOA_SPKI_SHA256 = "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831"
AMD_ARK_TURIN_SPKI_SHA256 = "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08"
AMD_ARK_SPKI_SHA256: dict[str, Product] = {
    AMD_ARK_MILAN_SPKI_SHA256: "Milan",
    AMD_ARK_GENOA_SPKI_SHA256: "Genoa",
    AMD_ARK_TURIN_SPKI_SHA256: "Turin",
}

# --- OIDs (sev-snp.md §6.4, GSG kds.go; .1.1, .1.5 and .1.3.9 as seen in the vector certs) -
AMD_OID_PREFIX = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_BL_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1")
OID_TEE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2")
OID_SNP_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8")
#: Turin fmcSPL: the extra SPL in the Turin VCEK vector (snp/virtee-turin.vcek.der).
OID_FMC_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9")
OID_HWID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
#: cspID, present in the AWS VLEK vector (snp/trustee-aws-milan-vlek.vlek.der).
OID_CSP_ID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.5")
#: RSASSA-PSS signature algorithm (RFC 4055).
OID_RSASSA_PSS = x509.ObjectIdentifier("1.2.840.113549.1.1.10")

SPL_OIDS: dict[str, x509.ObjectIdentifier] = {
    "bootloader": OID_BL_SPL,
    "tee": OID_TEE_SPL,
    "snp": OID_SNP_SPL,
    "microcode": OID_UCODE_SPL,
    "fmc": OID_FMC_SPL,
}

#: RSASSA-PSS parameters of every AMD link (sev-snp.md §6.4).
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
HWID_SIZE_MILAN_GENOA = 64
HWID_SIZE_TURIN = 8

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


class CertificateError(ValueError):
    """A certificate blob could not be read."""


# --- loading ------------------------------------------------------------------------------


def split_certificates(blob: bytes) -> list[bytes]:
    """DER certificates in ``blob``: a PEM bundle (comments allowed), one DER, or DERs
    concatenated back to back."""
    if b"-----BEGIN" in blob:
        out = []
        for m in _PEM_BLOCK.finditer(blob):
            try:
                out.append(base64.b64decode(b"".join(m.group(1).split()), validate=True))
            except binascii.Error as exc:
                raise CertificateError(f"bad base64 in a PEM certificate: {exc}") from exc
        if not out:
            raise CertificateError("PEM data without a CERTIFICATE block")
        return out
    out, pos = [], 0
    while pos < len(blob):
        end = pos + _der_length(blob, pos)
        out.append(blob[pos:end])
        pos = end
    if not out:
        raise CertificateError("empty certificate data")
    return out


def _der_length(data: bytes, pos: int) -> int:
    """Total length (header + content) of the DER SEQUENCE at ``pos``."""
    if len(data) < pos + 2 or data[pos] != 0x30:
        raise CertificateError("certificate is neither PEM nor a DER SEQUENCE")
    first = data[pos + 1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < pos + 2 + n:
        raise CertificateError("bad DER length in a certificate")
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    if pos + 2 + n + length > len(data):
        raise CertificateError("DER certificate is truncated")
    return 2 + n + length


@lru_cache(maxsize=1024)
def load_certificate(der: bytes) -> x509.Certificate:
    """Parse one DER certificate (cached). AMD's KDS issues VCEKs with serial 0, which
    ``cryptography`` accepts with a deprecation warning; that warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CertificateError(f"certificate does not parse: {exc}") from exc


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (the pinning fingerprint)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


@lru_cache(maxsize=256)
def root_fingerprints(blob: bytes) -> frozenset[str]:
    """SPKI fingerprints of the root certificates in a trust-store entry (cached)."""
    return frozenset(spki_sha256(load_certificate(d)) for d in split_certificates(blob))


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def product_from_name(name: str) -> Product | None:
    """The product named in a productName extension ("Milan-B0") or a CN ("ARK-Genoa")."""
    for product in PRODUCTS:
        if product.lower() in name.lower():
            return product
    return None


# --- VCEK/VLEK extensions -----------------------------------------------------------------


def _der_tlv(value: bytes) -> tuple[int, bytes]:
    """(tag, content) of one DER TLV that fills ``value`` exactly."""
    if len(value) < 2:
        raise ValueError("DER value too short")
    tag, first = value[0], value[1]
    if first < 0x80:
        start, length = 2, first
    else:
        n = first & 0x7F
        start, length = 2 + n, int.from_bytes(value[2 : 2 + n], "big")
    if start + length != len(value):
        raise ValueError("DER length does not match the value")
    return tag, value[start:]


def _der_int(value: bytes) -> int:
    tag, content = _der_tlv(value)
    if tag != 0x02 or not content:
        raise ValueError("not a DER INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _der_string(value: bytes) -> str:
    tag, content = _der_tlv(value)
    if tag not in (0x0C, 0x13, 0x16):  # UTF8String, PrintableString, IA5String
        raise ValueError("not a DER string")
    return content.decode("ascii", errors="replace")


def _hwid(value: bytes) -> bytes:
    """hwID is raw bytes (64 on Milan/Genoa, 8 on Turin) in KDS certificates; accept the
    same bytes wrapped in a DER OCTET STRING too (trustee's 'new' test certificate)."""
    if len(value) in (HWID_SIZE_MILAN_GENOA, HWID_SIZE_TURIN):
        return value
    try:
        tag, content = _der_tlv(value)
    except ValueError:
        return value
    return content if tag == 0x04 else value


@dataclass(frozen=True)
class LeafExtensions:
    """The AMD extensions of a VCEK or VLEK."""

    struct_version: int | None = None
    product_name: str | None = None
    spl: dict[str, int] = field(default_factory=dict)
    hwid: bytes | None = None
    csp_id: str | None = None
    problems: tuple[str, ...] = ()


def parse_leaf_extensions(cert: x509.Certificate) -> LeafExtensions:
    """Read structVersion, productName, the SPLs, hwID and cspID (missing ones stay None)."""
    raw: dict[str, bytes] = {}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension):
            raw[ext.oid.dotted_string] = ext.value.value
    problems: list[str] = []

    def read(oid: x509.ObjectIdentifier, kind: str) -> int | str | None:
        value = raw.get(oid.dotted_string)
        if value is None:
            return None
        try:
            return _der_int(value) if kind == "int" else _der_string(value)
        except ValueError as exc:
            problems.append(f"extension {oid.dotted_string}: {exc}")
            return None

    spl: dict[str, int] = {}
    for name, oid in SPL_OIDS.items():
        v = read(oid, "int")
        if isinstance(v, int):
            spl[name] = v
    sv, pn, csp = (
        read(OID_STRUCT_VERSION, "int"),
        read(OID_PRODUCT_NAME, "str"),
        read(OID_CSP_ID, "str"),
    )
    hw = raw.get(OID_HWID.dotted_string)
    return LeafExtensions(
        struct_version=sv if isinstance(sv, int) else None,
        product_name=pn if isinstance(pn, str) else None,
        spl=spl,
        hwid=_hwid(hw) if hw is not None else None,
        csp_id=csp if isinstance(csp, str) else None,
        problems=tuple(problems),
    )


# --- chain analysis -----------------------------------------------------------------------


def pss_signature_problem(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """None when ``issuer`` signed ``cert`` with AMD's RSASSA-PSS scheme, else the reason."""
    if cert.signature_algorithm_oid != OID_RSASSA_PSS:
        return (
            f"signature algorithm is {cert.signature_algorithm_oid.dotted_string}, not RSASSA-PSS"
        )
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return "issuer key is not RSA"
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())
    except InvalidSignature:
        return "RSASSA-PSS (SHA-384, salt 48) signature does not verify"
    return None


@dataclass(frozen=True)
class ChainAnalysis:
    """The date-independent facts of one certificate set (computed once, cached).

    Signature problems are ``None`` when the link verifies, else a sentence; ``error`` says
    why roles could not be assigned (then the certificates involved are None).
    """

    leaf: x509.Certificate | None
    ask: x509.Certificate | None
    ark: x509.Certificate | None
    leaf_kind: str | None  # "VCEK" or "VLEK"
    leaf_key: ec.EllipticCurvePublicKey | None
    leaf_ext: LeafExtensions
    leaf_by_ask: str | None
    ask_by_ark: str | None
    ark_self: str | None
    ark_fingerprint: str | None
    amd_product: Product | None  # product of the pinned AMD ARK it matches
    error: str | None = None
    ask_cn: str = ""
    ark_cn: str = ""
    #: Product named by the chain: the leaf's productName, else the ARK's CN.
    product: Product | None = None
    #: Where all three certificates are valid, as text (for check details).
    window: str = ""
    #: Roles ("ASK"/"ASVK", "ARK") filled from the fallback (built-in) certificates.
    built_in: tuple[str, ...] = ()


_NOT_CHECKED = "not checked: chain incomplete"


def incomplete_chain(
    error: str,
    leaf: x509.Certificate | None = None,
    ask: x509.Certificate | None = None,
    ark: x509.Certificate | None = None,
) -> ChainAnalysis:
    return ChainAnalysis(
        leaf=leaf,
        ask=ask,
        ark=ark,
        leaf_kind=None,
        leaf_key=None,
        leaf_ext=LeafExtensions(),
        leaf_by_ask=_NOT_CHECKED,
        ask_by_ark=_NOT_CHECKED,
        ark_self=_NOT_CHECKED,
        ark_fingerprint=None,
        amd_product=None,
        error=error,
    )


@lru_cache(maxsize=512)
def analyse_certificates(
    blobs: tuple[bytes, ...], fallback: tuple[bytes, ...] = ()
) -> ChainAnalysis:
    """Split, parse, order and signature-check the caller's certificate blobs (cached).

    ``fallback``: DER certificates that may fill the ASK/ASVK and ARK roles the blobs leave
    empty (AMD's built-in ones, :mod:`cocopart_sev_snp.amd_kds`); the caller's certificates
    always win, and every link is checked either way.
    """
    ders: list[bytes] = []
    try:
        for blob in blobs:
            ders.extend(split_certificates(blob))
    except CertificateError as exc:
        return incomplete_chain(str(exc))
    return analyse_chain(tuple(dict.fromkeys(ders)), fallback)


@lru_cache(maxsize=512)
def analyse_chain(ders: tuple[bytes, ...], fallback: tuple[bytes, ...] = ()) -> ChainAnalysis:
    """Assign VCEK/VLEK, ASK/ASVK and ARK roles in any order and check every link.

    Never raises for bad input: a certificate that does not parse, has an invalid key or
    malformed extensions makes an incomplete chain whose ``error`` says which and why.
    """
    try:
        return _analyse(ders, fallback)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        return incomplete_chain(f"malformed certificate: {exc}")


def _load_all(ders: tuple[bytes, ...]) -> list[tuple[x509.Certificate, object]]:
    keyed: list[tuple[x509.Certificate, object]] = []
    for i, der in enumerate(ders):
        try:
            cert = load_certificate(der)
            keyed.append((cert, cert.public_key()))
        except (CertificateError, ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"certificate #{i}: {exc}") from None
    return keyed


def _analyse(ders: tuple[bytes, ...], fallback: tuple[bytes, ...]) -> ChainAnalysis:
    try:
        keyed = _load_all(ders)
    except CertificateError as exc:
        return incomplete_chain(str(exc))
    given = len(keyed)
    keyed += [
        (c, k)
        for c, k in _load_all(tuple(d for d in fallback if d not in ders))
        if isinstance(k, rsa.RSAPublicKey)
    ]
    leaves = [c for c, k in keyed[:given] if isinstance(k, ec.EllipticCurvePublicKey)]
    rsa_certs = [c for c, k in keyed if isinstance(k, rsa.RSAPublicKey)]
    arks = [c for c in rsa_certs if c.subject == c.issuer]
    if not leaves:
        return incomplete_chain("no VCEK/VLEK (ECDSA P-384) certificate given")
    named = [c for c in leaves if common_name(c.subject) in ("SEV-VCEK", "SEV-VLEK")]
    leaf = (named or leaves)[0]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    asks = [c for c in rsa_certs if c.subject == leaf.issuer and c.subject != c.issuer]
    ask = asks[0] if asks else None
    ark = next(
        (c for c in arks if ask is not None and c.subject == ask.issuer), arks[0] if arks else None
    )
    if ask is None or ark is None:
        missing = "ASK/ASVK" if ask is None else "ARK"
        return incomplete_chain(
            f"no {missing} certificate given or built in (leaf issuer: {common_name(leaf.issuer)})",
            leaf=leaf,
            ask=ask,
            ark=ark,
        )
    mine = {id(c) for c, _k in keyed[:given]}
    cn = common_name(leaf.subject)
    kind = "VLEK" if cn == "SEV-VLEK" or "VLEK" in common_name(ask.subject) else "VCEK"
    fingerprint = spki_sha256(ark)
    ext = parse_leaf_extensions(leaf)
    ark_cn = common_name(ark.subject)
    return ChainAnalysis(
        leaf=leaf,
        ask=ask,
        ark=ark,
        leaf_kind=kind,
        leaf_key=key if isinstance(key.curve, ec.SECP384R1) else None,
        leaf_ext=ext,
        leaf_by_ask=pss_signature_problem(leaf, ask),
        ask_by_ark=(
            pss_signature_problem(ask, ark)
            if ask.issuer == ark.subject
            else "ASK issuer name is not the ARK subject"
        ),
        ark_self=pss_signature_problem(ark, ark),
        ark_fingerprint=fingerprint,
        amd_product=AMD_ARK_SPKI_SHA256.get(fingerprint),
        ask_cn=common_name(ask.subject),
        ark_cn=ark_cn,
        product=product_from_name(ext.product_name or "") or product_from_name(ark_cn),
        window=_window(leaf, ask, ark),
        built_in=tuple(
            role
            for role, c in (("ASK" if kind == "VCEK" else "ASVK", ask), ("ARK", ark))
            if id(c) not in mine
        ),
    )


def _window(*chain: x509.Certificate) -> str:
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    return f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"


# --- date-dependent and report-dependent checks -------------------------------------------


def validity_problems(chain: ChainAnalysis, now: datetime) -> list[str]:
    """Certificates of the chain that are not valid at ``now`` (naive times are UTC); an
    incomplete chain is a problem of its own (its validity cannot be established)."""
    if chain.error is not None:
        return [f"not checked: {chain.error}"]
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    out = []
    for role, cert in (("leaf", chain.leaf), ("ASK", chain.ask), ("ARK", chain.ark)):
        if cert is None:
            continue
        if now < cert.not_valid_before_utc:
            out.append(
                f"{role} {common_name(cert.subject)} not valid before "
                f"{cert.not_valid_before_utc.isoformat()}"
            )
        elif now > cert.not_valid_after_utc:
            out.append(
                f"{role} {common_name(cert.subject)} expired {cert.not_valid_after_utc.isoformat()}"
            )
    return out


def chip_id_problem(chip_id: bytes, hwid: bytes | None, product: Product | None) -> str | None:
    """Compare the report's chip_id with the VCEK hwID (sev-snp.md §6.3/§6.4; README vectors:
    64 bytes on Milan/Genoa, 8 bytes on Turin with the rest of chip_id zero)."""
    if hwid is None:
        return "VCEK has no hwID extension"
    if product == "Turin" or len(hwid) == HWID_SIZE_TURIN:
        if len(hwid) != HWID_SIZE_TURIN:
            return f"Turin hwID is {len(hwid)} bytes, expected {HWID_SIZE_TURIN}"
        if chip_id[:HWID_SIZE_TURIN] != hwid:
            return f"chip_id {chip_id[:8].hex()} differs from hwID {hwid.hex()}"
        if any(chip_id[HWID_SIZE_TURIN:]):
            return "Turin chip_id has non-zero bytes after the 8-byte hwID"
        return None
    if chip_id != hwid:
        return f"chip_id {chip_id[:8].hex()}... differs from hwID {hwid[:8].hex()}..."
    return None


def tcb_problem(tcb: TcbVersion, spl: dict[str, int]) -> str | None:
    """Compare a decoded reported_tcb with the certificate's SPL extensions."""
    wanted = tcb.components()
    diffs = []
    for name, value in wanted.items():
        have = spl.get(name)
        if have is None:
            diffs.append(f"certificate lacks {name}SPL")
        elif have != value:
            diffs.append(f"{name}: report {value}, certificate {have}")
    return "; ".join(diffs) if diffs else None
