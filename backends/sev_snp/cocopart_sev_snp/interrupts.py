"""Interrupt delivery on SEV-SNP: the host side, the SVSM side and the guest side of each
mode (:mod:`.interrupt_modes` has the table and the transition rules).

:class:`SnpInterrupts` executes :class:`~cocopart.ops.InjectInterrupt`,
:class:`~cocopart.ops.EndOfInterrupt` and :class:`~cocopart.ops.ConfigureInterrupts`:

* Each vCPU runs one layer at a time (``running``): an interrupt from the host first takes the
  vCPU out of the guest (``VMEXIT(INTR)``), the host serves it per the target's mode, and the
  vCPU ends in the layer that took the interrupt (or back where it was when it stays pending).
* APIC state: the host holds it in direct/restricted mode and always for VMPL0; the SVSM in
  alternate mode (the very :class:`~cocopart.apic.LocalApic` objects of the core APIC
  service, :class:`~cocopart.service.apic.ApicEmulation`); the hardware (the guest's backing
  page) in secure-avic mode.
* The SVSM's return to a lower VMPL (:meth:`before_entry`, called by the transport for every
  SVSM call too) consumes host-presented vectors, evaluates the emulated APIC and writes the
  lower VMPL's VMSA ``EVENTINJ``; after committing to the entry it checks for a #HV that
  arrived meanwhile and, if it names work for that VMPL, cancels the entry (no VMGEXIT) and
  evaluates again (seed 001, J. Lange 2024-05-23). :attr:`during_entry` lets a test make
  the host raise interrupts in exactly that window.
* The SVSM's own interrupts (#HV doorbell of VMPL0) are handled to completion — delivered,
  EOI'd (lazily through the doorbell's no_eoi_required byte, else VMGEXIT(MSR EOI)) — before
  the vCPU returns to a workload VMPL (:data:`RULE_L1_HANDLER_RUNS_TO_COMPLETION`).

Every host, SVSM and guest step is a primitive in the trace; world switches are
``VMEXIT(INTR)`` / ``VMRUN`` (guest <-> host, asynchronous), ``VMGEXIT`` (a guest's exit
request) and ``VMGEXIT(SNP_RUN_VMPL)`` (a VMPL switch through the host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocopart.spi import EOI as X2APIC_EOI
from cocopart.spi import ICR as X2APIC_ICR
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
from cocopart.spi import vectors as _vectors
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import interrupt_modes as im
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.hv_doorbell import HvDoorbellPage
from cocopart_sev_snp.interrupt_exits import (  # noqa: F401 (re-exported)
    DOORBELL_CLEAR,
    DOORBELL_SET,
    INJECTION_MODE_CODE,
    RULE_HANDOFF_LOSES_LOW_VECTORS,
    SAVIC_REGISTER,
    SAVIC_UNREGISTER,
    InterruptExits,
)

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

L1, HOST = "l1", "host"
VENDOR = "amd"
KICK, RUN = "VMEXIT(INTR)", "VMRUN"
GHCB_SWITCH = "VMGEXIT"
RUN_VMPL = "VMGEXIT(SNP_RUN_VMPL)"

#: EVENTINJ / VMSA event_inj: bits 7:0 vector, 10:8 type (0 external interrupt, 3
#: exception), bit 31 valid — the layout of the VMX VM-entry interruption information
#: (tdx.md §5); the SVM field itself is in APM vol. 2, not in the reference (unconfirmed).
EVENT_VALID = 1 << 31
EVENT_TYPE_INTR, EVENT_TYPE_EXCEPTION = 0, 3

#: The notification vector the SVSM asks the host to send with VMGEXIT(HV_IPI) (CS
#: INT_INJ_VECTOR; its value is not in the reference — any vector works for the model).
INT_INJ_VECTOR = 0x50

#: An interrupt for the SVSM itself is handled to completion (delivered, then EOI'd by its
#: handler; further deliverable ones of VMPL0 likewise) before the vCPU returns to a
#: workload VMPL, so an EndOfInterrupt for ``l1`` has nothing left to complete (cocopart's
#: rule; CS's #HV handler processes every pending vector before it returns).
RULE_L1_HANDLER_RUNS_TO_COMPLETION = "the SVSM's own interrupts complete before it returns"
#: An interrupt for a workload vCPU that was never created (no VMSA, so nothing the host or
#: the SVSM could run) is dropped.
RULE_NO_VCPU_NO_INTERRUPT = "an interrupt for a vCPU that does not exist is dropped"
#: Secure AVIC (unconfirmed beyond the SEV_FEATURES bit and NAE 0x8000_001A): the host
#: requests a vector, the hardware sets it in the guest's backing-page IRR and delivers it
#: by priority at VMRUN; the guest's EOI is accelerated (no exit) and the hardware then
#: delivers the next pending vector; an IPI is set by the sender in the target's backing
#: page, then announced to the host (an ICR MSR exit) so that it kicks the target.
RULE_SAVIC_MODEL = "Secure AVIC: host requests IRR, hardware delivers, EOI without exit"
#: Leaving Secure AVIC: each vCPU unregisters its backing page (0x8000_001A sub 1) and the
#: host takes its IRR/ISR as the host-held APIC state (unconfirmed).
RULE_SAVIC_HANDOFF = "leaving Secure AVIC hands the backing page's IRR/ISR to the host"
#: The requesters the model raises interrupts from: the host (a device) and the target
#: workload itself (an IPI from its vCPU 0, the model's caller vCPU). The SVSM raising one
#: for a workload would need it to run on the target vCPU first — not modelled.
RULE_REQUESTERS = "interrupts come from the host (devices) or the target workload (IPIs)"


def event_inj(vector: int, kind: int = EVENT_TYPE_INTR) -> int:
    return EVENT_VALID | (kind << 8) | vector


@dataclass
class DoorbellFlag:
    """A #HV doorbell page's no_eoi_required byte."""

    page: HvDoorbellPage

    def read(self) -> int:
        return self.page.no_eoi_required

    def write(self, value: int) -> None:
        self.page.no_eoi_required = value


class SnpInterrupts(InterruptDelivery):
    """Interrupt modes and delivery of one :class:`SnpMachine`."""

    m: SnpMachine
    VENDOR = VENDOR
    MECHANISM = im.MECHANISM
    L1_MECHANISM = im.L1_MECHANISM
    HANDOFF_MODE = im.DIRECT
    LAZY_MODES = (im.ALTERNATE, im.RESTRICTED)
    PROTOCOL_HOLDER = "the SVSM"
    RULE_NO_VCPU_NO_INTERRUPT = RULE_NO_VCPU_NO_INTERRUPT
    RULE_L1_HANDLER_RUNS_TO_COMPLETION = RULE_L1_HANDLER_RUNS_TO_COMPLETION
    RULE_REQUESTERS = RULE_REQUESTERS
    RULE_ALTERNATE_NOT_REENTERED = im.RULE_ALTERNATE_NOT_REENTERED

    def __init__(self, machine: SnpMachine) -> None:
        super().__init__(machine)
        self.running: dict[int, str] = {}
        #: Where the vCPU was when the host took it (``_resume`` goes back there).
        self.kicked_from: dict[int, str] = {}
        #: The workload VMPL the SVSM returns to after its own interrupt handler.
        self.interrupted: dict[int, str] = {}
        self._prepared: dict[tuple[str, int], int | None] = {}
        self.svsm_doorbells: dict[int, HvDoorbellPage] = {}
        self.doorbells: dict[tuple[str, int], HvDoorbellPage] = {}
        self.backlog: dict[tuple[str, int], list[int]] = {}
        self.ipi_irr: dict[tuple[str, int], int] = {}
        self.host_modes: dict[tuple[int, int], int] = {}
        self.backing_pages: set[tuple[str, int]] = set()
        self.cancelled_entries = 0
        self.exits = InterruptExits(self)

    # -- small helpers ---------------------------------------------------------------------
    def svsm_doorbell(self, vcpu: int) -> HvDoorbellPage:
        db = self.svsm_doorbells.get(vcpu)
        if db is None:
            db = self.svsm_doorbells[vcpu] = HvDoorbellPage()
        return db

    def doorbell(self, layer: str, vcpu: int) -> HvDoorbellPage:
        db = self.doorbells.get((layer, vcpu))
        if db is None:
            db = self.doorbells[(layer, vcpu)] = HvDoorbellPage()
        return db

    def vmpl(self, layer: str) -> int:
        return self.m.vmpl_of(layer)

    def exists(self, layer: str, vcpu: int) -> bool:
        if layer == L1:
            return 0 <= vcpu < self.m.config.vcpus
        return (vcpu, self.m.vmpls[layer]) in self.m.host.contexts

    def current(self, vcpu: int) -> str:
        return self.running.get(vcpu, self.m.workloads[0])

    def eoi_flag(self, layer: str, vcpu: int) -> MemoryFlag | DoorbellFlag | None:
        """The no_eoi_required byte of the holder of ``layer``'s APIC, if it has one."""
        if layer == L1:
            return DoorbellFlag(self.svsm_doorbell(vcpu))
        mode = self.effective(layer, vcpu)
        if mode == im.ALTERNATE:
            return self.caa_flag(layer, vcpu)
        if mode == im.RESTRICTED:
            return DoorbellFlag(self.doorbell(layer, vcpu))
        return None

    # -- world switches --------------------------------------------------------------------
    def _kick(self, vcpu: int) -> None:
        """A host interrupt takes the vCPU out of whatever guest layer runs on it."""
        cur = self.current(vcpu)
        if cur == HOST:
            return
        self.trace.switch(cur, HOST, KICK)
        self.kicked_from[vcpu] = cur
        if cur != L1:
            self.interrupted[vcpu] = cur
        self.running[vcpu] = HOST

    def _vmrun(self, vcpu: int, layer: str) -> None:
        self.trace.switch(HOST, layer, RUN)
        self.running[vcpu] = layer

    def _resume(self, vcpu: int) -> None:
        if self.current(vcpu) == HOST:
            self._vmrun(vcpu, self.kicked_from.get(vcpu, self.m.workloads[0]))

    # -- operations ------------------------------------------------------------------------
    def _refuse_target(self, op: InjectInterrupt | EndOfInterrupt) -> str | None:
        m = self.m
        if op.target != L1 and op.target not in m.vmpls:
            return (
                f"{op.target} takes no interrupts here: only the SVSM (l1) and the "
                f"workload VMPLs ({', '.join(m.workloads)}) have vCPUs"
            )
        return None

    def _serve(self, op: InjectInterrupt, coalesced: bool) -> None:
        target, vcpu, vector = op.target, op.vcpu, op.vector
        if coalesced:
            self.trace.record(
                HOST if op.layer == HOST else target, "APIC.ACCEPT", target, "coalesced"
            )
            return
        mode = im.RESTRICTED if target == L1 else self.effective(target, vcpu)
        if op.layer == HOST:
            self._kick(vcpu)
            self._host_latch(target, vcpu, vector, mode)
            self._host_service(target, vcpu)
            self._resume(vcpu)
        else:
            self._ipi(target, vcpu, vector, mode)

    # -- host side -------------------------------------------------------------------------
    def _host_latch(self, target: str, vcpu: int, vector: int, mode: InterruptMode) -> None:
        """The host receives an interrupt for ``target``: into the APIC state it holds, the
        SVSM's descriptor, or a Secure AVIC request."""
        t = self.trace
        if target == L1 or mode in (im.DIRECT, im.RESTRICTED):
            t.record(HOST, "APIC.ACCEPT", target)
            self.ledger.latch(self.apic(target, vcpu), target, vcpu, vector)
        elif mode == im.ALTERNATE:
            self._post_descriptor(target, vcpu, vector)
        else:  # RULE_SAVIC_MODEL
            t.record(HOST, "SAVIC.REQUEST_IRR", target)
            self.ledger.latch(self.apic(target, vcpu), target, vcpu, vector)

    def _post_descriptor(self, target: str, vcpu: int, vector: int) -> None:
        """Alternate Injection: the lower VMPL's pending bit in its extended interrupt
        descriptor and the SVSM's summary bit for that VMPL (seed 001; CS)."""
        n = self.vmpl(target)
        sdb = self.svsm_doorbell(vcpu)
        key = (target, vcpu)
        if self.backlog.get(key) or not sdb.post(n, vector):
            self.backlog.setdefault(key, []).append(vector)
            self.trace.record(HOST, "HVDB.POST", f"VMPL{n}", "held")
        else:
            self.trace.record(HOST, "HVDB.POST", f"VMPL{n}")
        sdb.mark_events(n)

    def _signal_hv(self, page: HvDoorbellPage, vmpl: int) -> None:
        """#HV for a doorbell's owner, unless NoFurtherSignal says one is outstanding (LX KVM
        prepare_hv_injection)."""
        if not page.no_further_signal:
            page.no_further_signal = True
            self.trace.record(HOST, "EVENTINJ", f"VMPL{vmpl}", "#HV")

    def _host_prepare(self, layer: str, vcpu: int) -> int | None:
        """Before running ``layer`` (host-held or hardware APIC): inject what is deliverable.
        Returns the vector the layer takes on entry."""
        mode = self.effective(layer, vcpu)
        apic = self.apic(layer, vcpu)
        if mode == im.DIRECT:
            v = apic.deliver()
            if v is not None:
                self.trace.record(HOST, "EVENTINJ", f"VMPL{self.vmpl(layer)}")
            return v
        if mode == im.RESTRICTED:
            db = self.doorbell(layer, vcpu)
            _retired, v = present(apic, self.lazy_of(layer, vcpu), DoorbellFlag(db))
            if v is not None:
                db.vector = v
                self.trace.record(HOST, "HVDB.SIGNAL", layer)
                self._signal_hv(db, self.vmpl(layer))
            return v
        if mode == im.SECURE_AVIC:
            return apic.deliver()  # the hardware, at VMRUN (RULE_SAVIC_MODEL)
        return None

    def _guest_takes(self, layer: str, vcpu: int, v: int | None) -> None:
        """The entered layer takes the prepared interrupt."""
        if v is None:
            return
        mode = self.effective(layer, vcpu)
        if mode == im.RESTRICTED:
            db = self.doorbell(layer, vcpu)
            self.trace.record(layer, "HV.HANDLE")
            db.no_further_signal = False
            v = db.take_vector() or v
        self._delivered(layer, vcpu, v, im.MECHANISM[mode])

    def _host_service(self, layer: str, vcpu: int) -> None:
        """The host, holding the vCPU, makes ``layer`` take what it can now."""
        if layer == L1:
            self._host_to_svsm(vcpu)
            return
        mode = self.effective(layer, vcpu)
        if mode == im.ALTERNATE:
            sdb = self.svsm_doorbell(vcpu)
            self._signal_hv(sdb, 0)
            self._vmrun(vcpu, L1)  # the host must run VMPL0 next (seed 001)
            self._svsm_hv(vcpu)
            self._svsm_enter(layer, vcpu)
            return
        v = self._host_prepare(layer, vcpu)
        if v is not None:
            self._vmrun(vcpu, layer)
        self._guest_takes(layer, vcpu, v)

    def _host_to_svsm(self, vcpu: int) -> None:
        """The SVSM's own interrupts: the host's APIC for VMPL0 signals them through the
        SVSM's doorbell; the SVSM's handler takes each and EOIs it (lazily, else through
        VMGEXIT(MSR EOI), after which the host signals the next), then the SVSM returns to
        the workload VMPL it interrupted (RULE_L1_HANDLER_RUNS_TO_COMPLETION)."""
        v = self._host_prepare_l1(vcpu)
        if v is None:
            return
        self._vmrun(vcpu, L1)
        while v is not None:
            self._svsm_hv(vcpu)
            sdb = self.svsm_doorbell(vcpu)
            lazy = self.lazy_of(L1, vcpu)
            if lazy.armed and sdb.no_eoi_required:
                sdb.no_eoi_required = 0  # CS HVDoorbell::no_eoi_required()
                self.trace.record(L1, "EOI.LAZY")
                v = self._host_prepare_l1(vcpu)  # retires it when something else waits
            else:
                page = self.m.ghcb_page(L1, vcpu)
                page.request(g.SVM_EXIT_MSR, 1, 0)
                page.set(g.OFF_RCX, X2APIC_EOI)
                page.set(g.OFF_RAX, 0)
                page.set(g.OFF_RDX, 0)
                self.m.host.exit(L1, page)
                v = self._prepared.pop((L1, vcpu), None)
        self._svsm_enter(self.interrupted.get(vcpu, self.m.workloads[0]), vcpu)

    # -- SVSM side -------------------------------------------------------------------------
    def _svsm_hv(self, vcpu: int) -> None:
        """The SVSM's #HV handler (CS process_pending_events): clear NoFurtherSignal, take
        its own vector; per-VMPL events wait for the next lower-VMPL entry."""
        sdb = self.svsm_doorbell(vcpu)
        self.trace.record(L1, "HV.HANDLE")
        sdb.no_further_signal = False
        own = sdb.take_vector()
        if own:
            self._delivered(L1, vcpu, own, im.L1_MECHANISM)

    def _svsm_consume(self, vcpu: int) -> bool:
        """Latch every vector the host presented for the emulated VMPLs of ``vcpu`` (and IPIs
        from other vCPUs' SVSM). True if anything was consumed."""
        sdb = self.svsm_doorbell(vcpu)
        got = False
        for layer, n in self.m.vmpls.items():
            if not self.emulated(layer, vcpu):
                continue
            bits = sdb.consume(n) | self.ipi_irr.pop((layer, vcpu), 0)
            apic = self.apic(layer, vcpu)
            for v in _vectors(bits):
                self.ledger.latch(apic, layer, vcpu, v)
                got = True
        return got

    def _svsm_present(self, layer: str, vcpu: int, consumed: bool) -> int | None:
        apic = self.apic(layer, vcpu)
        retired, v = present(apic, self.lazy_of(layer, vcpu), self.caa_flag(layer, vcpu))
        if consumed or retired is not None or v is not None:
            self.trace.record(L1, "APIC.EVALUATE", layer)
        if v is not None:
            ctx = self.m.layout.context(self.m.workloads.index(layer), vcpu)
            self.m.memory.write(ctx + vm.EVENT_INJ, vm.u64(event_inj(v)))
            self.trace.record(L1, "VMSA.EVENT_INJ", f"VMPL{self.vmpl(layer)}")
        return v

    def _rewind(self, layer: str, vcpu: int, v: int) -> None:
        """Undo an injection the SVSM prepared but did not enter (CS
        rewind_pending_interrupt): back from ISR to IRR, VMSA EVENTINJ cleared."""
        self._withdraw(layer, vcpu, v, self.caa_flag(layer, vcpu))
        ctx = self.m.layout.context(self.m.workloads.index(layer), vcpu)
        self.m.memory.write(ctx + vm.EVENT_INJ, vm.u64(0))

    def _arrivals_in_window(self, layer: str, vcpu: int) -> bool:
        """Host interrupts that arrive after the SVSM committed to entering ``layer``: the
        test hook's (for workload VMPLs of this vCPU), and vectors the host held back for the
        descriptor (it presents them once the SVSM's VMGEXIT shows the descriptor was
        consumed, and must then run VMPL0 again). True if the resulting #HV names work for
        ``layer``'s VMPL."""
        mine = self._take_window(vcpu)
        held = self.backlog.pop((layer, vcpu), [])
        if not mine and not held:
            return False
        self.trace.switch(L1, HOST, KICK)
        for t, c, v in mine:
            if t not in self.m.vmpls:
                raise ValueError("during_entry takes interrupts for workload VMPLs only")
            mode = self.effective(t, c)
            if self.ledger.arrive(t, c, v, im.MECHANISM[mode]).status is DeliveryStatus.DROPPED:
                continue
            self._host_latch(t, c, v, mode)
        for v in held:
            self._post_descriptor(layer, vcpu, v)
        sdb = self.svsm_doorbell(vcpu)
        self._signal_hv(sdb, 0)
        self.trace.switch(HOST, L1, RUN)  # the host must run VMPL0 next (seed 001)
        return bool(sdb.per_vmpl_events & (1 << (self.vmpl(layer) - 1)))

    def before_entry(self, layer: str, vcpu: int) -> int | None:
        """The SVSM is about to VMGEXIT(SNP_RUN_VMPL) into ``layer`` on ``vcpu`` (after a
        protocol call or an #HV): present interrupts, commit, and cancel the entry if a #HV
        for this VMPL arrives after the commit. Returns the vector it injected."""
        if self.mode != im.ALTERNATE:
            return None
        while True:
            v = None
            if self.emulated(layer, vcpu):
                consumed = self._svsm_consume(vcpu)
                v = self._svsm_present(layer, vcpu, consumed)
            if not self._arrivals_in_window(layer, vcpu):
                return v
            self.trace.record(L1, "ENTRY.CANCEL", f"VMPL{self.vmpl(layer)}")
            self.cancelled_entries += 1
            self._svsm_hv(vcpu)
            if v is not None:
                self._rewind(layer, vcpu, v)

    def after_entry(self, layer: str, vcpu: int, v: int | None) -> None:
        """The lower VMPL runs: the CPU takes the VMSA's EVENTINJ."""
        self.running[vcpu] = layer
        if v is None:
            return
        ctx = self.m.layout.context(self.m.workloads.index(layer), vcpu)
        self.m.memory.write(ctx + vm.EVENT_INJ, vm.u64(0))
        self._delivered(layer, vcpu, v, im.MECHANISM[im.ALTERNATE])

    def _svsm_enter(self, layer: str, vcpu: int) -> None:
        """The SVSM (running on ``vcpu``) enters ``layer`` with VMGEXIT(SNP_RUN_VMPL)."""
        v = self.before_entry(layer, vcpu)
        n = self.vmpl(layer)
        self.trace.record(L1, "VMGEXIT", "SNP_RUN_VMPL")
        self.m.host.run_vmpl(vcpu, 0, n)
        if self.mode == im.ALTERNATE and self.emulated(layer, vcpu):
            self.trace.switch(L1, layer, RUN_VMPL)
            self.after_entry(layer, vcpu, v)
            return
        w = self._host_prepare(layer, vcpu)  # the host injects when it runs the VMPL
        self.trace.switch(L1, layer, RUN_VMPL)
        self.running[vcpu] = layer
        self._guest_takes(layer, vcpu, w)

    def has_work(self, layer: str, vcpu: int) -> bool:
        apic = self.apics.get((layer, vcpu))
        if apic is not None and apic.deliverable() is not None:
            return True
        if self.mode == im.ALTERNATE and self.emulated(layer, vcpu):
            n = self.vmpl(layer)
            return bool(
                self.svsm_doorbell(vcpu).per_vmpl_events & (1 << (n - 1))
                or self.backlog.get((layer, vcpu))
                or self.ipi_irr.get((layer, vcpu))
            )
        return False

    # -- IPIs --------------------------------------------------------------------------------
    def _ipi(self, layer: str, dest: int, vector: int, mode: InterruptMode) -> None:
        """``layer``'s vCPU 0 sends an IPI to its vCPU ``dest``."""
        m = self.m
        icr = fixed_ipi_icr(dest, vector)
        if mode == im.ALTERNATE and self.emulated(layer, 0):
            self._icr_via_protocol(layer, dest, vector)
            self.notify_pending()
            return
        if mode == im.SECURE_AVIC:  # RULE_SAVIC_MODEL: the sender sets the target's IRR
            self.trace.record(layer, "SAVIC.SET_IRR", layer)
            self.ledger.latch(self.apic(layer, dest), layer, dest, vector)
        self.trace.record(layer, "#VC", "MSR.ICR")
        page = m.ghcb_page(layer, 0)
        page.request(g.SVM_EXIT_MSR, 1, 0)
        page.set(g.OFF_RCX, X2APIC_ICR)
        page.set(g.OFF_RAX, icr & 0xFFFF_FFFF)
        page.set(g.OFF_RDX, icr >> 32)
        m.host.exit(layer, page)
        self._after_guest_exit(layer, 0)

    def _after_guest_exit(self, layer: str, vcpu: int) -> None:
        """Back from a VMGEXIT of ``layer``: it takes what the host prepared."""
        v = self._prepared.pop((layer, vcpu), None)
        self.running[vcpu] = layer
        self._guest_takes(layer, vcpu, v)

    def _host_prepare_l1(self, vcpu: int) -> int | None:
        apic = self.apic(L1, vcpu)
        sdb = self.svsm_doorbell(vcpu)
        _r, v = present(apic, self.lazy_of(L1, vcpu), DoorbellFlag(sdb))
        if v is not None:
            sdb.vector = v
            self.trace.record(HOST, "HVDB.SIGNAL", L1)
            self._signal_hv(sdb, 0)
        return v

    # -- the SVSM's platform hooks -------------------------------------------------------------
    def svsm_post_interrupt(self, layer: str, dest: int, vector: int) -> int:
        """An ICR write through SVSM_APIC to another vCPU (CS send_physical_ipi): into the
        target's IPI IRR, then VMGEXIT(HV_IPI) so that the host notifies it."""
        if not 0 <= dest < self.m.config.vcpus or not self.exists(layer, dest):
            return ResultCode.INVALID_PARAMETER
        if not self.emulated(layer, dest):  # the target's APIC is back with the host
            self.trace.record(HOST, "APIC.ACCEPT", layer)
            self.ledger.latch(self.apic(layer, dest), layer, dest, vector)
        else:
            self.ipi_irr[(layer, dest)] = self.ipi_irr.get((layer, dest), 0) | (1 << vector)
            self.trace.record(L1, "APIC.POST", layer)
        page = self.m.ghcb_page(L1, 0)
        page.request(g.ExitCode.HV_IPI, (dest << 32) | INT_INJ_VECTOR, 0)
        self.m.host.exit(L1, page)
        return ResultCode.SUCCESS if not page.failed() else ResultCode.INVALID_REQUEST

    def notify_pending(self) -> None:
        """Host: kick the vCPUs an HV_IPI named; each takes its work."""
        while self._notify:
            dest = self._notify.pop(0)
            for layer in self.m.workloads:
                if self.exists(layer, dest) and self.has_work(layer, dest):
                    self._kick(dest)
                    self._host_service(layer, dest)
                    self._resume(dest)

    def emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        """The SVSM stopped emulating ``layer``'s APIC on ``vcpu`` (CS
        disable_apic_emulation): retire a lazy EOI the guest took, hand IRR/ISR to the host
        through the descriptor, clear AlternateInjection in the VMSA, and tell the host
        (VMGEXIT 0x8000_001C). When the count is 0 no new VMSA gets the bit."""
        m = self.m
        emu = m.service.apic
        if enabled:
            return
        apic = self.apic(layer, vcpu)
        n = self.vmpl(layer)
        sdb = self.svsm_doorbell(vcpu)
        for v in _vectors(sdb.consume(n) | self.ipi_irr.pop((layer, vcpu), 0)):
            self.ledger.latch(apic, layer, vcpu, v)  # what was presented but not yet taken
        settle_lazy(apic, self.lazy_of(layer, vcpu), self.caa_flag(layer, vcpu))
        sdb.hand_off(n, apic.irr, apic.isr)
        self.trace.record(L1, "HVDB.HANDOFF", f"VMPL{n}")
        if self.exists(layer, vcpu):
            self._set_vmsa_bits(
                layer, vcpu, self._vmsa_features(layer, vcpu) & ~vm.SevFeatures.ALTERNATE_INJECTION
            )
        page = m.ghcb_page(L1, vcpu)
        page.request(g.ExitCode.DISABLE_ALTERNATE_INJECTION, (n << 16) | (apic.tpr << 8) | 1, 0)
        m.host.exit(L1, page)
        if emu.count == 0:
            for w in m.workloads:
                m.sev_features[w] &= ~int(vm.SevFeatures.ALTERNATE_INJECTION)
                for c in range(m.config.vcpus):  # never-created vCPUs start without it
                    if emu.enabled(w, c) and not self.exists(w, c):
                        emu.apics.pop((w, c), None)
        if not emu.apics:
            self.mode = im.DIRECT

    # -- VMSA SEV_FEATURES -----------------------------------------------------------------------
    def _vmsa_gpa(self, layer: str, vcpu: int) -> int:
        return self.m.layout.context(self.m.workloads.index(layer), vcpu)

    def _vmsa_features(self, layer: str, vcpu: int) -> int:
        raw = self.m.memory.read(self._vmsa_gpa(layer, vcpu) + vm.SEV_FEATURES, 8)
        return int.from_bytes(raw, "little")

    def _set_vmsa_bits(self, layer: str, vcpu: int, features: int) -> None:
        self.m.memory.write(self._vmsa_gpa(layer, vcpu) + vm.SEV_FEATURES, vm.u64(features))
        host = self.m.host.contexts.get((vcpu, self.vmpl(layer)))
        if host is not None:
            host.sev_features = features
        self.trace.record(L1, "VMSA.SEV_FEATURES", f"VMPL{self.vmpl(layer)}")

    def vmsa_features(self) -> dict[tuple[str, int], int]:
        """SEV_FEATURES of every existing workload VMSA (tests, tools)."""
        return {
            (w, c): self._vmsa_features(w, c)
            for w in self.m.workloads
            for c in range(self.m.config.vcpus)
            if self.exists(w, c)
        }

    # -- EOI ---------------------------------------------------------------------------------
    def _eoi(self, layer: str, vcpu: int) -> EoiRecord:
        done = self._eoi_common(layer, vcpu)
        if isinstance(done, EoiRecord):
            if done.lazy:
                self.notify_pending()
            return done
        top = done
        m = self.m
        mode = self.effective(layer, vcpu)
        if mode == im.ALTERNATE:
            out = m.client.call(
                layer, vcpu, ProtocolId.APIC, ApicCall.WRITE_REGISTER, X2APIC_EOI, 0
            )
            rec = EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                mechanism=f"SVSM_APIC WRITE_REGISTER(EOI): {result_name(out.code)}",
            )
        elif mode == im.SECURE_AVIC:
            self.apic(layer, vcpu).eoi()
            self.trace.record(layer, "EOI.ACCELERATED")
            v = self.apic(layer, vcpu).deliver()  # the hardware delivers the next one
            if v is not None:
                self._delivered(layer, vcpu, v, im.MECHANISM[mode])
            rec = EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                mechanism="backing-page EOI, accelerated (no exit)",
            )
        else:
            self.trace.record(layer, "#VC", "MSR.EOI")
            page = m.ghcb_page(layer, vcpu)
            page.request(g.SVM_EXIT_MSR, 1, 0)
            page.set(g.OFF_RCX, X2APIC_EOI)
            page.set(g.OFF_RAX, 0)
            page.set(g.OFF_RDX, 0)
            m.host.exit(layer, page)
            self._after_guest_exit(layer, vcpu)
            rec = EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                mechanism="#VC -> VMGEXIT(MSR 0x80B) -> host APIC emulation",
            )
        self.notify_pending()
        return rec

    # -- mode changes ------------------------------------------------------------------------------
    def configure(self, op: ConfigureInterrupts) -> OperationResult:
        name = op.describe()
        m = self.m
        target = op.mode
        if op.layer not in m.vmpls and op.layer != L1:
            return OperationResult.not_supported(
                name,
                f"{op.layer} cannot choose how the guest's interrupts arrive: "
                f"{im.RULE_GUEST_CHOOSES_THE_MODE}",
            )
        if target == self.mode:
            return OperationResult.success(name, mode=target.value, changed=False)
        need = im.REQUIRED_HV_FEATURE.get(target, 0)
        if need and not m.host.options.hv_features & need:
            return OperationResult.not_supported(
                name,
                f"the hypervisor does not offer HV feature bit {need.bit_length() - 1} "
                f"that {target.value} needs (sev-snp.md §5.2)",
            )
        if target == im.ALTERNATE:
            return self._try_register(name, op.layer)
        rule = im.transition_rule(self.mode, target)
        if rule is not None:
            return OperationResult.not_supported(
                name, f"{self.mode.value} -> {target.value} is not possible: {rule}"
            )
        self._out = []
        self._settle_lazy()
        if self.mode == im.ALTERNATE:
            res = self._leave_alternate(name, op.layer)
            if res is not None:
                return res
        if self.mode == im.SECURE_AVIC:
            self._leave_secure_avic()
        if self.mode != target:
            self._via_svsm(op.layer, lambda: self._set_host_mode(target))
        return OperationResult.success(
            name,
            mode=target.value,
            changed=True,
            deliveries=self._deliveries(),
            note="no SVSM protocol call switches host-held modes; cocopart models it as one "
            "SVSM round trip"
            if op.layer != L1
            else None,
        )

    def _settle_lazy(self) -> None:
        """Before the holder of the no_eoi_required byte changes: a lazy EOI the guest took
        retires its vector, one it did not take becomes an explicit EOI (CS
        check_delivered_interrupts + clear_guest_eoi_pending)."""
        for (layer, vcpu), lazy in self.lazy.items():
            if not lazy.armed or layer == L1:
                continue
            settle_lazy(self.apics.get((layer, vcpu)), lazy, self.eoi_flag(layer, vcpu))

    def _via_svsm(self, layer: str, work: Callable[[], None]) -> None:
        if layer == L1:
            work()
            return
        t = self.trace
        t.record(layer, "VMGEXIT", "SNP_RUN_VMPL")
        t.switch(layer, L1, RUN_VMPL)
        t.record(L1, "HANDLE", "COCOPART.CONFIGURE_INTERRUPTS")
        try:
            work()
        finally:
            t.record(L1, "VMGEXIT", "SNP_RUN_VMPL")
            t.switch(L1, layer, RUN_VMPL)

    def _set_host_mode(self, target: InterruptMode) -> None:
        """direct <-> restricted (RULE_HOST_MODES_SWITCH_FREELY): each workload VMSA's bits,
        the host told per VMPL, each vCPU's #HV doorbell registered or cleared."""
        m = self.m
        bit = int(im.MODE_BIT[target])
        for w in m.workloads:
            m.sev_features[w] = (m.sev_features[w] & ~int(im.INJECTION_BITS)) | bit
            n = self.vmpl(w)
            for c in range(m.config.vcpus):
                if not self.exists(w, c):
                    continue
                self._set_vmsa_bits(
                    w, c, (self._vmsa_features(w, c) & ~int(im.INJECTION_BITS)) | bit
                )
                page = m.ghcb_page(L1, c)
                page.request(
                    g.ExitCode.CONFIGURE_INJECTION, (n << 16) | INJECTION_MODE_CODE[target], 0
                )
                m.host.exit(L1, page)
                if target == im.RESTRICTED or self.mode == im.RESTRICTED:
                    wp = m.ghcb_page(w, c)
                    wp.request(
                        g.ExitCode.HV_DOORBELL_PAGE,
                        DOORBELL_SET if target == im.RESTRICTED else DOORBELL_CLEAR,
                        0,
                    )
                    m.host.exit(w, wp)
        self.mode = target

    def _leave_alternate(self, name: str, layer: str) -> OperationResult | None:
        """The seed's hand-off: deregister on the BSP, refresh on every other vCPU (each
        through its own SVSM_APIC call); the SVSM alone drops every registration."""
        m = self.m
        emu = m.service.apic
        if layer == L1:
            emu.count = 0
            emu.disabled_for_good = True
            for key in sorted(emu.apics):
                if emu.apics.pop(key, None) is not None:
                    self.emulation_changed(key[0], key[1], False)
        else:
            self._deregister(layer)
        if emu.count:
            return OperationResult.failure(
                name,
                ArchError(
                    vendor=VENDOR,
                    mnemonic="SVSM_APIC_CONFIGURE(deregister)",
                    code=0,
                    message=f"Alternate Injection stays registered (count {emu.count}: another "
                    f"component registered it): {im.RULE_ALTERNATE_LEFT_AT_COUNT_ZERO}.",
                ),
            )
        self.mode = im.DIRECT
        for (w, c), apic in list(self.apics.items()):  # the host injects what was pending
            if w != L1 and apic.deliverable() is not None and self.exists(w, c):
                self._kick(c)
                self._host_service(w, c)
                self._resume(c)
        return None

    def _leave_secure_avic(self) -> None:
        """RULE_SAVIC_HANDOFF: each vCPU unregisters its backing page; the host keeps the
        IRR/ISR as its APIC state (the LocalApic objects stay)."""
        m = self.m
        for w in m.workloads:
            for c in range(m.config.vcpus):
                if self.exists(w, c):
                    page = m.ghcb_page(w, c)
                    page.request(g.ExitCode.SECURE_AVIC, SAVIC_UNREGISTER, 0)
                    m.host.exit(w, page)

    def boot(self) -> None:
        """Launch state (not traced): Secure AVIC backing pages registered for the BSPs."""
        if self.mode == im.SECURE_AVIC:
            for w in self.m.workloads:
                self.backing_pages.add((w, 0))

    # -- many at once (the rest is InterruptDelivery.cycle_key/apply_cycle) ----------------------
    def _runs_now(self, layer: str, vcpu: int) -> bool:
        return self.running.get(vcpu, self.m.workloads[0]) == layer and self.exists(layer, vcpu)

    def _cycle_blocked(self, mode: InterruptMode, layer: str, vcpu: int) -> bool:
        """Work waiting for the vCPU in the mode's own structures (#HV doorbells, vectors the
        host held back, IPIs the SVSM posted)."""
        key = (layer, vcpu)
        if mode == im.ALTERNATE:
            sdb = self.svsm_doorbell(vcpu)
            return bool(
                sdb.per_vmpl_events
                or sdb.no_further_signal
                or self.backlog.get(key)
                or self.ipi_irr.get(key)
            )
        if mode == im.RESTRICTED:
            db = self.doorbells.get(key)
            return db is not None and bool(db.vector or db.no_further_signal)
        return False
