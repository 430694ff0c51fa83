"""Intel TDX quotes, versions 4 and 5: parse and build, bit-exact both ways.

Layout (shared/reference/tdx.md §7.3, from go-tdx-guest ``abi.go`` and Intel DCAP
``sgx_quote_4.h``; v5 framing from the same section):

* header, 48 bytes: version u16, attestation key type u16 (2 = ECDSA-256 with P-256),
  TEE type u32 (0x81 = TDX), 4 bytes that DCAP calls reserved (SGX v3 puts QE SVN and
  PCE SVN there; all real quotes in shared/vectors have zeros), QE vendor ID (16),
  user data (20);
* v4: the TD quote body (584 bytes, TDX 1.0 layout) at 48;
  v5: body type u16 at 48 (2 = TDX 1.0, 584 bytes; 3 = TDX 1.5, 648 bytes), body size u32
  at 50, body at 54;
* signature data length u32, then the ECDSA-256 quote signature data: the quote signature
  (r||s, 64) by the attestation key over header||body (v5: including body type and size),
  the attestation public key (x||y, 64), and certification data (type u16, size u32, data).
  Type 6 ("QE report certification data") holds the QE's 384-byte SGX report body, its
  signature by the PCK key (64), the QE authentication data (u16 size + bytes) and nested
  certification data, normally type 5 (the PCK certificate chain, PEM).

Real quotes are often zero-padded after the signature data (GCP hands out 8000-byte
buffers); the padding is kept in :attr:`TdQuote.trailing` so that round trips are exact.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from cocopart.spi import EvidenceError
from cocopart_tdx.tdreport import TdReport

QUOTE_VERSION_4 = 4
QUOTE_VERSION_5 = 5
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x00000081
#: Intel's QE vendor ID (every real quote in shared/vectors carries it).
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
TD10_BODY_SIZE = 584
TD15_BODY_SIZE = 648
HEADER_SIZE = 48
CERT_TYPE_PCK_CHAIN = 5  # PCK leaf + intermediate + root, PEM (DCAP)
CERT_TYPE_QE_REPORT = 6  # QE report certification data (DCAP)
SGX_REPORT_BODY_SIZE = 384

_HEADER = struct.Struct("<HHI4s16s20s")
# TD 1.0 body: tee_tcb_svn(16) mrseam mrsignerseam (48) seam_attr td_attr xfam (8)
# mrtd mrconfigid mrowner mrownerconfig rtmr0..3 (48) report_data(64) -- tdx.md §7.3
_BODY10 = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
_BODY15_TAIL = struct.Struct("<16s48s")  # tee_tcb_svn2, mrservicetd
# SGX REPORT_BODY (Intel SGX SDK sgx_report.h): cpusvn(16) miscselect(u32) rsvd(12)
# isvextprodid(16) attributes(16) mrenclave(32) rsvd(32) mrsigner(32) rsvd(32) configid(64)
# isvprodid(u16) isvsvn(u16) configsvn(u16) rsvd(42) isvfamilyid(16) reportdata(64)
_SGX_REPORT = struct.Struct("<16sI12s16s16s32s32s32s32s64sHHH42s16s64s")
_CERT_HDR = struct.Struct("<HI")
_V5_BODY_HDR = struct.Struct("<HI")
_HEAD = struct.Struct("<HHI")
_U32 = struct.Struct("<I")

assert _HEADER.size == HEADER_SIZE
assert _BODY10.size == TD10_BODY_SIZE
assert _BODY10.size + _BODY15_TAIL.size == TD15_BODY_SIZE
assert _SGX_REPORT.size == SGX_REPORT_BODY_SIZE


def _need(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise EvidenceError(f"{name} must be {size} bytes, got {len(value)}")
    return value


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header."""

    version: int
    att_key_type: int = ATT_KEY_TYPE_ECDSA_P256
    tee_type: int = TEE_TYPE_TDX
    reserved: bytes = bytes(4)  # QE SVN / PCE SVN in SGX v3; order unconfirmed for v4 (tdx.md §10)
    qe_vendor_id: bytes = INTEL_QE_VENDOR_ID
    user_data: bytes = bytes(20)

    def to_bytes(self) -> bytes:
        return _HEADER.pack(
            self.version,
            self.att_key_type,
            self.tee_type,
            _need(self.reserved, 4, "header reserved"),
            _need(self.qe_vendor_id, 16, "QE vendor ID"),
            _need(self.user_data, 20, "user data"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> QuoteHeader:
        return cls(*_HEADER.unpack(_need(data, HEADER_SIZE, "quote header")))


@dataclass(frozen=True)
class TdQuoteBody:
    """The TD quote body: TDX 1.0 (584 bytes) or, with the two 1.5 fields set, 648 bytes."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None = None  # TDX 1.5 body only
    mrservicetd: bytes | None = None  # TDX 1.5 body only

    @property
    def is_td15(self) -> bool:
        return self.tee_tcb_svn2 is not None

    @property
    def size(self) -> int:
        return TD15_BODY_SIZE if self.is_td15 else TD10_BODY_SIZE

    def to_bytes(self) -> bytes:
        out = _BODY10.pack(
            _need(self.tee_tcb_svn, 16, "TEE_TCB_SVN"),
            _need(self.mrseam, 48, "MRSEAM"),
            _need(self.mrsignerseam, 48, "MRSIGNERSEAM"),
            _need(self.seam_attributes, 8, "SEAMATTRIBUTES"),
            _need(self.td_attributes, 8, "TDATTRIBUTES"),
            _need(self.xfam, 8, "XFAM"),
            _need(self.mrtd, 48, "MRTD"),
            _need(self.mrconfigid, 48, "MRCONFIGID"),
            _need(self.mrowner, 48, "MROWNER"),
            _need(self.mrownerconfig, 48, "MROWNERCONFIG"),
            *(_need(r, 48, f"RTMR{i}") for i, r in enumerate(self.rtmrs)),
            _need(self.report_data, 64, "REPORTDATA"),
        )
        if self.tee_tcb_svn2 is not None:
            out += _BODY15_TAIL.pack(
                _need(self.tee_tcb_svn2, 16, "TEE_TCB_SVN2"),
                _need(self.mrservicetd or bytes(48), 48, "MRSERVICETD"),
            )
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> TdQuoteBody:
        if len(data) not in (TD10_BODY_SIZE, TD15_BODY_SIZE):
            raise EvidenceError(
                f"a TD quote body is {TD10_BODY_SIZE} or {TD15_BODY_SIZE} bytes, got {len(data)}"
            )
        f = _BODY10.unpack_from(data)
        svn2: bytes | None = None
        mrservicetd: bytes | None = None
        if len(data) == TD15_BODY_SIZE:
            svn2, mrservicetd = _BODY15_TAIL.unpack_from(data, TD10_BODY_SIZE)
        return cls(
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            f[6],
            f[7],
            f[8],
            f[9],
            (f[10], f[11], f[12], f[13]),
            f[14],
            svn2,
            mrservicetd,
        )

    @classmethod
    def from_tdreport(cls, report: TdReport, *, td15: bool = False) -> TdQuoteBody:
        """The body a quoting enclave builds from a TDREPORT (fields copied unchanged)."""
        tcb, info = report.tee_tcb_info, report.td_info
        return cls(
            tcb.tee_tcb_svn,
            tcb.mrseam,
            tcb.mrsignerseam,
            tcb.attributes,
            info.attributes,
            info.xfam,
            info.mrtd,
            info.mrconfigid,
            info.mrowner,
            info.mrownerconfig,
            info.rtmrs,
            report.report_data,
            tcb.tee_tcb_svn2 if td15 else None,
            info.servtd_hash if td15 else None,
        )

    def measurements(self) -> dict[str, bytes]:
        """The measurement registers by their conventional lower-case names."""
        out = {
            "mrtd": self.mrtd,
            "rtmr0": self.rtmrs[0],
            "rtmr1": self.rtmrs[1],
            "rtmr2": self.rtmrs[2],
            "rtmr3": self.rtmrs[3],
            "mrseam": self.mrseam,
            "mrsignerseam": self.mrsignerseam,
            "mrconfigid": self.mrconfigid,
            "mrowner": self.mrowner,
            "mrownerconfig": self.mrownerconfig,
        }
        if self.mrservicetd is not None:
            out["mrservicetd"] = self.mrservicetd
        return out


@dataclass(frozen=True)
class EnclaveReportBody:
    """The 384-byte SGX REPORT_BODY the quoting enclave signs with (its QE report)."""

    cpusvn: bytes
    miscselect: int
    reserved1: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mrenclave: bytes
    reserved2: bytes
    mrsigner: bytes
    reserved3: bytes
    config_id: bytes
    isvprodid: int
    isvsvn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes

    def to_bytes(self) -> bytes:
        return _SGX_REPORT.pack(
            _need(self.cpusvn, 16, "CPUSVN"),
            self.miscselect,
            _need(self.reserved1, 12, "rsvd1"),
            _need(self.isv_ext_prod_id, 16, "ISVEXTPRODID"),
            _need(self.attributes, 16, "ATTRIBUTES"),
            _need(self.mrenclave, 32, "MRENCLAVE"),
            _need(self.reserved2, 32, "rsvd2"),
            _need(self.mrsigner, 32, "MRSIGNER"),
            _need(self.reserved3, 32, "rsvd3"),
            _need(self.config_id, 64, "CONFIGID"),
            self.isvprodid,
            self.isvsvn,
            self.config_svn,
            _need(self.reserved4, 42, "rsvd4"),
            _need(self.isv_family_id, 16, "ISVFAMILYID"),
            _need(self.report_data, 64, "REPORTDATA"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EnclaveReportBody:
        return cls(*_SGX_REPORT.unpack(_need(data, SGX_REPORT_BODY_SIZE, "QE report")))

    @classmethod
    def build(
        cls,
        *,
        mrenclave: bytes,
        mrsigner: bytes,
        isvprodid: int,
        isvsvn: int,
        report_data: bytes,
        attributes: bytes = bytes(16),
        miscselect: int = 0,
        cpusvn: bytes = bytes(16),
    ) -> EnclaveReportBody:
        """A report body with the given identity and zeros elsewhere."""
        return cls(
            cpusvn,
            miscselect,
            bytes(12),
            bytes(16),
            attributes,
            mrenclave,
            bytes(32),
            mrsigner,
            bytes(32),
            bytes(64),
            isvprodid,
            isvsvn,
            0,
            bytes(42),
            bytes(16),
            report_data,
        )


@dataclass(frozen=True)
class CertificationData:
    """Certification data of any type: u16 type, u32 size, then ``data``."""

    cert_type: int
    data: bytes

    def to_bytes(self) -> bytes:
        return _CERT_HDR.pack(self.cert_type, len(self.data)) + self.data


@dataclass(frozen=True)
class QeReportCertificationData:
    """Certification data type 6: the QE report, its PCK signature, auth data, nested cert data."""

    qe_report: EnclaveReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData
    raw_report: bytes = field(default=b"", compare=False, repr=False)

    cert_type = CERT_TYPE_QE_REPORT

    @property
    def qe_report_bytes(self) -> bytes:
        """The 384 signed QE report bytes (as parsed, or serialised when built)."""
        return self.raw_report or self.qe_report.to_bytes()

    def payload(self) -> bytes:
        """The type-6 data without its own 6-byte type/size header."""
        return (
            self.qe_report.to_bytes()
            + _need(self.qe_report_signature, 64, "QE report signature")
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + self.certification.to_bytes()
        )

    def to_bytes(self) -> bytes:
        payload = self.payload()
        return _CERT_HDR.pack(CERT_TYPE_QE_REPORT, len(payload)) + payload

    @classmethod
    def from_payload(cls, data: bytes) -> QeReportCertificationData:
        if len(data) < SGX_REPORT_BODY_SIZE + 64 + 2:
            raise EvidenceError(f"QE report certification data is {len(data)} bytes, too short")
        raw_report = data[:SGX_REPORT_BODY_SIZE]
        report = EnclaveReportBody.from_bytes(raw_report)
        sig = data[SGX_REPORT_BODY_SIZE : SGX_REPORT_BODY_SIZE + 64]
        off = SGX_REPORT_BODY_SIZE + 64
        (auth_len,) = struct.unpack_from("<H", data, off)
        off += 2
        if off + auth_len + _CERT_HDR.size > len(data):
            raise EvidenceError(
                f"QE authentication data ({auth_len} bytes) overruns its certification data"
            )
        auth = data[off : off + auth_len]
        off += auth_len
        inner, end = _parse_cert_data(data, off, "nested certification data")
        if end != len(data):
            raise EvidenceError(
                f"{len(data) - end} unexplained bytes after the nested certification data"
            )
        return cls(report, sig, auth, inner, raw_report)


def _parse_cert_data(data: bytes, off: int, what: str) -> tuple[CertificationData, int]:
    if off + _CERT_HDR.size > len(data):
        raise EvidenceError(f"{what}: header runs past the end")
    ctype, size = _CERT_HDR.unpack_from(data, off)
    start = off + _CERT_HDR.size
    if start + size > len(data):
        raise EvidenceError(
            f"{what} (type {ctype}) says {size} bytes, only {len(data) - start} remain"
        )
    return CertificationData(ctype, data[start : start + size]), start + size


@dataclass(frozen=True)
class QuoteSignatureData:
    """ECDSA-256 quote signature data: signature, attestation key, certification data."""

    signature: bytes
    attestation_key: bytes
    certification: CertificationData | QeReportCertificationData

    def to_bytes(self) -> bytes:
        return (
            _need(self.signature, 64, "quote signature")
            + _need(self.attestation_key, 64, "attestation key")
            + self.certification.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> QuoteSignatureData:
        if len(data) < 128 + _CERT_HDR.size:
            raise EvidenceError(f"quote signature data is {len(data)} bytes, too short")
        outer, end = _parse_cert_data(data, 128, "certification data")
        if end != len(data):
            raise EvidenceError(f"{len(data) - end} unexplained bytes after the certification data")
        cert: CertificationData | QeReportCertificationData = outer
        if outer.cert_type == CERT_TYPE_QE_REPORT:
            cert = QeReportCertificationData.from_payload(outer.data)
        return cls(data[:64], data[64:128], cert)

    @property
    def qe(self) -> QeReportCertificationData | None:
        """The type-6 QE report certification data, if that is what the quote carries."""
        c = self.certification
        return c if isinstance(c, QeReportCertificationData) else None

    @property
    def pck_chain_data(self) -> bytes | None:
        """The PCK chain bytes (certification data type 5), wherever it is nested."""
        c = self.certification
        if isinstance(c, QeReportCertificationData):
            c = c.certification
        return c.data if c.cert_type == CERT_TYPE_PCK_CHAIN else None


@dataclass(frozen=True)
class TdQuote:
    """A TD quote (v4 or v5). ``TdQuote.from_bytes(b).to_bytes() == b`` for every real quote."""

    header: QuoteHeader
    body: TdQuoteBody
    signature_data: QuoteSignatureData
    trailing: bytes = b""

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def body_type(self) -> int:
        return BODY_TYPE_TD15 if self.body.is_td15 else BODY_TYPE_TD10

    @property
    def signed_length(self) -> int:
        """How many leading bytes the attestation key signs (header and body)."""
        if self.header.version == QUOTE_VERSION_4:
            return HEADER_SIZE + TD10_BODY_SIZE
        return HEADER_SIZE + _V5_BODY_HDR.size + self.body.size

    def signed_bytes(self) -> bytes:
        """Header||body as the attestation key signs them (v5: with body type and size)."""
        out = self.header.to_bytes()
        if self.header.version == QUOTE_VERSION_5:
            out += _V5_BODY_HDR.pack(self.body_type, self.body.size)
        return out + self.body.to_bytes()

    def to_bytes(self) -> bytes:
        sig = self.signature_data.to_bytes()
        return self.signed_bytes() + struct.pack("<I", len(sig)) + sig + self.trailing

    @classmethod
    def from_bytes(cls, data: bytes) -> TdQuote:
        """Parse a v4 or v5 TD quote; raises :class:`EvidenceError` naming the problem."""
        layout = QuoteLayout.parse(data)
        sig = QuoteSignatureData.from_bytes(data[layout.sig_start : layout.sig_end])
        return cls(layout.header, layout.body, sig, data[layout.sig_end :])


@dataclass(frozen=True)
class QuoteLayout:
    """Header, body and where the signature data lies, without parsing the signature data.

    Verifiers use it to cache what the signature data says (it is the same for every quote of
    one quoting enclave, apart from the first 64 bytes, the quote signature).
    """

    header: QuoteHeader
    body: TdQuoteBody
    signed_length: int
    sig_start: int
    sig_end: int

    @property
    def body_type(self) -> int:
        return BODY_TYPE_TD15 if self.body.is_td15 else BODY_TYPE_TD10

    @classmethod
    def parse(cls, data: bytes) -> QuoteLayout:
        """Parse the header and body and frame the signature data (EvidenceError if bad)."""
        frame = QuoteFrame.of(data)
        header = QuoteHeader.from_bytes(data[:HEADER_SIZE])
        body = TdQuoteBody.from_bytes(data[frame.body_start : frame.signed_length])
        return cls(header, body, frame.signed_length, frame.sig_start, frame.sig_end)


class QuoteFrame(NamedTuple):
    """Where a quote's parts lie, from the header alone: what a verifier needs before it
    knows whether it has seen this quote's platform and TD before (tdx.md §10: v4 body at 48,
    v5 body after a 6-byte type/size; the signature data after a 4-byte length)."""

    version: int
    body_start: int
    signed_length: int  # header and body: what the attestation key signs
    sig_start: int  # the signature data, after its 4-byte length
    sig_end: int

    @property
    def report_data(self) -> int:
        """Offset of REPORTDATA: the last 64 bytes of the TDX 1.0 part of the body."""
        return self.body_start + TD10_BODY_SIZE - 64

    @classmethod
    def of(cls, data: bytes) -> QuoteFrame:
        """Frame ``data``; raises :class:`EvidenceError` for anything but a TDX quote v4/v5."""
        if len(data) < HEADER_SIZE:
            raise EvidenceError(
                f"a quote starts with a {HEADER_SIZE}-byte header; got {len(data)} bytes"
            )
        version, att_key_type, tee_type = _HEAD.unpack_from(data)
        if tee_type != TEE_TYPE_TDX:
            raise EvidenceError(f"quote TEE type is {tee_type:#x}, not {TEE_TYPE_TDX:#x} (TDX)")
        if att_key_type != ATT_KEY_TYPE_ECDSA_P256:
            raise EvidenceError(
                f"attestation key type {att_key_type} is not supported "
                f"(only {ATT_KEY_TYPE_ECDSA_P256}, ECDSA-256 with P-256)"
            )
        if version == QUOTE_VERSION_4:
            body_off, body_size = HEADER_SIZE, TD10_BODY_SIZE
        elif version == QUOTE_VERSION_5:
            if len(data) < HEADER_SIZE + _V5_BODY_HDR.size:
                raise EvidenceError("v5 quote ends before its body type and size")
            btype, body_size = _V5_BODY_HDR.unpack_from(data, HEADER_SIZE)
            want = {BODY_TYPE_TD10: TD10_BODY_SIZE, BODY_TYPE_TD15: TD15_BODY_SIZE}.get(btype)
            if want is None:
                raise EvidenceError(
                    f"v5 body type {btype} is not a TD report (2 = TDX 1.0, 3 = TDX 1.5)"
                )
            if body_size != want:
                raise EvidenceError(
                    f"v5 body type {btype} must be {want} bytes, header says {body_size}"
                )
            body_off = HEADER_SIZE + _V5_BODY_HDR.size
        else:
            raise EvidenceError(f"quote version {version} is not supported (4 or 5)")
        sig_len_off = body_off + body_size
        if len(data) < sig_len_off + 4:
            raise EvidenceError(f"quote is {len(data)} bytes, ends before its signature data")
        (sig_len,) = _U32.unpack_from(data, sig_len_off)
        sig_end = sig_len_off + 4 + sig_len
        if sig_end > len(data):
            raise EvidenceError(
                f"signature data says {sig_len} bytes, only {len(data) - sig_len_off - 4} remain"
            )
        return cls(version, body_off, sig_len_off, sig_len_off + 4, sig_end)  # a tuple: cheap
