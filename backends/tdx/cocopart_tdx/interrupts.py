"""Interrupt delivery on TDX partitioning: the host reaches only L1, L1 injects into its L2s.

TDX gives L1 exactly two ways into an L2 (tdx.md §5; MOD 1.5 td_l2_vmcs_fields_lookup.c):
the L2 VMCS VM-entry interruption-information field (TDG.VP.WR 0x4016) and virtual-interrupt
delivery (the L2's virtual-APIC page, RVI/SVI in L2_ENTER_GUEST_STATE). An L2 has no
posted-interrupt processing (its PI descriptor is read-only to L1) and no IPI virtualization:
its ICR write exits to L1 as WRMSR (:data:`RULE_L2_ICR_WRITE_EXITS_AS_WRMSR`). The
vendor-neutral modes map onto those mechanisms like this (world switches per host interrupt):

=========== ========= ===========================================================================
mode        supported how one host interrupt for an L2 vCPU travels
=========== ========= ===========================================================================
direct      no        the host can never inject into an L2: it only posts to L1 (tdx.md §5)
restricted  yes       host posts to L1's posted-interrupt descriptor + notification; the running L2
                      exits to L1 (L2_EXIT_PENDING_INTERRUPT, reason 1) only if the vector is
                      deliverable to L1 (:data:`RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE`), else it
                      stays in L1's vIRR and the L2 resumes; L1 latches the vector in the L2's APIC
                      it emulates (x2APIC MSRs intercepted) -> TDG.VP.WR of VM-entry interruption
                      information (0x4016: bit 31 valid, type 0, vector) -> TDG.VP.ENTER. EOI:
                      WRMSR(0x80B) exit (reason 32) -> L1 -> TDG.VP.ENTER.
alternate   yes       a cocopart software protocol, not a TDX mechanism: L1 serves the SVSM APIC
                      protocol (protocol 3, registration count) to its L2s — no TDX stack (OpenHCL,
                      the TD-partitioning SVSM, COCONUT's TDP platform) implements that today;
                      delivery is the restricted path; EOI lazily through the calling area's
                      no_eoi_required byte or SVSM_APIC WRITE_REGISTER(EOI) (a TDCALL exit, 77).
secure-avic yes       on TDX: L2 virtual-interrupt delivery. L1 sets the vector in the L2
                      virtual-APIC page IRR and RVI in L2_ENTER_GUEST_STATE.INTERRUPT_STATUS ->
                      TDG.VP.ENTER; the CPU delivers by priority; EOI virtualized (no exit).
=========== ========= ===========================================================================

Host interrupts for L1 itself are posted to L1 and delivered by the module's virtualization
of L1's APIC (no exit while L1 runs; an L2 running there exits to L1 first, if the vector is
deliverable). TDG.VP.ENTER answers TDX_PENDING_INTERRUPT when L1 has a deliverable interrupt
of its own (RVI[7:4] > PPR[7:4]); L1 takes it and enters again
(:attr:`TdxInterrupts.during_entry` lets a test post interrupts right after L1 committed to
an entry). L1's own interrupt handler runs to completion (delivered and its EOI virtualized)
before L1 enters an L2 again (:data:`RULE_L1_HANDLER_RUNS_TO_COMPLETION`); it handles every
vector waiting in its vIRR.

Mode changes: :data:`RULE_NO_DIRECT`, :data:`RULE_ALTERNATE_NOT_REENTERED`,
:data:`RULE_L1_MOVES_STATE`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from cocopart.spi import EOI as X2APIC_EOI
from cocopart.spi import (
    ApicCall,
    ArchError,
    ConfigureInterrupts,
    DeliveryStatus,
    EndOfInterrupt,
    EoiRecord,
    InjectInterrupt,
    InterruptDelivery,
    InterruptMode,
    MemoryFlag,
    OperationResult,
    ProtocolId,
    ResultCode,
    fixed_ipi_icr,
    present,
    result_name,
    settle_lazy,
)
from cocopart_tdx import metadata as md
from cocopart_tdx.interrupt_modes import (  # re-exported: the mode rules live there
    ALTERNATE,
    DIRECT,
    MECHANISM,
    RESTRICTED,
    RULE_ALTERNATE_NOT_REENTERED,
    RULE_NO_DIRECT,
    SECURE_AVIC,
)
from cocopart_tdx.interrupt_modes import (
    capability_answers as capability_answers,  # noqa: PLC0414 - re-exported
)
from cocopart_tdx.l1 import Tally, TdxPlatform, vm_name
from cocopart_tdx.status import TdxStatus
from cocopart_tdx.tdcall import VM_ENTRY_INTR_INFO, VM_ENTRY_INTR_VALID, TdcallResult
from cocopart_tdx.vp_enter import ENTER_GUEST_STATE_SIZE, EnterGuestState, L2Exit, VmxExit

if TYPE_CHECKING:
    from cocopart_tdx.machine import TdxMachine

L1, HOST, MODULE = "l1", "host", "firmware"
VENDOR = "intel"
EXIT = "L2->L1 exit"
ENTER = "TDG.VP.ENTER"
TD_EXIT, TD_ENTER = "TD exit", "TDH.VP.ENTER"
#: Upper half of RAX on an L2 -> L1 exit caused by an interrupt for L1 (tdx.md §2.3, §9).
L2_EXIT_PENDING_INTERRUPT_CLASS = int(TdxStatus.L2_EXIT_PENDING_INTERRUPT) >> 32
#: Type 0 (external interrupt) in bits 10:8 of the VM-entry interruption information.
ENTRY_TYPE_EXTERNAL = 0
#: Virtual-APIC page layout (Intel SDM vol. 3 "Virtualizing the APIC"; not in tdx.md —
#: unconfirmed there): ISR at 0x100 and IRR at 0x200, eight 32-bit words 16 bytes apart.
VAPIC_ISR, VAPIC_IRR, VAPIC_STRIDE = 0x100, 0x200, 0x10

L1_MECHANISM = "posted interrupt to L1 (the TDX module virtualizes L1's APIC)"

#: L1 holds the L2's APIC state in every supported mode (its emulation, or the virtual-APIC
#: page in its own memory), so restricted <-> secure-avic moves it inside L1 at any time; the
#: request reaches L1 as one L2 -> L1 round trip (no protocol call exists for it: a cocopart
#: extension, flagged in the result).
RULE_L1_MOVES_STATE = "restricted <-> secure-avic: allowed; L1 moves the APIC state"
#: L1's own interrupts are handled to completion (delivered, EOI virtualized) before L1
#: enters an L2 again; an EndOfInterrupt for ``l1`` has nothing left to complete.
RULE_L1_HANDLER_RUNS_TO_COMPLETION = "L1's own interrupts complete before it enters an L2"
#: An interrupt for an L2 vCPU L1 never created is dropped.
RULE_NO_VCPU_NO_INTERRUPT = "an interrupt for an L2 vCPU that does not exist is dropped"
#: Requesters: the host (a device) or the target L2 itself (an IPI from its vCPU 0).
RULE_REQUESTERS = "interrupts come from the host (devices) or the target workload (IPIs)"
#: Virtual-interrupt delivery is assumed enabled in every L2 VMCS (the L1-writable part of
#: the secondary processor-based controls is not in tdx.md — unconfirmed).
RULE_VID_ENABLED = "the L2 VMCS has virtual-interrupt delivery enabled"
#: An L2's ICR write to another vCPU: L1 sets the target's IRR in its own memory, then sends
#: L1's IPI (#VE -> TDG.VP.VMCALL<WRMSR>, a TD exit) so the host posts to the target L1 vCPU.
RULE_IPI_THROUGH_HOST = "an IPI to another vCPU goes L1 -> host -> the target's L1"
#: TDX 1.5 gives L2s no IPI virtualization: bit 4 of the L2 tertiary processor-based controls
#: is outside L1's write mask (0xE, MOD td_l2_vmcs_fields_lookup.c), so an L2's x2APIC ICR
#: write (WRMSR 0x830) is an L2 -> L1 exit with basic reason WRMSR (32), in every mode —
#: never APIC_WRITE (56).
RULE_L2_ICR_WRITE_EXITS_AS_WRMSR = "an L2's ICR write exits to L1 as WRMSR (32) on MSR 0x830"
#: A host interrupt posted to L1 while an L2 runs: the module merges the PIR into L1's vIRR,
#: raises L1's RVI to the highest posted vector (vectors below 31 ignored) and forces the L2
#: out (L2_EXIT_PENDING_INTERRUPT) only if RVI[7:4] > L1's PPR[7:4]; otherwise the L2 resumes
#: and the vector waits in L1's vIRR (MOD 1.5 td_l2_interrupt.c handle_l2_posted_interrupt).
RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE = "a post to L1 forces the L2 out only if deliverable"
X2APIC_ICR_MSR = 0x830
#: The module ignores posted vector bits 30:0 when it computes L1's RVI (td_l2_interrupt.c).
RVI_MIN_POSTED_VECTOR = 31


def l2_posted_interrupt_exits(rvi: int, vector: int, ppr: int) -> tuple[int, bool]:
    """MOD td_l2_interrupt.c ``handle_l2_posted_interrupt``: L1's new RVI after ``vector`` is
    posted while an L2 runs, and whether the L2 must exit to L1
    (:data:`RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE`)."""
    posted = vector if vector >= RVI_MIN_POSTED_VECTOR else 0
    rvi = max(rvi, posted)
    return rvi, (rvi & 0xF0) > (ppr & 0xF0)


class TdxInterrupts(InterruptDelivery):
    """Interrupt modes and delivery of one :class:`TdxMachine` (also L1's entry hooks)."""

    m: TdxMachine
    VENDOR = VENDOR
    MECHANISM = MECHANISM
    L1_MECHANISM = L1_MECHANISM
    HANDOFF_MODE = RESTRICTED  # L1 keeps its MSR-intercept emulation
    LAZY_MODES = (ALTERNATE,)
    PROTOCOL_HOLDER = "L1"
    RULE_NO_VCPU_NO_INTERRUPT = RULE_NO_VCPU_NO_INTERRUPT
    RULE_L1_HANDLER_RUNS_TO_COMPLETION = RULE_L1_HANDLER_RUNS_TO_COMPLETION
    RULE_REQUESTERS = RULE_REQUESTERS
    RULE_ALTERNATE_NOT_REENTERED = RULE_ALTERNATE_NOT_REENTERED

    def __init__(self, machine: TdxMachine) -> None:
        super().__init__(machine)
        #: The L2 VM that ran on each vCPU when an interrupt took it to L1.
        self.interrupted: dict[int, int] = {}
        #: :attr:`during_entry`: interrupts posted right after L1 committed to an L2 entry on
        #: that vCPU (test hook): TDG.VP.ENTER then answers TDX_PENDING_INTERRUPT.
        self.pending_interrupt_answers = 0
        #: Vectors posted to L1 and not yet taken (its vIRR), per vCPU, with their target.
        self._posted: dict[int, list[tuple[str, int]]] = {}
        #: L1's RVI per vCPU as the posts raised it (RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE).
        self._l1_rvi: dict[int, int] = {}
        self._injected: dict[tuple[int, int], int] = {}
        machine.platform.interrupt_hooks = self

    # -- helpers ------------------------------------------------------------------------------
    @property
    def p(self) -> TdxPlatform:
        return self.m.platform

    def eoi_flag(self, layer: str, vcpu: int) -> MemoryFlag | None:
        return self.caa_flag(layer, vcpu) if self.effective(layer, vcpu) == ALTERNATE else None

    def exists(self, layer: str, vcpu: int) -> bool:
        if layer == L1:
            return 0 <= vcpu < self.m.config.vcpus
        return bool(self.p.vcpu_exists(self.p.vm_of(layer), vcpu))

    def _field(self, vm: int) -> int:
        return md.l2_vmcs_field(vm, VM_ENTRY_INTR_INFO)

    # -- operations ----------------------------------------------------------------------------
    def _refuse_target(self, op: InjectInterrupt | EndOfInterrupt) -> str | None:
        m = self.m
        if op.target != L1 and op.target not in m.workloads:
            return (
                f"{op.target} takes no interrupts here: only L1 and the L2 VMs "
                f"({', '.join(m.workloads)}) have vCPUs"
            )
        return None

    def _refuse_inject(self, op: InjectInterrupt) -> str | None:
        return RULE_NO_DIRECT if op.target != L1 and self.mode == DIRECT else None

    def _serve(self, op: InjectInterrupt, coalesced: bool) -> None:
        target, vcpu, vector = op.target, op.vcpu, op.vector
        tally = Tally()
        if coalesced:
            tally.record(HOST if op.layer == HOST else L1, "APIC.ACCEPT", target, "coalesced")
        elif op.layer == HOST:
            if self._post(target, vcpu, vector, tally):  # else it waits in L1's vIRR
                self._take_posted(vcpu, tally, then=target)
                self._reenter(target, vcpu, tally)
        else:
            self._ipi(target, vcpu, vector, tally)
        tally.flush(self.trace)
        self._notify_pending()

    # -- the path: host -> L1 -> L2 --------------------------------------------------------------
    def _post(self, target: str, vcpu: int, vector: int, tally: Tally) -> bool:
        """The host posts into L1's posted-interrupt descriptor and sends the notification.
        An L2 running on the vCPU exits to L1 with L2_EXIT_PENDING_INTERRUPT only if the
        vector is deliverable to L1 (:data:`RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE`); otherwise
        the module resumes it and the vector waits in L1's vIRR. True when L1 gets to run
        (nothing ran there, or the L2 exited)."""
        tally.record(HOST, "PI.POST", L1)
        tally.record(HOST, "PI.NOTIFY", L1)
        self._posted.setdefault(vcpu, []).append((target, vector))
        cur = self.m.module.running_vm(vcpu)
        if not cur:  # L1 runs (or idles) there: the CPU's posted-interrupt processing
            self._l1_rvi[vcpu] = max(self._l1_rvi.get(vcpu, 0), vector)
            return self._l1_deliverable(vcpu)
        rvi, exits = l2_posted_interrupt_exits(
            self._l1_rvi.get(vcpu, 0), vector, self.apic(L1, vcpu).ppr
        )
        self._l1_rvi[vcpu] = rvi
        if not exits:
            tally.record(MODULE, "L2.POSTED_INTERRUPT", self.p.layer_of(cur), "L2 resumed")
            return False
        self._exit_running(
            vcpu,
            tally,
            "PENDING_INTERRUPT",
            L2Exit(VmxExit.EXTERNAL_INTERRUPT, status_class=L2_EXIT_PENDING_INTERRUPT_CLASS),
        )
        return True

    def _take_posted(
        self, vcpu: int, tally: Tally, then: str | None = None, *, enter_others: bool = True
    ) -> None:
        """L1 runs with a deliverable interrupt: its handler takes every vector waiting in its
        vIRR (RULE_L1_HANDLER_RUNS_TO_COMPLETION) — its own, or ones it relays to an L2 — and
        (``enter_others``) enters each other L2 that now has one to deliver (``then`` is
        entered last by the caller)."""
        self._l1_rvi.pop(vcpu, None)
        taken = self._posted.pop(vcpu, [])
        for t, v in taken:
            self._l1_latches(t, vcpu, v, tally)
        if any(t == L1 for t, _v in taken):  # by priority, once all are in its vIRR
            self._l1_handler(vcpu, tally)
        for w in dict.fromkeys(t for t, _v in taken) if enter_others else ():
            if w not in (L1, then) and self.exists(w, vcpu) and self._wants_entry(w, vcpu):
                self.p.schedule(vcpu, self.p.vm_of(w), tally)

    def _l1_deliverable(self, vcpu: int) -> bool:
        """L1's RVI is above its PPR: running L1, the CPU delivers to it at once."""
        return (self._l1_rvi.get(vcpu, 0) & 0xF0) > (self.apic(L1, vcpu).ppr & 0xF0)

    def _exit_running(self, vcpu: int, tally: Tally, what: str, info: L2Exit) -> None:
        mod = self.m.module
        cur = mod.running_vm(vcpu)
        if not cur:
            return
        layer = self.p.layer_of(cur)
        mod.l2_exit(vcpu, info)
        tally.record(layer, "L2.EXIT", what)
        tally.switch(layer, L1, EXIT)
        self.interrupted[vcpu] = cur

    def _l1_latches(self, target: str, vcpu: int, vector: int, tally: Tally) -> None:
        """A posted vector L1 takes from its vIRR: its own (its handler runs next), or one it
        relays into the L2 APIC it holds."""
        if target == L1:
            self.ledger.latch(self.apic(L1, vcpu), L1, vcpu, vector)
            return
        tally.record(L1, "L1 interrupt handled", "relay")
        tally.record(L1, "APIC.ACCEPT", target)
        self.ledger.latch(self.apic(target, vcpu), target, vcpu, vector)

    def _l1_handler(self, vcpu: int, tally: Tally) -> None:
        """L1's own deliverable interrupts: each delivered by the module's virtual-interrupt
        delivery, handled, EOI virtualized (RULE_L1_HANDLER_RUNS_TO_COMPLETION)."""
        apic = self.apic(L1, vcpu)
        while (v := apic.deliver()) is not None:
            tally.record(L1, "L1 interrupt handled", "L1")
            self._delivered(L1, vcpu, v, L1_MECHANISM)
            apic.eoi()
            tally.record(L1, "EOI.VIRTUALIZED", L1)

    def _reenter(self, target: str, vcpu: int, tally: Tally) -> None:
        """L1 goes back to an L2: the target (L1 presents its interrupts before the entry —
        which also re-evaluates a lazy EOI, as CS does before every entry), else the one the
        interrupt took the vCPU from."""
        p = self.p
        if target != L1:
            p.schedule(vcpu, p.vm_of(target), tally)
            return
        back = self.interrupted.get(vcpu)
        if back and not self.m.module.running_vm(vcpu) and p.vcpu_exists(back, vcpu):
            p.schedule(vcpu, back, tally)

    # -- L1's entry hooks (called by TdxPlatform.enter_l2) --------------------------------------
    def before_enter(self, vcpu: int, vm: int, tally: Tally) -> None:
        """Before TDG.VP.ENTER: present the L2's interrupts (VM-entry field, or vAPIC IRR +
        RVI), then L1 commits — interrupts posted now make the entry answer
        TDX_PENDING_INTERRUPT."""
        if self._posted.get(vcpu) and self._l1_deliverable(vcpu):
            # L1 runs: what became deliverable is taken first (other L2s get theirs later)
            self._take_posted(vcpu, tally, self.p.layer_of(vm), enter_others=False)
        self._present(vcpu, vm, tally)
        for t, _c, v in self._take_window(vcpu):
            if (
                self.ledger.arrive(t, vcpu, v, self.mechanism(t, vcpu)).status
                is DeliveryStatus.DROPPED
            ):
                continue
            tally.record(HOST, "PI.POST", L1)
            tally.record(HOST, "PI.NOTIFY", L1)
            self._posted.setdefault(vcpu, []).append((t, v))
            # L1 runs: the CPU's posted-interrupt processing raises RVI to the vector
            self._l1_rvi[vcpu] = max(self._l1_rvi.get(vcpu, 0), v)
            if self._l1_deliverable(vcpu):  # tdg_vp_enter.c: RVI[7:4] > PPR[7:4]
                self.m.module.l1_pending_interrupt.add(vcpu)

    def _present(self, vcpu: int, vm: int, tally: Tally) -> None:
        layer = self.p.layer_of(vm)
        apic = self.apics.get((layer, vcpu))
        if apic is None or self.mode == DIRECT:
            return
        mode = self.effective(layer, vcpu)
        if mode == SECURE_AVIC:
            if apic.irr:
                self._sync_vapic(layer, vcpu, vm)
                tally.record(L1, "VAPIC.IRR", layer)
            return
        retired, v = present(apic, self.lazy_of(layer, vcpu), self.eoi_flag(layer, vcpu))
        if retired is not None or v is not None:
            tally.record(L1, "APIC.EVALUATE", layer)
        if v is not None:
            self.p.vp_wr(
                vcpu,
                self._field(vm),
                VM_ENTRY_INTR_VALID | (ENTRY_TYPE_EXTERNAL << 8) | v,
                vm_name(vm),
                tally,
            )
            self._injected[(vcpu, vm)] = v

    def _sync_vapic(self, layer: str, vcpu: int, vm: int) -> None:
        """Mirror the L2's APIC into its virtual-APIC page and RVI/SVI into its
        L2_ENTER_GUEST_STATE buffer (TDG.VP.ENTER loads INTERRUPT_STATUS from it)."""
        apic = self.apic(layer, vcpu)
        page = self.p.region.vapic(vm, vcpu)
        mem = self.m.memory
        for i in range(8):
            mem.write(
                page + VAPIC_IRR + i * VAPIC_STRIDE,
                ((apic.irr >> (32 * i)) & 0xFFFF_FFFF).to_bytes(4, "little"),
            )
            mem.write(
                page + VAPIC_ISR + i * VAPIC_STRIDE,
                ((apic.isr >> (32 * i)) & 0xFFFF_FFFF).to_bytes(4, "little"),
            )
        rvi = apic.irr.bit_length() - 1 if apic.irr else 0
        svi = apic.isr.bit_length() - 1 if apic.isr else 0
        rec = self.p.l2_vcpus.get((vm, vcpu))
        if rec is not None:
            state = EnterGuestState.decode(mem.read(rec.context_gpa, ENTER_GUEST_STATE_SIZE))
            state.interrupt_status = (svi << 8) | rvi
            mem.write(rec.context_gpa, state.encode())
        self.m.module.l2cpu(vcpu, vm).interrupt_status = (svi << 8) | rvi

    def on_pending_interrupt(self, vcpu: int, vm: int, tally: Tally) -> None:
        """TDG.VP.ENTER answered TDX_PENDING_INTERRUPT: L1 takes what was posted (its own
        interrupts handled to completion, L2 ones latched), withdraws the event it had
        prepared and presents again (a higher vector may win now)."""
        self.m.module.l1_pending_interrupt.discard(vcpu)
        self.pending_interrupt_answers += 1
        layer = self.p.layer_of(vm)
        self._take_posted(vcpu, tally, then=layer)
        prepared = self._injected.pop((vcpu, vm), None)
        if prepared is not None:
            self._withdraw(layer, vcpu, prepared, self.eoi_flag(layer, vcpu))
            self.p.vp_wr(vcpu, self._field(vm), 0, vm_name(vm), tally)
        self.before_enter(vcpu, vm, tally)

    def after_enter(self, vcpu: int, vm: int, result: TdcallResult, tally: Tally) -> None:
        """The L2 runs: it takes the injected event, or the CPU delivers from the vAPIC."""
        layer = self.p.layer_of(vm)
        self.interrupted.pop(vcpu, None)
        mode = self.effective(layer, vcpu) if self.mode != DIRECT else DIRECT
        if mode == SECURE_AVIC:
            self._hardware_delivers(layer, vcpu, vm)
            return
        injected = result.out.get("injected")
        self._injected.pop((vcpu, vm), None)
        if injected is not None:
            self._delivered(layer, vcpu, injected & 0xFF, MECHANISM[mode])

    def _hardware_delivers(self, layer: str, vcpu: int, vm: int) -> None:
        """Virtual-interrupt delivery: RVI above PPR goes from vIRR to vISR (RULE_VID_ENABLED)."""
        apic = self.apics.get((layer, vcpu))
        if apic is None:
            return
        v = apic.deliver()
        if v is not None:
            self._sync_vapic(layer, vcpu, vm)
            self._delivered(layer, vcpu, v, MECHANISM[SECURE_AVIC])

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """An ICR write (APIC protocol) to another vCPU of ``layer``: RULE_IPI_THROUGH_HOST."""
        if not self.exists(layer, vcpu):
            return ResultCode.INVALID_PARAMETER
        self.ledger.latch(self.apic(layer, vcpu), layer, vcpu, vector)
        tally = Tally()
        self._l1_ipi(vcpu, tally)
        tally.flush(self.trace)
        return ResultCode.SUCCESS

    def _wants_entry(self, layer: str, vcpu: int) -> bool:
        """Entering ``layer`` now would deliver something (or settle a lazy EOI first)."""
        apic = self.apics.get((layer, vcpu))
        if apic is None or not apic.irr:
            return False
        lazy = self.lazy.get((layer, vcpu))
        return apic.deliverable() is not None or (lazy is not None and lazy.armed)

    def _l1_ipi(self, dest: int, tally: Tally) -> None:
        tally.record(L1, "#VE", "MSR.ICR")
        tally.record(L1, "TDG.VP.VMCALL", "WRMSR(ICR)")
        tally.switch(L1, HOST, TD_EXIT)
        tally.record(HOST, "PI.POST", L1)
        tally.record(HOST, "PI.NOTIFY", L1)
        tally.switch(HOST, L1, TD_ENTER)
        self._notify.append(dest)

    def _notify_pending(self) -> None:
        """Target vCPUs of IPIs: their L2 exits to L1, which presents and re-enters."""
        while self._notify:
            dest = self._notify.pop(0)
            tally = Tally()
            self._exit_running(
                dest,
                tally,
                "PENDING_INTERRUPT",
                L2Exit(VmxExit.EXTERNAL_INTERRUPT, status_class=L2_EXIT_PENDING_INTERRUPT_CLASS),
            )
            tally.record(L1, "L1 interrupt handled", "relay")
            self._take_posted(dest, tally)  # L1's handler empties its vIRR
            work = [
                w for w in self.m.workloads if self.exists(w, dest) and self._wants_entry(w, dest)
            ]
            for w in work:  # each entry presents that L2's interrupts
                self.p.schedule(dest, self.p.vm_of(w), tally)
            if not work:
                self._reenter(L1, dest, tally)
            tally.flush(self.trace)

    # -- IPIs from an L2 ----------------------------------------------------------------------------
    def _ipi(self, layer: str, dest: int, vector: int, tally: Tally) -> None:
        """``layer``'s vCPU 0 writes its ICR: through the APIC protocol (alternate) or as an
        x2APIC MSR write L1 intercepts — a WRMSR exit (reason 32) on MSR 0x830 in every other
        mode, virtual-interrupt delivery included (RULE_L2_ICR_WRITE_EXITS_AS_WRMSR)."""
        p, mod = self.p, self.m.module
        vm = p.vm_of(layer)
        mode = self.effective(layer, 0)
        if mode == ALTERNATE:
            tally.flush(self.trace)
            tally.items.clear()
            self._icr_via_protocol(layer, dest, vector)
            return
        if mod.running_vm(0) != vm:
            p.schedule(0, vm, tally)
        # RULE_L2_ICR_WRITE_EXITS_AS_WRMSR: no IPI virtualization for an L2, in any mode
        icr = fixed_ipi_icr(dest, vector)
        mod.l2cpu(0, vm).gprs.update(rcx=X2APIC_ICR_MSR, rax=icr & 0xFFFF_FFFF, rdx=icr >> 32)
        mod.l2_exit(0, L2Exit(VmxExit.WRMSR))
        tally.record(layer, "L2.EXIT", "WRMSR(ICR)")
        tally.switch(layer, L1, EXIT)
        tally.record(L1, "APIC.ACCEPT", layer)
        self.ledger.latch(self.apic(layer, dest), layer, dest, vector)
        if dest != 0:
            self._l1_ipi(dest, tally)
        p.enter_l2(0, vm, tally)

    # -- EOI ----------------------------------------------------------------------------------
    def _after_eoi(self) -> None:
        self._notify_pending()

    def _eoi(self, layer: str, vcpu: int) -> EoiRecord:
        done = self._eoi_common(layer, vcpu)
        if isinstance(done, EoiRecord):
            return done
        top = done
        p, mod = self.p, self.m.module
        vm = p.vm_of(layer)
        mode = self.effective(layer, vcpu)
        tally = Tally()
        if mode == ALTERNATE:
            out = self.m.client.call(
                layer, vcpu, ProtocolId.APIC, ApicCall.WRITE_REGISTER, X2APIC_EOI, 0
            )
            return EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                mechanism=f"SVSM_APIC WRITE_REGISTER(EOI) -> L1: {result_name(out.code)}",
            )
        if mod.running_vm(vcpu) != vm:
            p.schedule(vcpu, vm, tally)
        apic = self.apic(layer, vcpu)
        if mode == SECURE_AVIC:
            apic.eoi()
            tally.record(layer, "EOI.VIRTUALIZED")
            self._hardware_delivers(layer, vcpu, vm)
            if apic.isr == 0:
                self._sync_vapic(layer, vcpu, vm)
            tally.flush(self.trace)
            return EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                mechanism="virtualized EOI in the virtual-APIC page (no exit)",
            )
        mod.l2_exit(vcpu, L2Exit(VmxExit.WRMSR))
        tally.record(layer, "L2.EXIT", "WRMSR(EOI)")
        tally.switch(layer, L1, EXIT)
        apic.eoi()
        tally.record(L1, "APIC.EOI", layer)
        p.enter_l2(vcpu, vm, tally)
        tally.flush(self.trace)
        return EoiRecord(
            layer=layer,
            vcpu=vcpu,
            vector=top,
            mechanism="WRMSR(0x80B) exit to L1 (reason 32), TDG.VP.ENTER back",
        )

    # -- mode changes ----------------------------------------------------------------------------
    def configure(self, op: ConfigureInterrupts) -> OperationResult:
        name = op.describe()
        m = self.m
        target = op.mode
        if op.layer not in m.workloads and op.layer != L1:
            return OperationResult.not_supported(
                name,
                f"{op.layer} cannot choose how the TD's interrupts arrive: only L1 or an "
                "L2 (through L1) does",
            )
        if target == self.mode:
            return OperationResult.success(name, mode=target.value, changed=False)
        if target == DIRECT:
            return OperationResult.not_supported(name, RULE_NO_DIRECT)
        self._out = []
        if target == ALTERNATE:
            return self._try_register(name, op.layer)
        if self.mode == ALTERNATE:
            err = self._leave_alternate(op.layer)
            if err is not None:
                return OperationResult.failure(name, err)
        if self.mode != target:
            self._switch_in_l1(op.layer, target)
        return OperationResult.success(
            name,
            mode=target.value,
            changed=True,
            deliveries=self._deliveries(),
            note=None
            if op.layer == L1
            else "no protocol call switches restricted <-> "
            "secure-avic; cocopart models it as one L2 -> L1 round trip",
        )

    def _leave_alternate(self, layer: str) -> ArchError | None:
        """The seed's hand-off through L1's APIC protocol; L1 alone drops every registration.
        L1 keeps holding the APIC state either way (MSR-intercept emulation)."""
        m = self.m
        emu = m.service.apic
        if layer == L1:
            emu.count = 0
            emu.disabled_for_good = True
            emu.apics.clear()
        else:
            self._deregister(layer)
        if emu.count:
            return ArchError(
                vendor=VENDOR,
                mnemonic="SVSM_APIC_CONFIGURE(deregister)",
                code=0,
                message=f"alternate stays registered (count {emu.count}: another "
                "component registered it); it is left only at count 0 (seed 001).",
            )
        for key in [k for k in emu.apics if not self.exists(*k)]:
            emu.apics.pop(key)  # never-created vCPUs start without emulation
        for key, lazy in self.lazy.items():  # lazy EOIs the guests took are retired now
            settle_lazy(self.apics.get(key), lazy, self.caa_flag(*key) if key[0] != L1 else None)
        self.mode = RESTRICTED
        return None

    def _switch_in_l1(self, layer: str, target: InterruptMode) -> None:
        """RULE_L1_MOVES_STATE: L1 moves each L2 vCPU's APIC state into (or out of) its
        virtual-APIC page."""
        tally = Tally()
        if layer != L1:
            tally.record(layer, "TDCALL", "COCOPART.CONFIGURE_INTERRUPTS", "exit 77")
            tally.switch(layer, L1, EXIT)
        for w in self.m.workloads:
            vm = self.p.vm_of(w)
            for c in range(self.m.config.vcpus):
                if self.exists(w, c):
                    self._sync_vapic(w, c, vm)
                    tally.record(L1, "VAPIC.SYNC", w)
        if layer != L1:
            tally.record(L1, "TDG.VP.ENTER", layer)
            tally.switch(L1, layer, ENTER)
        tally.flush(self.trace)
        self.mode = target

    # -- many at once (the rest is InterruptDelivery.cycle_key/apply_cycle) ----------------------
    def cycle_key(self, requester: str, layer: str, vcpu: int, vector: int) -> Hashable | None:
        """State shape of one host inject -> EOI cycle (cocopart.interrupts.CycleFastPath)."""
        if requester == HOST and layer != L1 and self.mode == DIRECT:
            return ("refused", DIRECT)
        if self._posted.get(vcpu) or (
            requester == HOST
            and not l2_posted_interrupt_exits(
                self._l1_rvi.get(vcpu, 0), vector, self.apic(L1, vcpu).ppr
            )[1]
        ):
            return None  # the post would leave the L2 running: not the repeatable cycle
        return super().cycle_key(requester, layer, vcpu, vector)

    def _runs_now(self, layer: str, vcpu: int) -> bool:
        mod = self.m.module
        return (
            self.exists(layer, vcpu)
            and mod.running_vm(vcpu) == self.p.vm_of(layer)
            and vcpu not in mod.l1_pending_interrupt
        )

    def vapic_irr(self, layer: str, vcpu: int) -> int:
        """The IRR words of an L2 vCPU's virtual-APIC page (tests)."""
        page = self.p.region.vapic(self.p.vm_of(layer), vcpu)
        return sum(
            int.from_bytes(self.m.memory.read(page + VAPIC_IRR + i * VAPIC_STRIDE, 4), "little")
            << (32 * i)
            for i in range(8)
        )
