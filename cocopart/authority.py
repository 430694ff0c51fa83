"""Who may ask the privileged layer for what: page ownership and the authority rules.

The privileged layer (SVSM at VMPL0 / TDX L1) serves several workload layers, so it must
decide for every request whether the requester may have it. The rules are written here once,
in vendor-neutral terms, and used in two places:

* the core executor (:class:`cocopart.partition.Partition`) checks each operation before
  anything runs, so a refused operation changes nothing;
* the privileged layer itself (the protocol handlers in :mod:`cocopart.service` and each
  backend's L1 emulation of workload requests) checks each raw request, because a workload
  is not trusted to use the library: the real enforcement point is the privileged layer.

Rules (docs/authority.md has the sources and the choices no spec makes):

* **Every page has an owner** — ``l1`` or one workload layer. Guest RAM named in
  ``PartitionConfig.memory_map`` is *assigned* to its layer for good. Other RAM starts in
  l1's *pool* (owner ``l1``, not assigned): the first workload whose validate succeeds on a
  pool page owns it, and the page goes back to the pool when it is rescinded or shared.
  l1 validating a pool page for itself takes it out of the pool. The protocol pages of each
  workload layer (calling areas, vCPU contexts, scratch buffers) belong to that layer.
* **State changes need ownership** (:data:`RULE_STATE_CHANGE_NEEDS_OWNERSHIP`): a workload
  may validate, rescind, share or make private only pages it owns or pool pages (which hold
  nobody's data: no layer holds access to a pool page). l1 may act on any page.
* **Access changes follow the memory-control edges of the layer graph**
  (:data:`RULE_LOWER_NEVER_ACTS_ON_HIGHER`, :data:`RULE_PEER_ACCESS_NEEDS_OWNERSHIP`): a
  layer may change another layer's access where it holds a memory-control path over it
  (SNP: VMPL1 over VMPL2/3), never where the other layer controls it; between peers (TDX L2
  VMs) only on pages it owns. A workload never grants more than it holds itself.
* **No confused deputy** (:data:`RULE_BUFFER_MUST_BE_CALLERS`): every buffer the privileged
  layer reads or writes for a workload must be memory that workload may itself read (input)
  or write (output), and never a vCPU context page.
* **Ranges stay inside guest RAM** (:data:`RULE_RANGE_INSIDE_RAM`) for every operation on
  both backends; protocol pages are never convertible or rescindable through operations.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import rustworkx as rx

from cocopart.memory import ProtocolLayout
from cocopart.model import L1, PAGE_4K, Access, GpaRange
from cocopart.protocol.ids import ResultCode
from cocopart.ranges import RangeMap

RULE_STATE_CHANGE_NEEDS_OWNERSHIP = "STATE_CHANGE_NEEDS_OWNERSHIP"
RULE_LOWER_NEVER_ACTS_ON_HIGHER = "LOWER_NEVER_ACTS_ON_HIGHER"
RULE_PEER_ACCESS_NEEDS_OWNERSHIP = "PEER_ACCESS_NEEDS_OWNERSHIP"
RULE_GRANT_WITHIN_HELD = "GRANT_WITHIN_HELD"
RULE_CONTEXT_PAGE_UNTOUCHABLE = "CONTEXT_PAGE_UNTOUCHABLE"
RULE_CALLING_AREA_IN_USE = "CALLING_AREA_IN_USE"
RULE_BUFFER_MUST_BE_CALLERS = "BUFFER_MUST_BE_CALLERS"
RULE_RANGE_INSIDE_RAM = "RANGE_INSIDE_RAM"
RULE_BSP_KEEPS_RUNNING = "BSP_KEEPS_RUNNING"
RULE_OUTPUT_FITS_BUFFER = "OUTPUT_FITS_BUFFER"
RULE_ACCESS_ON_VALIDATED_PAGES = "ACCESS_ON_VALIDATED_PAGES"
RULE_GUEST_WIDE_NEEDS_CONTROL = "GUEST_WIDE_NEEDS_CONTROL"

#: The vendor name of refusals made by cocopart's authority model (not by hardware).
AUTHORITY_VENDOR = "cocopart-authority"


class OwnerEntry(NamedTuple):
    """Who owns a run of pages; ``assigned`` pages stay with their owner when released."""

    owner: str
    assigned: bool


#: A page of l1's pool: the first workload to validate it owns it.
POOL = OwnerEntry(L1, False)


class Refusal(NamedTuple):
    """Why a request is refused: the rule, the protocol result code, the first page concerned
    and a sentence a person understands."""

    rule: str
    code: int
    gpa: int | None
    message: str


def bsp_refusal(layer: str, gpa: int | None) -> Refusal:
    """RULE_BSP_KEEPS_RUNNING: vCPU 0 of ``layer`` (its context page at ``gpa``, if known)
    is never deleted — for operations and for raw DELETE_VCPU calls alike."""
    return Refusal(
        RULE_BSP_KEEPS_RUNNING,
        ResultCode.INVALID_PARAMETER,
        gpa,
        f"vCPU 0 is {layer}'s bootstrap processor: every request of a layer is "
        "issued from it, so it is never deleted (the layer would be left unable "
        "to ask for anything)",
    )


def _lowest_in(pages: Sequence[int], lo: int, end: int) -> int | None:
    """The lowest GPA of the sorted ``pages`` inside ``[lo, end)`` (a binary search)."""
    i = bisect_left(pages, lo)
    return pages[i] if i < len(pages) and pages[i] < end else None


class Ownership:
    """The owner of every guest-physical page, as runs (never one object per page)."""

    def __init__(
        self,
        layout: ProtocolLayout,
        workloads: tuple[str, ...],
        memory_map: dict[str, list[GpaRange]] | None = None,
    ) -> None:
        self.layout = layout
        self.ram = layout.memory
        self.map: RangeMap[OwnerEntry] = RangeMap(layout.total, POOL)
        if layout.total > self.ram:
            self.map.set(self.ram, layout.total, OwnerEntry(L1, True))
        for i, w in enumerate(workloads):
            s, e = layout.layer_region(i)
            self.map.set(s, e, OwnerEntry(w, True))
        for layer, ranges in (memory_map or {}).items():
            for r in ranges:
                self.map.set(r.start, r.end, OwnerEntry(layer, True))

    def owner(self, gpa: int) -> str:
        return self.map.get(gpa).owner

    def runs(self, start: int, end: int) -> Iterator[tuple[int, int, OwnerEntry]]:
        return self.map.runs(start, end)

    def first_not_takeable(self, layer: str, start: int, end: int) -> int | None:
        """First GPA in ``[start, end)`` that ``layer`` may not validate (not its own, not
        pool), or None. l1 may take anything."""
        if layer == L1:
            return None
        for s, _e, v in self.map.runs(start, end):
            if v.owner != layer and v != POOL:
                return s
        return None

    def first_not_owned(self, layer: str, start: int, end: int) -> int | None:
        """First GPA in ``[start, end)`` that ``layer`` does not own, or None (l1: None)."""
        if layer == L1:
            return None
        for s, _e, v in self.map.runs(start, end):
            if v.owner != layer:
                return s
        return None

    def claim(self, layer: str, start: int, end: int) -> None:
        """``layer``'s validate succeeded on ``[start, end)``: pool pages become its own
        (l1's become assigned to l1 until it releases them)."""
        if start >= end:
            return
        new = OwnerEntry(layer, layer == L1)
        self.map.update(start, end, lambda v: new if v == POOL else v)

    def release(self, start: int, end: int) -> None:
        """The pages were rescinded or shared: pages not assigned by the memory map (and
        l1's own) go back to the pool."""
        if start >= end:
            return
        self.map.update(start, end, lambda v: POOL if v.owner == L1 or not v.assigned else v)


#: ``access_of(layer, start, end)``: the access ``layer`` holds on every page of the range
#: (the intersection), read from the vendor's page tables without side effects.
AccessOf = Callable[[str, int, int], Access]


class Authority:
    """The authority rules over an :class:`Ownership` and the layer graph's memory-control
    edges. ``controllers`` maps each layer to the layers it controls (transitively)."""

    def __init__(
        self, ownership: Ownership, controls: dict[str, frozenset[str]], workloads: tuple[str, ...]
    ) -> None:
        self.ownership = ownership
        self._controls = controls
        self.workloads = workloads
        self.access_of: AccessOf | None = None
        #: Sorted GPAs of live vCPU context pages (SNP VMSA / TDX L2 state), kept by the
        #: service.
        self.contexts: Callable[[], Sequence[int]] = tuple
        #: Sorted GPAs of the calling areas vCPUs use now, kept by the service.
        self.calling_areas: Callable[[], Sequence[int]] = tuple

    @classmethod
    def from_edges(
        cls, ownership: Ownership, edges: list[tuple[str, str]], workloads: tuple[str, ...]
    ) -> Authority:
        """Build from memory-control edges ``(controller, controlled)``; l1 controls every
        workload layer whatever the graph says (it is the privileged layer)."""
        g = rx.PyDiGraph()
        idx: dict[str, int] = {}
        for a, b in [*edges, *((L1, w) for w in workloads)]:
            for n in (a, b):
                if n not in idx:
                    idx[n] = g.add_node(n)
            g.add_edge(idx[a], idx[b], None)
        controls = {n: frozenset(g[d] for d in rx.descendants(g, i)) for n, i in idx.items()}
        return cls(ownership, controls, workloads)

    def controls(self, a: str, b: str) -> bool:
        """True if layer ``a`` may restrict layer ``b``'s memory access."""
        return a != b and b in self._controls.get(a, frozenset())

    def controlled_by(self, layer: str) -> list[str]:
        return sorted(self._controls.get(layer, frozenset()))

    def check_guest_wide(self, layer: str, what: str) -> Refusal | None:
        """RULE_GUEST_WIDE_NEEDS_CONTROL: a change that affects every workload layer (the
        interrupt mode) comes from l1 or from a workload that controls all the others."""
        if layer not in self.workloads:
            return None
        others = [w for w in self.workloads if w != layer and not self.controls(layer, w)]
        if not others:
            return None
        return Refusal(
            RULE_GUEST_WIDE_NEEDS_CONTROL,
            ResultCode.INVALID_PARAMETER,
            None,
            f"{layer} may not {what}: it changes {', '.join(others)} too, which "
            f"{layer} does not control; ask from l1",
        )

    # -- page-state requests ---------------------------------------------------------------
    def check_state(self, layer: str, start: int, end: int, what: str) -> Refusal | None:
        """RULE_STATE_CHANGE_NEEDS_OWNERSHIP: may ``layer`` ``what`` (validate, rescind,
        share, make private) every page of ``[start, end)``? Pages the privileged layer uses
        for a vCPU (context, calling area) are never changed (for l1 too)."""
        at = self.ownership.first_not_takeable(layer, start, end)
        busy = self.protocol_page_in(start, end)
        if busy is not None and (at is None or (busy.gpa or 0) <= at):
            return busy
        if at is None:
            return None
        owner = self.ownership.owner(at)
        return Refusal(
            RULE_STATE_CHANGE_NEEDS_OWNERSHIP,
            ResultCode.INVALID_ADDRESS,
            at,
            f"{layer} may not {what} the page at {at:#x}: it belongs to {owner}",
        )

    # -- access changes --------------------------------------------------------------------
    def check_set_access(
        self, requester: str, target: str, start: int, end: int, access: Access
    ) -> Refusal | None:
        """May ``requester`` set ``target``'s access to ``access`` on ``[start, end)``?"""
        if requester == L1:
            return self._context_refusal(target, start, end)
        if self.controls(target, requester):
            return Refusal(
                RULE_LOWER_NEVER_ACTS_ON_HIGHER,
                ResultCode.INVALID_PARAMETER,
                start,
                f"{requester} may not change the access of {target}: {target} is "
                f"more privileged (it controls {requester}'s memory, never the "
                "reverse)",
            )
        if self.controls(requester, target):
            # a hardware control mechanism (SNP RMPADJUST): the hardware enforces its own
            # subset rule and answers with its own code (FAIL_PERMISSION)
            return self._context_refusal(target, start, end)
        at = self.ownership.first_not_owned(requester, start, end)
        if at is not None:
            return Refusal(
                RULE_PEER_ACCESS_NEEDS_OWNERSHIP,
                ResultCode.INVALID_PARAMETER,
                at,
                f"{requester} may change {target}'s access only on its own "
                f"pages; the page at {at:#x} belongs to {self.ownership.owner(at)}",
            )
        held = self.access_of(requester, start, end) if self.access_of else Access.RWX
        if access & ~held:
            return Refusal(
                RULE_GRANT_WITHIN_HELD,
                ResultCode.INVALID_PARAMETER,
                start,
                f"{requester} holds only {held.short()} on [{start:#x}, {end:#x}) "
                f"and may not grant {target} {access.short()}",
            )
        return self._context_refusal(target, start, end)

    def _context_refusal(self, target: str, start: int, end: int) -> Refusal | None:
        hit = self.context_in(start, end)
        if hit is None:
            return None
        return Refusal(
            RULE_CONTEXT_PAGE_UNTOUCHABLE,
            ResultCode.INVALID_PARAMETER,
            hit,
            f"the page at {hit:#x} holds a live vCPU context; nobody's access to "
            "it may change while it runs",
        )

    def protocol_page_in(self, start: int, end: int) -> Refusal | None:
        """A live context page or a calling area in use inside ``[start, end)``: no page
        state change may touch either (the privileged layer keeps using them)."""
        ctx = self.context_in(start, end)
        caa = _lowest_in(self.calling_areas(), start & ~(PAGE_4K - 1), end)
        if ctx is not None and (caa is None or ctx < caa):
            return Refusal(
                RULE_CONTEXT_PAGE_UNTOUCHABLE,
                ResultCode.INVALID_ADDRESS,
                ctx,
                f"the page at {ctx:#x} holds a live vCPU context",
            )
        if caa is not None:
            return Refusal(
                RULE_CALLING_AREA_IN_USE,
                ResultCode.INVALID_ADDRESS,
                caa,
                f"the page at {caa:#x} is a vCPU's calling area; move it with REMAP_CA first",
            )
        return None

    # -- buffers of protocol calls ---------------------------------------------------------
    def context_in(self, start: int, end: int) -> int | None:
        """The lowest live context page overlapping ``[start, end)``, or None."""
        return _lowest_in(self.contexts(), start & ~(PAGE_4K - 1), end)

    def check_buffer(self, layer: str, gpa: int, size: int, need: Access) -> Refusal | None:
        """A protocol buffer ``[gpa, gpa + size)`` the privileged layer reads (``need`` has
        READ) or writes (WRITE) for ``layer``: it must be memory ``layer`` may itself access
        that way, and no vCPU context page."""
        if size <= 0:
            return None
        end = gpa + size
        hit = self.context_in(gpa, end)
        if hit is not None:
            return Refusal(
                RULE_CONTEXT_PAGE_UNTOUCHABLE,
                ResultCode.INVALID_ADDRESS,
                hit,
                f"the buffer at {gpa:#x} covers the vCPU context page {hit:#x}",
            )
        if layer == L1 or self.access_of is None:
            return None
        lo, hi = gpa & ~(PAGE_4K - 1), -(-end // PAGE_4K) * PAGE_4K
        held = self.access_of(layer, lo, hi)
        if need & ~held:
            return Refusal(
                RULE_BUFFER_MUST_BE_CALLERS,
                ResultCode.INVALID_ADDRESS,
                gpa,
                f"{layer} may not {'write' if need & Access.WRITE else 'read'} "
                f"[{gpa:#x}, {end:#x}) itself, so the privileged layer will not "
                "either on its behalf",
            )
        return None
