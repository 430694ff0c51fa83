"""TDREPORT_STRUCT: the 1024-byte report TDG.MR.REPORT returns to a TD.

Layout (shared/reference/tdx.md §7.1, from the TDX module's ``tdx_api_defs.h``):

====  ====  ==================================================================
off   size  field
====  ====  ==================================================================
0     256   REPORTMACSTRUCT (REPORTTYPE, CPUSVN, TEE_TCB_INFO_HASH,
            TEE_INFO_HASH, REPORTDATA, MAC)
256   239   TEE_TCB_INFO (VALID, TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, ATTRIBUTES,
            TEE_TCB_SVN2, reserved)
495   17    reserved
512   512   TDINFO (ATTRIBUTES, XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG,
            RTMR0..3, SERVTD_HASH, reserved)
====  ====  ==================================================================

TEE_TCB_INFO_HASH is SHA-384 of the 239 TEE_TCB_INFO bytes at 0x100 and TEE_INFO_HASH is
SHA-384 of the 512 TDINFO bytes at 0x200 (checked against the real Azure TDREPORT in
shared/vectors, README "TDREPORTs"). The MAC is keyed by a CPU-internal key: only the same
platform (the TD quoting enclave, or TDG.MR.VERIFYREPORT) can check it, so a TDREPORT seen
off-platform is unauthenticated. See :mod:`cocopart_tdx.simroots` for the simulated MAC.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cocopart.spi import EvidenceError

TDREPORT_SIZE = 1024
REPORTMACSTRUCT_SIZE = 256
TEE_TCB_INFO_SIZE = 239  # tdx.md §7.1; the vectors confirm the hash covers 239 bytes
TDINFO_SIZE = 512
TEE_TCB_INFO_OFFSET = 0x100
TDINFO_OFFSET = 0x200
#: REPORTTYPE.TYPE for a TDX report (tdx.md §7.1); SGX reports use 0x00.
REPORT_TYPE_TDX = 0x81
#: The MAC covers REPORTMACSTRUCT up to (not including) the MAC field at +224.
MAC_OFFSET = 224

# REPORTMACSTRUCT: type(4) rsvd(12) cpusvn(16) tcb_hash(48) info_hash(48) reportdata(64)
# rsvd(32) mac(32)  -- tdx.md §7.1
_MACSTRUCT = struct.Struct("<4s12s16s48s48s64s32s32s")
# TEE_TCB_INFO: valid(8) svn(16) mrseam(48) mrsignerseam(48) attributes(8) svn2(16) rsvd(95)
_TEE_TCB_INFO = struct.Struct("<8s16s48s48s8s16s95s")
# TDINFO: attributes(8) xfam(8) mrtd mrconfigid mrowner mrownerconfig rtmr0..3 servtd_hash
# (48 each) reserved(64)  -- tdx.md §7.1
_TDINFO = struct.Struct("<8s8s48s48s48s48s48s48s48s48s48s64s")

assert _MACSTRUCT.size == REPORTMACSTRUCT_SIZE
assert _TEE_TCB_INFO.size == TEE_TCB_INFO_SIZE
assert _TDINFO.size == TDINFO_SIZE

#: TD ATTRIBUTES bit positions (tdx.md §7.2, from Linux ``shared/tdx.h`` and OpenVMM).
TD_ATTRIBUTE_BITS: dict[str, int] = {
    "debug": 0,
    "hgs_plus_prof": 4,
    "perf_prof": 5,
    "pmt_prof": 6,
    "icssd": 16,
    "lass": 27,
    "sept_ve_disable": 28,
    "migratable": 29,
    "pks": 30,
    "kl": 31,
    "tpa": 62,
    "perfmon": 63,
}
_KNOWN_ATTRIBUTE_MASK = sum(1 << b for b in TD_ATTRIBUTE_BITS.values())


def _need(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise EvidenceError(f"{name} must be {size} bytes, got {len(value)}")
    return value


def decode_td_attributes(raw: bytes) -> dict[str, object]:
    """Decode the 8-byte little-endian TD ATTRIBUTES into named flags (tdx.md §7.2).

    Returns every named bit as a bool, plus ``"raw"`` (hex of the 8 bytes as stored) and
    ``"unknown_bits"`` (list of set bit numbers that have no name here).
    """
    value = int.from_bytes(_need(raw, 8, "TD ATTRIBUTES"), "little")
    out: dict[str, object] = {
        name: bool(value >> bit & 1) for name, bit in TD_ATTRIBUTE_BITS.items()
    }
    out["raw"] = raw.hex()
    out["unknown_bits"] = [
        b for b in range(64) if value >> b & 1 and not _KNOWN_ATTRIBUTE_MASK >> b & 1
    ]
    return out


def encode_td_attributes(**flags: bool) -> bytes:
    """Build the 8-byte TD ATTRIBUTES from named flags, e.g. ``sept_ve_disable=True``."""
    value = 0
    for name, on in flags.items():
        if name not in TD_ATTRIBUTE_BITS:
            raise ValueError(
                f"unknown TD attribute {name!r}; known: {', '.join(TD_ATTRIBUTE_BITS)}"
            )
        if on:
            value |= 1 << TD_ATTRIBUTE_BITS[name]
    return value.to_bytes(8, "little")


def tee_tcb_valid(*, mrsignerseam: bool, seam_attributes: bool, tee_tcb_svn2: bool) -> bytes:
    """TEE_TCB_INFO.VALID: bit i set when the 8 bytes at offset 8*i of TEE_TCB_INFO are valid.

    This reading matches the real Azure TDREPORT in shared/vectors (VALID ff01030000000000:
    VALID, TEE_TCB_SVN and MRSEAM, i.e. chunks 0-8, plus TEE_TCB_SVN2, chunks 16-17; its
    MRSIGNERSEAM and ATTRIBUTES are zero and not marked valid).
    """
    bits = sum(1 << i for i in range(9))  # VALID, TEE_TCB_SVN, MRSEAM
    if mrsignerseam:
        bits |= sum(1 << i for i in range(9, 15))
    if seam_attributes:
        bits |= 1 << 15
    if tee_tcb_svn2:
        bits |= (1 << 16) | (1 << 17)
    return bits.to_bytes(8, "little")


@dataclass(frozen=True)
class ReportType:
    """REPORTTYPE (4 bytes): TEE type (0x81 = TDX), subtype, version, reserved."""

    type: int = REPORT_TYPE_TDX
    subtype: int = 0
    version: int = 0  # 0: no SERVTD_HASH; 1: SERVTD_HASH bound (TDX 1.5)
    reserved: int = 0

    def to_bytes(self) -> bytes:
        return bytes((self.type, self.subtype, self.version, self.reserved))

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportType:
        _need(data, 4, "REPORTTYPE")
        return cls(data[0], data[1], data[2], data[3])


@dataclass(frozen=True)
class ReportMacStruct:
    """REPORTMACSTRUCT: the first 256 bytes, the part the CPU MACs."""

    report_type: ReportType
    cpusvn: bytes
    tee_tcb_info_hash: bytes
    tee_info_hash: bytes
    report_data: bytes
    mac: bytes
    reserved1: bytes = bytes(12)
    reserved2: bytes = bytes(32)

    def to_bytes(self) -> bytes:
        return _MACSTRUCT.pack(
            self.report_type.to_bytes(),
            _need(self.reserved1, 12, "reserved1"),
            _need(self.cpusvn, 16, "CPUSVN"),
            _need(self.tee_tcb_info_hash, 48, "TEE_TCB_INFO_HASH"),
            _need(self.tee_info_hash, 48, "TEE_INFO_HASH"),
            _need(self.report_data, 64, "REPORTDATA"),
            _need(self.reserved2, 32, "reserved2"),
            _need(self.mac, 32, "MAC"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportMacStruct:
        rtype, r1, cpusvn, tcb_hash, info_hash, rd, r2, mac = _MACSTRUCT.unpack(
            _need(data, REPORTMACSTRUCT_SIZE, "REPORTMACSTRUCT")
        )
        return cls(ReportType.from_bytes(rtype), cpusvn, tcb_hash, info_hash, rd, mac, r1, r2)


@dataclass(frozen=True)
class TeeTcbInfo:
    """TEE_TCB_INFO (239 bytes at 0x100): the TDX module's identity and SVNs."""

    valid: bytes
    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    attributes: bytes
    tee_tcb_svn2: bytes = bytes(16)
    reserved: bytes = bytes(95)

    def to_bytes(self) -> bytes:
        return _TEE_TCB_INFO.pack(
            _need(self.valid, 8, "VALID"),
            _need(self.tee_tcb_svn, 16, "TEE_TCB_SVN"),
            _need(self.mrseam, 48, "MRSEAM"),
            _need(self.mrsignerseam, 48, "MRSIGNERSEAM"),
            _need(self.attributes, 8, "ATTRIBUTES"),
            _need(self.tee_tcb_svn2, 16, "TEE_TCB_SVN2"),
            _need(self.reserved, 95, "reserved"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TeeTcbInfo:
        return cls(*_TEE_TCB_INFO.unpack(_need(data, TEE_TCB_INFO_SIZE, "TEE_TCB_INFO")))

    def digest(self) -> bytes:
        """SHA-384 of the 239 bytes: what REPORTMACSTRUCT.TEE_TCB_INFO_HASH holds."""
        return hashlib.sha384(self.to_bytes()).digest()


@dataclass(frozen=True)
class TdInfo:
    """TDINFO (512 bytes at 0x200): the TD's own measurements and configuration."""

    attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    servtd_hash: bytes = bytes(48)
    reserved: bytes = bytes(64)

    def to_bytes(self) -> bytes:
        if len(self.rtmrs) != 4:
            raise EvidenceError(f"TDINFO has 4 RTMRs, got {len(self.rtmrs)}")
        return _TDINFO.pack(
            _need(self.attributes, 8, "ATTRIBUTES"),
            _need(self.xfam, 8, "XFAM"),
            _need(self.mrtd, 48, "MRTD"),
            _need(self.mrconfigid, 48, "MRCONFIGID"),
            _need(self.mrowner, 48, "MROWNER"),
            _need(self.mrownerconfig, 48, "MROWNERCONFIG"),
            *(_need(r, 48, f"RTMR{i}") for i, r in enumerate(self.rtmrs)),
            _need(self.servtd_hash, 48, "SERVTD_HASH"),
            _need(self.reserved, 64, "reserved"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TdInfo:
        f = _TDINFO.unpack(_need(data, TDINFO_SIZE, "TDINFO"))
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], (f[6], f[7], f[8], f[9]), f[10], f[11])

    def digest(self) -> bytes:
        """SHA-384 of the 512 bytes: what REPORTMACSTRUCT.TEE_INFO_HASH holds."""
        return hashlib.sha384(self.to_bytes()).digest()

    @property
    def decoded_attributes(self) -> dict[str, object]:
        return decode_td_attributes(self.attributes)


@dataclass(frozen=True)
class TdReport:
    """A whole TDREPORT_STRUCT; ``from_bytes(to_bytes())`` is bit-exact."""

    mac_struct: ReportMacStruct
    tee_tcb_info: TeeTcbInfo
    td_info: TdInfo
    reserved: bytes = field(default=bytes(17))

    def to_bytes(self) -> bytes:
        return (
            self.mac_struct.to_bytes()
            + self.tee_tcb_info.to_bytes()
            + _need(self.reserved, 17, "reserved")
            + self.td_info.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = True) -> TdReport:
        """Parse 1024 bytes. ``strict`` also requires REPORTTYPE.TYPE == 0x81 (TDX).

        Raises :class:`EvidenceError` naming the first problem.
        """
        if len(data) != TDREPORT_SIZE:
            raise EvidenceError(f"a TDREPORT is {TDREPORT_SIZE} bytes, got {len(data)}")
        report = cls(
            ReportMacStruct.from_bytes(data[:REPORTMACSTRUCT_SIZE]),
            TeeTcbInfo.from_bytes(
                data[TEE_TCB_INFO_OFFSET : TEE_TCB_INFO_OFFSET + TEE_TCB_INFO_SIZE]
            ),
            TdInfo.from_bytes(data[TDINFO_OFFSET : TDINFO_OFFSET + TDINFO_SIZE]),
            data[TEE_TCB_INFO_OFFSET + TEE_TCB_INFO_SIZE : TDINFO_OFFSET],
        )
        if strict and report.mac_struct.report_type.type != REPORT_TYPE_TDX:
            raise EvidenceError(report.type_problem() or "bad REPORTTYPE")
        return report

    @classmethod
    def build(
        cls,
        *,
        report_data: bytes = bytes(64),
        mrtd: bytes = bytes(48),
        rtmrs: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4,
        attributes: bytes = bytes(8),
        xfam: bytes = bytes(8),
        mrconfigid: bytes = bytes(48),
        mrowner: bytes = bytes(48),
        mrownerconfig: bytes = bytes(48),
        servtd_hash: bytes = bytes(48),
        tee_tcb_svn: bytes = bytes(16),
        tee_tcb_svn2: bytes = bytes(16),
        mrseam: bytes = bytes(48),
        mrsignerseam: bytes = bytes(48),
        seam_attributes: bytes = bytes(8),
        cpusvn: bytes = bytes(16),
        report_version: int = 0,
        mac: bytes = bytes(32),
    ) -> TdReport:
        """Assemble a TDREPORT with correct TEE_TCB_INFO_HASH and TEE_INFO_HASH.

        The MAC is taken as given (see :mod:`cocopart_tdx.simroots` for a keyed one).
        VALID gets one bit per valid 8-byte chunk of TEE_TCB_INFO (see :func:`tee_tcb_valid`).
        """
        valid = tee_tcb_valid(
            mrsignerseam=any(mrsignerseam),
            seam_attributes=any(seam_attributes),
            tee_tcb_svn2=any(tee_tcb_svn2),
        )
        tcb = TeeTcbInfo(valid, tee_tcb_svn, mrseam, mrsignerseam, seam_attributes, tee_tcb_svn2)
        info = TdInfo(
            attributes, xfam, mrtd, mrconfigid, mrowner, mrownerconfig, rtmrs, servtd_hash
        )
        macs = ReportMacStruct(
            ReportType(version=report_version),
            cpusvn,
            tcb.digest(),
            info.digest(),
            _need(report_data, 64, "REPORTDATA"),
            mac,
        )
        return cls(macs, tcb, info)

    def with_mac(self, mac: bytes) -> TdReport:
        """The same report with another MAC value."""
        ms = self.mac_struct
        new = ReportMacStruct(
            ms.report_type,
            ms.cpusvn,
            ms.tee_tcb_info_hash,
            ms.tee_info_hash,
            ms.report_data,
            _need(mac, 32, "MAC"),
            ms.reserved1,
            ms.reserved2,
        )
        return TdReport(new, self.tee_tcb_info, self.td_info, self.reserved)

    @property
    def mac_input(self) -> bytes:
        """The bytes the MAC covers: REPORTMACSTRUCT without its MAC field."""
        return self.mac_struct.to_bytes()[:MAC_OFFSET]

    @property
    def report_data(self) -> bytes:
        return self.mac_struct.report_data

    def type_problem(self) -> str | None:
        """Why REPORTTYPE is not a TDX report, or None when it is."""
        rt = self.mac_struct.report_type
        if rt.type != REPORT_TYPE_TDX:
            return (
                f"REPORTTYPE.TYPE is {rt.type:#04x}, not {REPORT_TYPE_TDX:#04x} (TDX): this is "
                "not a TDREPORT (misaligned or another TEE's report)"
            )
        return None

    def hash_problems(self) -> list[str]:
        """Every mismatch between the stored hashes and the structures they cover."""
        problems = []
        if self.tee_tcb_info.digest() != self.mac_struct.tee_tcb_info_hash:
            problems.append(
                "TEE_TCB_INFO_HASH is not SHA-384 of the 239-byte TEE_TCB_INFO at 0x100"
            )
        if self.td_info.digest() != self.mac_struct.tee_info_hash:
            problems.append("TEE_INFO_HASH is not SHA-384 of the 512-byte TDINFO at 0x200")
        return problems
