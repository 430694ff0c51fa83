"""A minimal DER reader and writer (X.690 definite lengths, single-byte tags) and the few
X.509 slices verification needs without building Python objects for a whole certificate.

X.509 (RFC 5280 §4.1, §5.1): a Certificate or CertificateList is a SEQUENCE of the signed
part (TBSCertificate / TBSCertList), the AlgorithmIdentifier and the signature BIT STRING.
The signature is over the exact DER bytes of the signed part, so they are sliced here rather
than re-encoded from parsed objects (``cryptography`` re-encodes them on every call).
"""

from __future__ import annotations

from dataclasses import dataclass

from cocopart.spi import EvidenceError

# DER universal tags (X.690)
BOOLEAN, INTEGER, BIT_STRING, OCTET_STRING, OID, ENUMERATED, SEQUENCE = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x06,
    0x0A,
    0x30,
)
#: Context tags of TBSCertificate (RFC 5280 §4.1): [0] version, [3] extensions.
EXPLICIT_0, EXPLICIT_3 = 0xA0, 0xA3
#: ecdsa-with-SHA256 (1.2.840.10045.4.3.2), the content bytes of its OID.
ECDSA_WITH_SHA256 = bytes.fromhex("2a8648ce3d040302")


def tlv(data: bytes, off: int, end: int) -> tuple[int, int, int]:
    """Read one TLV at ``off``; returns (tag, value start, value end)."""
    if off + 2 > end:
        raise EvidenceError("DER: truncated element")
    tag, length = data[off], data[off + 1]
    off += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or off + n > end:
            raise EvidenceError("DER: unsupported or truncated length")
        length = int.from_bytes(data[off : off + n], "big")
        off += n
    if off + length > end:
        raise EvidenceError("DER: element runs past its container")
    return tag, off, off + length


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The TLVs inside ``data[start:end]``."""
    out = []
    while start < end:
        tag, vs, ve = tlv(data, start, end)
        out.append((tag, vs, ve))
        start = ve
    return out


def oid_str(raw: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's content bytes."""
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


def oid_content(dotted: str) -> bytes:
    """The content bytes of the OBJECT IDENTIFIER ``dotted``."""
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray([nums[0] * 40 + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(nb))) + nb + content


def encode_oid(dotted: str) -> bytes:
    return encode(OID, oid_content(dotted))


def encode_int(tag: int, value: int) -> bytes:
    return encode(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


@dataclass(frozen=True)
class Signed:
    """A signed X.509 structure (certificate or CRL) sliced into what a verifier needs."""

    tbs: bytes
    algorithm: bytes  # content bytes of the signature algorithm OID
    signature: bytes  # the BIT STRING's bytes (an ECDSA-Sig-Value for ECDSA)
    issuer: bytes  # the issuer Name, DER
    subject: bytes = b""  # the subject Name, DER (certificates)
    spki: bytes = b""  # the SubjectPublicKeyInfo, DER (certificates)

    @classmethod
    def parse(cls, der: bytes, *, crl: bool = False) -> Signed:
        """Slice a DER Certificate (or, with ``crl``, a CertificateList): a walk over the
        outer fields only, no list of every element."""
        n = len(der)
        tag, s, e = tlv(der, 0, n)
        if tag != SEQUENCE or e != n:
            raise EvidenceError("DER: not one SEQUENCE")
        tag, ts, te = tlv(der, s, e)
        atag, als, ale = tlv(der, te, e)
        btag, bs, be = tlv(der, ale, e)
        if tag != SEQUENCE or atag != SEQUENCE or btag != BIT_STRING or be != e:
            raise EvidenceError("DER: not a signed X.509 structure")
        otag, os_, oe = tlv(der, als, ale)
        if otag != OID or bs == be or der[bs] != 0:
            raise EvidenceError("DER: bad signature algorithm or BIT STRING")
        tbs_start = s
        ftag, _fs, fe = tlv(der, ts, te)
        if crl:  # TBSCertList: version? signature issuer thisUpdate ...
            if ftag == INTEGER:
                ftag, _fs, fe = tlv(der, fe, te)
            itag, is_, ie = tlv(der, fe, te)
            return cls(
                der[tbs_start:te],
                der[os_:oe],
                der[bs + 1 : be],
                der[tlv_start((itag, is_, ie)) : ie],
            )
        if ftag == EXPLICIT_0:  # TBSCertificate: [0]version? serial signature issuer ...
            ftag, _fs, fe = tlv(der, fe, te)
        _t, _gs, ge = tlv(der, fe, te)  # signature algorithm
        itag, is_, ie = tlv(der, ge, te)  # issuer
        _t, _vs, ve = tlv(der, ie, te)  # validity
        stag, ss, se = tlv(der, ve, te)  # subject
        ktag, ks, ke = tlv(der, se, te)  # subjectPublicKeyInfo
        return cls(
            der[tbs_start:te],
            der[os_:oe],
            der[bs + 1 : be],
            der[tlv_start((itag, is_, ie)) : ie],
            der[tlv_start((stag, ss, se)) : se],
            der[tlv_start((ktag, ks, ke)) : ke],
        )


#: commonName (2.5.4.3) as an OBJECT IDENTIFIER TLV.
_CN = bytes.fromhex("0603550403")


def common_name(name: bytes) -> str | None:
    """The commonName of a DER Name (the first one), or None when it has none."""
    at = name.find(_CN)
    if at < 0:
        return None
    tag, vs, ve = tlv(name, at + len(_CN), len(name))
    if tag not in (0x0C, 0x13, 0x16, 0x14):  # UTF8String, PrintableString, IA5, T61
        return None
    return name[vs:ve].decode("utf-8", errors="replace")


def tlv_start(item: tuple[int, int, int]) -> int:
    """Where the TLV whose value spans ``item[1]:item[2]`` starts (its tag byte), for the
    minimal length encoding DER requires (anything else fails the signature check)."""
    _tag, vs, ve = item
    length = ve - vs
    header = 2 if length < 0x80 else 2 + (length.bit_length() + 7) // 8
    return vs - header


def extension_value(der: bytes, oid: bytes) -> bytes | None:
    """The extnValue (content of its OCTET STRING) of the certificate extension ``oid`` (OID
    content bytes), or None when the certificate has no such extension."""
    _tag, s, e = tlv(der, 0, len(der))
    _tag, ts, te = tlv(der, s, e)
    for tag, vs, ve in children(der, ts, te):
        if tag != EXPLICIT_3:
            continue
        _tag, xs, xe = tlv(der, vs, ve)
        for _t, es, ee in children(der, xs, xe):
            parts = children(der, es, ee)
            if parts and parts[0][0] == OID and der[parts[0][1] : parts[0][2]] == oid:
                value = parts[-1]
                if value[0] != OCTET_STRING:
                    raise EvidenceError("DER: extension value is not an OCTET STRING")
                return der[value[1] : value[2]]
    return None
