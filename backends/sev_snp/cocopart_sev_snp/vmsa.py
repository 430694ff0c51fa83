"""The VM Save Area (VMSA) page: the fields the model reads and writes, and SEV_FEATURES.

Offsets from sev-snp.md §5.6 (CS cpuarch/vmsa.rs, 4 KiB page). SEV_FEATURES bit n is
SEV_STATUS bit n + 2 (sev-snp.md §5.6, LX core.c, CS sev_status.rs).
"""

from __future__ import annotations

import struct
from enum import IntFlag
from typing import NamedTuple

from cocopart.spi import InterruptMode

VMSA_SIZE = 4096
# sev-snp.md §5.6 (CS cpuarch/vmsa.rs)
VMPL = 0x0CA
CPL = 0x0CB
EFER = 0x0D0
RIP = 0x178
RAX = 0x1F8
RCX = 0x308
RDX = 0x310
R8 = 0x340
GUEST_EXITINFO1 = 0x390
GUEST_EXITINFO2 = 0x398
SEV_FEATURES = 0x3B0
VINTR_CTRL = 0x3B8
GUEST_EXIT_CODE = 0x3C0
VTOM = 0x3C8
EVENT_INJ = 0x3E0
XCR0 = 0x3E8

#: EFER.SVME (bit 12): the SVSM sets it before entering a lower VMPL and clears it to stop
#: a vCPU; CREATE_VCPU requires it set (sev-snp.md §1.4, §2.2).
EFER_SVME = 1 << 12
#: guest_exit_code of a VMGEXIT (SVM_EXIT_VMGEXIT): the SVSM treats a lower VMPL's exit as a
#: protocol request only with this code and call_pending set (sev-snp.md §1.4).
EXIT_VMGEXIT = 0x403

_U64 = struct.Struct("<Q")


class SevFeatures(IntFlag):
    """VMSA SEV_FEATURES bits (sev-snp.md §5.6; SEV_STATUS bit = this bit + 2)."""

    SNP_ACTIVE = 1 << 0
    VTOM = 1 << 1
    REFLECT_VC = 1 << 2
    RESTRICTED_INJECTION = 1 << 3
    ALTERNATE_INJECTION = 1 << 4
    DEBUG_SWAP = 1 << 5
    PREVENT_HOST_IBS = 1 << 6
    BTB_ISOLATION = 1 << 7
    VMPL_SSS = 1 << 8
    SECURE_TSC = 1 << 9
    VMGEXIT_PARAM = 1 << 10
    IBS_VIRT = 1 << 12
    VMSA_REG_PROT = 1 << 14
    SMT_PROTECTION = 1 << 15
    SECURE_AVIC = 1 << 16
    IBPB_ON_ENTRY = 1 << 21


def sev_status_bit(feature: SevFeatures) -> int:
    """The SEV_STATUS MSR (0xC001_0131) bit of a SEV_FEATURES bit (sev-snp.md §5.6)."""
    return (int(feature).bit_length() - 1) + 2


#: The injection-mode bit a workload VMSA carries per interrupt mode (sev-snp.md §5.6;
#: issue 6 models the modes themselves).
MODE_FEATURES: dict[InterruptMode, SevFeatures] = {
    InterruptMode.DIRECT: SevFeatures(0),
    InterruptMode.RESTRICTED: SevFeatures.RESTRICTED_INJECTION,
    InterruptMode.ALTERNATE: SevFeatures.ALTERNATE_INJECTION,
    InterruptMode.SECURE_AVIC: SevFeatures.SECURE_AVIC,
}


def workload_features(mode: InterruptMode) -> SevFeatures:
    """SEV_FEATURES of a workload vCPU: SNP active plus the interrupt mode's bit."""
    return SevFeatures.SNP_ACTIVE | MODE_FEATURES[mode]


class VmsaFields(NamedTuple):
    """The VMSA fields the model uses."""

    vmpl: int
    efer: int
    rip: int
    sev_features: int
    guest_exit_code: int = 0


def build(vmpl: int, sev_features: int, rip: int = 0xFFFF_FFF0, efer: int = EFER_SVME) -> bytes:
    """A fresh 4 KiB VMSA image for a vCPU at ``vmpl``."""
    page = bytearray(VMSA_SIZE)
    page[VMPL] = vmpl
    _U64.pack_into(page, EFER, efer)
    _U64.pack_into(page, RIP, rip)
    _U64.pack_into(page, SEV_FEATURES, sev_features)
    return bytes(page)


def parse(page: bytes) -> VmsaFields:
    """Read the modelled fields from a VMSA image."""
    return VmsaFields(
        vmpl=page[VMPL],
        efer=_U64.unpack_from(page, EFER)[0],
        rip=_U64.unpack_from(page, RIP)[0],
        sev_features=_U64.unpack_from(page, SEV_FEATURES)[0],
        guest_exit_code=_U64.unpack_from(page, GUEST_EXIT_CODE)[0],
    )


def u64(value: int) -> bytes:
    return _U64.pack(value)
