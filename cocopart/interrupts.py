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
* :func:`run_stream` injects many interrupts at once: each goes through the model's
  semantics (IRR, ISR, priority, EOI) and is counted in the trace, but the per-delivery
  primitive sequence is taken from one faithful execution per state shape (see
  :class:`CycleFastPath`).

The delivery state itself lives in :class:`cocopart.apic.LocalApic` objects (IRR/ISR/TPR).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cocopart.apic import FIRST_EXTERNAL_VECTOR, LocalApic

if TYPE_CHECKING:
    from cocopart.backend import Machine
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
    mechanism: str = Field(default="", description="How it reaches the vCPU, e.g. 'SVSM "
                           "alternate injection: VMSA EVENTINJ'.")
    reason: str | None = Field(default=None, description="Why it is pending or dropped.")


class EoiRecord(BaseModel):
    """What an :class:`~cocopart.ops.EndOfInterrupt` did."""

    layer: str
    vcpu: int
    vector: int | None = Field(description="The in-service vector it completed (None: "
                               "nothing was in service; the EOI is ignored).")
    mechanism: str
    lazy: bool = Field(default=False, description="A lazy EOI: the guest cleared its "
                       "no_eoi_required flag; the APIC's holder retires the vector at its "
                       "next evaluation.")


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
            return Delivery(id=ident, status=DeliveryStatus.DROPPED, layer=layer, vcpu=vcpu,
                            vector=vector, mechanism=mechanism, reason=REASON_COALESCED)
        self.pending[key] = ident
        return Delivery(id=ident, status=DeliveryStatus.PENDING, layer=layer, vcpu=vcpu,
                        vector=vector, mechanism=mechanism, reason=REASON_BLOCKED)

    def latch(self, apic: LocalApic, layer: str, vcpu: int, vector: int) -> bool:
        """Set ``vector`` in ``apic``'s IRR; a vector the holder does not accept is dropped."""
        if apic.accept(vector):
            return True
        self.drop(layer, vcpu, vector, REASON_MASKED)
        return False

    def dropped(self, layer: str, vcpu: int, vector: int, mechanism: str, reason: str
                ) -> Delivery:
        """An interrupt the model refuses before it enters any path."""
        self.dropped_count += 1
        return Delivery(id=self.new_id(), status=DeliveryStatus.DROPPED, layer=layer,
                        vcpu=vcpu, vector=vector, mechanism=mechanism, reason=reason)

    def drop(self, layer: str, vcpu: int, vector: int, reason: str) -> Delivery:
        """An interrupt in flight is lost (masked, or at a hand-off)."""
        ident = self.pending.pop((layer, vcpu, vector), None)
        d = Delivery(id=ident, status=DeliveryStatus.DROPPED, layer=layer, vcpu=vcpu,
                     vector=vector, reason=reason)
        self.dropped_count += 1
        if self.keep_log and len(self.lost) < MAX_DELIVERY_LOG:
            self.lost.append(d)
        return d

    def delivered(self, layer: str, vcpu: int, vector: int, mechanism: str) -> Delivery:
        """``vector`` moved from IRR to ISR at ``layer``/``vcpu``: log it under its id."""
        ident = self.pending.pop((layer, vcpu, vector), None)
        d = Delivery(id=ident, status=DeliveryStatus.DELIVERED, layer=layer, vcpu=vcpu,
                     vector=vector, mechanism=mechanism)
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


def valid_external(vector: int) -> bool:
    return FIRST_EXTERNAL_VECTOR <= vector <= 255


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

    def cycle_key(self, requester: str, layer: str, vcpu: int, vector: int) -> Hashable | None:
        ...

    def apply_cycle(self, key: Hashable, layer: str, vcpu: int, vector: int
                    ) -> Hashable | None: ...


class StreamResult(BaseModel):
    """Outcome of :func:`run_stream`."""

    injected: int = 0
    delivered: int = 0
    dropped: int = 0
    faithful_cycles: int = Field(default=0, description="Cycles executed primitive by "
                                 "primitive (the first of each state shape, and any that "
                                 "could not be repeated).")
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


def run_stream(machine: Machine, items: Iterable[tuple[str, int, int]], *, requester: str,
               costs: CostTable) -> StreamResult:
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
        r = machine.execute(InjectInterrupt(layer=requester, target=layer, vcpu=vcpu,
                                            vector=vector))
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
        if key is not None and key not in recipes \
                and d.get("status") == DeliveryStatus.DELIVERED.value:
            recipes[key] = trace.since(before).entries
    for key, n in repeats.items():
        _replay(trace, recipes[key], n)
    delta = trace.since(mark)
    return StreamResult(injected=injected, delivered=delivered + repeated, dropped=dropped,
                        faithful_cycles=faithful, repeated_cycles=repeated,
                        primitives=delta.total_primitives, world_switches=delta.total_switches,
                        estimated_ns=costs.estimate(delta))
