"""The L1 VMM of the TD: the privileged layer that serves the protocol on TDX primitives.

* :class:`TdxPlatform` implements :class:`cocopart.backend.PrivilegedPlatform`:

  - validate for an L2 = TDG.MEM.PAGE.ACCEPT (order by strategy: ``linux`` tries 1G, 2M, 4K
    like Linux ``try_accept_page``; ``optimal`` 2M then 4K) + TDG.MEM.PAGE.ATTR.WR granting
    that L2 VM R|W|Xs|Xu (as OpenHCL does right after ACCEPT, tdx.md §3);
  - rescind = ATTR.WR removing every L2's alias + TDG.MEM.PAGE.RELEASE on a module that has it
    (``module = "2.0"``); module 1.5 has no way to un-accept: UNSUPPORTED_CALL, with a reason;
  - set access = ATTR.WR; create vCPU = the L2 VMCS through TDG.VP.WR + the first
    TDG.VP.ENTER on L1 vCPU n; delete = the L2 VMCS's virtual-APIC address cleared (it can
    never be entered again) and its state buffer zeroed;
  - hardware report = TDG.MR.REPORT + TDVMCALL<GetQuote>; measurement = TDG.MR.RTMR.EXTEND with
    the UEFI CC PCR -> RTMR mapping (:func:`pcr_to_rtmr`).

* :class:`TdxTransport` implements :class:`cocopart.backend.Transport`: the L2's
  TDG.VP.VMCALL (vendor-specific, R10 = "COCOPART") exits to L1 with basic reason 77; L1 reads
  the request from the L2_ENTER_GUEST_STATE buffer, answers there, and TDG.VP.ENTERs back.
  With ``enable_tdvmcall`` an L2's TDG.VP.VMCALL would go to the host, so the L2 uses the
  VMCALL instruction (reason 18) instead — our choice, listed in the report.

Bulk work (:class:`LeafWalker`): pages are handled as runs. For a run of ``n`` equal blocks
the walker executes the first block for real on the module (including TD exits, host AUGs,
fallbacks to smaller levels) and, when that block ends in one uniform state, gives the other
``n - 1`` blocks the same state and counts its primitives ``n`` times. Counts equal what
``n`` separate executions record; the cost grows with the number of runs, not pages.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

from cocopart.backend import HardwareEvidence, PageOpResult, PrivilegedPlatform, Transport
from cocopart.memory import (
    GuestMemory,
    ProtocolLayout,
)
from cocopart.model import PAGE_2M, PAGE_4K, Access, Strategy
from cocopart.protocol.call import Registers
from cocopart.protocol.ids import ResultCode
from cocopart.trace import Trace
from cocopart_tdx import attributes as attrs
from cocopart_tdx import metadata as md
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.host import TdxHost
from cocopart_tdx.sept import (
    ACCEPTED,
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_4K,
    LEVEL_BYTES,
    LEVEL_NAMES,
    L2Alias,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.status import Operand, TdxStatus, base, mnemonic, status_name, with_details
from cocopart_tdx.tdcall import TdcallResult, TdxModule
from cocopart_tdx.vp_enter import (
    ENTER_GUEST_STATE_SIZE,
    PENDING_INTERRUPT,
    TDCALL_LENGTH,
    VMCALL_LENGTH,
    EnterGuestState,
    L2Exit,
    VmxExit,
    enter_rcx,
)

if TYPE_CHECKING:
    from cocopart.service.dispatcher import ServiceDispatcher

U64 = (1 << 64) - 1
#: ACCEPT levels tried in order, per strategy (tdx.md §4.1; cost-model.md §3).
ACCEPT_ORDER: dict[Strategy, tuple[int, ...]] = {
    Strategy.LINUX: (LEVEL_1G, LEVEL_2M, LEVEL_4K),
    Strategy.OPTIMAL: (LEVEL_2M, LEVEL_4K),
}
#: Protocol entries per PVALIDATE call the L2 sends, per strategy: Linux builds each call from
#: one 64-entry PSC descriptor; the calling area holds 510 (cost-model.md §3).
ENTRIES_PER_CALL: dict[Strategy, int] = {Strategy.LINUX: 64, Strategy.OPTIMAL: 510}
#: A TDCALL re-executed after this many TD exits without completing is given up.
MAX_EXIT_RETRIES = 4
#: OPERAND_BUSY retries (the Rust TDCALL wrapper's MAX_RETRIES_ATTR_WR, cost-model.md §3).
MAX_BUSY_RETRIES = 5
#: What validate grants the L2 (OpenHCL: R|W|Xs|Xu|VALID right after ACCEPT; tdx.md §3).
VALIDATE_GRANT = attrs.RWX
#: Access the L2 keeps to its calling areas and scratch pages (no execute).
PROTOCOL_PAGE_GRANT = attrs.R | attrs.W
#: L2 VMCS fields L1 writes for a new L2 vCPU before its first TDG.VP.ENTER: a 32-bit flat
#: protected-mode start like a TDX vCPU after TDH.VP.INIT (tdx.md §6); RIP, RSP, RFLAGS and
#: GPRs come from the L2_ENTER_GUEST_STATE buffer. The list is our choice: no source gives
#: the count (cost-model.md §4). The virtual-APIC address is appended (mandatory, §2.3).
L2_BOOT_STATE: tuple[tuple[int, int], ...] = (
    (0x0802, 0x08),          # GUEST_CS_SELECTOR
    (0x4802, 0xFFFF_FFFF),   # GUEST_CS_LIMIT
    (0x4816, 0xC09B),        # GUEST_CS_AR_BYTES (tdx.md §6)
    (0x0804, 0x10),          # GUEST_SS_SELECTOR
    (0x4804, 0xFFFF_FFFF),   # GUEST_SS_LIMIT
    (0x4818, 0xC093),        # GUEST_SS_AR_BYTES
    (0x481A, 0xC093),        # GUEST_DS_AR_BYTES
    (0x6802, 0),             # GUEST_CR3 (paging off; CR4.MCE is not L1-writable: mask)
)
#: An EPT-violation TD exit the host did not fix: not a TDX status, the VMX exit reason.
EPT_UNRESOLVED = -1


def pcr_to_rtmr(pcr: int) -> int:
    """UEFI confidential-computing mapping of TPM PCRs to TDX RTMRs (UEFI CC measurement,
    TDVF): PCR 1 and 7 -> RTMR0, PCR 2-6 -> RTMR1, PCR 8-15 -> RTMR2, every other PCR
    (0, 16-23) -> RTMR3 — one rule, our choice for the PCRs UEFI maps to MRTD or nowhere."""
    if pcr in (1, 7):
        return 0
    if 2 <= pcr <= 6:
        return 1
    if 8 <= pcr <= 15:
        return 2
    return 3


def vm_name(vm: int) -> str:
    return f"L2 VM {vm}"


# -- trace buffering ------------------------------------------------------------------------
class Tally:
    """Primitives and switches recorded in order, to be counted ``n`` times and flushed."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[bool, tuple[str, str, str, str], int]] = []

    def record(self, issuer: str, mnemonic: str, target: str = "", result: str = "ok",
               count: int = 1) -> None:
        self.items.append((True, (issuer, mnemonic, target, result), count))

    def switch(self, source: str, dest: str, mechanism: str, count: int = 1) -> None:
        self.items.append((False, (source, dest, mechanism, ""), count))

    def add(self, other: Tally, times: int = 1) -> None:
        if times > 0:
            self.items.extend((k, key, c * times) for k, key, c in other.items)

    def flush(self, trace: Trace) -> None:
        for is_prim, key, count in self.items:
            if is_prim:
                trace.record(key[0], key[1], key[2], key[3], count)
            else:
                trace.switch(key[0], key[1], key[2], count)
        self.items.clear()


# -- L1's own memory -------------------------------------------------------------------------
QUOTE_BUFFER_PAGES = 4  # GetQuote buffer: 16 KiB, enough for a quote with its PEM chain


@dataclass(frozen=True)
class L1Region:
    """L1-private pages just above the protocol region: a scratch page (TDREPORT @0,
    REPORTDATA @0x400, RTMR data @0x440), the measured L1 image page, the GetQuote buffer
    (shared with the host) and one virtual-APIC page per (L2 VM, vCPU)."""

    base: int
    num_l2_vms: int
    vcpus: int

    @property
    def tdreport(self) -> int:
        return self.base

    @property
    def reportdata(self) -> int:
        return self.base + 0x400

    @property
    def rtmr_data(self) -> int:
        return self.base + 0x440

    @property
    def image(self) -> int:
        return self.base + PAGE_4K

    @property
    def quote_buffer(self) -> int:
        return self.base + 2 * PAGE_4K

    @property
    def quote_buffer_size(self) -> int:
        return QUOTE_BUFFER_PAGES * PAGE_4K

    def vapic(self, vm: int, vcpu: int) -> int:
        first = self.quote_buffer + self.quote_buffer_size
        return first + ((vm - 1) * self.vcpus + vcpu) * PAGE_4K

    @property
    def used_end(self) -> int:
        return self.vapic(self.num_l2_vms, self.vcpus - 1) + PAGE_4K

    @property
    def size(self) -> int:
        raw = self.used_end - self.base
        return -(-raw // PAGE_2M) * PAGE_2M

    def private_ranges(self) -> list[tuple[int, int]]:
        """What TD build adds as private pages (everything but the GetQuote buffer)."""
        return [(self.base, self.quote_buffer),
                (self.quote_buffer + self.quote_buffer_size, self.used_end)]


class L1Error(NamedTuple):
    """The architectural reason behind L1's last failed primitive."""

    mnemonic: str
    code: int
    message: str


def error_of(status: int, what: str) -> L1Error:
    if status == EPT_UNRESOLVED:
        return L1Error("EPT_VIOLATION", int(VmxExit.EPT_VIOLATION),
                       f"{what}: the EPT-violation TD exit was not resolved by the host "
                       "(it did not map the page), so the TDCALL cannot complete")
    return L1Error(mnemonic(status), status, f"{what} returned {status_name(status)}")


def protocol_code(status: int) -> int:
    """The protocol result an L1 failure surfaces as (one table, our choice)."""
    b = base(status) if status >= 0 else status
    table = {
        int(TdxStatus.PAGE_SIZE_MISMATCH): ResultCode.PVALIDATE_FAIL_SIZEMISMATCH,
        int(TdxStatus.OPERAND_BUSY): ResultCode.BUSY,
        int(TdxStatus.PAGE_ALREADY_ACCEPTED): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.EPT_ENTRY_STATE_INCORRECT): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.EPT_ENTRY_FREE): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.PAGE_ATTR_INVALID): ResultCode.PVALIDATE_FAIL_PERMISSION,
        int(TdxStatus.L2_SEPT_WALK_FAILED): ResultCode.PVALIDATE_FAIL_PERMISSION,
    }
    return int(table.get(b, ResultCode.PVALIDATE_FAIL_INPUT))


# -- leaf operations over runs --------------------------------------------------------------
class LeafOp(Protocol):
    """A page TDCALL the walker can apply to blocks."""

    target: str
    zeroes: bool

    def call(self, gpa: int, level: int) -> TdcallResult: ...

    def mnemonic(self, level: int) -> str: ...

    def levels_at(self, entry: SeptEntry, levels: tuple[int, ...]) -> tuple[int, ...]: ...

    def key(self) -> tuple[object, ...]: ...


class AcceptOp:
    """TDG.MEM.PAGE.ACCEPT; the mnemonic carries the level (``TDG.MEM.PAGE.ACCEPT.2M``)."""

    target = ""
    zeroes = True

    def __init__(self, module: TdxModule) -> None:
        self.module = module

    def call(self, gpa: int, level: int) -> TdcallResult:
        return self.module.accept(gpa, level)

    def mnemonic(self, level: int) -> str:
        return f"TDG.MEM.PAGE.ACCEPT.{LEVEL_NAMES[level]}"

    def levels_at(self, entry: SeptEntry, levels: tuple[int, ...]) -> tuple[int, ...]:
        return levels  # the accepting code does not know the host's mapping

    def key(self) -> tuple[object, ...]:
        return ("accept",)


def leaf_levels(entry: SeptEntry, levels: tuple[int, ...]) -> tuple[int, ...]:
    """Levels L1 uses on a mapped page: its leaf level first (it knows it from its accepts),
    smaller ones where the range covers only part of the leaf (the module then exits and the
    host demotes the leaf). On a page with no leaf: the levels given."""
    if entry.state is SeptState.FREE or entry.state is SeptState.REMOVED:
        return levels
    return tuple(lv for lv in levels if lv <= entry.level) or (min(levels),)


class AttrWrOp:
    """TDG.MEM.PAGE.ATTR.WR with one GPA_ATTR/ATTR_FLAGS pair, issued at the leaf level L1
    knows from its own accepts; unmapped pages are tried at 2M, then 4K."""

    zeroes = False

    def __init__(self, module: TdxModule, gpa_attr: int, flags: int, target: str) -> None:
        self.module, self.gpa_attr, self.flags, self.target = module, gpa_attr, flags, target

    def call(self, gpa: int, level: int) -> TdcallResult:
        return self.module.attr_wr(gpa, level, self.gpa_attr, self.flags)

    def mnemonic(self, level: int) -> str:
        return "TDG.MEM.PAGE.ATTR.WR"

    def levels_at(self, entry: SeptEntry, levels: tuple[int, ...]) -> tuple[int, ...]:
        return leaf_levels(entry, levels)

    def key(self) -> tuple[object, ...]:
        return ("attr", self.gpa_attr, self.flags, self.target)


class ReleaseOp:
    """TDG.MEM.PAGE.RELEASE at the leaf level (later modules, tdx.md §4.3)."""

    target = ""
    zeroes = False

    def __init__(self, module: TdxModule) -> None:
        self.module = module

    def call(self, gpa: int, level: int) -> TdcallResult:
        return self.module.release(gpa, level)

    def mnemonic(self, level: int) -> str:
        return "TDG.MEM.PAGE.RELEASE"

    def levels_at(self, entry: SeptEntry, levels: tuple[int, ...]) -> tuple[int, ...]:
        return leaf_levels(entry, levels)

    def key(self) -> tuple[object, ...]:
        return ("release",)


@dataclass
class WalkResult:
    """Bytes completed (already-accepted pages included), the failing status and GPA."""

    done: int = 0
    status: int = 0
    failed_gpa: int | None = None
    already: int = 0


@dataclass(frozen=True)
class BlockOutcome:
    """What one block ended as: its primitives, final states and side effects."""

    items: tuple[tuple[bool, tuple[str, str, str, str], int], ...]
    final: SeptEntry
    aliases: tuple[L2Alias, ...]
    already: int
    invept: tuple[tuple[int, int], ...]


class LeafWalker:
    """Applies a :class:`LeafOp` to ``[start, end)`` block by block, as runs.

    Blocks inside one run of equal state (L1 SEPT, every L2 alias map, the host's shared
    view) behave alike: the first is executed for real, the rest get its final state and its
    primitives counted again. The outcome is remembered per (operation, level, levels tried,
    state), so the next run in the same state is applied without executing a block at all;
    nothing is remembered while the module injects contention or misses an L2 SEPT page.
    """

    def __init__(self, module: TdxModule, host: TdxHost) -> None:
        self.module = module
        self.host = host
        self._memo: dict[tuple[object, ...], BlockOutcome] = {}

    def walk(self, op: LeafOp, start: int, end: int, levels: tuple[int, ...], tally: Tally
             ) -> WalkResult:
        return self._range(op, start, end, levels, tally)

    def state_run(self, p: int) -> tuple[int, tuple[SeptEntry, tuple[L2Alias, ...]], bool]:
        """End of the run of equal state at ``p``, that state, and the host's shared view."""
        sept = self.module.sept
        _s, e, entry = sept.l1.run_at(p)
        aliases = []
        for amap in sept.l2.values():
            _s, ae, a = amap.run_at(p)
            aliases.append(a)
            e = min(e, ae)
        _s, se, shared = self.host.shared.run_at(p)
        return min(e, se), (entry, tuple(aliases)), shared

    def _range(self, op: LeafOp, start: int, end: int, levels: tuple[int, ...], tally: Tally
               ) -> WalkResult:
        res = WalkResult()
        p = start
        while p < end:
            run_end, before, shared = self.state_run(p)
            lv = op.levels_at(before[0], levels)
            level = next((lv_ for lv_ in lv if p % LEVEL_BYTES[lv_] == 0
                          and p + LEVEL_BYTES[lv_] <= end), None)
            if level is None:  # only larger levels were allowed and none fits here
                res.status, res.failed_gpa = with_details(TdxStatus.OPERAND_INVALID,
                                                          Operand.RCX), p
                return res
            size = LEVEL_BYTES[level]
            limit = end
            for big in lv:
                if big > level:
                    bsize = LEVEL_BYTES[big]
                    nxt = (p // bsize + 1) * bsize
                    if nxt + bsize <= end:
                        limit = min(limit, nxt)
            uniform = run_end - p >= size
            n = max(1, (min(limit, run_end) - p) // size) if uniform else 1
            key: tuple[object, ...] | None = None
            if uniform and self.module.busy == 0 and not self.module.l2_sept_missing:
                key = (op.key(), level, lv, before, shared)
                hit = self._memo.get(key)
                if hit is not None:
                    self._apply(op, p, p + n * size, hit, before, n)
                    tally.items.extend((k, kk, c * n) for k, kk, c in hit.items)
                    res.done += n * size
                    res.already += n * hit.already
                    p += n * size
                    continue
            invept = dict(self.module.invept)
            sub = Tally()
            r = self._block(op, p, level, lv, sub)
            if r.status:
                tally.add(sub)
                res.done += r.done
                res.already += r.already
                res.status, res.failed_gpa = r.status, r.failed_gpa
                return res
            outcome = self._outcome(p, size, before, sub, r.already, invept)
            if outcome is not None and key is not None:
                self._memo[key] = outcome
            if n > 1:
                if outcome is None:
                    n = 1
                else:
                    self._apply(op, p + size, p + n * size, outcome, before, n - 1)
            tally.add(sub, n)
            res.done += n * size
            res.already += n * r.already
            p += n * size
        return res

    def _outcome(self, p: int, size: int, before: tuple[SeptEntry, tuple[L2Alias, ...]],
                 sub: Tally, already: int, invept: dict[int, int]) -> BlockOutcome | None:
        """The block's final state if it is one state that can be given to other blocks."""
        sept = self.module.sept
        final = sept.l1.uniform(p, p + size)
        aliases = tuple(amap.uniform(p, p + size) for amap in sept.l2.values())
        if final is None or any(a is None for a in aliases):
            return None
        if final != before[0] and LEVEL_BYTES[final.level] > size:
            return None
        delta = tuple((vm, c - invept.get(vm, 0)) for vm, c in self.module.invept.items()
                      if c != invept.get(vm, 0))
        return BlockOutcome(tuple(sub.items), final,
                            tuple(a for a in aliases if a is not None), already, delta)

    def _apply(self, op: LeafOp, lo: int, hi: int, out: BlockOutcome,
               before: tuple[SeptEntry, tuple[L2Alias, ...]], blocks: int) -> None:
        """Give ``[lo, hi)`` (``blocks`` blocks in state ``before``) the outcome's state."""
        sept = self.module.sept
        if out.final != before[0]:
            sept.set_entries(lo, hi, out.final)
            if op.zeroes and out.final.state in ACCEPTED:
                self.module.memory.zero(lo, hi - lo)
        for (vm, _amap), a, old in zip(sept.l2.items(), out.aliases, before[1]):
            if a != old:
                sept.set_alias(vm, lo, hi, a)
        for vm, d in out.invept:
            self.module.invept[vm] = self.module.invept.get(vm, 0) + d * blocks

    def _block(self, op: LeafOp, p: int, level: int, lv: tuple[int, ...], tally: Tally
               ) -> WalkResult:
        size = LEVEL_BYTES[level]
        exits = busy = 0
        name = op.mnemonic(level)
        while True:
            r = op.call(p, level)
            if r.exit is not None:
                tally.record("l1", name, op.target, "EPT_VIOLATION")
                tally.switch("l1", "host", "TD exit")
                fixed = self.host.on_ept_violation(r.exit, tally)
                tally.switch("host", "l1", "TDH.VP.ENTER")
                exits += 1
                if not fixed or exits > MAX_EXIT_RETRIES:
                    return WalkResult(status=EPT_UNRESOLVED, failed_gpa=p)
                continue
            tally.record("l1", name, op.target, "ok" if r.status == 0
                         else status_name(r.status))
            if r.status == 0:
                if op.zeroes:  # the module zeroes the accepted page with the TD's key
                    tally.record("firmware", f"PAGE.ZERO.{LEVEL_NAMES[level]}")
                return WalkResult(done=size)
            b = base(r.status)
            if b == TdxStatus.OPERAND_BUSY:
                busy += 1
                if busy > MAX_BUSY_RETRIES:
                    return WalkResult(status=r.status, failed_gpa=p)
                continue
            if b == TdxStatus.PAGE_ALREADY_ACCEPTED:
                return WalkResult(done=size, already=size)
            smaller = tuple(x for x in lv if x < level)
            fallback = b == TdxStatus.PAGE_SIZE_MISMATCH or (
                b == TdxStatus.OPERAND_INVALID and level == LEVEL_1G)
            if fallback and smaller:
                return self._range(op, p, p + size, smaller, tally)
            return WalkResult(status=r.status, failed_gpa=p)


# -- the platform -----------------------------------------------------------------------------
@dataclass
class L2VcpuRecord:
    """An L2 vCPU L1 has built: VM, vCPU (= L1 vCPU), its state buffer."""

    vm: int
    vcpu: int
    context_gpa: int


class EntryHooks(Protocol):
    """L1's interrupt work around an L2 entry (:mod:`cocopart_tdx.interrupts`)."""

    def before_enter(self, vcpu: int, vm: int, tally: Tally) -> None: ...

    def after_enter(self, vcpu: int, vm: int, result: TdcallResult, tally: Tally) -> None: ...

    def on_pending_interrupt(self, vcpu: int, vm: int, tally: Tally) -> None: ...

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int: ...


class TdxPlatform(PrivilegedPlatform):
    """The TD's L1 VMM, implementing the neutral privileged primitives on TDX."""

    vendor: ClassVar[str] = "intel"

    def __init__(self, module: TdxModule, host: TdxHost, memory: GuestMemory,
                 layout: ProtocolLayout, region: L1Region, workloads: tuple[str, ...],
                 trace: Trace, *, strategy: Strategy, enable_tdvmcall: bool) -> None:
        self.module = module
        self.host = host
        self.memory = memory
        self.layout = layout
        self.region = region
        self.workloads = workloads
        self.trace = trace
        self.strategy = strategy
        self.enable_tdvmcall = enable_tdvmcall
        self.walker = LeafWalker(module, host)
        self.l2_vcpus: dict[tuple[int, int], L2VcpuRecord] = {}
        self._state_pages: list[int] = []  # sorted state buffers of live L2 vCPUs
        self.last_error: L1Error | None = None
        #: While not None, what L1's primitives record (for :meth:`_remember_validate`).
        self._capture: list[tuple[bool, tuple[str, str, str, str], int]] | None = None
        self._vmemo: dict[tuple[object, ...], tuple[
            tuple[tuple[bool, tuple[str, str, str, str], int], ...], SeptEntry,
            tuple[L2Alias, ...]]] = {}
        #: Interrupt delivery around each L2 entry (set by the machine; issue 6).
        self.interrupt_hooks: EntryHooks | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def vm_of(self, layer: str) -> int:
        return self.workloads.index(layer) + 1

    def layer_of(self, vm: int) -> str:
        return self.workloads[vm - 1]

    def fail(self, status: int, what: str) -> int:
        self.last_error = error_of(status, what)
        return protocol_code(status)

    def take_error(self) -> L1Error | None:
        err, self.last_error = self.last_error, None
        return err

    def live_state_in(self, start: int, end: int) -> int | None:
        """A live L2 vCPU's state buffer inside ``[start, end)``, if any: L1 never lets it be
        validated again, rescinded, given to an L2 or shared (L2 state is never shared)."""
        i = bisect_left(self._state_pages, start)
        if i < len(self._state_pages) and self._state_pages[i] < end:
            return self._state_pages[i]
        return None

    def _refuse_state(self, gpa: int, what: str) -> int:
        self.last_error = L1Error("TDX_OPERAND_INVALID",
                                  with_details(TdxStatus.OPERAND_INVALID, Operand.RCX),
                                  f"{what} of {gpa:#x} refused: it is the state buffer of a "
                                  "live L2 vCPU")
        return ResultCode.INVALID_PARAMETER

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return 0 <= gpa and size >= 0 and gpa + size <= self.layout.total

    def apic_ids(self) -> set[int]:
        return set(range(self.layout.vcpus))

    def _flush(self, tally: Tally) -> None:
        if self._capture is not None:
            self._capture.extend(tally.items)
        tally.flush(self.trace)

    # -- accept + grant ---------------------------------------------------------------------
    def accept_levels(self, page_bytes: int | None) -> tuple[int, ...]:
        """Levels L1 tries: the strategy's order, capped at the protocol entry's size."""
        order = ACCEPT_ORDER[self.strategy]
        if page_bytes is None:
            return order
        cap = next(lv for lv, size in LEVEL_BYTES.items() if size == page_bytes)
        return tuple(lv for lv in order if lv <= cap) or (LEVEL_4K,)

    def accept_range(self, start: int, end: int, levels: tuple[int, ...]) -> WalkResult:
        tally = Tally()
        r = self.walker.walk(AcceptOp(self.module), start, end, levels, tally)
        self._flush(tally)
        return r

    def write_attrs(self, start: int, end: int, words: dict[int, int], flags: dict[int, int],
                    target: str) -> WalkResult:
        """ATTR.WR over ``[start, end)`` at the leaf levels (one TDCALL per leaf)."""
        tally = Tally()
        op = AttrWrOp(self.module, attrs.pack(words), attrs.pack(flags), target)
        r = self.walker.walk(op, start, end, (LEVEL_2M, LEVEL_4K), tally)
        self._flush(tally)
        return r

    def grant(self, vm: int, start: int, end: int, attr: int) -> WalkResult:
        """Set VM ``vm``'s R/W/Xs/Xu on the pages (INVEPT when access shrinks)."""
        flags = (attrs.RWX | attrs.FLAG_INVEPT) if attr != attrs.RWX else attrs.RWX
        return self.write_attrs(start, end, {vm: attrs.VALID | attr}, {vm: flags}, vm_name(vm))

    def _aliased_runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Sub-ranges of ``[start, end)`` where some L2 VM has an alias (L1 tracks these)."""
        marks: set[int] = {start, end}
        for amap in self.module.sept.l2.values():
            for s, e, _a in amap.runs(start, end):
                marks.update((s, e))
        pts = sorted(marks)
        out: list[tuple[int, int]] = []
        for s, e in pairwise(pts):
            if any(amap.get(s).state is not SeptState.L2_FREE
                   for amap in self.module.sept.l2.values()):
                if out and out[-1][1] == s:
                    out[-1] = (out[-1][0], e)
                else:
                    out.append((s, e))
        return out

    def revoke_all(self, start: int, end: int, target: str = "all L2 VMs") -> WalkResult:
        """ATTR.WR removing every L2 VM's R/W/Xs/Xu (alias removed), INVEPT each VM."""
        words = {vm: attrs.VALID for vm in self.module.sept.l2}
        flags = {vm: attrs.RWX | attrs.FLAG_INVEPT for vm in self.module.sept.l2}
        total = WalkResult()
        for s, e in self._aliased_runs(start, end):
            r = self.write_attrs(s, e, words, flags, target)
            total.done += r.done
            if r.status:
                total.status, total.failed_gpa = r.status, r.failed_gpa
                return total
        return total

    def _first_entry(self, gpa: int, page_bytes: int, count: int,
                     pred: Callable[[SeptState], bool]) -> int | None:
        """Index of the first entry whose every page's L1 state satisfies ``pred``."""
        end = gpa + page_bytes * count
        for s, e, v in self.module.sept.l1.runs(gpa, end):
            if not pred(v.state):
                continue
            first = -(-(s - gpa) // page_bytes)
            if gpa + (first + 1) * page_bytes <= e:
                return first
        return None

    def validate_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                       ignore_unchanged: bool) -> PageOpResult:
        """ACCEPT (strategy order, fallbacks, host AUGs on TD exits) then ATTR.WR granting
        ``layer``'s L2 VM R|W|Xs|Xu. ALREADY_ACCEPTED policy: an entry whose every page was
        accepted before is "no change" (PVALIDATE_FAIL_NO_CHANGE, entries before it done)
        unless ``ignore_unchanged``, when L1 zeroes those pages itself and grants them;
        already-accepted pages inside a partly accepted entry are simply kept."""
        vm = self.vm_of(layer)
        end = gpa + page_bytes * count
        busy = self.live_state_in(gpa, end)
        if busy is not None:
            return PageOpResult((busy - gpa) // page_bytes, self._refuse_state(busy, "validate"))
        fast = self._validate_memo(vm, gpa, page_bytes, count)
        if fast is not None:
            return fast
        stop = count
        unchanged = self._first_entry(gpa, page_bytes, count, lambda s: s in ACCEPTED)
        if unchanged is not None and not ignore_unchanged:
            stop = unchanged
        already: list[tuple[int, int]] = []
        if ignore_unchanged:
            already = [(max(s, gpa), min(e, end))
                       for s, e, v in self.module.sept.l1.runs(gpa, end) if v.state in ACCEPTED]
        key = self._uniform_key(vm, gpa, end, page_bytes) if unchanged is None else None
        self._capture = [] if key is not None else None
        if stop:
            stop_end = gpa + page_bytes * stop
            r = self.accept_range(gpa, stop_end, self.accept_levels(page_bytes))
            done = r.done // page_bytes
            if done:
                g = self.grant(vm, gpa, gpa + done * page_bytes, VALIDATE_GRANT)
                if g.status:
                    self._capture = None
                    return PageOpResult(g.done // page_bytes,
                                        self.fail(g.status, "TDG.MEM.PAGE.ATTR.WR"))
            if r.status:
                self._capture = None
                what = f"TDG.MEM.PAGE.ACCEPT of {r.failed_gpa or 0:#x}"
                return PageOpResult(done, self.fail(r.status, what))
        items, self._capture = self._capture, None
        if key is not None and items is not None:
            self._remember_validate(key, gpa, end, count, items)
        for s, e in already:  # ALREADY_ACCEPTED with ignore_cf: L1 zeroes the pages itself
            self.memory.zero(s, e - s)
        if stop < count:
            self.last_error = error_of(
                with_details(TdxStatus.PAGE_ALREADY_ACCEPTED, 0),
                f"TDG.MEM.PAGE.ACCEPT of {gpa + stop * page_bytes:#x} (already accepted, "
                "reported as no change)")
            return PageOpResult(stop, ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        return PageOpResult(count, ResultCode.SUCCESS)

    # A whole PVALIDATE run over pages in one state behaves the same every time: remember what
    # one entry costs and ends as, and apply it to the next run in that state at once.
    def _uniform_key(self, vm: int, start: int, end: int, page_bytes: int
                     ) -> tuple[object, ...] | None:
        if self.module.busy or self.module.l2_sept_missing or self.host.map_gpa_chunk:
            return None
        run_end, state, shared = self.walker.state_run(start)
        if run_end < end or start % page_bytes:
            return None
        return (vm, page_bytes, self.strategy, state, shared)

    def _validate_memo(self, vm: int, gpa: int, page_bytes: int, count: int
                       ) -> PageOpResult | None:
        key = self._uniform_key(vm, gpa, gpa + page_bytes * count, page_bytes)
        hit = self._vmemo.get(key) if key is not None else None
        if hit is None or key is None:
            return None
        items, final, aliases = hit
        end = gpa + page_bytes * count
        sept = self.module.sept
        before = key[3]
        assert isinstance(before, tuple)
        if final != before[0]:
            sept.set_entries(gpa, end, final)
            if final.state in ACCEPTED:
                self.memory.zero(gpa, end - gpa)
        for (v, _amap), a, old in zip(sept.l2.items(), aliases, before[1]):
            if a != old:
                sept.set_alias(v, gpa, end, a)
        trace = self.trace
        for is_prim, k, c in items:
            if is_prim:
                trace.record(k[0], k[1], k[2], k[3], c * count)
            else:
                trace.switch(k[0], k[1], k[2], c * count)
        return PageOpResult(count, ResultCode.SUCCESS)

    def _remember_validate(self, key: tuple[object, ...], gpa: int, end: int, count: int,
                           items: list[tuple[bool, tuple[str, str, str, str], int]]) -> None:
        sept = self.module.sept
        final = sept.l1.uniform(gpa, end)
        aliases = tuple(amap.uniform(gpa, end) for amap in sept.l2.values())
        if final is None or any(a is None for a in aliases) or \
                any(c % count for _p, _k, c in items) or \
                LEVEL_BYTES[final.level] > (end - gpa) // count:
            return
        per_entry = tuple((p, k, c // count) for p, k, c in items)
        self._vmemo[key] = (per_entry, final, tuple(a for a in aliases if a is not None))

    def rescind_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                      ignore_unchanged: bool) -> PageOpResult:
        """ATTR.WR removing every L2 alias, then TDG.MEM.PAGE.RELEASE of each accepted leaf
        (module "2.0"). An entry with no accepted page is "no change" unless ignored."""
        if self.module.config.module == "1.5":
            self.last_error = L1Error(
                "TDX_OPERAND_INVALID", with_details(TdxStatus.OPERAND_INVALID, Operand.RAX),
                "TDX module 1.5 has no TDG.MEM.PAGE.RELEASE (leaf 30): L1 cannot un-accept a "
                "page; convert it to shared (MapGPA) and the host removes it")
            return PageOpResult(0, ResultCode.UNSUPPORTED_CALL)
        busy = self.live_state_in(gpa, gpa + page_bytes * count)
        if busy is not None:
            return PageOpResult((busy - gpa) // page_bytes, self._refuse_state(busy, "rescind"))
        stop = count
        gone = self._first_entry(gpa, page_bytes, count, lambda s: s not in ACCEPTED)
        if gone is not None and not ignore_unchanged:
            stop = gone
        end = gpa + stop * page_bytes
        if stop:
            r = self.revoke_all(gpa, end)
            if r.status:
                return PageOpResult(0, self.fail(r.status, "TDG.MEM.PAGE.ATTR.WR"))
            for s, e, v in list(self.module.sept.l1.runs(gpa, end)):
                if v.state not in ACCEPTED:
                    continue
                tally = Tally()
                rr = self.walker.walk(ReleaseOp(self.module), s, e,
                                      (LEVEL_1G, LEVEL_2M, LEVEL_4K), tally)
                self._flush(tally)
                if rr.status:
                    failed = rr.failed_gpa if rr.failed_gpa is not None else s
                    return PageOpResult(max(0, failed - gpa) // page_bytes,
                                        self.fail(rr.status, "TDG.MEM.PAGE.RELEASE"))
        if stop < count:
            self.last_error = error_of(int(TdxStatus.EPT_ENTRY_STATE_INCORRECT),
                                       f"TDG.MEM.PAGE.RELEASE of {end:#x} (not accepted, "
                                       "reported as no change)")
            return PageOpResult(stop, ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        return PageOpResult(count, ResultCode.SUCCESS)

    def set_access(self, target: str, gpa: int, page_bytes: int, count: int,
                   access: Access) -> PageOpResult:
        if target not in self.workloads:
            self.last_error = L1Error("TDX_OPERAND_INVALID",
                                      with_details(TdxStatus.OPERAND_INVALID, Operand.RDX),
                                      f"{target} is not an L2 VM of this TD")
            return PageOpResult(0, ResultCode.INVALID_PARAMETER)
        vm = self.vm_of(target)
        end = gpa + page_bytes * count
        busy = self.live_state_in(gpa, end)
        if busy is not None:
            return PageOpResult((busy - gpa) // page_bytes, self._refuse_state(busy, "ATTR.WR"))
        r = self.grant(vm, gpa, end, attrs.access_to_attr(access))
        if r.status:
            return PageOpResult(r.done // page_bytes, self.fail(r.status,
                                                                "TDG.MEM.PAGE.ATTR.WR"))
        return PageOpResult(count, ResultCode.SUCCESS)

    # -- vCPUs -----------------------------------------------------------------------------------
    def vp_wr(self, vcpu: int, field_id: int, value: int, target: str, tally: Tally,
              mask: int = U64) -> int:
        r = self.module.vp_wr(vcpu, 0, field_id, value, mask)
        tally.record("l1", "TDG.VP.WR", target, "ok" if r.ok else status_name(r.status))
        return r.status

    def enter_l2(self, vcpu: int, vm: int, tally: Tally) -> int:
        """TDG.VP.ENTER of VM ``vm`` on ``vcpu`` with its state buffer; L1 takes a pending
        interrupt first when the module answers TDX_PENDING_INTERRUPT (tdx.md §5)."""
        rec = self.l2_vcpus.get((vm, vcpu))
        if rec is None:
            return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        exits = 0
        hooks = self.interrupt_hooks
        if hooks is not None:
            hooks.before_enter(vcpu, vm, tally)
        for _ in range(MAX_EXIT_RETRIES + 2):
            r = self.module.vp_enter(vcpu, enter_rcx(vm), rec.context_gpa)
            tally.record("l1", "TDG.VP.ENTER", vm_name(vm),
                         "ok" if r.entered else ("EPT_VIOLATION" if r.exit
                                                 else status_name(r.status)))
            if r.entered:
                tally.switch("l1", self.layer_of(vm), "TDG.VP.ENTER")
                if hooks is not None:
                    hooks.after_enter(vcpu, vm, r, tally)
                return 0
            if r.exit is not None:
                tally.switch("l1", "host", "TD exit")
                fixed = self.host.on_ept_violation(r.exit, tally)
                tally.switch("host", "l1", "TDH.VP.ENTER")
                exits += 1
                if not fixed:
                    return EPT_UNRESOLVED
                continue
            if r.status == PENDING_INTERRUPT:
                if hooks is not None:
                    hooks.on_pending_interrupt(vcpu, vm, tally)
                else:
                    self.module.l1_pending_interrupt.discard(vcpu)  # L1 handles its interrupt
                    tally.record("l1", "L1 interrupt handled", vm_name(vm))
                continue
            return r.status
        return int(TdxStatus.OPERAND_BUSY)

    def schedule(self, vcpu: int, vm: int, tally: Tally) -> int:
        """Make VM ``vm``'s vCPU the one running on L1 vCPU ``vcpu``; another L2 running there
        is preempted first (an L2 -> L1 exit, reason 52, from its TSC deadline)."""
        cur = self.module.running_vm(vcpu)
        if cur == vm:
            return 0
        if cur:
            self.module.l2_exit(vcpu, L2Exit(VmxExit.PREEMPTION_TIMER))
            tally.switch(self.layer_of(cur), "l1", "L2->L1 exit")
        return self.enter_l2(vcpu, vm, tally)

    def vcpu_exists(self, vm: int, vcpu: int) -> bool:
        return (vm, vcpu) in self.l2_vcpus

    def start_vcpu(self, vm: int, vcpu: int, context_gpa: int, tally: Tally) -> int:
        """Build the L2 VMCS with TDG.VP.WR and enter it the first time."""
        target = vm_name(vm)
        writes = list(L2_BOOT_STATE) + [(md.VIRTUAL_APIC_PAGE_ADDR,
                                         self.region.vapic(vm, vcpu))]
        for enc, value in writes:
            st = self.vp_wr(vcpu, md.l2_vmcs_field(vm, enc), value, target, tally)
            if st:
                return st
        if self.enable_tdvmcall:
            st = self.vp_wr(vcpu, md.l2_ctls(vm), md.L2_CTLS_ENABLE_TDVMCALL, target, tally)
            if st:
                return st
        self.l2_vcpus[(vm, vcpu)] = L2VcpuRecord(vm, vcpu, context_gpa)
        insort(self._state_pages, context_gpa)
        st = self.schedule(vcpu, vm, tally)
        if st:
            del self.l2_vcpus[(vm, vcpu)]
            self._state_pages.remove(context_gpa)
        return st

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        vm, vcpu = self.vm_of(layer), apic_id
        if context_gpa % 256 or not self.module.private_accepted(context_gpa) \
                or self.host.shared.get(context_gpa):
            self.last_error = L1Error("TDX_OPERAND_INVALID",
                                      with_details(TdxStatus.OPERAND_INVALID, Operand.RDX),
                                      "the L2 state buffer must be a 256-byte aligned, "
                                      "accepted private page")
            return ResultCode.INVALID_PARAMETER
        if self.vcpu_exists(vm, vcpu):
            return ResultCode.INVALID_PARAMETER
        tally = Tally()
        # The state buffer becomes L1-only: no L2 VM keeps an alias (L2 state never shared).
        r = self.walker.walk(AttrWrOp(self.module, attrs.pack({v: attrs.VALID
                                                               for v in self.module.sept.l2}),
                                      attrs.pack({v: attrs.RWX | attrs.FLAG_INVEPT
                                                  for v in self.module.sept.l2}),
                                      "all L2 VMs"),
                             context_gpa, context_gpa + PAGE_4K, (LEVEL_4K,), tally) \
            if self._aliased_runs(context_gpa, context_gpa + PAGE_4K) else WalkResult()
        if r.status:
            self._flush(tally)
            return self.fail(r.status, "TDG.MEM.PAGE.ATTR.WR")
        st = self.start_vcpu(vm, vcpu, context_gpa, tally)
        self._flush(tally)
        if st:
            return self.fail(st, "building the L2 vCPU (TDG.VP.WR / TDG.VP.ENTER)")
        return ResultCode.SUCCESS

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        vm = self.vm_of(layer)
        rec = next((r for r in self.l2_vcpus.values()
                    if r.vm == vm and r.context_gpa == context_gpa), None)
        if rec is None:
            return ResultCode.INVALID_PARAMETER
        tally = Tally()
        if self.module.running_vm(rec.vcpu) == vm:  # stop it: L1 takes it off the CPU
            self.module.l2_exit(rec.vcpu, L2Exit(VmxExit.PREEMPTION_TIMER))
            tally.switch(layer, "l1", "L2->L1 exit")
        # Never entered again: without a virtual-APIC address TDG.VP.ENTER fails (tdx.md §2.3).
        self.vp_wr(rec.vcpu, md.l2_vmcs_field(vm, md.VIRTUAL_APIC_PAGE_ADDR), 0,
                   vm_name(vm), tally)
        del self.l2_vcpus[(vm, rec.vcpu)]
        self._state_pages.remove(context_gpa)
        self.module.clear_l2(rec.vcpu, vm)
        self.memory.zero(context_gpa, PAGE_4K)
        # The page goes back to the L2 (like an SNP VMSA page after DELETE_VCPU).
        tally_r = self.walker.walk(AttrWrOp(self.module, attrs.pack({vm: attrs.VALID
                                                                     | PROTOCOL_PAGE_GRANT}),
                                            attrs.pack({vm: attrs.RWX}), vm_name(vm)),
                                   context_gpa, context_gpa + PAGE_4K, (LEVEL_4K,), tally)
        self._flush(tally)
        if tally_r.status:
            return self.fail(tally_r.status, "TDG.MEM.PAGE.ATTR.WR")
        return ResultCode.SUCCESS

    # -- attestation and measurement -----------------------------------------------------------
    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        target = vm_name(self.vm_of(on_behalf_of)) if on_behalf_of in self.workloads else "L1"
        tally = Tally()
        self.memory.write(self.region.reportdata, report_data.ljust(64, b"\0")[:64])
        r = self.module.mr_report(self.region.tdreport, self.region.reportdata, 0)
        tally.record("l1", "TDG.MR.REPORT", target, "ok" if r.ok else status_name(r.status))
        if not r.ok:
            self._flush(tally)
            return self.fail(r.status, "TDG.MR.REPORT")
        tdreport = self.memory.read(self.region.tdreport, 1024)
        size = self.region.quote_buffer_size
        self.memory.write(self.region.quote_buffer,
                          vmc.GetQuoteBuffer.request(tdreport).encode(size))
        out = self.tdvmcall(vmc.get_quote_registers(
            self.region.quote_buffer | self.module.shared_bit, size), "GetQuote", tally)
        self._flush(tally)
        buf = vmc.GetQuoteBuffer.decode(self.memory.read(self.region.quote_buffer, size))
        if out.get("r10") != vmc.TdvmcallStatus.SUCCESS or buf.status != vmc.GET_QUOTE_SUCCESS:
            self.last_error = L1Error("GET_QUOTE", buf.status,
                                      f"TDVMCALL<GetQuote> failed: R10 {out.get('r10', 0):#x}, "
                                      f"buffer status {buf.status:#x}")
            return ResultCode.INVALID_REQUEST
        return HardwareEvidence(raw=buf.data, format="tdx-quote")

    def tdvmcall(self, regs: dict[str, int], what: str, tally: Tally) -> dict[str, int]:
        """L1's own TDG.VP.VMCALL: a TD exit to the host and TDH.VP.ENTER back."""
        r = self.module.vmcall(0, regs)
        tally.record("l1", "TDG.VP.VMCALL", what, "ok" if r.exit else status_name(r.status))
        if r.exit is None:
            return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND}
        tally.switch("l1", "host", "TD exit")
        out = self.host.on_tdvmcall(r.exit.regs, tally)
        tally.switch("host", "l1", "TDH.VP.ENTER")
        return out

    def extend_measurement(self, register: int, digest: bytes) -> int:
        rtmr = pcr_to_rtmr(register)
        self.memory.write(self.region.rtmr_data, digest[:48].ljust(48, b"\0"))
        r = self.module.rtmr_extend(self.region.rtmr_data, rtmr)
        self.trace.record("l1", "TDG.MR.RTMR.EXTEND", f"RTMR{rtmr}",
                          "ok" if r.ok else status_name(r.status))
        if not r.ok:
            return self.fail(r.status, "TDG.MR.RTMR.EXTEND")
        return ResultCode.SUCCESS

    def extend_rtmr(self, index: int, digest: bytes) -> int:
        """L1 extending an RTMR by index directly (an ExtendMeasurement from L1)."""
        self.memory.write(self.region.rtmr_data, digest[:48].ljust(48, b"\0"))
        r = self.module.rtmr_extend(self.region.rtmr_data, index)
        self.trace.record("l1", "TDG.MR.RTMR.EXTEND", f"RTMR{index}",
                          "ok" if r.ok else status_name(r.status))
        return r.status

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """An IPI L1's APIC emulation sends to another vCPU of ``layer`` (issue 6)."""
        if self.interrupt_hooks is None:
            return ResultCode.UNSUPPORTED_CALL
        return self.interrupt_hooks.post_interrupt(layer, vcpu, vector)

    # -- MapGPA -----------------------------------------------------------------------------------
    def map_gpa(self, gpa: int, size: int, tally: Tally) -> dict[str, int]:
        """L1's TDVMCALL<MapGPA>. Before a to-shared MapGPA L1 removes every L2 alias of the
        range (the host is about to take the pages out of the TD)."""
        sbit = self.module.shared_bit
        start = gpa & ~sbit
        if gpa & sbit and self.live_state_in(start, start + size) is not None:
            return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0}
        if gpa & sbit and size and start + size <= self.module.sept.size:
            sub = Tally()
            words = {vm: attrs.VALID for vm in self.module.sept.l2}
            flags = {vm: attrs.RWX | attrs.FLAG_INVEPT for vm in self.module.sept.l2}
            for s, e in self._aliased_runs(start, start + size):
                self.walker.walk(AttrWrOp(self.module, attrs.pack(words), attrs.pack(flags),
                                          "all L2 VMs"), s, e, (LEVEL_2M, LEVEL_4K), sub)
            tally.add(sub)
        return self.tdvmcall(vmc.map_gpa_registers(gpa, size), "MapGPA", tally)


# -- the transport ----------------------------------------------------------------------------
class TdxTransport(Transport):
    """An L2's protocol call: TDCALL(TDG.VP.VMCALL) -> L2 -> L1 exit (reason 77), L1 serves it
    from the L2_ENTER_GUEST_STATE buffer, TDG.VP.ENTER back."""

    mechanism: ClassVar[str] = "L2->L1 exit"

    def __init__(self, dispatcher: ServiceDispatcher, memory: GuestMemory, trace: Trace,
                 platform: TdxPlatform) -> None:
        super().__init__(dispatcher, memory, trace)
        self.platform = platform
        self._pending: dict[tuple[int, int], EnterGuestState] = {}

    @property
    def module(self) -> TdxModule:
        return self.platform.module

    def _buffer(self, vm: int, vcpu: int) -> int:
        return self.platform.l2_vcpus[(vm, vcpu)].context_gpa

    def l2_exit(self, layer: str, vcpu: int, gprs: dict[str, int], what: str,
                count: int = 1) -> EnterGuestState | None:
        """The L2 executes TDCALL (or VMCALL with ENABLE_TDVMCALL) with ``gprs``; returns the
        state L1 reads from the buffer, or None when the L2 vCPU does not exist."""
        p = self.platform
        vm = p.vm_of(layer)
        if not p.vcpu_exists(vm, vcpu):
            return None
        if self.module.running_vm(vcpu) != vm:
            tally = Tally()
            p.schedule(vcpu, vm, tally)
            tally.flush(self.trace)
        cpu = self.module.l2cpu(vcpu, vm)
        cpu.gprs.update(gprs)
        if p.enable_tdvmcall and what == "protocol":
            out = self.module.l2_vmcall_instruction(vcpu)
            self.trace.record(layer, "VMCALL", "L1", "exit 18", count)
        else:
            res = self.module.l2_tdcall(vcpu)
            if not isinstance(res, dict):
                raise RuntimeError("an L2 TDVMCALL reached the host on the protocol path")
            out = res
            self.trace.record(layer, "TDCALL", what, "exit 77", count)
        self.trace.switch(layer, "l1", self.mechanism, count)
        reason = out["rax"] & 0xFFFF_FFFF
        state = EnterGuestState.decode(self.memory.read(self._buffer(vm, vcpu),
                                                        ENTER_GUEST_STATE_SIZE))
        state.rip += VMCALL_LENGTH if reason == VmxExit.VMCALL else TDCALL_LENGTH
        return state

    def l2_resume(self, layer: str, vcpu: int, state: EnterGuestState, count: int = 1
                  ) -> dict[str, int] | None:
        """L1 writes its answer into the buffer and enters the L2 again; the L2's registers
        after the entry (None if the vCPU is gone)."""
        p = self.platform
        vm = p.vm_of(layer)
        if not p.vcpu_exists(vm, vcpu):
            return None
        self.memory.write(self._buffer(vm, vcpu), state.encode())
        tally = Tally()
        st = p.enter_l2(vcpu, vm, tally)
        if count > 1:  # the other count - 1 identical round trips
            tally.record("l1", "TDG.VP.ENTER", vm_name(vm), "ok", count - 1)
            tally.switch("l1", layer, "TDG.VP.ENTER", count - 1)
        tally.flush(self.trace)
        if st:
            return None
        return dict(self.module.l2cpu(vcpu, vm).gprs)

    # -- Transport ----------------------------------------------------------------------------
    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        vm = self.platform.vm_of(layer)
        gprs = vmc.encode_vmcall_instruction(regs) if self.platform.enable_tdvmcall \
            else vmc.encode_protocol_call(regs)
        state = self.l2_exit(layer, vcpu, gprs, "protocol")
        if state is None:
            return False
        self._pending[(vm, vcpu)] = state
        if self.platform.enable_tdvmcall:
            req = vmc.decode_vmcall_instruction(state.gprs)
        elif vmc.is_protocol_call(state.gprs):
            req = vmc.decode_protocol_call(state.gprs)
        else:
            return False
        regs.rax, regs.rcx, regs.rdx, regs.r8 = req.rax, req.rcx, req.rdx, req.r8
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        vm = self.platform.vm_of(layer)
        state = self._pending.pop((vm, vcpu), None)
        if state is None:
            return
        if self.platform.enable_tdvmcall:
            vmc.encode_vmcall_result(state.gprs, regs)
        else:
            vmc.encode_protocol_result(state.gprs, regs)
        after = self.l2_resume(layer, vcpu, state)
        if after is None:
            return
        if self.platform.enable_tdvmcall:
            out = vmc.decode_vmcall_instruction(after)
            regs.rax, regs.rcx, regs.rdx, regs.r8 = out.rax, out.rcx, out.rdx, out.r8
        else:
            vmc.decode_protocol_result(after, regs)
