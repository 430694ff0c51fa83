"""SEV-SNP ATTESTATION_REPORT (0x4A0 bytes) and the MSG_REPORT_REQ / MSG_REPORT_RSP payloads.

Facts: ``shared/reference/sev-snp.md`` §6.2 (request/response, CS ``pld_report.rs``) and §6.3
(report layout, GSG ``abi.go``; policy bits GSG; TCB_VERSION layouts GSG ``kds.go`` for
Milan/Genoa and VS ``host/types/snp.rs`` for Turin). Everything is little-endian.

:class:`SnpReport` keeps every field as the raw value the report carries (reserved areas
included), so ``parse(build(x)) == x`` and ``build(parse(b)) == b`` hold bit for bit; the
decoded views (:meth:`SnpReport.policy_bits`, :meth:`SnpReport.tcb`, ...) are derived on
demand. Report versions 2, 3 and 5 are supported (the versions seen in the real vectors).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from cocopart.spi import EvidenceError, build_unchecked

# --- layout constants (sev-snp.md §6.3) --------------------------------------------------

REPORT_SIZE = 0x4A0
#: The signature covers bytes 0x000..0x29F (sev-snp.md §6.3).
SIGNED_LENGTH = 0x2A0
SIGNATURE_R_OFFSET = 0x2A0
SIGNATURE_S_OFFSET = 0x2E8
#: R and S are 72-byte little-endian fields (sev-snp.md §6.3).
SIGNATURE_FIELD_SIZE = 72
#: signature_algo 1 = ECDSA P-384 with SHA-384 (sev-snp.md §6.3).
SIG_ALGO_ECDSA_P384_SHA384 = 1
SUPPORTED_VERSIONS = (2, 3, 5)

# One struct for the whole report; offsets in the comments are those of sev-snp.md §6.3.
_REPORT = struct.Struct(
    "<"
    "I"  # 0x000 version
    "I"  # 0x004 guest_svn
    "Q"  # 0x008 policy
    "16s"  # 0x010 family_id
    "16s"  # 0x020 image_id
    "I"  # 0x030 vmpl
    "I"  # 0x034 signature_algo
    "Q"  # 0x038 current_tcb
    "Q"  # 0x040 platform_info
    "I"  # 0x048 signer info
    "4s"  # 0x04C reserved
    "64s"  # 0x050 report_data
    "48s"  # 0x090 measurement
    "32s"  # 0x0C0 host_data
    "48s"  # 0x0E0 id_key_digest
    "48s"  # 0x110 author_key_digest
    "32s"  # 0x140 report_id
    "32s"  # 0x160 report_id_ma
    "Q"  # 0x180 reported_tcb
    "24s"  # 0x188 cpuid fam/mod/step (v3+) + reserved to 0x1A0
    "64s"  # 0x1A0 chip_id
    "Q"  # 0x1E0 committed_tcb
    "4B"  # 0x1E8 current build, minor, major, reserved
    "4B"  # 0x1EC committed build, minor, major, reserved
    "Q"  # 0x1F0 launch_tcb
    "168s"  # 0x1F8 v5: launch_mit_vector, current_mit_vector, reserved; v2/v3: reserved
    "72s"  # 0x2A0 signature R
    "72s"  # 0x2E8 signature S
    "368s"  # 0x330 reserved
)
assert _REPORT.size == REPORT_SIZE

Product = Literal["Milan", "Genoa", "Turin"]
PRODUCTS: tuple[Product, ...] = ("Milan", "Genoa", "Turin")

#: SIGNING_KEY values in the signer-info word (sev-snp.md §6.3).
SIGNING_KEY_NAMES = {0: "VCEK", 1: "VLEK", 7: "none"}

# Guest policy bits (sev-snp.md §6.3, GSG).
_POLICY_FLAGS = {
    "smt": 16,
    "reserved_must_be_one": 17,
    "migrate_ma": 18,
    "debug": 19,
    "single_socket": 20,
    "cxl_allow": 21,
    "mem_aes_256_xts": 22,
    "rapl_dis": 23,
    "ciphertext_hiding_dram": 24,
    "page_swap_disable": 25,
}
POLICY_DEBUG_BIT = 19
_POLICY_MBZ_MASK = ~((1 << 26) - 1) & 0xFFFF_FFFF_FFFF_FFFF

# PLATFORM_INFO bits (sev-snp.md §6.3).
_PLATFORM_FLAGS = {
    "smt_en": 0,
    "tsme_en": 1,
    "ecc_en": 2,
    "rapl_dis": 3,
    "ciphertext_hiding_dram_en": 4,
    "alias_check_complete": 5,
    "tio_en": 7,
}
PLATFORM_FLAG_NAMES = tuple(_PLATFORM_FLAGS)


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The product line of a CPUID family/model, or None when unknown.

    Family 0x1A is Turin (the TCB layout switch, sev-snp.md §6.3 / VS); family 0x19 model
    0x0x is Milan and 0x1x Genoa (vectors: Milan 19h/01h, Genoa 19h/11h, Turin 1Ah/02h;
    sev-snp-measure ``CPU_SIGS``: EPYC-Milan 25/1, EPYC-Genoa 25/17, EPYC-Turin 26/0).
    """
    if family == 0x1A:
        return "Turin"
    if family == 0x19:
        if model < 0x10:
            return "Milan"
        if model < 0x20 or 0xA0 <= model < 0xB0:
            return "Genoa"
    return None


@dataclass(frozen=True)
class TcbVersion:
    """A decoded TCB_VERSION (8 bytes, sev-snp.md §6.3).

    Milan/Genoa: byte0 bootloader, 1 TEE, 6 SNP, 7 microcode (GSG ``kds.go``).
    Turin: byte0 FMC, 1 bootloader, 2 TEE, 3 SNP, 7 microcode (VS ``host/types/snp.rs``).
    """

    raw: int
    turin_layout: bool
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: Product | None = None) -> TcbVersion:
        """Decode ``raw`` with the layout of ``product`` (Milan/Genoa layout when None)."""
        if product == "Turin":
            return cls(
                raw,
                True,
                raw >> 8 & 0xFF,
                raw >> 16 & 0xFF,
                raw >> 24 & 0xFF,
                raw >> 56 & 0xFF,
                raw & 0xFF,
            )
        return cls(raw, False, raw & 0xFF, raw >> 8 & 0xFF, raw >> 48 & 0xFF, raw >> 56 & 0xFF)

    @staticmethod
    def encode(
        *,
        bootloader: int,
        tee: int,
        snp: int,
        microcode: int,
        fmc: int | None = None,
        product: Product | None = None,
    ) -> int:
        """The raw u64 for these components in ``product``'s layout."""
        b = bytearray(8)
        if product == "Turin":
            b[0], b[1], b[2], b[3], b[7] = fmc or 0, bootloader, tee, snp, microcode
        else:
            if fmc:
                raise EvidenceError("only the Turin TCB layout has an FMC component")
            b[0], b[1], b[6], b[7] = bootloader, tee, snp, microcode
        return int.from_bytes(b, "little")

    def components(self) -> dict[str, int]:
        """Components by cocopart's neutral names ("fmc" only on Turin)."""
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


def _bits(value: int, names: dict[str, int]) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for name, bit in names.items()}


def decode_policy(policy: int) -> dict[str, Any]:
    """The guest policy word as named fields (sev-snp.md §6.3, GSG)."""
    out: dict[str, Any] = {
        "raw": policy,
        "abi_minor": policy & 0xFF,
        "abi_major": policy >> 8 & 0xFF,
    }
    out.update(_bits(policy, _POLICY_FLAGS))
    out["mbz_clear"] = policy & _POLICY_MBZ_MASK == 0
    return out


def decode_platform_info(info: int) -> dict[str, Any]:
    """PLATFORM_INFO as named flags (sev-snp.md §6.3)."""
    out: dict[str, Any] = {"raw": info}
    out.update(_bits(info, _PLATFORM_FLAGS))
    return out


def decode_signer_info(info: int) -> dict[str, Any]:
    """The signer-info word at 0x48: AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY (§6.3)."""
    key = info >> 2 & 0x7
    return {
        "raw": info,
        "author_key_en": bool(info & 1),
        "mask_chip_key": bool(info >> 1 & 1),
        "signing_key": key,
        "signing_key_name": SIGNING_KEY_NAMES.get(key, f"reserved({key})"),
        "mbz_clear": info >> 5 == 0,
    }


def _zeros(n: int) -> bytes:
    return bytes(n)


# Fixed sizes of the bytes fields (sev-snp.md §6.3).
_BYTES_SIZES = {
    "family_id": 16,
    "image_id": 16,
    "report_data": 64,
    "measurement": 48,
    "host_data": 32,
    "id_key_digest": 48,
    "author_key_digest": 48,
    "report_id": 32,
    "report_id_ma": 32,
    "chip_id": 64,
    "reserved_04c": 4,
    "reserved_330": 368,
}


def _reserved_sizes(version: int) -> tuple[int, int]:
    """Sizes of the version-dependent reserved areas (after cpuid, after launch_tcb)."""
    if version == 2:
        return 24, 0xA8  # 0x188..0x1A0 and 0x1F8..0x2A0 reserved
    if version == 3:
        return 21, 0xA8  # 0x18B..0x1A0 and 0x1F8..0x2A0 reserved
    return 21, 0x98  # v5: 0x18B..0x1A0 and 0x208..0x2A0 reserved


class SnpReport(BaseModel):
    """One ATTESTATION_REPORT with every field of sev-snp.md §6.3 as its raw value.

    ``cpuid_*`` are None on version 2 (the bytes are reserved there); the mitigation vectors
    are None before version 5. ``reserved_*`` hold the reserved areas so that a report
    survives a round trip bit for bit; they default to zeros of the right size.
    ``signature_r``/``signature_s`` are the integers of the 72-byte little-endian fields.
    """

    # defer_build: verifying a report never validates this model (parse builds it from
    # values it checked itself), so its schema is built only when something validates one
    model_config = ConfigDict(
        frozen=True, ser_json_bytes="hex", val_json_bytes="hex", defer_build=True
    )

    version: int
    guest_svn: int = 0
    policy: int = 0x30000
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    signature_algo: int = SIG_ALGO_ECDSA_P384_SHA384
    current_tcb: int = 0
    platform_info: int = 0
    signer_info: int = 0
    reserved_04c: bytes = bytes(4)
    report_data: bytes = bytes(64)
    measurement: bytes = bytes(48)
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(32)
    report_id_ma: bytes = bytes(32)
    reported_tcb: int = 0
    cpuid_fam_id: int | None = None
    cpuid_mod_id: int | None = None
    cpuid_step: int | None = None
    reserved_cpuid: bytes = b""
    chip_id: bytes = bytes(64)
    committed_tcb: int = 0
    current_build: int = 0
    current_minor: int = 0
    current_major: int = 0
    reserved_1eb: int = 0
    committed_build: int = 0
    committed_minor: int = 0
    committed_major: int = 0
    reserved_1ef: int = 0
    launch_tcb: int = 0
    launch_mit_vector: int | None = None
    current_mit_vector: int | None = None
    reserved_tail: bytes = b""
    signature_r: int = 0
    signature_s: int = 0
    reserved_330: bytes = bytes(368)

    @model_validator(mode="before")
    @classmethod
    def _fill_version_defaults(cls, data: Any) -> Any:
        """Give the version-dependent reserved areas zeros of the right size by default."""
        if isinstance(data, dict):
            version = data.get("version")
            if isinstance(version, int) and version in SUPPORTED_VERSIONS:
                cpuid_rsvd, tail = _reserved_sizes(version)
                data = dict(data)
                if not data.get("reserved_cpuid"):
                    data["reserved_cpuid"] = bytes(cpuid_rsvd)
                if not data.get("reserved_tail"):
                    data["reserved_tail"] = bytes(tail)
                if version >= 3:
                    for name in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step"):
                        data.setdefault(name, 0)
                if version >= 5:
                    data.setdefault("launch_mit_vector", 0)
                    data.setdefault("current_mit_vector", 0)
        return data

    @model_validator(mode="after")
    def _check_layout(self) -> SnpReport:
        """Reject values that cannot be encoded in this version's layout."""
        if self.version not in SUPPORTED_VERSIONS:
            raise EvidenceError(
                f"SNP report version {self.version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        for name, size in _BYTES_SIZES.items():
            if len(getattr(self, name)) != size:
                raise EvidenceError(f"{name} must be {size} bytes, got {len(getattr(self, name))}")
        cpuid_rsvd, tail = _reserved_sizes(self.version)
        if len(self.reserved_cpuid) != cpuid_rsvd or len(self.reserved_tail) != tail:
            raise EvidenceError(f"reserved areas have the wrong size for version {self.version}")
        has_cpuid = self.cpuid_fam_id is not None
        if has_cpuid != (self.version >= 3):
            raise EvidenceError("cpuid fields exist from report version 3 on, and only there")
        if (self.launch_mit_vector is not None) != (self.version >= 5):
            raise EvidenceError("mitigation vectors exist from report version 5 on, and only there")
        return self

    # --- codec ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> SnpReport:
        """Decode exactly 0x4A0 bytes; raises :class:`EvidenceError` for a wrong size/version."""
        if len(data) != REPORT_SIZE:
            raise EvidenceError(
                f"an SNP attestation report is {REPORT_SIZE:#x} bytes, got {len(data):#x}"
            )
        f = _REPORT.unpack(data)
        version = f[0]
        if version not in SUPPORTED_VERSIONS:
            raise EvidenceError(
                f"SNP report version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        cpuid_area: bytes = f[19]
        tail: bytes = f[31]
        values: dict[str, Any] = {
            "version": version,
            "guest_svn": f[1],
            "policy": f[2],
            "family_id": f[3],
            "image_id": f[4],
            "vmpl": f[5],
            "signature_algo": f[6],
            "current_tcb": f[7],
            "platform_info": f[8],
            "signer_info": f[9],
            "reserved_04c": f[10],
            "report_data": f[11],
            "measurement": f[12],
            "host_data": f[13],
            "id_key_digest": f[14],
            "author_key_digest": f[15],
            "report_id": f[16],
            "report_id_ma": f[17],
            "reported_tcb": f[18],
            "chip_id": f[20],
            "committed_tcb": f[21],
            "current_build": f[22],
            "current_minor": f[23],
            "current_major": f[24],
            "reserved_1eb": f[25],
            "committed_build": f[26],
            "committed_minor": f[27],
            "committed_major": f[28],
            "reserved_1ef": f[29],
            "launch_tcb": f[30],
            "signature_r": int.from_bytes(f[32], "little"),
            "signature_s": int.from_bytes(f[33], "little"),
            "reserved_330": f[34],
            "cpuid_fam_id": None,
            "cpuid_mod_id": None,
            "cpuid_step": None,
            "launch_mit_vector": None,
            "current_mit_vector": None,
        }
        if version >= 3:
            values.update(
                cpuid_fam_id=cpuid_area[0],
                cpuid_mod_id=cpuid_area[1],
                cpuid_step=cpuid_area[2],
                reserved_cpuid=cpuid_area[3:],
            )
        else:
            values["reserved_cpuid"] = cpuid_area
        if version >= 5:
            values.update(
                launch_mit_vector=int.from_bytes(tail[0:8], "little"),
                current_mit_vector=int.from_bytes(tail[8:16], "little"),
                reserved_tail=tail[16:],
            )
        else:
            values["reserved_tail"] = tail
        # Every value above has the size the layout gives it: skip re-validation (hot path).
        return build_unchecked(cls, values)

    def build(self) -> bytes:
        """Encode to the 0x4A0-byte wire form."""
        if self.version >= 3:
            cpuid_area = (
                bytes((self.cpuid_fam_id or 0, self.cpuid_mod_id or 0, self.cpuid_step or 0))
                + self.reserved_cpuid
            )
        else:
            cpuid_area = self.reserved_cpuid
        if self.version >= 5:
            tail = (
                (self.launch_mit_vector or 0).to_bytes(8, "little")
                + (self.current_mit_vector or 0).to_bytes(8, "little")
                + self.reserved_tail
            )
        else:
            tail = self.reserved_tail
        try:
            return _REPORT.pack(
                self.version,
                self.guest_svn,
                self.policy,
                self.family_id,
                self.image_id,
                self.vmpl,
                self.signature_algo,
                self.current_tcb,
                self.platform_info,
                self.signer_info,
                self.reserved_04c,
                self.report_data,
                self.measurement,
                self.host_data,
                self.id_key_digest,
                self.author_key_digest,
                self.report_id,
                self.report_id_ma,
                self.reported_tcb,
                cpuid_area,
                self.chip_id,
                self.committed_tcb,
                self.current_build,
                self.current_minor,
                self.current_major,
                self.reserved_1eb,
                self.committed_build,
                self.committed_minor,
                self.committed_major,
                self.reserved_1ef,
                self.launch_tcb,
                tail,
                self.signature_r.to_bytes(SIGNATURE_FIELD_SIZE, "little"),
                self.signature_s.to_bytes(SIGNATURE_FIELD_SIZE, "little"),
                self.reserved_330,
            )
        except (struct.error, OverflowError) as exc:
            raise EvidenceError(f"SNP report field out of range: {exc}") from exc

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers (0x000..0x29F)."""
        return self.build()[:SIGNED_LENGTH]

    # --- decoded views -------------------------------------------------------------------

    @property
    def product(self) -> Product | None:
        """The product line from the CPUID fields (None on version 2 or when unknown)."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def debug(self) -> bool:
        """Policy bit 19, DEBUG (sev-snp.md §6.3)."""
        return bool(self.policy >> POLICY_DEBUG_BIT & 1)

    def policy_bits(self) -> dict[str, Any]:
        return decode_policy(self.policy)

    def platform_bits(self) -> dict[str, Any]:
        return decode_platform_info(self.platform_info)

    def signer(self) -> dict[str, Any]:
        return decode_signer_info(self.signer_info)

    @property
    def signing_key(self) -> int:
        """SIGNING_KEY (bits 4:2 of the signer info): 0 VCEK, 1 VLEK, 7 none."""
        return self.signer_info >> 2 & 0x7

    def tcb(self, which: str = "reported", product: Product | None = None) -> TcbVersion:
        """Decode one of the TCB_VERSION fields: reported, current, committed or launch.

        ``product`` defaults to the one from CPUID; version-2 reports carry none and
        decode with the Milan/Genoa layout unless the caller says otherwise (the product
        then comes from the certificate).
        """
        raw = {
            "reported": self.reported_tcb,
            "current": self.current_tcb,
            "committed": self.committed_tcb,
            "launch": self.launch_tcb,
        }[which]
        return TcbVersion.decode(raw, product or self.product)

    def to_dict(self, product: Product | None = None) -> dict[str, Any]:
        """Every field plus the decoded views, JSON-serialisable (bytes as hex)."""
        out = self.model_dump(mode="json")
        prod = product or self.product
        out["product"] = prod
        out["policy_decoded"] = self.policy_bits()
        out["platform_info_decoded"] = self.platform_bits()
        out["signer_info_decoded"] = self.signer()
        for which in ("current", "reported", "committed", "launch"):
            tcb = self.tcb(which, prod)
            out[f"{which}_tcb_decoded"] = {"raw": tcb.raw, **tcb.components()}
        out["current_version"] = f"{self.current_major}.{self.current_minor}.{self.current_build}"
        out["committed_version"] = (
            f"{self.committed_major}.{self.committed_minor}.{self.committed_build}"
        )
        return out


def parse_report(data: bytes) -> SnpReport:
    """Shorthand for :meth:`SnpReport.parse`."""
    return SnpReport.parse(data)


def build_report(report: SnpReport) -> bytes:
    """Shorthand for :meth:`SnpReport.build`."""
    return report.build()


# --- MSG_REPORT_REQ / MSG_REPORT_RSP (sev-snp.md §6.2, CS pld_report.rs) ----------------

REPORT_REQ_SIZE = 0x60
REPORT_RSP_HEADER_SIZE = 0x20
_REPORT_REQ = struct.Struct("<64sII24s")  # user_data, vmpl, flags, reserved
_REPORT_RSP = struct.Struct("<II24s")  # status, report_size, reserved
assert _REPORT_REQ.size == REPORT_REQ_SIZE and _REPORT_RSP.size == REPORT_RSP_HEADER_SIZE

#: MSG_REPORT_REQ flags bits 1:0 KEY_SEL (sev-snp.md §6.2).
KEY_SEL_DEFAULT = 0  # VLEK if installed, else VCEK
KEY_SEL_VCEK = 1
KEY_SEL_VLEK = 2
#: MSG_REPORT_RSP status codes (sev-snp.md §6.2).
RSP_STATUS_SUCCESS = 0x00
RSP_STATUS_INVALID_PARAM = 0x16
RSP_STATUS_INVALID_KEY = 0x27


class ReportRequest(BaseModel):
    """MSG_REPORT_REQ (96 bytes): user_data → REPORT_DATA, the VMPL to report, KEY_SEL."""

    model_config = ConfigDict(
        frozen=True, ser_json_bytes="hex", val_json_bytes="hex", defer_build=True
    )

    user_data: bytes = bytes(64)
    vmpl: int = 0
    flags: int = 0
    reserved: bytes = bytes(24)

    @property
    def key_sel(self) -> int:
        return self.flags & 0x3

    def encode(self) -> bytes:
        if len(self.user_data) > 64:
            raise EvidenceError(
                f"MSG_REPORT_REQ user_data is at most 64 bytes, got {len(self.user_data)}"
            )
        if len(self.reserved) != 24:
            raise EvidenceError("MSG_REPORT_REQ reserved area is 24 bytes")
        try:
            return _REPORT_REQ.pack(
                self.user_data.ljust(64, b"\0"), self.vmpl, self.flags, self.reserved
            )
        except struct.error as exc:
            raise EvidenceError(f"MSG_REPORT_REQ field out of range: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes) -> ReportRequest:
        if len(data) != REPORT_REQ_SIZE:
            raise EvidenceError(f"MSG_REPORT_REQ is {REPORT_REQ_SIZE} bytes, got {len(data)}")
        user_data, vmpl, flags, reserved = _REPORT_REQ.unpack(data)
        return cls(user_data=user_data, vmpl=vmpl, flags=flags, reserved=reserved)


class ReportResponse(BaseModel):
    """MSG_REPORT_RSP: status, report_size, reserved, then the report (normally 0x4A0)."""

    model_config = ConfigDict(
        frozen=True, ser_json_bytes="hex", val_json_bytes="hex", defer_build=True
    )

    status: int = RSP_STATUS_SUCCESS
    report: bytes = b""
    reserved: bytes = bytes(24)

    def encode(self) -> bytes:
        if len(self.reserved) != 24:
            raise EvidenceError("MSG_REPORT_RSP reserved area is 24 bytes")
        try:
            return _REPORT_RSP.pack(self.status, len(self.report), self.reserved) + self.report
        except struct.error as exc:
            raise EvidenceError(f"MSG_REPORT_RSP field out of range: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes) -> ReportResponse:
        """Decode a response; bytes past ``report_size`` (page padding) are ignored."""
        if len(data) < REPORT_RSP_HEADER_SIZE:
            raise EvidenceError(
                f"MSG_REPORT_RSP is at least {REPORT_RSP_HEADER_SIZE} bytes, got {len(data)}"
            )
        status, size, reserved = _REPORT_RSP.unpack_from(data)
        if REPORT_RSP_HEADER_SIZE + size > len(data):
            raise EvidenceError(
                f"MSG_REPORT_RSP says report_size {size:#x} but carries "
                f"{len(data) - REPORT_RSP_HEADER_SIZE:#x} bytes"
            )
        report = data[REPORT_RSP_HEADER_SIZE : REPORT_RSP_HEADER_SIZE + size]
        return cls(status=status, report=report, reserved=reserved)

    def parsed_report(self) -> SnpReport:
        """The carried report, parsed; raises :class:`EvidenceError` when status is not 0."""
        if self.status != RSP_STATUS_SUCCESS:
            raise EvidenceError(f"MSG_REPORT_RSP status {self.status:#x} carries no report")
        return SnpReport.parse(self.report)
