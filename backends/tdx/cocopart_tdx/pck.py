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
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cocopart.errors import EvidenceError

#: SHA-256 of the DER SubjectPublicKeyInfo of the Intel SGX Root CA (CN=Intel SGX Root CA,
#: valid 2018-05-21..2049-12-31). Computed from shared/vectors/tdx/collateral/
#: intel-sgx-root-ca.pem, which is go-tdx-guest verify/trusted_root.pem (README per-file list).
INTEL_SGX_ROOT_CA_SPKI_SHA256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e"

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

# DER universal tags used by the extension (X.690)
_BOOLEAN, _INTEGER, _OCTET_STRING, _OID, _ENUMERATED, _SEQUENCE = 0x01, 0x02, 0x04, 0x06, 0x0A, 0x30


# --- a minimal DER reader/writer (X.690 definite lengths, single-byte tags) ------------------

def _tlv(data: bytes, off: int, end: int) -> tuple[int, int, int]:
    """Read one TLV at ``off``; returns (tag, value start, value end)."""
    if off + 2 > end:
        raise EvidenceError("DER: truncated element")
    tag, length = data[off], data[off + 1]
    off += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or off + n > end:
            raise EvidenceError("DER: unsupported or truncated length")
        length = int.from_bytes(data[off:off + n], "big")
        off += n
    if off + length > end:
        raise EvidenceError("DER: element runs past its container")
    return tag, off, off + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, vs, ve = _tlv(data, start, end)
        out.append((tag, vs, ve))
        start = ve
    return out


def _oid_str(raw: bytes) -> str:
    if not raw:
        raise EvidenceError("DER: empty OBJECT IDENTIFIER")
    parts = [raw[0] // 40, raw[0] % 40] if raw[0] < 80 else [2, raw[0] - 80]
    value = 0
    for b in raw[1:]:
        value = value << 7 | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(nb))) + nb + content


def _der_oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray([nums[0] * 40 + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return _der(_OID, bytes(out))


def _der_int(tag: int, value: int) -> bytes:
    return _der(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


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
        comps = b"".join(_pair(f"{_TCB}.{i + 1}", _der_int(_INTEGER, v))
                         for i, v in enumerate(self.tcb.comp_svns))
        comps += _pair(f"{_TCB}.17", _der_int(_INTEGER, self.tcb.pcesvn))
        comps += _pair(f"{_TCB}.18", _der(_OCTET_STRING, self.tcb.cpusvn))
        body = (_pair(_PPID, _der(_OCTET_STRING, self.ppid)) + _pair(_TCB, _der(_SEQUENCE, comps))
                + _pair(_PCEID, _der(_OCTET_STRING, self.pce_id))
                + _pair(_FMSPC, _der(_OCTET_STRING, self.fmspc))
                + _pair(_SGX_TYPE, _der_int(_ENUMERATED, self.sgx_type)))
        if self.platform_instance_id is not None:
            body += _pair(_PLATFORM_INSTANCE_ID, _der(_OCTET_STRING, self.platform_instance_id))
        if self.configuration is not None:
            inv = {v: k for k, v in _CONFIG_NAMES.items()}
            cfg = b"".join(_pair(f"{_CONFIGURATION}.{inv[k]}", _der(_BOOLEAN, b"\xff" if v else b"\0"))
                           for k, v in self.configuration.items())
            body += _pair(_CONFIGURATION, _der(_SEQUENCE, cfg))
        return _der(_SEQUENCE, body)

    @classmethod
    def from_der(cls, data: bytes) -> SgxExtensions:
        """Parse the extension value; raises :class:`EvidenceError` when a field is missing."""
        tag, vs, ve = _tlv(data, 0, len(data))
        if tag != _SEQUENCE:
            raise EvidenceError("SGX extensions: not a SEQUENCE")
        fields: dict[str, tuple[int, bytes]] = {}
        for ptag, ps, pe in _children(data, vs, ve):
            kids = _children(data, ps, pe) if ptag == _SEQUENCE else []
            if len(kids) != 2 or kids[0][0] != _OID:
                raise EvidenceError("SGX extensions: entry is not (OID, value)")
            oid = _oid_str(data[kids[0][1]:kids[0][2]])
            t, s, e = kids[1]
            fields[oid] = (t, data[s:e])
        for need in (_PPID, _TCB, _PCEID, _FMSPC, _SGX_TYPE):
            if need not in fields:
                raise EvidenceError(f"SGX extensions: {need} is missing")
        tcb_raw = fields[_TCB][1]
        comps: dict[int, int] = {}
        cpusvn = b""
        for ptag, ps, pe in _children(tcb_raw, 0, len(tcb_raw)):
            (_ot, os_, oe), (_vt, vs2, ve2) = _children(tcb_raw, ps, pe)
            idx = int(_oid_str(tcb_raw[os_:oe]).rsplit(".", 1)[1])
            if idx == 18:
                cpusvn = tcb_raw[vs2:ve2]
            else:
                comps[idx] = int.from_bytes(tcb_raw[vs2:ve2], "big", signed=True)
        if sorted(comps) != list(range(1, 18)) or len(cpusvn) != 16:
            raise EvidenceError("SGX extensions: TCB needs 16 component SVNs, PCESVN and CPUSVN")
        config: dict[str, bool] | None = None
        if _CONFIGURATION in fields:
            raw = fields[_CONFIGURATION][1]
            config = {}
            for _t, ps, pe in _children(raw, 0, len(raw)):
                (_, os_, oe), (_, bs, be) = _children(raw, ps, pe)
                key = _oid_str(raw[os_:oe]).rsplit(".", 1)[1]
                config[_CONFIG_NAMES.get(key, key)] = raw[bs:be] != b"\0"
        pid = fields.get(_PLATFORM_INSTANCE_ID)
        return cls(
            ppid=fields[_PPID][1],
            tcb=PckTcb(tuple(comps[i] for i in range(1, 17)), comps[17], cpusvn),
            pce_id=fields[_PCEID][1], fmspc=fields[_FMSPC][1],
            sgx_type=int.from_bytes(fields[_SGX_TYPE][1], "big"),
            platform_instance_id=pid[1] if pid else None, configuration=config,
        )

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> SgxExtensions:
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
        except x509.ExtensionNotFound:
            raise EvidenceError("the PCK certificate has no Intel SGX extensions "
                                f"({SGX_EXTENSIONS_OID})") from None
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise EvidenceError("SGX extensions: unexpected decoded type")
        return cls.from_der(value.value)


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
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def signature_problems(chain: list[x509.Certificate]) -> list[str]:
    """Check each certificate is signed by the next and the last is self-signed.

    Also requires the issuers to be CAs (basicConstraints cA) and ECDSA P-256 keys throughout.
    """
    problems = []
    for i, cert in enumerate(chain):
        issuer = chain[i + 1] if i + 1 < len(chain) else cert
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            problems.append(f"'{common_name(cert)}' does not have an ECDSA P-256 key")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            what = ("is not self-signed" if issuer is cert
                    else f"is not signed by '{common_name(issuer)}'")
            reason = str(exc) or type(exc).__name__
            problems.append(f"'{common_name(cert)}' {what} ({reason})")
        if issuer is not cert:
            try:
                bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
                if not bc.ca:
                    problems.append(f"'{common_name(issuer)}' is not a CA")
            except x509.ExtensionNotFound:
                problems.append(f"'{common_name(issuer)}' has no basicConstraints")
    return problems


def validity_problems(chain: list[x509.Certificate], now: datetime) -> list[str]:
    """Certificates not valid at ``now``."""
    return [f"'{common_name(c)}' is valid {c.not_valid_before_utc:%Y-%m-%d}.."
            f"{c.not_valid_after_utc:%Y-%m-%d}, not at {now:%Y-%m-%dT%H:%M:%SZ}"
            for c in chain if not c.not_valid_before_utc <= now <= c.not_valid_after_utc]


# --- CRLs ------------------------------------------------------------------------------------

def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL given as DER, PEM, or hex text of DER (dcap-qvl's collateral JSON uses hex)."""
    try:
        if data[:1] == b"\x30":  # DER: never strip, its last bytes may look like whitespace
            return x509.load_der_x509_crl(data)
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(text)
        return x509.load_der_x509_crl(binascii.unhexlify(text))
    except (ValueError, binascii.Error) as exc:
        raise EvidenceError(f"CRL does not parse: {exc}") from None


def crl_problems(crl: x509.CertificateRevocationList, issuer: x509.Certificate,
                 certs: list[x509.Certificate], name: str) -> list[str]:
    """Issuer, signature, and whether any of ``certs`` is revoked (no clock involved)."""
    problems = []
    for ext, what in ((x509.CRLNumber, "cRLNumber"),
                      (x509.AuthorityKeyIdentifier, "authorityKeyIdentifier")):
        try:  # RFC 5280 §5.2.1 and §5.2.3: a conforming CRL carries both (dcap-qvl requires)
            crl.extensions.get_extension_for_class(ext)
        except x509.ExtensionNotFound:
            problems.append(f"{name} has no {what} extension (RFC 5280 §5.2 requires it)")
    if crl.issuer != issuer.subject:
        problems.append(f"{name} is issued by '{crl.issuer.rfc4514_string()}', not "
                        f"'{common_name(issuer)}'")
    elif not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        problems.append(f"{name} signature does not verify with '{common_name(issuer)}'")
    for cert in certs:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            problems.append(f"'{common_name(cert)}' (serial {cert.serial_number:x}) is revoked by {name}")
    return problems


def crl_time_problem(crl: x509.CertificateRevocationList, now: datetime, name: str) -> str | None:
    """Why the CRL is not current at ``now`` (thisUpdate <= now <= nextUpdate), or None."""
    last, nxt = crl.last_update_utc, crl.next_update_utc
    if now < last or (nxt is not None and now > nxt):
        until = f"{nxt:%Y-%m-%d}" if nxt else "open"
        return f"{name} is valid {last:%Y-%m-%d}..{until}, not at {now:%Y-%m-%d}"
    return None
