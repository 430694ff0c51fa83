"""SNP launch digest (MEASUREMENT) of an initial guest image, computed offline.

The AMD-SP folds every page given to SNP_LAUNCH_UPDATE into a running SHA-384 digest:
``digest = SHA-384(PAGE_INFO)`` where PAGE_INFO (0x70 bytes, SNP ABI spec 56860 §8.17.2
Table 67, as cited by sev-snp-measure ``gctx.py``) is::

    0x00 48  DIGEST_CUR   the digest so far (48 zero bytes at launch start)
    0x30 48  CONTENTS     SHA-384 of the page for NORMAL and VMSA pages, else zero
    0x60  2  LENGTH       0x70
    0x62  1  PAGE_TYPE    1 NORMAL, 2 VMSA, 3 ZERO, 4 UNMEASURED, 5 SECRETS, 6 CPUID
    0x63  1  IMI_PAGE     0
    0x64  3  VMPL3/2/1_PERMS  0
    0x67  1  reserved
    0x68  8  GPA          VMSA pages use 0xFFFFFFFFF000 (sev-snp-measure ``GCTX.VMSA_GPA``)

What QEMU gives to SNP_LAUNCH_UPDATE (facts learned from sev-snp-measure 0.0.13 and edk2
``OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm``; the code here is our own):

1. the OVMF image as NORMAL pages, mapped to end at 4 GiB;
2. for each section of the OVMF SEV metadata ("ASEV", found through the GUIDed footer
   table): SNP_SEC_MEM -> ZERO pages (UNMEASURED on GCE), SNP_SECRETS -> one SECRETS page,
   CPUID -> one CPUID page (on EC2 after all other sections), SVSM_CAA -> ZERO pages,
   SNP_KERNEL_HASHES -> one NORMAL page holding the kernel/initrd/cmdline hash table, or a
   ZERO page without a kernel;
3. one VMSA page per vCPU: the BSP starts at the reset vector 0xFFFFFFF0, the APs at the
   SEV-ES reset block's EIP.

With an SVSM (sev-snp-measure ``snp:svsm``, QEMU): OVMF as NORMAL pages, the SVSM image as
NORMAL pages placed below OVMF and its variable store, the SVSM's own metadata sections,
and one VMSA per vCPU, all starting at the SVSM entry point (SVSM_INFO + image base).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from cocopart.spi import ConfigError

PAGE_SIZE = 0x1000
FOUR_GIB = 1 << 32
DIGEST_SIZE = 48
#: GPA recorded for VMSA pages (sev-snp-measure GCTX.VMSA_GPA: -1 page-aligned, bits 63:52 clear).
VMSA_GPA = 0xFFFFFFFFF000
PAGE_INFO_LENGTH = 0x70
_PAGE_INFO_TAIL = struct.Struct("<HBBBBBBQ")  # length, type, imi, vmpl3/2/1 perms, rsvd, gpa


class PageType(IntEnum):
    """SNP_LAUNCH_UPDATE page types (SNP ABI Table 67 via sev-snp-measure gctx.py)."""

    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6


class SectionType(IntEnum):
    """OVMF SEV metadata section types (edk2 OvmfSevMetadata.asm; SVSM_CAA from sev-snp-measure)."""

    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


# GUIDs of the OVMF footer table and its entries (edk2 ResetVector, QEMU target/i386/sev.c).
OVMF_TABLE_FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_HASH_TABLE_RV_GUID = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_ES_RESET_BLOCK_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
OVMF_SEV_METADATA_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
SVSM_INFO_GUID = uuid.UUID("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")
# Kernel hash table GUIDs (QEMU target/i386/sev.c).
SEV_HASH_TABLE_HEADER_GUID = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
SEV_KERNEL_ENTRY_GUID = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
SEV_INITRD_ENTRY_GUID = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
SEV_CMDLINE_ENTRY_GUID = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")

VMM_TYPES = ("qemu", "ec2", "gce")
BSP_EIP = 0xFFFFFFF0


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """CPUID Fn0000_0001_EAX for a family/model/stepping (AMD CPUID spec 25481): extended
    family above 0xF, extended model in bits 19:16."""
    base_family, ext_family = (0xF, family - 0xF) if family > 0xF else (family, 0)
    return (
        ((ext_family & 0xFF) << 20)
        | ((model >> 4 & 0xF) << 16)
        | (base_family << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
    )


#: QEMU CPU model names -> (family, model, stepping), as sev-snp-measure knows them.
VCPU_TYPES: dict[str, tuple[int, int, int]] = {
    **{
        name: (23, 1, 2)
        for name in ("EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4")
    },
    **{name: (23, 49, 0) for name in ("EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3")},
    **{name: (25, 1, 1) for name in ("EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2")},
    **{name: (25, 17, 0) for name in ("EPYC-Genoa", "EPYC-Genoa-v1")},
    "EPYC-Turin": (26, 0, 0),
}


def vcpu_signature(vcpu_type: str) -> int:
    """The CPUID signature of a QEMU CPU model name (e.g. "EPYC-Milan")."""
    try:
        return cpu_signature(*VCPU_TYPES[vcpu_type])
    except KeyError:
        raise ConfigError(
            f"unknown vCPU type {vcpu_type!r} (known: {', '.join(VCPU_TYPES)})", field="vcpu_type"
        ) from None


# --- the running digest -------------------------------------------------------------------


@dataclass
class LaunchDigest:
    """The AMD-SP's running launch digest, fed page by page."""

    value: bytes = bytes(DIGEST_SIZE)
    pages: int = 0

    def update(self, page_type: PageType, gpa: int, contents: bytes = bytes(DIGEST_SIZE)) -> None:
        """Fold one PAGE_INFO in: ``contents`` is the page's SHA-384 (zero for ZERO etc.)."""
        tail = _PAGE_INFO_TAIL.pack(PAGE_INFO_LENGTH, page_type, 0, 0, 0, 0, 0, gpa)
        self.value = hashlib.sha384(self.value + contents + tail).digest()
        self.pages += 1

    def add_normal(self, gpa: int, data: bytes) -> None:
        """NORMAL pages with contents, one PAGE_INFO per 4 KiB."""
        if len(data) % PAGE_SIZE:
            raise ConfigError(f"measured data is {len(data)} bytes, not a multiple of 4 KiB")
        for off in range(0, len(data), PAGE_SIZE):
            self.update(
                PageType.NORMAL, gpa + off, hashlib.sha384(data[off : off + PAGE_SIZE]).digest()
            )

    def add_empty(self, page_type: PageType, gpa: int, length: int) -> None:
        """Pages without contents (ZERO, UNMEASURED, SECRETS, CPUID) over ``length`` bytes."""
        if length % PAGE_SIZE:
            raise ConfigError(f"{page_type.name} range of {length} bytes is not page-sized")
        for off in range(0, length, PAGE_SIZE):
            self.update(page_type, gpa + off)

    def add_vmsa(self, vmsa: bytes) -> None:
        """One VMSA page (recorded at :data:`VMSA_GPA`)."""
        if len(vmsa) != PAGE_SIZE:
            raise ConfigError("a VMSA is one 4 KiB page")
        self.update(PageType.VMSA, VMSA_GPA, hashlib.sha384(vmsa).digest())


# --- firmware images ----------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataSection:
    """One SEV metadata section: gpa, size and type (12 bytes in the image)."""

    gpa: int
    size: int
    type: SectionType


@dataclass(frozen=True)
class FirmwareImage:
    """An OVMF (or COCONUT-SVSM) image with its GUIDed footer table and SEV metadata."""

    data: bytes
    gpa: int
    table: dict[uuid.UUID, bytes] = field(default_factory=dict)
    sections: tuple[MetadataSection, ...] = ()

    @classmethod
    def load(cls, image: bytes | Path, end: int = FOUR_GIB) -> FirmwareImage:
        """Parse ``image`` (bytes or a file) mapped so that it ends at guest address ``end``."""
        data = image.read_bytes() if isinstance(image, Path) else bytes(image)
        if not data or len(data) % PAGE_SIZE:
            raise ConfigError(f"firmware image is {len(data)} bytes, not whole 4 KiB pages")
        table = _footer_table(data)
        return cls(data=data, gpa=end - len(data), table=table, sections=_sev_metadata(data, table))

    def entry_u32(self, guid: uuid.UUID) -> int | None:
        """The first u32 of a footer-table entry (None when the entry is absent)."""
        entry = self.table.get(guid)
        return int.from_bytes(entry[:4], "little") if entry is not None else None

    @property
    def ap_reset_eip(self) -> int | None:
        """The SEV-ES reset block EIP where APs start (OVMF)."""
        return self.entry_u32(SEV_ES_RESET_BLOCK_GUID)

    @property
    def hashes_table_gpa(self) -> int | None:
        return self.entry_u32(SEV_HASH_TABLE_RV_GUID)

    def has_section(self, kind: SectionType) -> bool:
        return any(s.type == kind for s in self.sections)


_FOOTER_ENTRY = struct.Struct("<H16s")  # size (including this header), GUID (little-endian)
_METADATA_HEADER = struct.Struct("<4sIII")  # "ASEV", size, version, item count
_METADATA_ITEM = struct.Struct("<III")  # gpa, size, type


def _footer_table(data: bytes) -> dict[uuid.UUID, bytes]:
    """The OVMF GUIDed footer table: it ends 32 bytes before the end of the image, each entry
    is ``data || u16 size || GUID`` read backwards from the footer entry."""
    footer_at = len(data) - 32 - _FOOTER_ENTRY.size
    if footer_at < 0:
        return {}
    size, guid = _FOOTER_ENTRY.unpack_from(data, footer_at)
    if uuid.UUID(bytes_le=guid) != OVMF_TABLE_FOOTER_GUID or size < _FOOTER_ENTRY.size:
        return {}
    table = data[max(0, footer_at - (size - _FOOTER_ENTRY.size)) : footer_at]
    entries: dict[uuid.UUID, bytes] = {}
    while len(table) >= _FOOTER_ENTRY.size:
        size, guid = _FOOTER_ENTRY.unpack_from(table, len(table) - _FOOTER_ENTRY.size)
        if size < _FOOTER_ENTRY.size or size > len(table):
            raise ConfigError("firmware footer table has an entry of invalid size")
        entries[uuid.UUID(bytes_le=guid)] = table[len(table) - size : -_FOOTER_ENTRY.size]
        table = table[: len(table) - size]
    return entries


def _sev_metadata(data: bytes, table: dict[uuid.UUID, bytes]) -> tuple[MetadataSection, ...]:
    entry = table.get(OVMF_SEV_METADATA_GUID)
    if entry is None:
        return ()
    start = len(data) - int.from_bytes(entry[:4], "little")
    if start < 0 or start + _METADATA_HEADER.size > len(data):
        raise ConfigError("SEV metadata offset points outside the firmware image")
    magic, _size, version, count = _METADATA_HEADER.unpack_from(data, start)
    if magic != b"ASEV" or version != 1:
        raise ConfigError(
            f"SEV metadata has signature {magic!r} version {version}, expected 'ASEV' version 1"
        )
    out = []
    for i in range(count):
        gpa, size, kind = _METADATA_ITEM.unpack_from(
            data, start + _METADATA_HEADER.size + i * _METADATA_ITEM.size
        )
        try:
            out.append(MetadataSection(gpa, size, SectionType(kind)))
        except ValueError:
            raise ConfigError(f"unknown SEV metadata section type {kind:#x}") from None
    return tuple(out)


# --- kernel hashes (QEMU's SEV hash table) ------------------------------------------------


def kernel_hashes_table(kernel: bytes, initrd: bytes = b"", cmdline: str = "") -> bytes:
    """QEMU's padded SEV hash table: header {GUID, u16 length} then the cmdline, initrd and
    kernel entries {GUID, u16 length, SHA-256}, padded to 16 bytes. The command line is
    hashed with its NUL terminator."""
    entry = struct.Struct("<16sH32s")
    entries = b"".join(
        entry.pack(g.bytes_le, entry.size, hashlib.sha256(blob).digest())
        for g, blob in (
            (SEV_CMDLINE_ENTRY_GUID, cmdline.encode() + b"\0"),
            (SEV_INITRD_ENTRY_GUID, initrd),
            (SEV_KERNEL_ENTRY_GUID, kernel),
        )
    )
    length = 18 + len(entries)
    table = SEV_HASH_TABLE_HEADER_GUID.bytes_le + struct.pack("<H", length) + entries
    return table + bytes(-len(table) % 16)


# --- VMSA ---------------------------------------------------------------------------------
# Offsets in the 4 KiB VMSA (sev-snp.md §5.6 from CS cpuarch/vmsa.rs for vmpl, EFER, RIP,
# RDX, sev_features, xcr0; the others from the same layout, APM vol. 2 table B-4).
_SEG = {
    "es": 0x00,
    "cs": 0x10,
    "ss": 0x20,
    "ds": 0x30,
    "fs": 0x40,
    "gs": 0x50,
    "gdtr": 0x60,
    "ldtr": 0x70,
    "idtr": 0x80,
    "tr": 0x90,
}
_U64 = {
    "efer": 0xD0,
    "cr4": 0x148,
    "cr0": 0x158,
    "dr7": 0x160,
    "dr6": 0x168,
    "rflags": 0x170,
    "rip": 0x178,
    "g_pat": 0x268,
    "rdx": 0x310,
    "sev_features": 0x3B0,
    "xcr0": 0x3E8,
}
_MXCSR, _X87_FCW = 0x408, 0x410
_PAT_DEFAULT = 0x0007040600070406  # PAT MSR reset value (APM vol. 2 §A.3)


@dataclass(frozen=True)
class Segment:
    selector: int
    attrib: int
    limit: int
    base: int = 0


def build_vmsa(
    segments: dict[str, Segment], regs: dict[str, int], mxcsr: int = 0, x87_fcw: int = 0
) -> bytes:
    """A VMSA page with the given segments (selector u16, attrib u16, limit u32, base u64)
    and 64-bit registers; everything else zero."""
    page = bytearray(PAGE_SIZE)
    for name, seg in segments.items():
        struct.pack_into("<HHIQ", page, _SEG[name], seg.selector, seg.attrib, seg.limit, seg.base)
    for name, value in regs.items():
        struct.pack_into("<Q", page, _U64[name], value)
    struct.pack_into("<I", page, _MXCSR, mxcsr)
    struct.pack_into("<H", page, _X87_FCW, x87_fcw)
    return bytes(page)


def reset_vmsa(eip: int, sev_features: int, vcpu_sig: int, vmm_type: str = "qemu") -> bytes:
    """The VMSA of a vCPU coming out of reset at ``eip`` as QEMU, EC2 or GCE build it (values
    as sev-snp-measure models them: real-mode segments, EFER.SVME, CR4.MCE, RDX = CPU
    signature on QEMU and 0x600 on EC2/GCE, FPU defaults only on QEMU)."""
    if vmm_type not in VMM_TYPES:
        raise ConfigError(
            f"unknown VMM type {vmm_type!r} (known: {', '.join(VMM_TYPES)})", field="vmm_type"
        )
    cs_attr, ss_attr, tr_attr = 0x9B, 0x93, 0x8B
    rdx, mxcsr, fcw, g_pat = vcpu_sig, 0x1F80, 0x37F, _PAT_DEFAULT
    if vmm_type == "ec2":
        cs_attr = 0x9A if eip == BSP_EIP else 0x9B
        ss_attr, tr_attr, rdx, mxcsr, fcw = 0x92, 0x83, 0x600, 0, 0
    elif vmm_type == "gce":
        rdx, mxcsr, fcw, g_pat = 0x600, 0, 0, 0x00070106
    data = Segment(0, 0x93, 0xFFFF)
    segments = {
        "es": data,
        "cs": Segment(0xF000, cs_attr, 0xFFFF, eip & 0xFFFF0000),
        "ss": Segment(0, ss_attr, 0xFFFF),
        "ds": data,
        "fs": data,
        "gs": data,
        "gdtr": Segment(0, 0, 0xFFFF),
        "idtr": Segment(0, 0, 0xFFFF),
        "ldtr": Segment(0, 0x82, 0xFFFF),
        "tr": Segment(0, tr_attr, 0xFFFF),
    }
    regs = {
        "efer": 0x1000,
        "cr4": 0x40,
        "cr0": 0x10,
        "dr7": 0x400,
        "dr6": 0xFFFF0FF0,
        "rflags": 0x2,
        "rip": eip & 0xFFFF,
        "g_pat": g_pat,
        "rdx": rdx,
        "sev_features": sev_features,
        "xcr0": 0x1,
    }
    return build_vmsa(segments, regs, mxcsr=mxcsr, x87_fcw=fcw)


def svsm_vmsa(eip: int, vcpu_sig: int, sev_features: int = 0x1) -> bytes:
    """The VMSA of a vCPU entering a COCONUT-SVSM image at ``eip`` in 32-bit protected mode
    (flat 4 GiB code/data segments, CR0.PE), as sev-snp-measure ``snp:svsm`` models it.
    Like that tool, the x87 control word is left 0 (its SVSM VMSA does not set it)."""
    flat = Segment(16, 0xC93, 0xFFFFFFFF)
    segments = {
        "es": flat,
        "cs": Segment(8, 0xC9B, 0xFFFFFFFF),
        "ss": flat,
        "ds": flat,
        "fs": flat,
        "gs": Segment(0, 0x93, 0xFFFF),
        "gdtr": Segment(0, 0, 0xFFFF),
        "idtr": Segment(0, 0, 0xFFFF),
        "ldtr": Segment(0, 0x82, 0xFFFF),
        "tr": Segment(0, 0x8B, 0xFFFF),
    }
    regs = {
        "efer": 0x1000,
        "cr4": 0x40,
        "cr0": 0x11,
        "dr7": 0x400,
        "dr6": 0xFFFF0FF0,
        "rflags": 0x2,
        "rip": eip,
        "g_pat": _PAT_DEFAULT,
        "rdx": vcpu_sig,
        "sev_features": sev_features,
        "xcr0": 0x1,
    }
    return build_vmsa(segments, regs, mxcsr=0x1F80, x87_fcw=0)


def _vcpu_vmsas(
    fw: FirmwareImage, vcpus: int, sev_features: int, vcpu_sig: int, vmm_type: str
) -> list[bytes]:
    if vcpus < 1:
        raise ConfigError("at least one vCPU is needed", field="vcpus")
    pages = [reset_vmsa(BSP_EIP, sev_features, vcpu_sig, vmm_type)]
    if vcpus > 1:
        ap_eip = fw.ap_reset_eip
        if not ap_eip:
            raise ConfigError("firmware has no SEV-ES reset block: APs cannot start")
        ap = reset_vmsa(ap_eip, sev_features, vcpu_sig, vmm_type)
        pages += [ap] * (vcpus - 1)
    return pages


# --- launch digests -----------------------------------------------------------------------


def _metadata_pages(
    ld: LaunchDigest, fw: FirmwareImage, hashes_page: bytes | None, vmm_type: str
) -> None:
    for sec in fw.sections:
        if sec.type == SectionType.SNP_SEC_MEM:
            ld.add_empty(
                PageType.UNMEASURED if vmm_type == "gce" else PageType.ZERO, sec.gpa, sec.size
            )
        elif sec.type == SectionType.SNP_SECRETS:
            ld.update(PageType.SECRETS, sec.gpa)
        elif sec.type == SectionType.CPUID:
            if vmm_type != "ec2":
                ld.update(PageType.CPUID, sec.gpa)
        elif sec.type == SectionType.SVSM_CAA:
            ld.add_empty(PageType.ZERO, sec.gpa, sec.size)
        elif sec.type == SectionType.SNP_KERNEL_HASHES:
            if hashes_page is None:
                ld.add_empty(PageType.ZERO, sec.gpa, sec.size)
            else:
                if sec.size != PAGE_SIZE:
                    raise ConfigError("SNP_KERNEL_HASHES section is not one page")
                ld.add_normal(sec.gpa, hashes_page)
    if vmm_type == "ec2":  # EC2 adds the CPUID page(s) last
        for sec in fw.sections:
            if sec.type == SectionType.CPUID:
                ld.update(PageType.CPUID, sec.gpa)


def ovmf_hash(ovmf: bytes | Path) -> bytes:
    """The digest after OVMF's own NORMAL pages (sev-snp-measure ``snp:ovmf-hash``); pass it
    back as ``ovmf_digest`` to skip hashing a large image again."""
    fw = FirmwareImage.load(ovmf)
    ld = LaunchDigest()
    ld.add_normal(fw.gpa, fw.data)
    return ld.value


def snp_launch_digest(
    ovmf: bytes | Path,
    vcpus: int,
    vcpu_sig: int,
    *,
    guest_features: int = 0x1,
    vmm_type: str = "qemu",
    kernel: bytes | None = None,
    initrd: bytes | None = None,
    cmdline: str | None = None,
    ovmf_digest: bytes | None = None,
) -> bytes:
    """MEASUREMENT of an SNP guest booting OVMF (optionally a kernel measured by OVMF).

    ``guest_features`` is the VMSA SEV_FEATURES (bit 0 SNPActive, sev-snp.md §5.6);
    ``vmm_type`` one of "qemu", "ec2", "gce"; ``kernel`` (bytes, possibly empty) turns on
    the kernel hash table, with ``initrd`` and ``cmdline``. ``ovmf_digest`` replaces hashing
    OVMF's pages by a digest from :func:`ovmf_hash`.
    """
    fw = FirmwareImage.load(ovmf)
    ld = LaunchDigest()
    if ovmf_digest is not None:
        if len(ovmf_digest) != DIGEST_SIZE:
            raise ConfigError("an OVMF digest is 48 bytes", field="ovmf_digest")
        ld.value = ovmf_digest
    else:
        ld.add_normal(fw.gpa, fw.data)
    hashes_page = None
    if kernel is not None:
        if not fw.has_section(SectionType.SNP_KERNEL_HASHES):
            raise ConfigError(
                "a kernel was given but the OVMF metadata has no SNP_KERNEL_HASHES section"
            )
        table = kernel_hashes_table(kernel, initrd or b"", cmdline or "")
        offset = (fw.hashes_table_gpa or 0) & (PAGE_SIZE - 1)
        hashes_page = bytes(offset) + table + bytes(PAGE_SIZE - offset - len(table))
    _metadata_pages(ld, fw, hashes_page, vmm_type)
    for vmsa in _vcpu_vmsas(fw, vcpus, guest_features, vcpu_sig, vmm_type):
        ld.add_vmsa(vmsa)
    return ld.value


def snp_svsm_launch_digest(
    ovmf: bytes | Path, svsm: bytes | Path, vcpus: int, vcpu_sig: int, ovmf_vars_size: int
) -> bytes:
    """MEASUREMENT of an SNP guest with a COCONUT-SVSM image below OVMF (QEMU).

    The SVSM image is mapped to end at ``4 GiB - len(OVMF) - ovmf_vars_size``; its SVSM_INFO
    footer entry gives the entry point relative to the image base.
    """
    fw = FirmwareImage.load(ovmf)
    sv = FirmwareImage.load(svsm, end=fw.gpa - ovmf_vars_size)
    entry = sv.entry_u32(SVSM_INFO_GUID)
    if entry is None:
        raise ConfigError("SVSM image has no SVSM_INFO entry in its footer table")
    ld = LaunchDigest()
    ld.add_normal(fw.gpa, fw.data)
    ld.add_normal(sv.gpa, sv.data)
    _metadata_pages(ld, sv, None, "qemu")
    if vcpus < 1:
        raise ConfigError("at least one vCPU is needed", field="vcpus")
    page = svsm_vmsa(entry + sv.gpa, vcpu_sig)
    for _ in range(vcpus):
        ld.add_vmsa(page)
    return ld.value


def seves_launch_digest(
    ovmf: bytes | Path,
    vcpus: int,
    vcpu_sig: int,
    *,
    vmm_type: str = "qemu",
    kernel: bytes | None = None,
    initrd: bytes | None = None,
    cmdline: str | None = None,
) -> bytes:
    """SEV-ES launch digest (SHA-256 of OVMF, the hash table, the VMSAs with SEV_FEATURES 0)."""
    fw = FirmwareImage.load(ovmf)
    h = hashlib.sha256(fw.data)
    if kernel is not None:
        h.update(_sev_table(fw, kernel, initrd, cmdline))
    for vmsa in _vcpu_vmsas(fw, vcpus, 0, vcpu_sig, vmm_type):
        h.update(vmsa)
    return h.digest()


def sev_launch_digest(
    ovmf: bytes | Path,
    *,
    kernel: bytes | None = None,
    initrd: bytes | None = None,
    cmdline: str | None = None,
) -> bytes:
    """Plain SEV launch digest (SHA-256 of OVMF and the kernel hash table)."""
    fw = FirmwareImage.load(ovmf)
    h = hashlib.sha256(fw.data)
    if kernel is not None:
        h.update(_sev_table(fw, kernel, initrd, cmdline))
    return h.digest()


def _sev_table(
    fw: FirmwareImage, kernel: bytes, initrd: bytes | None, cmdline: str | None
) -> bytes:
    if not fw.hashes_table_gpa:
        raise ConfigError("a kernel was given but OVMF has no SEV hash table")
    return kernel_hashes_table(kernel, initrd or b"", cmdline or "")


# --- the simulated guest's launch image ---------------------------------------------------

#: Pages of the simulated SVSM image (its contents derive from the guest seed).
SIM_SVSM_PAGES = 16
#: Where the simulated launch image sits: an SVSM image below 4 GiB with its secrets and CPUID
#: pages right after it, as an IGVM-launched COCONUT-SVSM lays them out (model choice).
SIM_SVSM_GPA = FOUR_GIB - 0x0100_0000
SIM_SVSM_ENTRY = 0x1000


def simulated_svsm_image(seed: str) -> bytes:
    """The simulated SVSM image: ``SIM_SVSM_PAGES`` pages of seed-derived bytes."""
    out = bytearray()
    counter = 0
    while len(out) < SIM_SVSM_PAGES * PAGE_SIZE:
        out += hashlib.sha512(f"cocopart-svsm-image:{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[: SIM_SVSM_PAGES * PAGE_SIZE])


def simulated_launch_digest(seed: str, vcpus: int, vcpu_sig: int) -> bytes:
    """MEASUREMENT of the simulated partitioned guest at launch, with the AMD-SP's
    SNP_LAUNCH_UPDATE chaining: the SVSM image as NORMAL pages, its SECRETS and CPUID pages,
    and one VMSA per vCPU entering the SVSM at VMPL0 (as ``snp_svsm_launch_digest`` does for a
    real COCONUT image; no OVMF: the workload's firmware is validated later, at runtime)."""
    if vcpus < 1:
        raise ConfigError("at least one vCPU is needed", field="vcpus")
    image = simulated_svsm_image(seed)
    ld = LaunchDigest()
    ld.add_normal(SIM_SVSM_GPA, image)
    end = SIM_SVSM_GPA + len(image)
    ld.add_empty(PageType.SECRETS, end, PAGE_SIZE)
    ld.add_empty(PageType.CPUID, end + PAGE_SIZE, PAGE_SIZE)
    page = svsm_vmsa(SIM_SVSM_GPA + SIM_SVSM_ENTRY, vcpu_sig)
    for _ in range(vcpus):
        ld.add_vmsa(page)
    return ld.value
