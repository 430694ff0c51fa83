"""The SNP secrets page: layout, the per-VMPL copies the SVSM hands out, and the guest's
SVSM detection.

Layout (sev-snp.md §2.4, LX sev.h snp_secrets_page, CS secrets_page.rs): version, IMIEN,
FMS, GOSVW, VMPCK0..3 (32 bytes each at 0x20/0x40/0x60/0x80), the OS area (msg_seqno_0..3
at 0xA0..0xAC, ap_jump_table_pa at 0xB0), the VMSA tweak bitmap, and the SVSM fields
(svsm_base 0x140, svsm_size 0x148, svsm_caa 0x150, svsm_max_version 0x158,
svsm_guest_vmpl 0x15C), tsc_factor 0x160; 4096 bytes in all.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cocopart_sev_snp.ghcb import HvFeature

SECRETS_SIZE = 4096
# sev-snp.md §2.4
VERSION = 0x000
IMIEN = 0x004
FMS = 0x008
GOSVW = 0x010
VMPCK_OFFSETS = (0x020, 0x040, 0x060, 0x080)
VMPCK_SIZE = 32
MSG_SEQNO_OFFSETS = (0x0A0, 0x0A4, 0x0A8, 0x0AC)
AP_JUMP_TABLE_PA = 0x0B0
VMSA_TWEAK_BITMAP = 0x100
SVSM_BASE = 0x140
SVSM_SIZE = 0x148
SVSM_CAA = 0x150
SVSM_MAX_VERSION = 0x158
SVSM_GUEST_VMPL = 0x15C
TSC_FACTOR = 0x160
#: Secrets page version written by the model (the firmware's value is not in the references).
MODEL_VERSION = 3
#: CS writes the core protocol's maximum version here (sev-snp.md §2.4).
CORE_MAX_VERSION = 1
#: Where the model says the SVSM image lives (outside guest RAM; only "non-zero" matters).
SVSM_IMAGE_BASE = 0xFFC0_0000
SVSM_IMAGE_SIZE = 0x40_0000

# Linux termination reasons (sev-snp.md §5.1; LX arch/x86/include/asm/sev-common.h
# SEV_TERM_SET_*, GHCB_SNP_UNSUPPORTED, GHCB_TERM_*)
TERM_SET_GENERAL, TERM_SET_LINUX = 0, 1
TERM_SNP_UNSUPPORTED = 2  # set 0
TERM_NOT_VMPL0 = 3  # set 1: not at VMPL0 and no usable SVSM (hypervisor lacks MULTI_VMPL)
TERM_SECRETS_PAGE = 6  # set 1: "Secrets page failure"
TERM_NO_SVSM = 7  # set 1: "SVSM is not advertised in the secrets page"
TERM_SVSM_VMPL0 = 8  # set 1: "SVSM is present but has set VMPL to 0"
TERM_SVSM_CAA = 9  # set 1: "SVSM is present but CAA is not page aligned"

#: Linux's SVSM detection stops the guest with a reason per defect of the secrets page, in
#: this order: no secrets page (6), svsm_size 0 (7), svsm_guest_vmpl 0 (8), a calling area
#: not 4K aligned (9) — LX arch/x86/boot/startup/sev-shared.c svsm_setup_ca,
#: arch/x86/include/asm/sev-common.h GHCB_TERM_*.
RULE_SVSM_DETECTION_TERMINATION_CODES = "secrets-page defects stop the guest with codes 6-9"


def derive_vmpcks(seed: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Four VMPCKs for a simulated guest, derived from the seed (the AMD-SP would generate
    them at launch)."""
    keys = [
        hmac.new(seed.encode(), f"cocopart-vmpck{n}".encode(), hashlib.sha256).digest()
        for n in range(4)
    ]
    return keys[0], keys[1], keys[2], keys[3]


def build(
    vmpcks: tuple[bytes, bytes, bytes, bytes],
    *,
    caa: int = 0,
    guest_vmpl: int = 0,
    svsm: bool = True,
) -> bytes:
    """The secrets page as the AMD-SP fills it and the SVSM completes it."""
    page = bytearray(SECRETS_SIZE)
    struct.pack_into("<I", page, VERSION, MODEL_VERSION)
    for off, key in zip(VMPCK_OFFSETS, vmpcks, strict=True):
        page[off : off + VMPCK_SIZE] = key
    if svsm:
        struct.pack_into(
            "<QQQIB",
            page,
            SVSM_BASE,
            SVSM_IMAGE_BASE,
            SVSM_IMAGE_SIZE,
            caa,
            CORE_MAX_VERSION,
            guest_vmpl,
        )
    return bytes(page)


def copy_for_vmpl(page: bytes, vmpl: int, caa: int) -> bytes:
    """The copy given to a guest at ``vmpl``: VMPCK0..VMPCK(vmpl-1) zeroed, the guest's CAA
    and VMPL filled in (CS ``copy_for_vmpl``, sev-snp.md §2.4)."""
    out = bytearray(page)
    for n in range(vmpl):
        out[VMPCK_OFFSETS[n] : VMPCK_OFFSETS[n] + VMPCK_SIZE] = bytes(VMPCK_SIZE)
    struct.pack_into("<Q", out, SVSM_CAA, caa)
    out[SVSM_GUEST_VMPL] = vmpl
    return bytes(out)


def vmpck(page: bytes, n: int) -> bytes:
    return page[VMPCK_OFFSETS[n] : VMPCK_OFFSETS[n] + VMPCK_SIZE]


def msg_seqno(page: bytes | bytearray, n: int) -> int:
    return int(struct.unpack_from("<I", page, MSG_SEQNO_OFFSETS[n])[0])


def set_msg_seqno(page: bytearray, n: int, value: int) -> None:
    struct.pack_into("<I", page, MSG_SEQNO_OFFSETS[n], value)


@dataclass(frozen=True)
class SvsmFields:
    base: int
    size: int
    caa: int
    max_version: int
    guest_vmpl: int


def svsm_fields(page: bytes) -> SvsmFields:
    base, size, caa, ver, vmpl = struct.unpack_from("<QQQIB", page, SVSM_BASE)
    return SvsmFields(base, size, caa, ver, vmpl)


@dataclass(frozen=True)
class SvsmDetection:
    """What a guest concluded at boot (sev-snp.md §2.3)."""

    svsm: bool  # an SVSM serves this guest
    vmpl: int  # the guest's VMPL (0 without an SVSM)
    caa: int | None  # the BSP calling area
    terminate: tuple[int, int] | None = None  # (reason set, code) when the guest must stop
    reason: str = ""


def detect_svsm(rmpadjust_probe: Callable[[], int], page: bytes, hv_features: int) -> SvsmDetection:
    """Linux ``svsm_setup_ca`` and the boot check (sev-snp.md §2.3).

    ``rmpadjust_probe`` executes RMPADJUST(page, 4K, target VMPL1, no permissions) at the
    guest's VMPL and returns RAX: success means VMPL0, hence no SVSM. Otherwise the secrets
    page (``page``; empty = none) must name an SVSM, each defect with its own termination
    reason (:data:`RULE_SVSM_DETECTION_TERMINATION_CODES`), and the hypervisor must offer
    SNP (bit 0, else terminate set 0 code 2) and MULTI_VMPL (bit 5, else terminate set 1
    code 3, NOT_VMPL0).
    """
    if not hv_features & HvFeature.SNP:
        return SvsmDetection(
            False,
            0,
            None,
            (TERM_SET_GENERAL, TERM_SNP_UNSUPPORTED),
            "the hypervisor does not offer SEV-SNP",
        )
    if rmpadjust_probe() == 0:
        return SvsmDetection(False, 0, None, reason="RMPADJUST to VMPL1 succeeded: VMPL0")
    if len(page) != SECRETS_SIZE:
        return SvsmDetection(
            False, 0, None, (TERM_SET_LINUX, TERM_SECRETS_PAGE), "not at VMPL0 and no secrets page"
        )
    f = svsm_fields(page)
    checks = (
        (f.size == 0, TERM_NO_SVSM, "the secrets page names no SVSM (svsm_size 0)"),
        (
            f.guest_vmpl == 0,
            TERM_SVSM_VMPL0,
            "the secrets page says the guest runs at VMPL0 (svsm_guest_vmpl 0)",
        ),
        (f.caa % 4096 != 0, TERM_SVSM_CAA, f"the calling area {f.caa:#x} is not page aligned"),
    )
    for bad, code, why in checks:
        if bad:
            return SvsmDetection(False, 0, None, (TERM_SET_LINUX, code), f"not at VMPL0 and {why}")
    if not hv_features & HvFeature.MULTI_VMPL:
        return SvsmDetection(
            False,
            f.guest_vmpl,
            f.caa,
            (TERM_SET_LINUX, TERM_NOT_VMPL0),
            "the hypervisor does not offer MULTI_VMPL",
        )
    return SvsmDetection(
        True, f.guest_vmpl, f.caa, reason=f"SVSM present; running at VMPL{f.guest_vmpl}"
    )
