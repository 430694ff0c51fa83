"""The TDX module as the guest sees it: TDCALL leaves (tdx.md §1.1), the RAX leaf/version rule,
and what a TDCALL does when L1 issues it versus when an L2 does (tdx.md §2.4).

:class:`TdxModule` holds the TD's state (SEPT, metadata, RTMRs, which L2 runs on which vCPU)
and executes one leaf at a time on *one* page or block — it never loops over pages. Callers
that act on many pages (the L1 driver in :mod:`cocopart_tdx.l1`) execute a representative
block and replicate its effect over runs of equal state.

A TDCALL either completes (``TdcallResult.status`` is RAX, ``out`` the output registers), or
causes a TD exit to the host without completing (``exit`` set; the guest re-executes the
TDCALL after TDH.VP.ENTER), or, for TDG.VP.ENTER, enters an L2 (``entered``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from cocopart.spi import GuestMemory
from cocopart_tdx import attributes as attrs
from cocopart_tdx import metadata as md
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.gpa import gpa_valid, shared_bit
from cocopart_tdx.measure import RTMR_COUNT, rtmr_extend
from cocopart_tdx.sept import (
    ACCEPT_TRANSITIONS,
    ACCEPTED,
    ATTR_RD_STATES,
    ATTR_WR_STATES,
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_BYTES,
    NO_ALIAS,
    PENDING_FAMILY,
    L2Alias,
    Sept,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.status import Operand, TdxStatus, with_details
from cocopart_tdx.vp_enter import (
    ENTER_GUEST_STATE_SIZE,
    GPRS,
    PENDING_INTERRUPT,
    TDCALL_LENGTH,
    VAPIC_NOT_SET,
    VM_MASK,
    VM_SHIFT,
    VMCALL_LENGTH,
    EnterGuestState,
    L2Exit,
    VmxExit,
    check_inputs,
)

U64 = (1 << 64) - 1
GPA_BITS = 0x000F_FFFF_FFFF_F000  # bits 51:12
#: RCX of ACCEPT / ATTR.RD/WR / RELEASE: 2:0 level, 11:3 and 63:52 reserved (tdx.md §4.1)
PAGE_RCX_RESERVED = U64 & ~(GPA_BITS | 0x7)
PENDING_BIT = 1 << 62  # RCX out of ATTR.RD/WR, RELEASE errors (tdx.md §3, §4.3)
REPORT_ALIGN, REPORTDATA_ALIGN, RTMR_DATA_ALIGN = 1024, 64, 64
TDREPORT_SIZE, REPORTDATA_SIZE, RTMR_DATA_SIZE = 1024, 64, 48


class Leaf(IntEnum):
    """TDCALL leaf numbers (tdx.md §1.1)."""

    VP_VMCALL = 0
    VP_INFO = 1
    MR_RTMR_EXTEND = 2
    VP_VEINFO_GET = 3
    MR_REPORT = 4
    VP_CPUIDVE_SET = 5
    MEM_PAGE_ACCEPT = 6
    VM_RD = 7
    VM_WR = 8
    VP_RD = 9
    VP_WR = 10
    SYS_RD = 11
    SYS_RDALL = 12
    SYS_RDM = 13
    VM_RDM = 14
    VM_WRM = 15
    VP_RDM = 16
    VP_WRM = 17
    SERVTD_RD = 18
    SERVTD_RDM = 19
    SERVTD_WR = 20
    SERVTD_WRM = 21
    MR_VERIFYREPORT = 22
    MEM_PAGE_ATTR_RD = 23
    MEM_PAGE_ATTR_WR = 24
    VP_ENTER = 25
    VP_INVEPT = 26
    VP_INVGLA = 27
    MR_ASSIGNSVNS = 28
    MR_KEY_GET = 29
    MEM_PAGE_RELEASE = 30


MNEMONIC = {leaf: "TDG." + leaf.name.replace("_", ".", 1).replace("_", ".") for leaf in Leaf}
MNEMONIC[Leaf.MR_RTMR_EXTEND] = "TDG.MR.RTMR.EXTEND"
MNEMONIC[Leaf.MEM_PAGE_ACCEPT] = "TDG.MEM.PAGE.ACCEPT"
MNEMONIC[Leaf.MEM_PAGE_ATTR_RD] = "TDG.MEM.PAGE.ATTR.RD"
MNEMONIC[Leaf.MEM_PAGE_ATTR_WR] = "TDG.MEM.PAGE.ATTR.WR"
MNEMONIC[Leaf.MEM_PAGE_RELEASE] = "TDG.MEM.PAGE.RELEASE"
MNEMONIC[Leaf.VP_VEINFO_GET] = "TDG.VP.VEINFO.GET"
MNEMONIC[Leaf.VP_CPUIDVE_SET] = "TDG.VP.CPUIDVE.SET"
MNEMONIC[Leaf.MR_VERIFYREPORT] = "TDG.MR.VERIFYREPORT"
MNEMONIC[Leaf.MR_ASSIGNSVNS] = "TDG.MR.ASSIGNSVNS"
MNEMONIC[Leaf.MR_KEY_GET] = "TDG.MR.KEY.GET"

#: Leaves of the 1.5.01 source; "2.0" (a later module) adds 13-17, 19, 21, 28-30 (tdx.md §1.1).
LEAVES_1_5 = frozenset(Leaf) - {
    Leaf.SYS_RDM,
    Leaf.VM_RDM,
    Leaf.VM_WRM,
    Leaf.VP_RDM,
    Leaf.VP_WRM,
    Leaf.SERVTD_RDM,
    Leaf.SERVTD_WRM,
    Leaf.MR_ASSIGNSVNS,
    Leaf.MR_KEY_GET,
    Leaf.MEM_PAGE_RELEASE,
}
#: Largest ACCEPT level per module: 1.5.01 accepts 4K/2M only; a later module also 1G.
MAX_ACCEPT_LEVEL = {"1.5": LEVEL_2M, "2.0": LEVEL_1G}
#: TDX_FEATURES0 bits (tdx.md §2.1; bit 51: the KVM TDX huge-page series, which requires it).
FEATURE_TD_PARTITIONING = 1 << 7
FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY = 1 << 51
#: EEQ types of an EPT-violation TD exit (tdx.md §3, §4.1; PENDING_EPT_VIOLATION: MOD
#: td_ept_violation.c, the value of R13 type 6 in tdx.md §2.3)
EEQ_ACCEPT, EEQ_L2_SEPT, EEQ_ATTR_WR, EEQ_PENDING = 1, 2, 5, 6
#: With TD_CTLS.PENDING_VE_DISABLE (set from ATTRIBUTES.SEPT_VE_DISABLE at TDH.MNG.INIT) an L1
#: access to a PENDING page is an EPT-violation TD exit to the host with EEQ
#: PENDING_EPT_VIOLATION, not a #VE (MOD 1.5 td_ept_violation.c ``td_ept_violation_exit``,
#: tdh_mng_init.c). KVM runs only TDs with SEPT_VE_DISABLE.
RULE_SEPT_VE_DISABLE_PENDING_ACCESS_EXITS_TO_HOST = (
    "SEPT_VE_DISABLE: an L1 access to a PENDING page is a TD exit to the host, not a #VE"
)


def check_rax(rax: int, module: str) -> int | None:
    """RAX: 15:0 leaf, 23:16 version, 63:24 zero; only TDG.VM.RD takes version 1 in 1.5.01;
    a leaf the module does not have is OPERAND_INVALID(RAX) (tdx.md §1)."""
    leaf, version = rax & 0xFFFF, (rax >> 16) & 0xFF
    bad = with_details(TdxStatus.OPERAND_INVALID, Operand.RAX)
    if rax >> 24:
        return bad
    try:
        known = Leaf(leaf)
    except ValueError:
        return bad
    if module == "1.5" and known not in LEAVES_1_5:
        return bad
    if version and not (known is Leaf.VM_RD and version == 1):
        return bad
    return None


@dataclass
class TdExit:
    """A TD exit to the host; the TDCALL did not complete and re-executes afterwards."""

    reason: str  # "EPT_VIOLATION" | "TDVMCALL"
    gpa: int = 0
    level: int = 0
    eeq_type: int = 0
    vm: int = 0
    regs: dict[str, int] = field(default_factory=dict)


@dataclass
class TdcallResult:
    """Completion status (RAX) and outputs, or a TD exit, or an L2 entered."""

    status: int = 0
    out: dict[str, int] = field(default_factory=dict)
    exit: TdExit | None = None
    entered: bool = False

    @property
    def ok(self) -> bool:
        return self.exit is None and not self.status >> 63


@dataclass(frozen=True)
class TdConfig:
    """What the host fixed at TD build (TD_PARAMS) plus the module version."""

    num_l2_vms: int
    vcpus: int
    gpaw: int = 48
    module: str = "1.5"
    attributes: int = 0
    mrtd: bytes = bytes(48)

    @property
    def shared_bit(self) -> int:
        """GPA bit GPAW−1: 47 or 51 (tdx.md §4.3)."""
        return shared_bit(self.gpaw)

    @property
    def config_flags(self) -> int:
        flags = md.CONFIG_FLAG_GPAW if self.gpaw == 52 else 0
        if self.module == "2.0":
            flags |= md.CONFIG_FLAG_PAGE_RELEASE
        return flags


@dataclass
class L2Cpu:
    """An L2 VM's vCPU on one L1 vCPU: its registers while it runs."""

    gprs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GPRS, 0))
    rip: int = 0
    rflags: int = 0x2
    ssp: int = 0
    interrupt_status: int = 0
    running: bool = False


#: Produces a TDREPORT: (REPORTDATA, MRTD, RTMR0..3) -> 1024 bytes.
ReportBuilder = Callable[[bytes, bytes, tuple[bytes, bytes, bytes, bytes]], bytes]


#: VM-entry interruption information (L2 VMCS encoding 0x4016): bit 31 valid, 10:8 type,
#: 7:0 vector (tdx.md §5).
VM_ENTRY_INTR_INFO = 0x4016
VM_ENTRY_INTR_VALID = 1 << 31


@lru_cache(maxsize=8)
def _entry_fields(vm: int) -> tuple[int, int, int, int, int]:
    """L2 VMCS fields TDG.VP.ENTER loads from the buffer: RIP, RSP, RFLAGS, SSP, interrupt
    status (tdx.md §2.3)."""
    f = md.l2_vmcs_field
    return f(vm, 0x681E), f(vm, 0x681C), f(vm, 0x6820), f(vm, 0x682A), f(vm, 0x0810)


class TdxModule:
    """One TD's view of the TDX module: state and TDCALL leaves."""

    def __init__(self, config: TdConfig, sept: Sept, memory: GuestMemory) -> None:
        self.config = config
        self.sept = sept
        self.memory = memory
        self.td_md = md.TdMetadata(
            config.num_l2_vms, config.config_flags, md.initial_td_ctls(config.attributes)
        )
        self._vp_md: dict[int, md.VcpuMetadata] = {}
        self.l2: dict[tuple[int, int], L2Cpu] = {}
        self.curr_vm: dict[int, int] = {}
        #: How many vCPUs run an L2 VM now (what a TDH.MEM.TRACK kick reaches).
        self.l2_running = 0
        #: Next host-side DEMOTE/PROMOTE attempts that find a host interrupt pending (tests set
        #: it, as ``busy``): TDX_INTERRUPTED_RESTARTABLE (sept_resize.RULE_DEMOTE_IS_INTERRUPTIBLE).
        self.host_interrupts = 0
        self.l1_pending_interrupt: set[int] = set()
        self.rtmrs: list[bytes] = [bytes(48)] * RTMR_COUNT
        #: Next SEPT-touching TDCALLs that meet lock contention (OPERAND_BUSY); tests set it.
        self.busy: int = 0
        #: (vm, 2M block) whose L2 SEPT page the host has not provided (tdx.md §3).
        self.l2_sept_missing: set[tuple[int, int]] = set()
        #: VM_CTLS[vm] bit 0: turn L2 SEPT walk failures into TD exits (host only).
        self.vm_ctls: dict[int, int] = {}
        self.invept: dict[int, int] = {}
        #: TDREPORT producer: (report_data, mrtd, rtmrs) -> 1024 bytes (simulated roots).
        self.report_builder: ReportBuilder | None = None

    # -- helpers -----------------------------------------------------------------------------
    @property
    def shared_bit(self) -> int:
        return self.config.shared_bit

    def vp_md(self, vcpu: int) -> md.VcpuMetadata:
        m = self._vp_md.get(vcpu)
        if m is None:
            m = self._vp_md[vcpu] = md.VcpuMetadata(self.config.num_l2_vms)
        return m

    def l2cpu(self, vcpu: int, vm: int) -> L2Cpu:
        c = self.l2.get((vcpu, vm))
        if c is None:
            c = self.l2[(vcpu, vm)] = L2Cpu()
        return c

    def _page_rcx(self, rcx: int, max_level: int) -> tuple[int, int] | int:
        """(gpa, level) from a page-call RCX, or OPERAND_INVALID(RCX): reserved bits, a level
        above ``max_level`` or a misaligned GPA (MOD helpers.c ``verify_page_info_input``),
        then a GPA that is shared or has bits above GPAW (``check_gpa_validity``,
        :data:`cocopart_tdx.gpa.RULE_GPA_WITHIN_GPAW`)."""
        level, gpa = rcx & 0x7, rcx & GPA_BITS
        bad = with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
        if rcx & PAGE_RCX_RESERVED or level > max_level or gpa % LEVEL_BYTES[level]:
            return bad
        if not gpa_valid(gpa, self.config.gpaw, private_only=True):
            return bad
        return gpa, level

    def _outside(self, gpa: int, level: int) -> bool:
        return gpa + LEVEL_BYTES[level] > self.sept.size

    def _busy(self) -> int | None:
        if self.busy > 0:
            self.busy -= 1
            return with_details(TdxStatus.OPERAND_BUSY, Operand.RCX)
        return None

    @property
    def tdx_features0(self) -> int:
        """TDX_FEATURES0 as the module enumerates it: TD_PARTITIONING (bit 7, tdx.md §2.1);
        ENHANCED_DEMOTE_INTERRUPTIBILITY (bit 51) only on the later module ("2.0" here; real
        modules from 1.5.28 — the 1.5.01 source lacks it)."""
        features = FEATURE_TD_PARTITIONING
        if self.config.module == "2.0":
            features |= FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY
        return features

    def host_interrupted(self) -> bool:
        """Whether this host-side DEMOTE/PROMOTE meets a pending host interrupt: with
        ENHANCED_DEMOTE_INTERRUPTIBILITY never for a TD without L2 VMs; a partitioned TD
        stays interruptible (sept_resize.RULE_DEMOTE_IS_INTERRUPTIBLE)."""
        if self.host_interrupts <= 0:
            return False
        if (
            self.tdx_features0 & FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY
            and self.config.num_l2_vms == 0
        ):
            return False
        self.host_interrupts -= 1
        return True

    @property
    def pending_ve_disabled(self) -> bool:
        """TD_CTLS.PENDING_VE_DISABLE (L1 may change it with TDG.VM.WR)."""
        return bool(self.td_md.values.get(md.TD_CTLS_FIELD, 0) & md.TD_CTLS_PENDING_VE_DISABLE)

    def l2_shared_eptp(self, vcpu: int, vm: int) -> bool:
        """L2_CTLS[vm].ENABLE_SHARED_EPTP of ``vcpu``: whether VM ``vm``'s L2 VMCS uses the
        host's shared EPT (:data:`metadata.RULE_L2_SHARED_NEEDS_SHARED_EPTP`)."""
        return bool(self.vp_md(vcpu).get_internal(md.l2_ctls(vm)) & md.L2_CTLS_ENABLE_SHARED_EPTP)

    def l1_pending_access(self, gpa: int) -> TdExit | None:
        """An L1 access to the PENDING page at ``gpa``: the EPT-violation TD exit the module
        takes (:data:`RULE_SEPT_VE_DISABLE_PENDING_ACCESS_EXITS_TO_HOST`), or None when it
        injects a #VE into L1 instead."""
        if self.pending_ve_disabled:
            return TdExit("EPT_VIOLATION", gpa - gpa % 4096, 0, EEQ_PENDING)
        return None

    def private_accepted(self, gpa: int) -> bool:
        return (
            not gpa & self.shared_bit
            and 0 <= gpa < self.sept.size
            and self.sept.entry(gpa).state in ACCEPTED
        )

    # -- dispatch ------------------------------------------------------------------------------
    def tdcall(self, vcpu: int, regs: dict[str, int]) -> TdcallResult:
        """Execute a TDCALL issued by L1 on ``vcpu`` with ``regs`` (rax = leaf/version)."""
        bad = check_rax(regs.get("rax", 0), self.config.module)
        if bad is not None:
            return TdcallResult(bad)
        leaf = Leaf(regs["rax"] & 0xFFFF)
        g = regs.get
        if leaf is Leaf.MEM_PAGE_ACCEPT:
            return self.accept_rcx(g("rcx", 0))
        if leaf is Leaf.MEM_PAGE_ATTR_RD:
            return self.attr_rd(g("rcx", 0))
        if leaf is Leaf.MEM_PAGE_ATTR_WR:
            return self.attr_wr_rcx(g("rcx", 0), g("rdx", 0), g("r8", 0))
        if leaf is Leaf.MEM_PAGE_RELEASE:
            return self.release_rcx(g("rcx", 0))
        if leaf is Leaf.VP_RD:
            return self.vp_rd(vcpu, g("rcx", 0), g("rdx", 0))
        if leaf is Leaf.VP_WR:
            return self.vp_wr(vcpu, g("rcx", 0), g("rdx", 0), g("r8", 0), g("r9", 0))
        if leaf is Leaf.VM_RD:
            return self.vm_rd(g("rcx", 0), g("rdx", 0))
        if leaf is Leaf.VM_WR:
            return self.vm_wr(g("rcx", 0), g("rdx", 0), g("r8", 0), g("r9", 0))
        if leaf is Leaf.VP_ENTER:
            return self.vp_enter(vcpu, g("rcx", 0), g("rdx", 0))
        if leaf is Leaf.VP_INFO:
            return self.vp_info(vcpu)
        if leaf is Leaf.MR_REPORT:
            return self.mr_report(g("rcx", 0), g("rdx", 0), g("r8", 0))
        if leaf is Leaf.MR_RTMR_EXTEND:
            return self.rtmr_extend(g("rcx", 0), g("rdx", 0))
        if leaf is Leaf.VP_INVEPT:
            return self.vp_invept(g("rcx", 0))
        if leaf is Leaf.VP_VMCALL:
            return self.vmcall(vcpu, regs)
        raise NotImplementedError(f"{MNEMONIC[leaf]} is not modelled")

    # -- TDG.MEM.PAGE.ACCEPT (tdx.md §4.1, MOD tdg_mem_page_accept.c) ------------------------
    def accept(self, gpa: int, level: int) -> TdcallResult:
        return self.accept_rcx(gpa | level)

    def accept_rcx(self, rcx: int) -> TdcallResult:
        parsed = self._page_rcx(rcx, MAX_ACCEPT_LEVEL[self.config.module])
        if isinstance(parsed, int):
            return TdcallResult(parsed)
        gpa, level = parsed
        if self._outside(gpa, level):
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_ACCEPT))
        busy = self._busy()
        if busy is not None:
            return TdcallResult(busy)
        e = self.sept.entry(gpa)
        if e.level < level:  # the entry at the requested level is a non-leaf: mapped smaller
            return TdcallResult(with_details(TdxStatus.PAGE_SIZE_MISMATCH, level))
        if e.state in ACCEPTED:
            return TdcallResult(with_details(TdxStatus.PAGE_ALREADY_ACCEPTED, e.level))
        new = ACCEPT_TRANSITIONS.get(e.state)
        if new is None or e.level != level:  # FREE, BLOCKED, larger PENDING leaf ...
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_ACCEPT))
        end = gpa + LEVEL_BYTES[level]
        self.sept.set_entries(gpa, end, SeptEntry(new, level))
        self.sept.unblock_aliases(gpa, end)
        self.memory.zero(gpa, end - gpa)  # zeroed with the TD's key (tdx.md §4.1)
        return TdcallResult(0)

    # -- TDG.MEM.PAGE.ATTR.RD / WR (tdx.md §3) ---------------------------------------------
    def gpa_attr(self, gpa: int) -> int:
        words: dict[int, int] = {}
        for vm in range(1, self.config.num_l2_vms + 1):
            a = self.sept.alias(vm, gpa)
            if a.state is not SeptState.L2_FREE:
                words[vm] = a.attr | attrs.VALID
        return attrs.pack(words)

    def attr_rd(self, rcx: int) -> TdcallResult:
        """TDG.MEM.PAGE.ATTR.RD: RCX is a GPA whose only check is ``check_gpa_validity``
        (MOD tdg_mem_page_attr_rd.c; bits 11:0 are ignored)."""
        if not gpa_valid(rcx, self.config.gpaw, private_only=True):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RCX))
        gpa = rcx & GPA_BITS
        if gpa >= self.sept.size:
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, 0))
        e = self.sept.entry(gpa)
        if e.state not in ATTR_RD_STATES:
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, 0))
        size = LEVEL_BYTES[e.level]
        mapping = (gpa - gpa % size) | e.level | (PENDING_BIT if e.state in PENDING_FAMILY else 0)
        return TdcallResult(0, {"rcx": mapping, "rdx": self.gpa_attr(gpa)})

    def attr_wr(self, gpa: int, level: int, gpa_attr: int, flags: int) -> TdcallResult:
        return self.attr_wr_rcx(gpa | level, gpa_attr, flags)

    def attr_wr_rcx(self, rcx: int, gpa_attr: int, flags: int) -> TdcallResult:
        """TDG.MEM.PAGE.ATTR.WR in MOD tdg_mem_page_attr_wr.c's order: the per-VM RDX/R8 words
        (:func:`attributes.check_request`), then the RCX page info and GPA, the SEPT walk
        (a larger leaf or a state ATTR.WR may not touch: EPT-violation TD exit; a non-leaf
        at the level: PAGE_SIZE_MISMATCH), then the combined attributes VM by VM
        (:func:`attributes.plan`), then the commit."""
        bad = attrs.check_request(gpa_attr, flags, self.config.num_l2_vms)
        if bad is not None:
            return TdcallResult(bad, {"rcx": 0, "rdx": 0})
        parsed = self._page_rcx(rcx, LEVEL_1G)
        if isinstance(parsed, int):
            return TdcallResult(parsed, {"rcx": 0, "rdx": 0})
        gpa, level = parsed
        if self._outside(gpa, level):
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_ATTR_WR))
        busy = self._busy()
        if busy is not None:
            return TdcallResult(busy, {"rcx": 0, "rdx": 0})
        e = self.sept.entry(gpa)
        if e.level < level:
            return TdcallResult(
                with_details(TdxStatus.PAGE_SIZE_MISMATCH, level), {"rcx": 0, "rdx": 0}
            )
        if e.level > level or e.state not in ATTR_WR_STATES:  # host must demote / map
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_ATTR_WR))
        current: dict[int, int | None] = {}
        for vm in range(1, self.config.num_l2_vms + 1):
            a = self.sept.alias(vm, gpa)
            current[vm] = None if a.state is SeptState.L2_FREE else a.attr
        block = gpa >> 21
        plan = attrs.plan(
            gpa_attr,
            flags,
            current,
            self.config.num_l2_vms,
            lambda vm: (vm, block) not in self.l2_sept_missing,
        )
        if plan.walk_failed_vm is not None:
            vm = plan.walk_failed_vm
            if self.vm_ctls.get(vm, 0) & 1:
                return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_L2_SEPT, vm))
            return TdcallResult(
                with_details(TdxStatus.L2_SEPT_WALK_FAILED, (vm << 16) | level),
                {"rcx": 0, "rdx": 0},
            )
        if plan.status:  # nothing committed; RCX = 0, RDX = the words as computed so far
            return TdcallResult(plan.status, {"rcx": 0, "rdx": plan.rdx})
        end = gpa + LEVEL_BYTES[level]
        pending = e.state in PENDING_FAMILY
        for vm, value in plan.new.items():
            if value is None:
                continue
            if attrs.grants_any(value):
                state = SeptState.L2_BLOCKED if pending else SeptState.L2_MAPPED
                self.sept.set_alias(vm, gpa, end, L2Alias(state, value))
            else:  # none of R/W/Xs/Xu: the alias is removed (tdx.md §3)
                self.sept.set_alias(vm, gpa, end, NO_ALIAS)
        for vm in plan.invept:
            self.invept[vm] = self.invept.get(vm, 0) + 1
        mapping = gpa | level | (PENDING_BIT if pending else 0)
        return TdcallResult(0, {"rcx": mapping, "rdx": plan.rdx})

    # -- TDG.MEM.PAGE.RELEASE (leaf 30, later modules; tdx.md §4.3) -------------------------
    def release(self, gpa: int, level: int) -> TdcallResult:
        return self.release_rcx(gpa | level)

    def release_rcx(self, rcx: int) -> TdcallResult:
        if (
            self.config.module == "1.5"
            or not self.config.config_flags & md.CONFIG_FLAG_PAGE_RELEASE
        ):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RAX))
        parsed = self._page_rcx(rcx, LEVEL_1G)
        if isinstance(parsed, int):
            return TdcallResult(parsed)
        gpa, level = parsed
        if self._outside(gpa, level):
            return TdcallResult(int(TdxStatus.EPT_ENTRY_FREE))
        busy = self._busy()
        if busy is not None:
            return TdcallResult(busy)
        e = self.sept.entry(gpa)
        if e.state is SeptState.FREE or e.state is SeptState.REMOVED:
            return TdcallResult(int(TdxStatus.EPT_ENTRY_FREE))
        if e.level < level:
            return TdcallResult(with_details(TdxStatus.PAGE_SIZE_MISMATCH, level))
        if e.level > level:  # a larger leaf: TD exit, the host demotes (as for ATTR.WR)
            return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, level, EEQ_ATTR_WR))
        if e.state not in ACCEPTED:
            return TdcallResult(
                int(TdxStatus.EPT_ENTRY_STATE_INCORRECT),
                {"rcx": gpa | level | (PENDING_BIT if e.state in PENDING_FAMILY else 0)},
            )
        end = gpa + LEVEL_BYTES[level]
        # RELEASE_MAKES_PENDING (modelled): the page goes back to PENDING; any L2 alias left
        # becomes L2_BLOCKED, as an alias of a PENDING page is (tdx.md §3).
        self.sept.set_entries(gpa, end, SeptEntry(SeptState.PENDING, level))
        for amap in self.sept.l2.values():
            amap.update(
                gpa,
                end,
                lambda a: (
                    a._replace(state=SeptState.L2_BLOCKED) if a.state is SeptState.L2_MAPPED else a
                ),
            )
        return TdcallResult(0)

    # -- metadata (tdx.md §2.2) -------------------------------------------------------------
    def vp_rd(self, vcpu: int, rcx: int, field_id: int) -> TdcallResult:
        bad = md.vp_rcx_check(rcx)
        if bad is not None:
            return TdcallResult(bad)
        try:
            return TdcallResult(0, {"r8": self.vp_md(vcpu).read(field_id)})
        except md.MetadataError as err:
            return TdcallResult(err.status)

    def vp_wr(self, vcpu: int, rcx: int, field_id: int, value: int, mask: int) -> TdcallResult:
        bad = md.vp_rcx_check(rcx)
        if bad is not None:
            return TdcallResult(bad)
        m = self.vp_md(vcpu)
        try:
            old = m.write(field_id, value, mask)
        except md.MetadataError as err:
            return TdcallResult(err.status)
        fid = md.FieldId.decode(field_id)
        if fid.code == md.VIRTUAL_APIC_PAGE_ADDR and fid.cls >= md.L2_VMCS_CLASS_BASE:
            vm = (fid.cls - md.L2_VMCS_CLASS_BASE) // md.L2_CLASS_STRIDE + 1
            # L2_VAPIC_GPA is set implicitly by this write (tdx.md §2.2); writing 0 clears it
            # (VAPIC_CLEARED_BY_ZERO: modelled, unconfirmed).
            m.set_internal(md.L2_VAPIC_GPA_BASE + vm, m.read(field_id))
        return TdcallResult(0, {"r8": old})

    def vm_rd(self, rcx: int, field_id: int) -> TdcallResult:
        bad = md.vm_rcx_check(rcx)
        if bad is not None:
            return TdcallResult(bad)
        try:
            return TdcallResult(0, {"r8": self.td_md.read(field_id)})
        except md.MetadataError as err:
            return TdcallResult(err.status)

    def vm_wr(self, rcx: int, field_id: int, value: int, mask: int) -> TdcallResult:
        bad = md.vm_rcx_check(rcx)
        if bad is not None:
            return TdcallResult(bad)
        try:
            return TdcallResult(0, {"r8": self.td_md.write(field_id, value, mask)})
        except md.MetadataError as err:
            return TdcallResult(err.status)

    def vp_info(self, vcpu: int) -> TdcallResult:
        """TDG.VP.INFO (tdx.md §1.1)."""
        return TdcallResult(
            0,
            {
                "rcx": self.config.gpaw,
                "rdx": self.config.attributes,
                "r8": self.config.vcpus | (self.config.vcpus << 32),
                "r9": vcpu,
                "r10": 1,
                "r11": 0,
            },
        )

    def vp_invept(self, rcx: int) -> TdcallResult:
        """TDG.VP.INVEPT: bit i = VM i; bit 0 and bits above NUM_L2_VMS must be 0."""
        if rcx & 1 or rcx >> (self.config.num_l2_vms + 1):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RCX))
        for vm in range(1, self.config.num_l2_vms + 1):
            if rcx >> vm & 1:
                self.invept[vm] = self.invept.get(vm, 0) + 1
        return TdcallResult(0)

    # -- measurement and report (tdx.md §1.1, §7) -------------------------------------------
    def rtmr_extend(self, data_gpa: int, index: int) -> TdcallResult:
        if data_gpa % RTMR_DATA_ALIGN or not self.private_accepted(data_gpa):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RCX))
        if not 0 <= index < RTMR_COUNT:
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RDX))
        data = self.memory.read(data_gpa, RTMR_DATA_SIZE)
        self.rtmrs[index] = rtmr_extend(self.rtmrs[index], data)
        return TdcallResult(0)

    def mr_report(self, report_gpa: int, data_gpa: int, subtype: int) -> TdcallResult:
        if report_gpa % REPORT_ALIGN or not self.private_accepted(report_gpa):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RCX))
        if data_gpa % REPORTDATA_ALIGN or not self.private_accepted(data_gpa):
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.RDX))
        if subtype:
            return TdcallResult(with_details(TdxStatus.OPERAND_INVALID, Operand.R8))
        builder = self.report_builder
        if builder is None:
            raise RuntimeError("the module has no TDREPORT builder")
        report_data = self.memory.read(data_gpa, REPORTDATA_SIZE)
        rtmrs = (self.rtmrs[0], self.rtmrs[1], self.rtmrs[2], self.rtmrs[3])
        report = builder(report_data, self.config.mrtd, rtmrs)
        self.memory.write(report_gpa, report)
        return TdcallResult(0)

    # -- TDG.VP.VMCALL from L1 (tdx.md §1.2) ------------------------------------------------
    def vmcall(self, vcpu: int, regs: dict[str, int]) -> TdcallResult:
        bad = vmc.check_select(regs.get("rcx", 0))
        if bad is not None:
            return TdcallResult(bad)
        return TdcallResult(
            exit=TdExit("TDVMCALL", vm=0, regs=vmc.host_view(regs, regs.get("rcx", 0), 0))
        )

    # -- TDG.VP.ENTER (tdx.md §2.3) ---------------------------------------------------------
    def vp_enter(self, vcpu: int, rcx: int, rdx: int) -> TdcallResult:
        bad = check_inputs(rcx, rdx, self.config.num_l2_vms, self.config.gpaw)
        if bad is not None:
            return TdcallResult(bad)
        vm = (rcx & VM_MASK) >> VM_SHIFT
        m = self.vp_md(vcpu)
        vapic = m.get_internal(md.L2_VAPIC_GPA_BASE + vm)
        if not vapic:
            return TdcallResult(VAPIC_NOT_SET)
        if vcpu in self.l1_pending_interrupt:
            return TdcallResult(PENDING_INTERRUPT)
        for gpa in (rdx, vapic):
            if not self.private_accepted(gpa):
                return TdcallResult(exit=TdExit("EPT_VIOLATION", gpa, 0))
        state = EnterGuestState.decode(self.memory.read(rdx, ENTER_GUEST_STATE_SIZE))
        cpu = self.l2cpu(vcpu, vm)
        cpu.gprs = dict(state.gprs)
        cpu.rip, cpu.rflags, cpu.ssp = state.rip, state.rflags, state.ssp
        cpu.interrupt_status = state.interrupt_status
        cpu.running = True
        f_rip, f_rsp, f_rflags, f_ssp, f_intr = _entry_fields(vm)
        m.values.update(
            {
                f_rip: state.rip,
                f_rsp: state.gprs["rsp"],
                f_rflags: state.rflags,
                f_ssp: state.ssp,
                f_intr: state.interrupt_status,
            }
        )
        m.set_internal(md.L2_ENTER_GUEST_STATE_GPA_BASE + vm, rdx)
        self._set_curr_vm(vcpu, vm)
        # An event in the VM-entry interruption information field (0x4016) is injected by
        # this entry and its valid bit cleared (VMX entry semantics, Intel SDM vol. 3; the
        # field and its bits: tdx.md §5).
        f_inj = md.l2_vmcs_field(vm, VM_ENTRY_INTR_INFO)
        info = m.values.get(f_inj, 0)
        if info & VM_ENTRY_INTR_VALID:
            m.values[f_inj] = info & ~VM_ENTRY_INTR_VALID
            return TdcallResult(0, {"injected": info & 0xFFFF_FFFF}, entered=True)
        return TdcallResult(0, entered=True)

    # -- what the running L2 does -----------------------------------------------------------
    def running_vm(self, vcpu: int) -> int:
        return self.curr_vm.get(vcpu, 0)

    def _set_curr_vm(self, vcpu: int, vm: int) -> None:
        self.l2_running += bool(vm) - bool(self.curr_vm.get(vcpu, 0))
        self.curr_vm[vcpu] = vm

    def l2_exit(self, vcpu: int, exit_info: L2Exit) -> dict[str, int]:
        """An L2 -> L1 exit: the L2's registers go to its L2_ENTER_GUEST_STATE buffer, L1
        gets the exit registers, CURR_VM becomes 0 (tdx.md §2.3)."""
        vm = self.curr_vm.get(vcpu, 0)
        if vm == 0:
            raise RuntimeError(f"no L2 runs on vCPU {vcpu}")
        cpu = self.l2cpu(vcpu, vm)
        gpa = self.vp_md(vcpu).get_internal(md.L2_ENTER_GUEST_STATE_GPA_BASE + vm)
        state = EnterGuestState(dict(cpu.gprs), cpu.rflags, cpu.rip, cpu.ssp, cpu.interrupt_status)
        self.memory.write(gpa, state.encode())
        cpu.running = False
        self._set_curr_vm(vcpu, 0)
        return exit_info.registers()

    def l2_tdcall(self, vcpu: int) -> dict[str, int] | TdExit:
        """The running L2 executes TDCALL with its current registers. Only TDG.VP.VMCALL with
        L2_CTLS.ENABLE_TDVMCALL reaches the host; every other TDCALL is an L2 -> L1 exit with
        basic reason 77 (tdx.md §2.4)."""
        vm = self.curr_vm.get(vcpu, 0)
        cpu = self.l2cpu(vcpu, vm)
        leaf = cpu.gprs["rax"] & 0xFFFF
        ctls = self.vp_md(vcpu).get_internal(md.l2_ctls(vm))
        if leaf == Leaf.VP_VMCALL and ctls & md.L2_CTLS_ENABLE_TDVMCALL:
            rcx = cpu.gprs["rcx"]
            bad = vmc.check_select(rcx)
            if bad is not None:
                cpu.gprs["rax"] = bad
                return {}
            return TdExit("TDVMCALL", vm=vm, regs=vmc.host_view(cpu.gprs, rcx, vm))
        return self.l2_exit(vcpu, L2Exit(VmxExit.TDCALL, instr_length=TDCALL_LENGTH))

    def l2_vmcall_instruction(self, vcpu: int) -> dict[str, int]:
        """The running L2 executes VMCALL: an unconditional L2 -> L1 exit, reason 18."""
        return self.l2_exit(vcpu, L2Exit(VmxExit.VMCALL, instr_length=VMCALL_LENGTH))

    def clear_l2(self, vcpu: int, vm: int) -> None:
        """Forget an L2 vCPU's runtime state (L1 deleted it)."""
        self.l2.pop((vcpu, vm), None)
        if self.curr_vm.get(vcpu) == vm:
            self._set_curr_vm(vcpu, 0)
