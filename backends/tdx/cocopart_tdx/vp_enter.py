"""TDG.VP.ENTER (leaf 25): inputs, the L2_ENTER_GUEST_STATE buffer, failures, the register
layout of an L2 -> L1 exit, and where each L2 event goes (tdx.md §2.3, §2.4; MOD
tdg_vp_enter.c, td_exit.c, tdx_td_l2_dispatcher.c).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from cocopart_tdx.gpa import gpa_valid
from cocopart_tdx.status import Operand, TdxStatus, with_details

U64 = (1 << 64) - 1
GPRS = (
    "rax",
    "rcx",
    "rdx",
    "rbx",
    "rsp",
    "rbp",
    "rsi",
    "rdi",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
)
#: Instruction lengths L1 adds to the L2 RIP after emulating (66 0F 01 CC; 0F 01 C1).
TDCALL_LENGTH = 4
VMCALL_LENGTH = 3

# -- RCX of TDG.VP.ENTER --------------------------------------------------------------------
INVD_MASK = 0x3  # bits 1:0: 0 none, 1 INVEPT single-context, 2/3 INVVPID single-context
VM_SHIFT = 52
VM_MASK = 0x3 << VM_SHIFT  # bits 53:52
RCX_RESERVED = U64 & ~(INVD_MASK | VM_MASK)  # bits 51:2 and 63:54
ENTER_BUFFER_ALIGN = 256


def enter_rcx(vm: int, invd: int = 0) -> int:
    """RCX for entering L2 VM ``vm`` (1..3) with translation invalidation ``invd``."""
    return (vm << VM_SHIFT) | (invd & INVD_MASK)


class VmxExit(IntEnum):
    """VMX basic exit reasons used by the model (tdx.md §9, MOD vmcs_defs.h)."""

    EXCEPTION_NMI = 0
    EXTERNAL_INTERRUPT = 1
    TRIPLE_FAULT = 2
    INTERRUPT_WINDOW = 7
    NMI_WINDOW = 8
    CPUID = 10
    HLT = 12
    VMCALL = 18
    CR_ACCESS = 28
    IO = 30
    RDMSR = 31
    WRMSR = 32
    ENTRY_FAIL_GUEST_STATE = 33
    TPR_BELOW_THRESHOLD = 43
    VIRTUALIZED_EOI = 45
    EPT_VIOLATION = 48
    EPT_MISCONFIG = 49
    PREEMPTION_TIMER = 52
    WBINVD = 54
    XSETBV = 55
    APIC_WRITE = 56
    BUS_LOCK = 74
    NOTIFY = 75
    SEAMCALL = 76
    TDCALL = 77


#: Extended exit qualification type of an L2 EPT violation on a PENDING page (R13 bits 3:0).
EEQ_PENDING_EPT_VIOLATION = 6


# -- L2_ENTER_GUEST_STATE -------------------------------------------------------------------
_STATE = struct.Struct("<16QQQQH6x")  # 16 GPRs, RFLAGS @128, RIP @136, SSP @144, u16 @152
ENTER_GUEST_STATE_SIZE = 160  # OVMM pads to 160 bytes
assert _STATE.size == ENTER_GUEST_STATE_SIZE


@dataclass
class EnterGuestState:
    """The L2_ENTER_GUEST_STATE buffer: GPRs @0..127, RFLAGS @128, RIP @136, SSP @144,
    GUEST_INTERRUPT_STATUS (RVI low byte, SVI high byte) @152 (tdx.md §2.3)."""

    gprs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GPRS, 0))
    rflags: int = 0x2
    rip: int = 0
    ssp: int = 0
    interrupt_status: int = 0

    def encode(self) -> bytes:
        g = self.gprs
        return _STATE.pack(
            *[g[r] & U64 for r in GPRS], self.rflags, self.rip, self.ssp, self.interrupt_status
        )

    @classmethod
    def decode(cls, data: bytes) -> EnterGuestState:
        vals = _STATE.unpack_from(data)
        return cls(dict(zip(GPRS, vals[:16])), vals[16], vals[17], vals[18], vals[19])


# -- failures -------------------------------------------------------------------------------
def check_inputs(rcx: int, rdx: int, num_l2_vms: int, gpaw: int) -> int | None:
    """Operand checks of TDG.VP.ENTER in the module's order (MOD 1.5
    ``src/td_transitions/tdg_vp_enter.c`` ``tdg_vp_enter``): first RDX — the
    L2_ENTER_GUEST_STATE GPA must be 256-byte aligned and a valid private GPA
    (``check_gpa_validity``, :mod:`cocopart_tdx.gpa`) -> OPERAND_INVALID(RDX); then RCX —
    reserved bits, VM 0 or VM > NUM_L2_VMS -> OPERAND_INVALID(RCX)
    (``RULE_VP_ENTER_CHECKS_RDX_FIRST``)."""
    if rdx % ENTER_BUFFER_ALIGN or not gpa_valid(rdx, gpaw, private_only=True):
        return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
    vm = (rcx & VM_MASK) >> VM_SHIFT
    if rcx & RCX_RESERVED or vm == 0 or vm > num_l2_vms:
        return with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    return None


#: TDG.VP.ENTER checks its RDX (state buffer GPA) before its RCX (VM and flags): two bad
#: operands give OPERAND_INVALID(RDX) (MOD tdg_vp_enter.c).
RULE_VP_ENTER_CHECKS_RDX_FIRST = "TDG.VP.ENTER: RDX (buffer GPA) is checked before RCX (VM)"


VAPIC_NOT_SET = with_details(TdxStatus.OPERAND_INVALID, Operand.L2_VAPIC_GPA)
PENDING_INTERRUPT = int(TdxStatus.PENDING_INTERRUPT)


def never_entered(status: int) -> bool:
    """OVMM: a status at or above PENDING_INTERRUPT's class means the L2 was not entered."""
    return status >> 32 >= int(TdxStatus.PENDING_INTERRUPT) >> 32 or bool(status >> 63)


# -- L2 -> L1 exit registers ----------------------------------------------------------------
@dataclass
class L2Exit:
    """What L1 finds in its registers after an L2 -> L1 exit (tdx.md §2.3 table)."""

    exit_reason: int
    status_class: int = 0  # upper half of RAX: 0 SUCCESS or an L2_EXIT_* class
    exit_qualification: int = 0
    gla: int = 0
    cs_selector: int = 0
    cs_ar: int = 0
    cs_limit: int = 0
    cs_base: int = 0
    gpa: int = 0
    intr_info: int = 0
    intr_error: int = 0
    idt_vectoring_info: int = 0
    idt_vectoring_error: int = 0
    instr_info: int = 0
    instr_length: int = 0
    cpl: int = 0
    eeq: int = 0

    def registers(self) -> dict[str, int]:
        return {
            "rax": (self.status_class << 32) | (self.exit_reason & 0xFFFF_FFFF),
            "rbx": 0,
            "rcx": self.exit_qualification,
            "rdx": self.gla,
            "rsi": (self.cs_selector & 0xFFFF)
            | (self.cs_ar & 0xFFFF) << 16
            | (self.cs_limit & 0xFFFF_FFFF) << 32,
            "rdi": self.cs_base,
            "r8": self.gpa,
            "r9": (self.intr_info & 0xFFFF_FFFF) | (self.intr_error & 0xFFFF_FFFF) << 32,
            "r10": (self.idt_vectoring_info & 0xFFFF_FFFF)
            | (self.idt_vectoring_error & 0xFFFF_FFFF) << 32,
            "r11": (self.instr_info & 0xFFFF_FFFF) | (self.instr_length & 0xFFFF_FFFF) << 32,
            "r12": self.cpl & 3,
            "r13": self.eeq,
            "r14": 0,
            "r15": 0,
        }

    @classmethod
    def from_registers(cls, regs: dict[str, int]) -> L2Exit:
        return cls(
            exit_reason=regs["rax"] & 0xFFFF_FFFF,
            status_class=regs["rax"] >> 32,
            exit_qualification=regs["rcx"],
            gla=regs["rdx"],
            cs_selector=regs["rsi"] & 0xFFFF,
            cs_ar=(regs["rsi"] >> 16) & 0xFFFF,
            cs_limit=regs["rsi"] >> 32,
            cs_base=regs["rdi"],
            gpa=regs["r8"],
            intr_info=regs["r9"] & 0xFFFF_FFFF,
            intr_error=regs["r9"] >> 32,
            idt_vectoring_info=regs["r10"] & 0xFFFF_FFFF,
            idt_vectoring_error=regs["r10"] >> 32,
            instr_info=regs["r11"] & 0xFFFF_FFFF,
            instr_length=regs["r11"] >> 32,
            cpl=regs["r12"] & 3,
            eeq=regs["r13"],
        )


# -- where L2 events go (tdx.md §2.4) -------------------------------------------------------
class Destination(IntEnum):
    L1 = 1  # L2 -> L1 exit
    HOST = 2  # TD exit to the host (L2 resumes on the next TDH.VP.ENTER)
    MODULE = 3  # handled inside the TDX module
    TD_LOST = 4  # the TD is marked non-accessible


#: L2 event -> (destination, basic exit reason seen by L1, or -1).
L2_EVENTS: dict[str, tuple[Destination, int]] = {
    "triple-fault": (Destination.L1, VmxExit.TRIPLE_FAULT),
    "vmcall": (Destination.L1, VmxExit.VMCALL),
    "cpuid": (Destination.L1, VmxExit.CPUID),
    "hlt": (Destination.L1, VmxExit.HLT),
    "io": (Destination.L1, VmxExit.IO),
    "wbinvd": (Destination.L1, VmxExit.WBINVD),
    "xsetbv": (Destination.L1, VmxExit.XSETBV),
    "interrupt-window": (Destination.L1, VmxExit.INTERRUPT_WINDOW),
    "nmi-window": (Destination.L1, VmxExit.NMI_WINDOW),
    "tpr-below-threshold": (Destination.L1, VmxExit.TPR_BELOW_THRESHOLD),
    "virtualized-eoi": (Destination.L1, VmxExit.VIRTUALIZED_EOI),
    "apic-write": (Destination.L1, VmxExit.APIC_WRITE),
    "preemption-timer": (Destination.L1, VmxExit.PREEMPTION_TIMER),
    "entry-fail": (Destination.L1, VmxExit.ENTRY_FAIL_GUEST_STATE),
    "tdcall": (Destination.L1, VmxExit.TDCALL),
    "ept-violation-no-alias": (Destination.L1, VmxExit.EPT_VIOLATION),
    "ept-violation-pending": (Destination.L1, VmxExit.EPT_VIOLATION),
    "ept-violation-shared": (Destination.HOST, -1),
    "ept-violation-not-mapped": (Destination.HOST, -1),
    "l1-posted-interrupt": (Destination.L1, VmxExit.EXTERNAL_INTERRUPT),
    "other-external-interrupt": (Destination.HOST, -1),
    "nmi": (Destination.HOST, -1),
    "init": (Destination.HOST, -1),
    "smi": (Destination.HOST, -1),
    "bus-lock": (Destination.HOST, -1),
    "machine-check": (Destination.TD_LOST, -1),
}


def destination(
    event: str, *, tdvmcall_enabled: bool = False, leaf: int = -1
) -> tuple[Destination, int]:
    """Where ``event`` goes. ``"tdcall"`` with leaf 0 (TDG.VP.VMCALL) goes to the host only
    when L2_CTLS.ENABLE_TDVMCALL is set; every other leaf exits to L1 with reason 77."""
    if event == "tdcall" and leaf == 0 and tdvmcall_enabled:
        return Destination.HOST, -1
    try:
        return L2_EVENTS[event]
    except KeyError:
        raise ValueError(f"unknown L2 event '{event}' (known: {', '.join(L2_EVENTS)})") from None
