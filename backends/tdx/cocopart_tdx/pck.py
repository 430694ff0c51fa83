"""PCK certificates: Intel SGX extensions, the chain to the Intel SGX Root CA, and CRLs.

The PCK (Provisioning Certification Key) leaf certifies the key that signs the quoting
enclave's report. Its chain is PCK leaf <- Intel SGX PCK Platform CA (or Processor CA) <-
Intel SGX Root CA, all ECDSA P-256 with SHA-256 (shared/vectors README "How verified").

The Intel SGX extensions (OID 1.2.840.113741.1.13.1) are a SEQUENCE of (OID, value) pairs,
per Intel's "SGX PCK Certificate and CRL Profile": PPID (.1, 16 bytes), TCB (.2: component
SVNs .2.1-.2.16, PCESVN .2.17, CPUSVN .2.18), PCE-ID (.3, 2 bytes), FMSPC (.4, 6 bytes),
SGX type (.5, ENUMERATED: 0 standard, 1 scalable, 2 scalable with integrity), and, on
platform certificates, PlatformInstanceID (.6) and Configuration (.7: dynamic platform .7.1,
cached keys .7.2, SMT enabled .7.3). They are read here with a small DER reader of our own.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cocopart.spi import EvidenceError
from cocopart_tdx import der
from cocopart_tdx.der import Signed

#: SHA-256 of the DER SubjectPublicKeyInfo of the Intel SGX Root CA (CN=Intel SGX Root CA,
#: valid 2018-05-21..2049-12-31). Computed from shared/vectors/tdx/collateral/
#: intel-sgx-root-ca.pem, which is go-tdx-guest verify/trusted_root.pem (README per-file list).
INTEL_SGX_ROOT_CA_SPKI_SHA256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e"

#: Intel's own certificates, pinned by the SHA-256 of their DER: certificate -> its issuer.
#: Each link was checked once (ECDSA P-256 under the Intel SGX Root CA, which is self-signed;
#: tests/attest/test_verify_fast_paths.py checks them again), so a chain link between two pinned
#: certificates needs no signature check: the pin proves it. From shared/vectors (README per-
#: file list): the Root CA (go-tdx-guest verify/trusted_root.pem), the PCK Platform CA (every
#: real quote's PCK chain) and the TCB Signing certificate of 2018 (go-tdx-guest
#: test_cases.go) and of 2025 (the 2025-09 collateral chains).
_ROOT = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
INTEL_PINNED_LINKS: dict[str, str] = {
    _ROOT: _ROOT,  # Intel SGX Root CA, 2018-05-21..2049-12-31, self-signed
    "22eb770dca215b607b5ccfc21a672b1da5cc660b1ad0365020567979edcaa0e1": _ROOT,  # PCK Platform CA
    "c0575e76d0303b61d09cde8cbdb70db34a74f38318300d7c0e6ba8cf4bf45aea": _ROOT,  # TCB Signing 2025
    "ec37d98107bfb7dab6ff8de4d4dda6fde30a6f50b0d7b03eefb5652f1e652969": _ROOT,  # TCB Signing 2018
}

SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"
_PPID = SGX_EXTENSIONS_OID + ".1"
_TCB = SGX_EXTENSIONS_OID + ".2"
_PCEID = SGX_EXTENSIONS_OID + ".3"
_FMSPC = SGX_EXTENSIONS_OID + ".4"
_SGX_TYPE = SGX_EXTENSIONS_OID + ".5"
_PLATFORM_INSTANCE_ID = SGX_EXTENSIONS_OID + ".6"
_CONFIGURATION = SGX_EXTENSIONS_OID + ".7"
_CONFIG_NAMES = {"1": "dynamic_platform", "2": "cached_keys", "3": "smt_enabled"}
SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}

_BOOLEAN, _INTEGER, _OCTET_STRING, _OID, _ENUMERATED, _SEQUENCE = (
    der.BOOLEAN,
    der.INTEGER,
    der.OCTET_STRING,
    der.OID,
    der.ENUMERATED,
    der.SEQUENCE,
)
_der, _der_int, _der_oid = der.encode, der.encode_int, der.encode_oid
_tlv, _children, _oid_str = der.tlv, der.children, der.oid_str


def _pair(oid: str, value: bytes) -> bytes:
    return _der(_SEQUENCE, _der_oid(oid) + value)


# --- the SGX extension --------------------------------------------------------------------


@dataclass(frozen=True)
class PckTcb:
    """The TCB a PCK certificate was issued for: 16 SGX component SVNs, PCESVN, CPUSVN."""

    comp_svns: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes

    def named(self) -> dict[str, int]:
        """``sgx_tcb_comp01``..``16`` and ``pcesvn`` (Intel numbers the components from 01)."""
        out = {f"sgx_tcb_comp{i + 1:02d}": v for i, v in enumerate(self.comp_svns)}
        out["pcesvn"] = self.pcesvn
        return out


@dataclass(frozen=True)
class SgxExtensions:
    """The Intel SGX extensions of a PCK certificate."""

    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    configuration: dict[str, bool] | None = field(default=None, hash=False)

    def to_der(self) -> bytes:
        """DER of the extension value (the SEQUENCE inside extnValue)."""
        if len(self.tcb.comp_svns) != 16:
            raise ValueError("a PCK TCB has 16 component SVNs")
        comps = b"".join(
            _pair(f"{_TCB}.{i + 1}", _der_int(_INTEGER, v))
            for i, v in enumerate(self.tcb.comp_svns)
        )
        comps += _pair(f"{_TCB}.17", _der_int(_INTEGER, self.tcb.pcesvn))
        comps += _pair(f"{_TCB}.18", _der(_OCTET_STRING, self.tcb.cpusvn))
        body = (
            _pair(_PPID, _der(_OCTET_STRING, self.ppid))
            + _pair(_TCB, _der(_SEQUENCE, comps))
            + _pair(_PCEID, _der(_OCTET_STRING, self.pce_id))
            + _pair(_FMSPC, _der(_OCTET_STRING, self.fmspc))
            + _pair(_SGX_TYPE, _der_int(_ENUMERATED, self.sgx_type))
        )
        if self.platform_instance_id is not None:
            body += _pair(_PLATFORM_INSTANCE_ID, _der(_OCTET_STRING, self.platform_instance_id))
        if self.configuration is not None:
            inv = {v: k for k, v in _CONFIG_NAMES.items()}
            cfg = b"".join(
                _pair(f"{_CONFIGURATION}.{inv[k]}", _der(_BOOLEAN, b"\xff" if v else b"\0"))
                for k, v in self.configuration.items()
            )
            body += _pair(_CONFIGURATION, _der(_SEQUENCE, cfg))
        return _der(_SEQUENCE, body)

    @classmethod
    def from_der(cls, data: bytes) -> SgxExtensions:
        """Parse the extension value; raises :class:`EvidenceError` when a field is missing.

        Entries are told apart by the last arc of their OID (compared as raw DER content,
        without building dotted strings: this runs once per PCK certificate on the cold
        path); entries under other OIDs are ignored."""
        tag, vs, ve = _tlv(data, 0, len(data))
        if tag != _SEQUENCE:
            raise EvidenceError("SGX extensions: not a SEQUENCE")
        fields = _arcs(data, vs, ve, _SGX_OID)
        for arc in (1, 2, 3, 4, 5):
            if arc not in fields:
                raise EvidenceError(f"SGX extensions: {SGX_EXTENSIONS_OID}.{arc} is missing")
        _t, ts, te = fields[2]
        comps: dict[int, int] = {}
        cpusvn = b""
        for idx, (_vt, cs, ce) in _arcs(data, ts, te, _TCB_OID).items():
            if idx == 18:
                cpusvn = data[cs:ce]
            else:
                comps[idx] = int.from_bytes(data[cs:ce], "big", signed=True)
        if sorted(comps) != list(range(1, 18)) or len(cpusvn) != 16:
            raise EvidenceError("SGX extensions: TCB needs 16 component SVNs, PCESVN and CPUSVN")
        config: dict[str, bool] | None = None
        if 7 in fields:
            _t, gs, ge = fields[7]
            config = {
                _CONFIG_NAMES.get(str(k), str(k)): data[bs:be] != b"\0"
                for k, (_bt, bs, be) in _arcs(data, gs, ge, _CONFIG_OID).items()
            }
        value = {arc: data[fs:fe] for arc, (_ft, fs, fe) in fields.items()}
        return cls(
            ppid=value[1],
            tcb=PckTcb(tuple(comps[i] for i in range(1, 17)), comps[17], cpusvn),
            pce_id=value[3],
            fmspc=value[4],
            sgx_type=int.from_bytes(value[5], "big"),
            platform_instance_id=value.get(6),
            configuration=config,
        )

    @classmethod
    def from_certificate(cls, cert: x509.Certificate | bytes) -> SgxExtensions:
        """The extension of a PCK certificate (an x509 object or its DER)."""
        if isinstance(cert, bytes):
            value = der.extension_value(cert, _SGX_OID)
            if value is None:
                raise EvidenceError(
                    f"the PCK certificate has no Intel SGX extensions ({SGX_EXTENSIONS_OID})"
                )
            return cls.from_der(value)
        try:  # cryptography's parse of the extensions is cheaper than walking the DER here
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
        except x509.ExtensionNotFound:
            raise EvidenceError(
                f"the PCK certificate has no Intel SGX extensions ({SGX_EXTENSIONS_OID})"
            ) from None
        ext_value = ext.value
        if not isinstance(ext_value, x509.UnrecognizedExtension):
            raise EvidenceError("SGX extensions: unexpected decoded type")
        return cls.from_der(ext_value.value)


_SGX_OID = der.oid_content(SGX_EXTENSIONS_OID)
_TCB_OID = der.oid_content(_TCB)
_CONFIG_OID = der.oid_content(_CONFIGURATION)


_ENTRY_CACHE: dict[bytes, re.Pattern[bytes]] = {}


def _entry_pattern(prefix: bytes) -> re.Pattern[bytes]:
    """``SEQUENCE { OID prefix.N, value }`` with short-form lengths, as one regex: most
    entries of the extension are that small, and one match is cheaper than three TLV reads."""
    hit = _ENTRY_CACHE.get(prefix)
    if hit is None:
        hit = _ENTRY_CACHE[prefix] = re.compile(
            rb"\x30([\x00-\x7f])\x06"
            + re.escape(bytes((len(prefix) + 1,)) + prefix)
            + rb"([\x00-\x7f])([\x00-\xff])([\x00-\x7f])",
            re.DOTALL,
        )
    return hit


def _arcs(data: bytes, start: int, end: int, prefix: bytes) -> dict[int, tuple[int, int, int]]:
    """``SEQUENCE { OID prefix.N, value }`` entries in ``data[start:end]``, by N (N < 128);
    entries under other OIDs are skipped, anything else is an error."""
    out: dict[int, tuple[int, int, int]] = {}
    n = len(prefix)
    match = _entry_pattern(prefix).match
    pos = start
    while pos < end:
        m = match(data, pos, end)
        if (
            m is not None
            and m.end() + data[m.end() - 1] <= end
            and data[pos + 1] == n + 5 + data[m.end() - 1]
        ):
            vs = m.end()
            ve = vs + data[vs - 1]
            out[data[vs - 3]] = (data[vs - 2], vs, ve)
            pos = ve
            continue
        ptag, ps, pe = _tlv(data, pos, end)  # a long-form length, or another OID
        ot, os_, oe = _tlv(data, ps, pe) if ptag == _SEQUENCE else (0, 0, 0)
        value = _tlv(data, oe, pe) if ot == _OID and oe < pe else None
        if value is None or value[2] != pe:
            raise EvidenceError("SGX extensions: entry is not (OID, value)")
        if oe - os_ == n + 1 and data[os_ : oe - 1] == prefix:
            out[data[oe - 1]] = value
        pos = pe
    return out


# --- certificates and chains ----------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM text or from concatenated DER (both occur in real quotes).

    Trailing NUL bytes (DCAP terminates the PEM chain with one) are ignored.
    """
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            return list(x509.load_pem_x509_certificates(data.rstrip(b"\0")))
        except ValueError as exc:
            raise EvidenceError(f"PEM certificate chain does not parse: {exc}") from None
    certs = []
    off = 0
    while off < len(data):
        if not data[off:].strip(b"\0"):  # NUL padding after the last certificate
            break
        _, _, end = _tlv(data, off, len(data))
        try:
            certs.append(x509.load_der_x509_certificate(data[off:end]))
        except ValueError as exc:
            raise EvidenceError(f"DER certificate at byte {off} does not parse: {exc}") from None
        off = end
    return certs


def order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Order certificates leaf first by subject/issuer names (the DER sample is root first)."""
    if not certs:
        raise EvidenceError("no certificates")
    by_subject = {c.subject.public_bytes(): c for c in certs}
    issuers = {c.issuer.public_bytes() for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject.public_bytes() not in issuers]
    if len(leaves) != 1:
        raise EvidenceError(f"cannot order the chain: {len(leaves)} leaf candidates")
    chain = [leaves[0]]
    while chain[-1].issuer != chain[-1].subject and len(chain) < len(certs):
        nxt = by_subject.get(chain[-1].issuer.public_bytes())
        if nxt is None:
            break
        chain.append(nxt)
    return chain


def spki_sha256(cert_or_key: x509.Certificate | ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: how roots are pinned."""
    key = cert_or_key.public_key() if isinstance(cert_or_key, x509.Certificate) else cert_or_key
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


@dataclass(frozen=True)
class ChainCert:
    """One certificate of a chain: its DER, the parsed object and the signed parts.

    Name, key and key fingerprint are read from the DER once, when first asked for (the
    parsed object builds Python objects for a whole Name on first access)."""

    der: bytes
    cert: x509.Certificate
    signed: Signed
    sha256: str

    @classmethod
    def load(cls, data: bytes) -> ChainCert:
        try:
            cert = x509.load_der_x509_certificate(data)
            signed = der.Signed.parse(data)
        except ValueError as exc:  # EvidenceError included
            raise EvidenceError(f"DER certificate does not parse: {exc}") from None
        return cls(data, cert, signed, hashlib.sha256(data).hexdigest())

    @cached_property
    def name(self) -> str:
        return der.common_name(self.signed.subject) or common_name(self.cert)

    @cached_property
    def key(self) -> object:
        """The subject public key (any type; callers check it is ECDSA P-256)."""
        return self.cert.public_key()

    @cached_property
    def spki_sha256(self) -> str:
        """SHA-256 of the DER SubjectPublicKeyInfo, as :func:`spki_sha256` computes it."""
        return hashlib.sha256(self.signed.spki).hexdigest()


_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def _pem_blocks(data: bytes) -> list[bytes]:
    """The DER of each CERTIFICATE block of PEM text."""
    out, pos = [], 0
    while (start := data.find(_BEGIN, pos)) >= 0:
        end = data.find(_END, start)
        if end < 0:
            raise EvidenceError("PEM certificate chain does not parse: a block has no END line")
        try:
            out.append(binascii.a2b_base64(data[start + len(_BEGIN) : end], strict_mode=False))
        except binascii.Error as exc:
            raise EvidenceError(f"PEM certificate chain does not parse: {exc}") from None
        pos = end + len(_END)
    return out


def parse_chain(data: bytes) -> list[ChainCert]:
    """The certificates of PEM text or concatenated DER, ordered leaf first by their raw
    subject and issuer names (one root first in Intel's DER sample); what does not chain
    from the leaf is dropped."""
    if b"-----BEGIN CERTIFICATE-----" in data:
        ders = _pem_blocks(data)
    else:
        ders, off = [], 0
        while off < len(data) and data[off:].strip(b"\0"):
            _, _, end = _tlv(data, off, len(data))
            ders.append(data[off:end])
            off = end
    certs = [ChainCert.load(d) for d in ders]
    if not certs:
        raise EvidenceError("no certificates")
    subjects = {c.signed.subject: c for c in certs}
    issuers = {c.signed.issuer for c in certs if c.signed.issuer != c.signed.subject}
    leaves = [c for c in certs if c.signed.subject not in issuers]
    if len(leaves) != 1:
        raise EvidenceError(f"cannot order the chain: {len(leaves)} leaf candidates")
    chain = [leaves[0]]
    while chain[-1].signed.issuer != chain[-1].signed.subject and len(chain) < len(certs):
        nxt = subjects.get(chain[-1].signed.issuer)
        if nxt is None:
            break
        chain.append(nxt)
    return chain


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def signed_by(signed: der.Signed, key: object) -> bool:
    """ECDSA P-256/SHA-256 signature of a sliced certificate or CRL under ``key``."""
    if (
        signed.algorithm != der.ECDSA_WITH_SHA256
        or not isinstance(key, ec.EllipticCurvePublicKey)
        or key.curve.name != "secp256r1"
    ):
        return False
    try:
        key.verify(signed.signature, signed.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _not_signed(item: ChainCert, issuer: ChainCert) -> str:
    return "is not self-signed" if issuer is item else f"is not signed by '{issuer.name}'"


def chain_problems(chain: list[ChainCert]) -> list[str]:
    """Each certificate is signed by the next, the last by itself, issuers are CAs and every
    key is ECDSA P-256. A link between two of Intel's pinned certificates
    (:data:`INTEL_PINNED_LINKS`) is proven by the pins and not checked again."""
    problems = []
    for i, item in enumerate(chain):
        issuer = chain[i + 1] if i + 1 < len(chain) else item
        if INTEL_PINNED_LINKS.get(item.sha256) == issuer.sha256:
            continue
        key = item.key
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            problems.append(f"'{item.name}' does not have an ECDSA P-256 key")
        if item.signed.issuer != issuer.signed.subject:
            problems.append(f"'{item.name}' {_not_signed(item, issuer)} (issuer name differs)")
        elif not signed_by(item.signed, issuer.key):
            problems.append(
                f"'{item.name}' {_not_signed(item, issuer)} (signature does not verify)"
            )
        if issuer is not item and issuer.sha256 not in INTEL_PINNED_LINKS:
            try:
                bc = issuer.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                if not bc.ca:
                    problems.append(f"'{issuer.name}' is not a CA")
            except x509.ExtensionNotFound:
                problems.append(f"'{issuer.name}' has no basicConstraints")
    return problems


def signature_problems(chain: list[x509.Certificate]) -> list[str]:
    """:func:`chain_problems` for an ordered list of parsed certificates."""
    return chain_problems(
        [ChainCert.load(c.public_bytes(serialization.Encoding.DER)) for c in chain]
    )


def validity_problems(chain: list[x509.Certificate], now: datetime) -> list[str]:
    """Certificates not valid at ``now``."""
    return [
        f"'{common_name(c)}' is valid {c.not_valid_before_utc:%Y-%m-%d}.."
        f"{c.not_valid_after_utc:%Y-%m-%d}, not at {now:%Y-%m-%dT%H:%M:%SZ}"
        for c in chain
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc
    ]


# --- CRLs ------------------------------------------------------------------------------------


def crl_der(data: bytes) -> bytes:
    """The DER of a CRL given as DER, PEM, or hex text of DER (dcap-qvl's collateral JSON)."""
    try:
        if data[:1] == b"\x30":  # DER: never strip, its last bytes may look like whitespace
            return data
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(text).public_bytes(serialization.Encoding.DER)
        return binascii.unhexlify(text)
    except (ValueError, binascii.Error) as exc:
        raise EvidenceError(f"CRL does not parse: {exc}") from None


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL given as DER, PEM, or hex text of DER."""
    try:
        return x509.load_der_x509_crl(crl_der(data))
    except ValueError as exc:
        raise EvidenceError(f"CRL does not parse: {exc}") from None


def crl_problems(
    crl_bytes: bytes,
    crl: x509.CertificateRevocationList,
    issuer: ChainCert,
    certs: list[ChainCert],
    name: str,
) -> list[str]:
    """Issuer, signature, and whether any of ``certs`` is revoked (no clock involved).
    ``crl_bytes`` is the CRL's DER (the signature is over its exact bytes)."""
    problems = []
    for ext, what in (
        (x509.CRLNumber, "cRLNumber"),
        (x509.AuthorityKeyIdentifier, "authorityKeyIdentifier"),
    ):
        try:  # RFC 5280 §5.2.1 and §5.2.3: a conforming CRL carries both (dcap-qvl requires)
            crl.extensions.get_extension_for_class(ext)
        except x509.ExtensionNotFound:
            problems.append(f"{name} has no {what} extension (RFC 5280 §5.2 requires it)")
    try:
        signed: der.Signed | None = der.Signed.parse(crl_bytes, crl=True)
    except EvidenceError:
        signed = None
    if signed is None or signed.issuer != issuer.signed.subject:
        problems.append(f"{name} is issued by '{crl.issuer.rfc4514_string()}', not '{issuer.name}'")
    elif not signed_by(signed, issuer.key):
        problems.append(f"{name} signature does not verify with '{issuer.name}'")
    for cert in certs:
        serial = cert.cert.serial_number
        if crl.get_revoked_certificate_by_serial_number(serial) is not None:
            problems.append(f"'{cert.name}' (serial {serial:x}) is revoked by {name}")
    return problems


def crl_time_problem(crl: x509.CertificateRevocationList, now: datetime, name: str) -> str | None:
    """Why the CRL is not current at ``now`` (thisUpdate <= now <= nextUpdate), or None."""
    last, nxt = crl.last_update_utc, crl.next_update_utc
    if now < last or (nxt is not None and now > nxt):
        until = f"{nxt:%Y-%m-%d}" if nxt else "open"
        return f"{name} is valid {last:%Y-%m-%d}..{until}, not at {now:%Y-%m-%d}"
    return None
