"""Vendor-neutral interrupt delivery: what an injected interrupt became, which layer and vCPU
took it, by which mechanism — and the bookkeeping both backends share.

* :class:`Delivery` is the record an :class:`~cocopart.ops.InjectInterrupt` result carries in
  ``data["delivery"]`` (and every delivery an operation caused in ``data["deliveries"]``):
  ``delivered`` (the target vCPU vectored to it now: it is in service), ``pending`` (latched
  in the IRR of whoever holds the target's APIC state; delivered later in priority order) or
  ``dropped`` (never delivered: masked, coalesced with the same vector already pending, or
  the mode cannot reach the target), with the layer, vCPU, vector and mechanism.
* :class:`InterruptLedger` gives each accepted interrupt an id, remembers which id each
  pending IRR bit stands for, and keeps an ordered log of deliveries, so "every interrupt is
  delivered exactly once, in priority order" can be checked from outside.
* :class:`LazyEoi` + :func:`present` are the privileged layer's evaluation step for an APIC it
  emulates (CS ``LocalApic::present_interrupts``): retire a lazily EOI'd vector, deliver the
  highest deliverable one, arm a lazy EOI when nothing else is pending. Used wherever a layer
  emulates a workload APIC: the SVSM (SNP Alternate Injection), the SNP host behind a #HV
  doorbell (Restricted Injection), the TDX L1.
* :class:`InterruptDelivery` is the vendor-neutral half of a backend's delivery engine: the
  per-vCPU APIC/lazy-EOI state, the inject/EOI operation skeletons, the lazy EOI the guest
  takes without an exit, the APIC-protocol registration and hand-off calls, and the state
  shape and state change of a repeatable cycle (:class:`CycleFastPath`). Each backend adds
  its primitives (how an interrupt reaches the vCPU, how an EOI leaves it).
* :func:`run_stream` injects many interrupts at once: each goes through the model's
  semantics (IRR, ISR, priority, EOI) and is counted in the trace, but the per-delivery
  primitive sequence is taken from one faithful execution per state shape (see
  :class:`CycleFastPath`).

The delivery state itself lives in :class:`cocopart.apic.LocalApic` objects (IRR/ISR/TPR).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cocopart.apic import FIRST_EXTERNAL_VECTOR, LocalApic

if TYPE_CHECKING:
    from cocopart.backend import Machine
    from cocopart.memory import GuestMemory
    from cocopart.model import InterruptMode
    from cocopart.ops import EndOfInterrupt, InjectInterrupt, OperationResult
    from cocopart.trace import CostTable, PrimitiveKey, SwitchKey, Trace

#: Longest ordered delivery log kept; past it only the counters grow.
MAX_DELIVERY_LOG = 1_000_000


class DeliveryStatus(str, Enum):
    DELIVERED = "delivered"
    PENDING = "pending"
    DROPPED = "dropped"


class Delivery(BaseModel):
    """What happened to one interrupt (vendor-neutral)."""

    id: int | None = Field(default=None, description="Ledger id of the interrupt.")
    status: DeliveryStatus
    layer: str = Field(description="Layer of the vCPU that takes (or would take) it.")
    vcpu: int
    vector: int
    mechanism: str = Field(
        default="",
        description="How it reaches the vCPU, e.g. 'SVSM alternate injection: VMSA EVENTINJ'.",
    )
    reason: str | None = Field(default=None, description="Why it is pending or dropped.")


class EoiRecord(BaseModel):
    """What an :class:`~cocopart.ops.EndOfInterrupt` did."""

    layer: str
    vcpu: int
    vector: int | None = Field(
        description="The in-service vector it completed (None: "
        "nothing was in service; the EOI is ignored)."
    )
    mechanism: str
    lazy: bool = Field(
        default=False,
        description="A lazy EOI: the guest cleared its "
        "no_eoi_required flag; the APIC's holder retires the vector at its "
        "next evaluation.",
    )


#: Reasons of dropped interrupts (stable strings: tests and tools compare them).
REASON_COALESCED = "coalesced: the same vector is already pending in the IRR"
REASON_MASKED = "masked: the APIC's holder does not accept this vector (CONFIGURE_VECTOR)"
REASON_BLOCKED = "pending: not above the processor priority (PPR) or a delivery is in service"


@dataclass
class InterruptLedger:
    """Ids of interrupts in flight and the ordered log of deliveries.

    An interrupt *arrives* (gets an id; coalesced if the same vector is already in flight
    for that vCPU), is *latched* into the IRR of whoever holds the APIC state (dropped if
    masked there), and is finally *delivered* (logged under its id) or *dropped* later (e.g.
    lost at a hand-off). ``pending`` maps ``(layer, vcpu, vector)`` to the id in flight."""

    next_id: int = 0
    pending: dict[tuple[str, int, int], int] = field(default_factory=dict)
    log: list[Delivery] = field(default_factory=list)
    lost: list[Delivery] = field(default_factory=list)
    delivered_count: int = 0
    dropped_count: int = 0
    keep_log: bool = True

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def arrive(self, layer: str, vcpu: int, vector: int, mechanism: str) -> Delivery:
        """An interrupt for ``layer``/``vcpu`` enters the delivery path."""
        ident = self.new_id()
        key = (layer, vcpu, vector)
        if key in self.pending:
            self.dropped_count += 1
            return Delivery(
                id=ident,
                status=DeliveryStatus.DROPPED,
                layer=layer,
                vcpu=vcpu,
                vector=vector,
                mechanism=mechanism,
                reason=REASON_COALESCED,
            )
        self.pending[key] = ident
        return Delivery(
            id=ident,
            status=DeliveryStatus.PENDING,
            layer=layer,
            vcpu=vcpu,
            vector=vector,
            mechanism=mechanism,
            reason=REASON_BLOCKED,
        )

    def latch(self, apic: LocalApic, layer: str, vcpu: int, vector: int) -> bool:
        """Set ``vector`` in ``apic``'s IRR; a vector the holder does not accept is dropped."""
        if apic.accept(vector):
            return True
        self.drop(layer, vcpu, vector, REASON_MASKED)
        return False

    def dropped(self, layer: str, vcpu: int, vector: int, mechanism: str, reason: str) -> Delivery:
        """An interrupt the model refuses before it enters any path."""
        self.dropped_count += 1
        return Delivery(
            id=self.new_id(),
            status=DeliveryStatus.DROPPED,
            layer=layer,
            vcpu=vcpu,
            vector=vector,
            mechanism=mechanism,
            reason=reason,
        )

    def drop(self, layer: str, vcpu: int, vector: int, reason: str) -> Delivery:
        """An interrupt in flight is lost (masked, or at a hand-off)."""
        ident = self.pending.pop((layer, vcpu, vector), None)
        d = Delivery(
            id=ident,
            status=DeliveryStatus.DROPPED,
            layer=layer,
            vcpu=vcpu,
            vector=vector,
            reason=reason,
        )
        self.dropped_count += 1
        if self.keep_log and len(self.lost) < MAX_DELIVERY_LOG:
            self.lost.append(d)
        return d

    def delivered(self, layer: str, vcpu: int, vector: int, mechanism: str) -> Delivery:
        """``vector`` moved from IRR to ISR at ``layer``/``vcpu``: log it under its id."""
        ident = self.pending.pop((layer, vcpu, vector), None)
        d = Delivery(
            id=ident,
            status=DeliveryStatus.DELIVERED,
            layer=layer,
            vcpu=vcpu,
            vector=vector,
            mechanism=mechanism,
        )
        self.delivered_count += 1
        if self.keep_log and len(self.log) < MAX_DELIVERY_LOG:
            self.log.append(d)
        return d


@dataclass
class LazyEoi:
    """Lazy EOI state of one emulated APIC (CS ``lazy_eoi_pending``): armed when the holder
    delivered a vector with nothing else pending and told the guest, through a
    ``no_eoi_required`` byte, that its EOI need not exit."""

    armed: bool = False


class EoiFlag(Protocol):
    """The guest-visible ``no_eoi_required`` byte (SVSM calling area offset 2; #HV doorbell
    byte 2)."""

    def read(self) -> int: ...

    def write(self, value: int) -> None: ...


def present(apic: LocalApic, lazy: LazyEoi, flag: EoiFlag | None) -> tuple[int | None, int | None]:
    """One evaluation by the APIC's holder before it enters the vCPU (CS present_interrupts):

    1. a lazy EOI the guest took (flag back at 0) retires the in-service vector;
    2. the flag is cleared (no lazy EOI unless re-armed below);
    3. the highest deliverable vector moves IRR -> ISR;
    4. a lazy EOI is armed when nothing else is pending (an explicit EOI is needed to prompt
       the next delivery otherwise) and a flag exists.

    Returns (vector retired by a lazy EOI or None, vector to inject now or None)."""
    retired = None
    if lazy.armed:
        if flag is not None and flag.read() == 0 and apic.isr:
            retired = apic.eoi()
        lazy.armed = False
    if flag is not None:
        flag.write(0)
    vector = apic.deliver()
    if vector is not None and flag is not None and not apic.irr and apic.isr == 1 << vector:
        flag.write(1)
        lazy.armed = True
    return retired, vector


def settle_lazy(apic: LocalApic | None, lazy: LazyEoi, flag: EoiFlag | None) -> None:
    """Before the holder of a no_eoi_required byte changes: a lazy EOI the guest took retires
    its vector, one it did not take becomes an explicit EOI (CS check_delivered_interrupts +
    clear_guest_eoi_pending); the byte is cleared."""
    if lazy.armed and flag is not None and flag.read() == 0 and apic is not None and apic.isr:
        apic.eoi()
    lazy.armed = False
    if flag is not None:
        flag.write(0)


def valid_external(vector: int) -> bool:
    return FIRST_EXTERNAL_VECTOR <= vector <= 255


def vectors(bits: int) -> list[int]:
    """The set bits of an IRR/ISR-style bitmap, highest first."""
    out = []
    while bits:
        v = bits.bit_length() - 1
        out.append(v)
        bits &= ~(1 << v)
    return out


def fixed_ipi_icr(dest: int, vector: int) -> int:
    """x2APIC ICR value of a fixed, asserted, edge-triggered, physical IPI."""
    return (dest << 32) | (1 << 14) | vector


@dataclass
class MemoryFlag:
    """A guest-memory byte used as the no_eoi_required flag (the calling area's)."""

    memory: GuestMemory
    gpa: int

    def read(self) -> int:
        return self.memory.read(self.gpa, 1)[0]

    def write(self, value: int) -> None:
        self.memory.write(self.gpa, bytes([value]))


# -- the vendor-neutral half of a backend's delivery engine ------------------------------------
L1, HOST = "l1", "host"


class InterruptDelivery:
    """State and steps every backend's interrupt delivery shares.

    ``m`` is the backend's machine (``config``, ``trace``, ``memory``, ``service``,
    ``client``, ``workloads``). ``l1`` is the privileged layer that emulates workload APICs
    (and has its own), ``host`` the untrusted one that raises device interrupts. A backend
    sets the class constants and implements :meth:`exists`, :meth:`eoi_flag`,
    :meth:`_refuse_target`, :meth:`_serve` (an accepted interrupt's path), :meth:`_eoi` (the
    EOI's path) and :meth:`_runs_now` (for :meth:`cycle_key`)."""

    #: Vendor name for :class:`~cocopart.ops.ArchError`.
    VENDOR: ClassVar[str]
    #: How an interrupt reaches a workload vCPU, per mode; how it reaches ``l1``.
    MECHANISM: ClassVar[Mapping[InterruptMode, str]]
    L1_MECHANISM: ClassVar[str]
    #: The mode a vCPU whose APIC-protocol emulation stopped follows.
    HANDOFF_MODE: ClassVar[InterruptMode]
    #: Modes whose guest-visible no_eoi_required byte makes the steady cycle's EOI lazy.
    LAZY_MODES: ClassVar[tuple[InterruptMode, ...]]
    #: Who answers the APIC protocol ("the SVSM", "L1") and the rules quoted in refusals.
    PROTOCOL_HOLDER: ClassVar[str]
    RULE_NO_VCPU_NO_INTERRUPT: ClassVar[str]
    RULE_L1_HANDLER_RUNS_TO_COMPLETION: ClassVar[str]
    RULE_REQUESTERS: ClassVar[str]
    RULE_ALTERNATE_NOT_REENTERED: ClassVar[str]

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.mode: InterruptMode = machine.config.interrupt_mode
        self.ledger = InterruptLedger()
        self.apics: dict[tuple[str, int], LocalApic] = dict(machine.service.apic.apics)
        self.lazy: dict[tuple[str, int], LazyEoi] = {}
        #: Host interrupts ``(target, vcpu, vector)`` that arrive right after the privileged
        #: layer commits to entering a workload (test hook; consumed by the next entry).
        self.during_entry: list[tuple[str, int, int]] = []
        #: vCPUs an IPI must still reach (the host notifies them at the end of the operation).
        self._notify: list[int] = []
        self._out: list[Delivery] = []

    # -- backend hooks ------------------------------------------------------------------------
    def exists(self, layer: str, vcpu: int) -> bool:
        raise NotImplementedError

    def eoi_flag(self, layer: str, vcpu: int) -> EoiFlag | None:
        """The no_eoi_required byte of the holder of ``layer``'s APIC, if it has one."""
        raise NotImplementedError

    def _refuse_target(self, op: InjectInterrupt | EndOfInterrupt) -> str | None:
        raise NotImplementedError

    def _refuse_inject(self, op: InjectInterrupt) -> str | None:
        return None

    def _serve(self, op: InjectInterrupt, coalesced: bool) -> None:
        raise NotImplementedError

    def _eoi(self, layer: str, vcpu: int) -> EoiRecord:
        raise NotImplementedError

    def _after_eoi(self) -> None:
        return None

    def _runs_now(self, layer: str, vcpu: int) -> bool:
        raise NotImplementedError

    def _cycle_blocked(self, mode: InterruptMode, layer: str, vcpu: int) -> bool:
        return False

    # -- state --------------------------------------------------------------------------------
    @property
    def trace(self) -> Trace:
        trace: Trace = self.m.trace
        return trace

    def apic(self, layer: str, vcpu: int) -> LocalApic:
        key = (layer, vcpu)
        a = self.apics.get(key)
        if a is None:
            a = self.apics[key] = LocalApic(apic_id=vcpu)
        return a

    def lazy_of(self, layer: str, vcpu: int) -> LazyEoi:
        key = (layer, vcpu)
        z = self.lazy.get(key)
        if z is None:
            z = self.lazy[key] = LazyEoi()
        return z

    def emulated(self, layer: str, vcpu: int) -> bool:
        enabled: bool = self.m.service.apic.enabled(layer, vcpu)
        return enabled

    def effective(self, layer: str, vcpu: int) -> InterruptMode:
        """The mode a vCPU's interrupts follow: the VM-wide mode, except that a vCPU whose
        APIC-protocol emulation stopped (hand-off in progress) follows HANDOFF_MODE."""
        from cocopart.model import InterruptMode

        if self.mode == InterruptMode.ALTERNATE and not self.emulated(layer, vcpu):
            return self.HANDOFF_MODE
        return self.mode

    def mechanism(self, layer: str, vcpu: int) -> str:
        return self.L1_MECHANISM if layer == L1 else self.MECHANISM[self.effective(layer, vcpu)]

    def caa_flag(self, layer: str, vcpu: int) -> MemoryFlag:
        from cocopart.protocol.calling_area import NO_EOI_REQUIRED

        return MemoryFlag(self.m.memory, self.m.service.state.caa(layer, vcpu) + NO_EOI_REQUIRED)

    def in_service(self, layer: str, vcpu: int) -> int:
        """ISR without a vector the guest already EOI'd lazily."""
        apic = self.apics.get((layer, vcpu))
        if apic is None or not apic.isr:
            return 0
        lazy = self.lazy.get((layer, vcpu))
        flag = self.eoi_flag(layer, vcpu)
        if lazy is not None and lazy.armed and flag is not None and flag.read() == 0:
            return apic.isr & ~(1 << (apic.isr.bit_length() - 1))
        return apic.isr

    def _delivered(self, layer: str, vcpu: int, vector: int, mechanism: str) -> None:
        self._out.append(self.ledger.delivered(layer, vcpu, vector, mechanism))

    def _deliveries(self) -> list[dict[str, Any]]:
        return [d.model_dump(mode="json") for d in self._out]

    def _take_window(self, vcpu: int) -> list[tuple[str, int, int]]:
        """The test hook's arrivals for ``vcpu`` (removed from :attr:`during_entry`)."""
        mine = [e for e in self.during_entry if e[1] == vcpu]
        self.during_entry = [e for e in self.during_entry if e[1] != vcpu]
        return mine

    def _withdraw(self, layer: str, vcpu: int, vector: int, flag: EoiFlag | None) -> None:
        """Undo an injection prepared but not entered (CS rewind_pending_interrupt): back from
        ISR to IRR, no lazy EOI armed."""
        apic = self.apic(layer, vcpu)
        apic.isr &= ~(1 << vector)
        apic.irr |= 1 << vector
        self.lazy_of(layer, vcpu).armed = False
        if flag is not None:
            flag.write(0)

    # -- operations ---------------------------------------------------------------------------
    def refuse(self, op: InjectInterrupt | EndOfInterrupt) -> str | None:
        from cocopart.errors import ConfigError
        from cocopart.ops import EndOfInterrupt, InjectInterrupt

        why = self._refuse_target(op)
        if why:
            return why
        vcpus = self.m.config.vcpus
        if op.vcpu >= vcpus:
            raise ConfigError(f"vCPU {op.vcpu} out of range (0..{vcpus - 1})", field="vcpu")
        if isinstance(op, InjectInterrupt):
            why = self._refuse_inject(op)
            if why:
                return why
            if op.layer != HOST and (op.layer != op.target or op.target == L1):
                return (
                    f"{op.layer} cannot raise an interrupt for {op.target}: {self.RULE_REQUESTERS}"
                )
        if isinstance(op, EndOfInterrupt) and op.layer != op.target:
            return (
                f"{op.layer} cannot signal end of interrupt for {op.target}: only the "
                "handler on the target vCPU does"
            )
        return None

    def _result(self, name: str, first: Delivery, **extra: object) -> OperationResult:
        from cocopart.ops import OperationResult

        mine = next((d for d in self._out if first.id is not None and d.id == first.id), None)
        final = mine or first
        return OperationResult.success(
            name, delivery=final.model_dump(mode="json"), deliveries=self._deliveries(), **extra
        )

    def inject(self, op: InjectInterrupt) -> OperationResult:
        from cocopart.ops import OperationResult

        name = op.describe()
        why = self.refuse(op)
        if why:
            return OperationResult.not_supported(name, why)
        self._out = []
        target, vcpu, vector = op.target, op.vcpu, op.vector
        mech = self.mechanism(target, vcpu)
        if not self.exists(target, vcpu):
            return self._result(
                name,
                self.ledger.dropped(target, vcpu, vector, mech, self.RULE_NO_VCPU_NO_INTERRUPT),
            )
        first = self.ledger.arrive(target, vcpu, vector, mech)
        self._serve(op, first.status is DeliveryStatus.DROPPED)
        return self._result(name, first)

    def eoi(self, op: EndOfInterrupt) -> OperationResult:
        from cocopart.ops import OperationResult

        name = op.describe()
        why = self.refuse(op)
        if why:
            return OperationResult.not_supported(name, why)
        self._out = []
        rec = self._eoi(op.target, op.vcpu)
        self._after_eoi()
        return OperationResult.success(
            name, eoi=rec.model_dump(mode="json"), deliveries=self._deliveries()
        )

    def _eoi_common(self, layer: str, vcpu: int) -> EoiRecord | int:
        """The EOI steps every mode shares: nothing to complete for ``l1`` (its handler ran
        to completion) or when nothing is in service, or a lazy EOI (the guest clears
        no_eoi_required: no exit). Returns the record, or the in-service vector the backend's
        EOI path completes."""
        if layer == L1:
            return EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=None,
                mechanism=f"nothing in service: {self.RULE_L1_HANDLER_RUNS_TO_COMPLETION}",
            )
        live = self.in_service(layer, vcpu)
        if not live:
            return EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=None,
                mechanism="nothing in service: the EOI is ignored",
            )
        top = live.bit_length() - 1
        flag = self.eoi_flag(layer, vcpu)
        lazy = self.lazy.get((layer, vcpu))
        if flag is not None and lazy is not None and lazy.armed and flag.read() == 1:
            flag.write(0)  # the guest clears no_eoi_required: no exit (CS lazy EOI)
            self.trace.record(layer, "EOI.LAZY")
            return EoiRecord(
                layer=layer,
                vcpu=vcpu,
                vector=top,
                lazy=True,
                mechanism="no_eoi_required cleared (lazy EOI, no exit)",
            )
        return top

    # -- the APIC protocol (alternate mode) -----------------------------------------------------
    def _icr_via_protocol(self, layer: str, dest: int, vector: int) -> None:
        """``layer``'s vCPU 0 writes its ICR through the APIC protocol; a refused write drops
        the interrupt."""
        from cocopart.apic import ICR
        from cocopart.protocol.ids import ApicCall, ProtocolId, result_name

        out = self.m.client.call(
            layer, 0, ProtocolId.APIC, ApicCall.WRITE_REGISTER, ICR, fixed_ipi_icr(dest, vector)
        )
        if not out.ok:
            self.ledger.drop(
                layer,
                dest,
                vector,
                f"SVSM_APIC WRITE_REGISTER(ICR) answered {result_name(out.code)}",
            )

    def _try_register(self, name: str, layer: str) -> OperationResult:
        """Entering alternate = registering through the APIC protocol; refused unless the
        guest booted with it and the count never reached 0 (RULE_ALTERNATE_NOT_REENTERED)."""
        from cocopart.ops import ArchError, OperationResult
        from cocopart.protocol.ids import ApicCall, ProtocolId, result_name
        from cocopart.service.apic import CONFIGURE_REGISTER

        if layer == L1:
            return OperationResult.not_supported(
                name, f"{self.mode.value} -> alternate: {self.RULE_ALTERNATE_NOT_REENTERED}"
            )
        out = self.m.client.call(layer, 0, ProtocolId.APIC, ApicCall.CONFIGURE, CONFIGURE_REGISTER)
        return OperationResult.failure(
            name,
            ArchError(
                vendor=self.VENDOR,
                mnemonic="SVSM_APIC_CONFIGURE(register)",
                code=out.code,
                message=f"{self.PROTOCOL_HOLDER} answered {result_name(out.code)}: "
                f"{self.RULE_ALTERNATE_NOT_REENTERED}.",
            ),
        )

    def _deregister(self, layer: str) -> None:
        """The seed's hand-off from a workload: deregister on its BSP, refresh on every other
        emulated vCPU (each through its own SVSM_APIC call). Only a layer that controls every
        other one gets here (RULE_GUEST_WIDE_NEEDS_CONTROL, which the APIC protocol applies
        to the VM-wide count too: RULE_REGISTRATION_NEEDS_CONTROL)."""
        from cocopart.protocol.ids import ApicCall, ProtocolId
        from cocopart.service.apic import CONFIGURE_DEREGISTER, CONFIGURE_REFRESH

        m = self.m
        emu = m.service.apic
        m.client.call(layer, 0, ProtocolId.APIC, ApicCall.CONFIGURE, CONFIGURE_DEREGISTER)
        for w in m.workloads:
            for c in range(m.config.vcpus):
                if emu.enabled(w, c) and self.exists(w, c):
                    m.client.call(w, c, ProtocolId.APIC, ApicCall.CONFIGURE, CONFIGURE_REFRESH)

    # -- many at once (CycleFastPath) -------------------------------------------------------------
    def cycle_key(self, requester: str, layer: str, vcpu: int, vector: int) -> Hashable | None:
        """State shape of one host inject -> EOI cycle (see :class:`CycleFastPath`):
        ``layer`` runs on the vCPU, its APIC holds nothing but possibly one vector the guest
        already EOI'd lazily, nothing else waits on the vCPU."""
        if requester != HOST or layer == L1 or self.during_entry or self._notify:
            return None
        key = (layer, vcpu)
        apic = self.apics.get(key)
        if (
            apic is None
            or apic.irr
            or not apic.allowed >> vector & 1
            or not self.exists(layer, vcpu)
            or not self._runs_now(layer, vcpu)
        ):
            return None
        mode = self.effective(layer, vcpu)
        lazy = self.lazy.get(key)
        armed = lazy is not None and lazy.armed
        if armed:
            flag = self.eoi_flag(layer, vcpu)
            if flag is None or flag.read() or not apic.isr or apic.isr & (apic.isr - 1):
                return None
        elif apic.isr:
            return None
        if self._cycle_blocked(mode, layer, vcpu):
            return None
        return (mode, layer, armed)

    def apply_cycle(self, key: Hashable, layer: str, vcpu: int, vector: int) -> Hashable | None:
        """The state change of one faithful cycle for ``key`` (see :meth:`cycle_key`): a
        lazily EOI'd vector retired, ``vector`` delivered and completed — lazily where the
        mode has a no_eoi_required byte, so it stays in ISR with the lazy EOI taken, exactly
        as after the faithful cycle. Returns the shape after the cycle."""
        assert isinstance(key, tuple)
        mode = key[0]
        apic = self.apics[(layer, vcpu)]
        if not apic.allowed >> vector & 1:
            return None
        ledger = self.ledger  # one more accepted and delivered, no log entry (hot path)
        ledger.next_id += 1
        ledger.delivered_count += 1
        if mode in self.LAZY_MODES:
            apic.isr = 1 << vector
            self.lazy_of(layer, vcpu).armed = True
            return (mode, layer, True)
        apic.isr = 0
        return key


# -- many interrupts at once ------------------------------------------------------------------
@runtime_checkable
class CycleFastPath(Protocol):
    """A machine that can repeat one inject -> deliver -> EOI cycle without re-running its
    primitives, once it has run that cycle faithfully for the same state shape.

    ``cycle_key`` names the shape (mode, requester, target layer, what runs on the vCPU,
    whether the APIC is idle or holds a lazily EOI'd vector ...) — everything the cycle's
    primitive sequence depends on except the vCPU number and the vector — or None when the
    shape is not repeatable. ``apply_cycle`` changes the model's state exactly as the
    faithful cycle would for that key (APIC, lazy EOI, ledger) and returns the shape key
    after the cycle, or None when it cannot (the caller then runs the cycle faithfully)."""

    def cycle_key(self, requester: str, layer: str, vcpu: int, vector: int) -> Hashable | None: ...

    def apply_cycle(self, key: Hashable, layer: str, vcpu: int, vector: int) -> Hashable | None: ...


class StreamResult(BaseModel):
    """Outcome of :func:`run_stream`."""

    injected: int = 0
    delivered: int = 0
    dropped: int = 0
    faithful_cycles: int = Field(
        default=0,
        description="Cycles executed primitive by "
        "primitive (the first of each state shape, and any that "
        "could not be repeated).",
    )
    repeated_cycles: int = 0
    primitives: int = 0
    world_switches: int = 0
    estimated_ns: float = 0.0


Recipe = list[tuple["PrimitiveKey | SwitchKey", int]]


def _replay(trace: Trace, recipe: Recipe, times: int) -> None:
    from cocopart.trace import PrimitiveKey

    for key, count in recipe:
        if isinstance(key, PrimitiveKey):
            trace.record(key.issuer, key.mnemonic, key.target, key.result, count * times)
        else:
            trace.switch(key.source, key.dest, key.mechanism, count * times)


def run_stream(
    machine: Machine, items: Iterable[tuple[str, int, int]], *, requester: str, costs: CostTable
) -> StreamResult:
    """Inject every ``(target layer, vCPU, vector)`` from ``requester`` and complete it with
    the target's EOI. Each cycle is counted in ``machine.trace``: the first cycle of every
    state shape runs faithfully (its trace delta becomes the shape's recipe), later cycles of
    that shape apply the same state change and add the recipe's counts (recorded at the end,
    run-length aggregated). A shape whose faithful cycle was refused (not supported) refuses
    every later interrupt of that shape the same way."""
    from cocopart.ops import EndOfInterrupt, InjectInterrupt, Status

    trace = machine.trace
    provider = getattr(machine, "interrupt_fast_path", None)
    candidate = provider() if callable(provider) else None
    fast = candidate if isinstance(candidate, CycleFastPath) else None
    recipes: dict[Hashable, Recipe] = {}
    refused: set[Hashable] = set()
    repeats: dict[Hashable, int] = {}
    #: (layer, vcpu) -> its shape after the last repeated cycle (valid until a faithful one)
    steady: dict[tuple[str, int], Hashable] = {}
    injected = delivered = dropped = faithful = repeated = 0
    mark = trace.mark()
    for layer, vcpu, vector in items:
        injected += 1
        key = steady.get((layer, vcpu))
        if key is None and fast is not None:
            key = fast.cycle_key(requester, layer, vcpu, vector)
        if key is not None and fast is not None:
            if key in refused:
                dropped += 1
                continue
            if key in recipes:
                after = fast.apply_cycle(key, layer, vcpu, vector)
                if after is not None:
                    repeats[key] = repeats.get(key, 0) + 1
                    steady[(layer, vcpu)] = after
                    repeated += 1
                    continue
        steady.clear()
        before = trace.mark()
        r = machine.execute(
            InjectInterrupt(layer=requester, target=layer, vcpu=vcpu, vector=vector)
        )
        d = r.data.get("delivery") or {}
        faithful += 1
        if r.status is Status.NOT_SUPPORTED:
            dropped += 1
            if key is not None and not trace.since(before).entries:
                refused.add(key)
            continue
        if d.get("status") == DeliveryStatus.DROPPED.value:
            dropped += 1
            continue
        machine.execute(EndOfInterrupt(layer=layer, target=layer, vcpu=vcpu))
        delivered += 1
        if (
            key is not None
            and key not in recipes
            and d.get("status") == DeliveryStatus.DELIVERED.value
        ):
            recipes[key] = trace.since(before).entries
    for key, n in repeats.items():
        _replay(trace, recipes[key], n)
    delta = trace.since(mark)
    return StreamResult(
        injected=injected,
        delivered=delivered + repeated,
        dropped=dropped,
        faithful_cycles=faithful,
        repeated_cycles=repeated,
        primitives=delta.total_primitives,
        world_switches=delta.total_switches,
        estimated_ns=costs.estimate(delta),
    )
