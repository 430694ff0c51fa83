"""The GHCB: MSR-protocol codes, NAE exit codes, the GHCB page layout, the Page State Change
descriptor, AP-creation and SNP_RUN_VMPL encodings, and the hypervisor feature bits.

This module is the format; the host's handling of each request is :mod:`.host`, the guest
side that fills requests in is :mod:`.workload` / :mod:`.svsm`. Every number is from
sev-snp.md §5 (LX sev-common.h/svm.h and patches, CS ghcb.rs/msr_protocol.rs).
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import NamedTuple

from cocopart.spi import PAGE_2M, PAGE_4K

# --- MSR protocol (sev-snp.md §5.1) -------------------------------------------------------
#: The GHCB MSR.
MSR_GHCB = 0xC001_0130
#: SEV_STATUS MSR (sev-snp.md §5.6).
MSR_SEV_STATUS = 0xC001_0131
#: MSR_SVSM_CAA, emulated by the guest's own #VC handler (sev-snp.md §2.3 step 6).
MSR_SVSM_CAA = 0xC001_F000
INFO_MASK = 0xFFF


class MsrInfo(IntEnum):
    """GHCBInfo values of the MSR protocol (low 12 bits of the GHCB MSR)."""

    SEV_INFO_RESP = 0x001
    SEV_INFO_REQ = 0x002
    CPUID_REQ = 0x004
    CPUID_RESP = 0x005
    AP_RESET_HOLD_REQ = 0x006
    AP_RESET_HOLD_RESP = 0x007
    PREFERRED_GHCB_REQ = 0x010
    PREFERRED_GHCB_RESP = 0x011
    REGISTER_GHCB_REQ = 0x012
    REGISTER_GHCB_RESP = 0x013
    PSC_REQ = 0x014
    PSC_RESP = 0x015
    VMPL_REQ = 0x016
    VMPL_RESP = 0x017
    HV_FEATURES_REQ = 0x080
    HV_FEATURES_RESP = 0x081
    TERM_REQ = 0x100


def msr_info(value: int) -> int:
    return value & INFO_MASK


def msr_sev_info_response(max_proto: int, min_proto: int, c_bit: int) -> int:
    """SEV information response: [63:48] max protocol, [47:32] min protocol, [31:24] C-bit."""
    return MsrInfo.SEV_INFO_RESP | (max_proto << 48) | (min_proto << 32) | (c_bit << 24)


def msr_vmpl_request(vmpl: int) -> int:
    """Run-at-VMPL request: GHCBData[39:32] = VMPL (sev-snp.md §1.3)."""
    return MsrInfo.VMPL_REQ | ((vmpl & 0xFF) << 32)


def msr_vmpl_response(error: int) -> int:
    """Run-at-VMPL response: [63:32] error, 0 = ok."""
    return MsrInfo.VMPL_RESP | ((error & 0xFFFF_FFFF) << 32)


def msr_psc_request(gfn: int, op: int) -> int:
    """One 4K page state change: [55:52] op (1 private, 2 shared), [51:12] GFN."""
    return MsrInfo.PSC_REQ | ((gfn & ((1 << 40) - 1)) << 12) | ((op & 0xF) << 52)


def msr_psc_decode(value: int) -> tuple[int, int]:
    """(gfn, op) of an MSR-protocol PSC request."""
    return (value >> 12) & ((1 << 40) - 1), (value >> 52) & 0xF


def msr_psc_response(error: int) -> int:
    return MsrInfo.PSC_RESP | ((error & 0xFFFF_FFFF) << 32)


def msr_hv_features_response(bitmap: int) -> int:
    """HV features response: [63:12] the feature bitmap."""
    return MsrInfo.HV_FEATURES_RESP | (bitmap << 12)


def msr_term_request(reason_set: int, code: int) -> int:
    """Termination request: [15:12] reason set, [23:16] reason code."""
    return MsrInfo.TERM_REQ | ((reason_set & 0xF) << 12) | ((code & 0xFF) << 16)


def msr_response_error(value: int) -> int:
    """GHCBData[63:32] of a response: the error (0 = ok)."""
    return (value >> 32) & 0xFFFF_FFFF


# --- NAE exit codes (sev-snp.md §5.3) -------------------------------------------------------
class ExitCode(IntEnum):
    """SW_EXITCODE values of the GHCB protocol (VMGEXIT automatic exits)."""

    MMIO_READ = 0x8000_0001
    MMIO_WRITE = 0x8000_0002
    NMI_COMPLETE = 0x8000_0003
    AP_HLT_LOOP = 0x8000_0004
    AP_JUMP_TABLE = 0x8000_0005
    PSC = 0x8000_0010
    GUEST_REQUEST = 0x8000_0011
    EXT_GUEST_REQUEST = 0x8000_0012
    AP_CREATION = 0x8000_0013
    HV_DOORBELL_PAGE = 0x8000_0014
    HV_IPI = 0x8000_0015
    GET_APIC_IDS = 0x8000_0017
    SNP_RUN_VMPL = 0x8000_0018
    SECURE_AVIC = 0x8000_001A
    CONFIGURE_INJECTION = 0x8000_001B
    DISABLE_ALTERNATE_INJECTION = 0x8000_001C
    SPECIFIC_EOI = 0x8000_001D
    HV_FEATURES = 0x8000_FFFD
    TERMINATE = 0x8000_FFFE
    UNSUPPORTED = 0x8000_FFFF


#: Trace names of the exits (the ``target`` of a "VMGEXIT" primitive).
EXIT_NAMES: dict[int, str] = {
    ExitCode.PSC: "PSC",
    ExitCode.GUEST_REQUEST: "GUEST_REQUEST",
    ExitCode.EXT_GUEST_REQUEST: "EXT_GUEST_REQUEST",
    ExitCode.AP_CREATION: "AP_CREATION",
    ExitCode.SNP_RUN_VMPL: "SNP_RUN_VMPL",
    ExitCode.HV_FEATURES: "HV_FEATURES",
    ExitCode.TERMINATE: "TERMINATE",
    ExitCode.HV_DOORBELL_PAGE: "HV_DOORBELL_PAGE",
    ExitCode.HV_IPI: "HV_IPI",
    ExitCode.SECURE_AVIC: "SECURE_AVIC",
    ExitCode.CONFIGURE_INJECTION: "CONFIGURE_INJECTION",
    ExitCode.DISABLE_ALTERNATE_INJECTION: "DISABLE_ALTERNATE_INJECTION",
    ExitCode.SPECIFIC_EOI: "SPECIFIC_EOI",
}

#: SVM_EXIT_MSR: the automatic-exit code a guest's #VC handler forwards an intercepted
#: RDMSR/WRMSR with (EXITINFO1 1 = write, RCX = MSR, RAX/RDX = value). From LX svm.h, not
#: in sev-snp.md (unconfirmed there); the model uses it for x2APIC EOI and ICR writes.
SVM_EXIT_MSR = 0x7C
EXIT_NAMES[SVM_EXIT_MSR] = "MSR"


class GhcbError(IntEnum):
    """EXITINFO2 codes when EXITINFO1[31:0] == 2 (input error; sev-snp.md §5.3)."""

    NOT_REGISTERED = 1
    INVALID_USAGE = 2
    INVALID_SCRATCH = 3
    MISSING_INPUT = 4
    INVALID_INPUT = 5
    INVALID_EVENT = 6


#: EXITINFO1[31:0] value meaning "input error, code in EXITINFO2".
EXITINFO1_INPUT_ERROR = 2

# --- GHCB page layout (sev-snp.md §5.4, CS assert, Linux) ---------------------------------
GHCB_SIZE = 4096
OFF_RAX = 0x1F8
OFF_RCX = 0x308
OFF_RDX = 0x310
OFF_RBX = 0x318
OFF_R8 = 0x340
OFF_SW_EXITCODE = 0x390
OFF_SW_EXITINFO1 = 0x398
OFF_SW_EXITINFO2 = 0x3A0
OFF_SW_SCRATCH = 0x3A8
OFF_XCR0 = 0x3E8
OFF_VALID_BITMAP = 0x3F0
VALID_BITMAP_SIZE = 16
OFF_SHARED_BUFFER = 0x800
SHARED_BUFFER_SIZE = 0x7F0
OFF_PROTOCOL_VERSION = 0xFFA
OFF_USAGE = 0xFFC
#: GHCB protocol version the model speaks (Linux 1..2; CS requires 2 — sev-snp.md §5.1).
GHCB_PROTOCOL_VERSION = 2

_U64 = struct.Struct("<Q")


class GhcbPage:
    """One GHCB page (shared with the host). Writing a qword field marks it valid in the
    valid bitmap (bit = offset / 8), as the guest must; the host refuses inputs whose valid
    bit is clear (MISSING_INPUT). The GPA of the page is not modelled: the model keeps the
    bytes here rather than in guest RAM, as the page is hypervisor-shared."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(GHCB_SIZE)
        struct.pack_into("<H", self.buf, OFF_PROTOCOL_VERSION, GHCB_PROTOCOL_VERSION)

    def clear_valid(self) -> None:
        self.buf[OFF_VALID_BITMAP : OFF_VALID_BITMAP + VALID_BITMAP_SIZE] = bytes(VALID_BITMAP_SIZE)

    def set(self, offset: int, value: int) -> None:
        _U64.pack_into(self.buf, offset, value & ((1 << 64) - 1))
        bit = offset // 8
        self.buf[OFF_VALID_BITMAP + bit // 8] |= 1 << (bit % 8)

    def get(self, offset: int) -> int:
        return int(_U64.unpack_from(self.buf, offset)[0])

    def is_valid(self, offset: int) -> bool:
        bit = offset // 8
        return bool(self.buf[OFF_VALID_BITMAP + bit // 8] >> (bit % 8) & 1)

    def request(
        self, exit_code: int, info1: int = 0, info2: int = 0, scratch: int | None = None
    ) -> None:
        """Fill in a NAE request the way a guest does: clear the bitmap, set the fields."""
        self.clear_valid()
        self.set(OFF_SW_EXITCODE, exit_code)
        self.set(OFF_SW_EXITINFO1, info1)
        self.set(OFF_SW_EXITINFO2, info2)
        if scratch is not None:
            self.set(OFF_SW_SCRATCH, scratch)

    def respond(self, info1: int, info2: int = 0) -> None:
        """Host side: write the result into EXITINFO1/2."""
        _U64.pack_into(self.buf, OFF_SW_EXITINFO1, info1)
        _U64.pack_into(self.buf, OFF_SW_EXITINFO2, info2)

    def input_error(self, code: GhcbError) -> None:
        self.respond(EXITINFO1_INPUT_ERROR, int(code))

    @property
    def exit_code(self) -> int:
        return self.get(OFF_SW_EXITCODE)

    @property
    def info1(self) -> int:
        return self.get(OFF_SW_EXITINFO1)

    @property
    def info2(self) -> int:
        return self.get(OFF_SW_EXITINFO2)

    def failed(self) -> bool:
        """A response is an error when EXITINFO1[31:0] != 0 (sev-snp.md §5.3)."""
        return bool(self.info1 & 0xFFFF_FFFF)

    def shared(self, n: int, offset: int = 0) -> bytes:
        return bytes(self.buf[OFF_SHARED_BUFFER + offset : OFF_SHARED_BUFFER + offset + n])

    def write_shared(self, data: bytes, offset: int = 0) -> None:
        if offset + len(data) > SHARED_BUFFER_SIZE:
            raise ValueError("data does not fit the GHCB shared buffer")
        self.buf[OFF_SHARED_BUFFER + offset : OFF_SHARED_BUFFER + offset + len(data)] = data


# --- Page State Change (sev-snp.md §5.5) --------------------------------------------------
class PscOp(IntEnum):
    PRIVATE = 1
    SHARED = 2
    PSMASH = 3
    UNSMASH = 4


PSC_HEADER = struct.Struct("<HHI")  # cur_entry, end_entry (inclusive), reserved
PSC_ENTRY_SIZE = 8
#: Entries per GHCB request: (0x7F0 - 8) / 8 = 253 (VMGEXIT_PSC_MAX_ENTRY; sev-snp.md §5.5).
VMGEXIT_PSC_MAX_ENTRY = (SHARED_BUFFER_SIZE - PSC_HEADER.size) // PSC_ENTRY_SIZE
assert VMGEXIT_PSC_MAX_ENTRY == 253
PSC_CUR_PAGE_MASK = 0xFFF
PSC_GFN_SHIFT = 12
PSC_GFN_MASK = ((1 << 40) - 1) << PSC_GFN_SHIFT
PSC_OP_SHIFT = 52
PSC_SIZE_2M = 1 << 56
PSC_RESERVED_MASK = ((1 << 7) - 1) << 57
#: Host error in EXITINFO2 for a malformed PSC header / entry: KVM's values (LX
#: arch/x86/include/asm/sev-common.h VMGEXIT_PSC_ERROR_INVALID_HDR / _INVALID_ENTRY; Linux
#: guests only check EXITINFO2 != 0 — sev-snp.md §5.5).
PSC_ERROR_INVALID_HEADER = (1 << 32) | 1
PSC_ERROR_INVALID_ENTRY = (1 << 32) | 2

#: How a host reads PSC entries, as KVM does (LX arch/x86/kvm/svm/sev.c snp_begin_psc): an
#: entry is refused (INVALID_ENTRY) only when its ``cur_page`` exceeds its page count (512
#: for 2M, 1 for 4K) or a 2M entry's GFN is not 2M aligned; an entry with ``cur_page`` equal
#: to its count is done; a 2M entry with 0 < ``cur_page`` < 512 has its remaining pages
#: served as 4K pages; reserved bits are not checked; every served entry gets ``cur_page``
#: set to its count. What the host does with each operation is ``Host._psc_run``.
RULE_PSC_ENTRIES_AS_KVM = "PSC entries: INVALID_ENTRY only for cur_page > npages or a bad GFN"


def psc_entry(gpa: int, op: int, page_2m: bool) -> int:
    return (gpa & PSC_GFN_MASK) | ((op & 0xF) << PSC_OP_SHIFT) | (PSC_SIZE_2M if page_2m else 0)


class PscRun(NamedTuple):
    """Consecutive descriptor entries the host serves as one range (KVM combines "adjacent
    GPA ranges/operations" into one KVM_HC_MAP_GPA_RANGE exit): one op and size, contiguous
    in GPA, none partly done — or a single 2M entry whose first ``cur_page`` pages are done,
    whose rest is served as 4K pages (``pages`` < 512)."""

    first: int  # index of the first entry
    entries: int
    gpa: int  # first page still to do
    op: int
    page_2m: bool  # size of the pages served
    pages: int  # pages of that size still to do (= entries, unless a partial 2M entry)

    @property
    def page_bytes(self) -> int:
        return PAGE_2M if self.page_2m else PAGE_4K

    @property
    def partial(self) -> bool:
        """The remainder of one partly served 2M entry."""
        return self.pages != self.entries

    def pages_for(self, entries: int) -> int:
        """Pages of ``entries`` entries of this run."""
        return self.pages if self.partial else entries


def psc_encode(entries: bytes, cur: int = 0) -> bytes:
    """Header + packed entries (``entries`` = n little-endian u64)."""
    n = len(entries) // PSC_ENTRY_SIZE
    if not 1 <= n <= VMGEXIT_PSC_MAX_ENTRY:
        raise ValueError(f"a PSC request carries 1..{VMGEXIT_PSC_MAX_ENTRY} entries, not {n}")
    return PSC_HEADER.pack(cur, n - 1, 0) + entries


def pack_run(gpa: int, page_2m: bool, count: int, op: int) -> bytes:
    """Packed entries for ``count`` contiguous pages (built in C, not per page in Python)."""
    step = PAGE_2M if page_2m else PAGE_4K
    first = psc_entry(gpa, op, page_2m)
    return struct.pack(f"<{count}Q", *range(first, first + count * step, step))


def psc_header(buf: bytes | bytearray) -> tuple[int, int, int]:
    """(cur_entry, end_entry, reserved)."""
    cur, end, rsvd = PSC_HEADER.unpack_from(buf)
    return int(cur), int(end), int(rsvd)


def psc_runs(buf: bytes, cur: int, end: int) -> tuple[list[PscRun], int | None]:
    """Entries ``cur..end`` of a descriptor as KVM reads them (LX arch/x86/kvm/svm/sev.c
    snp_begin_psc; :data:`RULE_PSC_ENTRIES_AS_KVM`): the ranges to serve, in order, and the
    index of the first invalid entry (``cur_page`` beyond the entry's pages, or a 2M entry
    whose GFN is not 2M aligned), before which the host stops — None if there is none. An
    entry whose ``cur_page`` equals its page count is already done and skipped; reserved
    bits are ignored. Contiguous lists are recognised with one tuple comparison, so a
    253-entry run costs no Python loop."""
    n = end - cur + 1
    raw = struct.unpack_from(f"<{n}Q", buf, PSC_HEADER.size + cur * PSC_ENTRY_SIZE)
    out: list[PscRun] = []
    i = 0
    while i < n:
        e = raw[i]
        op = (e >> PSC_OP_SHIFT) & 0xF
        big = bool(e & PSC_SIZE_2M)
        step, npages = (PAGE_2M, PAGE_2M // PAGE_4K) if big else (PAGE_4K, 1)
        gpa = e & PSC_GFN_MASK
        done = e & PSC_CUR_PAGE_MASK
        if done > npages or gpa % step:
            return out, cur + i
        if done == npages:
            i += 1
            continue
        if done:  # a partly served 2M entry: the rest as 4K pages, on its own
            out.append(PscRun(cur + i, 1, gpa + done * PAGE_4K, op, False, npages - done))
            i += 1
            continue
        j = n
        if raw[i:] != tuple(range(e, e + (n - i) * step, step)):
            j = i + 1
            while j < n and raw[j] == e + (j - i) * step:
                j += 1
        out.append(PscRun(cur + i, j - i, gpa, op, big, j - i))
        i = j
    return out, None


def psc_mark_done(buf: bytearray, first: int, entries: int) -> None:
    """Set ``cur_page`` of ``entries`` entries from index ``first`` to their page count, as
    KVM does for each entry it served (__snp_complete_one_psc: 512 for 2M, 1 for 4K)."""
    off = PSC_HEADER.size + first * PSC_ENTRY_SIZE
    raw = struct.unpack_from(f"<{entries}Q", buf, off)
    struct.pack_into(
        f"<{entries}Q",
        buf,
        off,
        *((e & ~PSC_CUR_PAGE_MASK) | (PAGE_2M // PAGE_4K if e & PSC_SIZE_2M else 1) for e in raw),
    )


# --- AP creation (sev-snp.md §5.3, exit 0x8000_0013) --------------------------------------
class ApCreateOp(IntEnum):
    CREATE_ON_INIT = 0
    CREATE = 1
    DESTROY = 2


def ap_creation_info1(op: int, vmpl: int, apic_id: int) -> int:
    """EXITINFO1: [15:0] op, [19:16] target VMPL, [63:32] APIC ID."""
    return (op & 0xFFFF) | ((vmpl & 0xF) << 16) | ((apic_id & 0xFFFF_FFFF) << 32)


def ap_creation_decode(info1: int) -> tuple[int, int, int]:
    """(op, vmpl, apic_id) of an AP-creation EXITINFO1."""
    return info1 & 0xFFFF, (info1 >> 16) & 0xF, (info1 >> 32) & 0xFFFF_FFFF


# --- guest request (sev-snp.md §5.3) ------------------------------------------------------
class VmmError(IntEnum):
    """EXITINFO2[63:32] of a guest request: the hypervisor's own error."""

    OK = 0
    INVALID_LEN = 1
    BUSY = 2


def guest_request_info2(vmm_error: int, fw_error: int) -> int:
    return ((vmm_error & 0xFFFF_FFFF) << 32) | (fw_error & 0xFFFF_FFFF)


def guest_request_errors(info2: int) -> tuple[int, int]:
    """(vmm_error, firmware_error) of a guest request's EXITINFO2."""
    return (info2 >> 32) & 0xFFFF_FFFF, info2 & 0xFFFF_FFFF


# --- hypervisor features (sev-snp.md §5.2) -------------------------------------------------
class HvFeature(IntFlag):
    SNP = 1 << 0
    AP_CREATION = 1 << 1
    RESTRICTED_INJECTION = 1 << 2
    RESTRICTED_INJECTION_TIMER = 1 << 3
    APIC_ID_LIST = 1 << 4
    MULTI_VMPL = 1 << 5
    #: CS names bit 6 SEV_PAGE_STATE_CHANGE; meaning unconfirmed (sev-snp.md §5.2, §9.6).
    PAGE_STATE_CHANGE = 1 << 6
    SEV_TIO = 1 << 7
    EXTENDED_INTERRUPTS = 1 << 9


#: What CS requires of the hypervisor (sev-snp.md §5.2).
SVSM_REQUIRED_FEATURES = HvFeature.SNP | HvFeature.AP_CREATION | HvFeature.MULTI_VMPL
