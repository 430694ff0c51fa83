"""Leaf operations over runs: the page TDCALLs L1 applies (TDG.MEM.PAGE.ACCEPT,
TDG.MEM.PAGE.ATTR.WR, TDG.MEM.PAGE.RELEASE) and the walker that applies them block by block.

Bulk work (:class:`LeafWalker`): pages are handled as runs. For a run of ``n`` equal blocks
the walker executes the first block for real on the module (including TD exits, host AUGs,
fallbacks to smaller levels) and, when that block ends in one uniform state, gives the other
``n - 1`` blocks the same state and counts its primitives ``n`` times. Counts equal what
``n`` separate executions record; the cost grows with the number of runs, not pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cocopart_tdx.host import TdxHost
from cocopart_tdx.l1_errors import EPT_UNRESOLVED
from cocopart_tdx.l1_tally import Tally
from cocopart_tdx.sept import (
    ACCEPTED,
    LEVEL_1G,
    LEVEL_BYTES,
    LEVEL_NAMES,
    L2Alias,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.status import Operand, TdxStatus, base, status_name, with_details
from cocopart_tdx.tdcall import TdcallResult, TdxModule

#: A TDCALL re-executed after this many TD exits without completing is given up.
MAX_EXIT_RETRIES = 4
#: OPERAND_BUSY retries (the Rust TDCALL wrapper's MAX_RETRIES_ATTR_WR, cost-model.md §3).
MAX_BUSY_RETRIES = 5


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
    #: The host's shared view of the block afterwards (an implicit conversion changes it).
    shared: bool


class LeafWalker:
    """Applies a :class:`LeafOp` to ``[start, end)`` block by block, as runs.

    Blocks inside one run of equal state (L1 SEPT, every L2 alias map, the host's shared
    view) behave alike: the first is executed for real, the rest get its final state and its
    primitives counted again. The outcome is remembered per (operation, level, levels tried,
    state, vCPUs in an L2), so the next run in the same state is applied without executing a
    block at all; nothing is remembered while the module injects contention, interrupts the
    host's DEMOTE or misses an L2 SEPT page.
    """

    def __init__(self, module: TdxModule, host: TdxHost) -> None:
        self.module = module
        self.host = host
        self._memo: dict[tuple[object, ...], BlockOutcome] = {}

    def walk(
        self, op: LeafOp, start: int, end: int, levels: tuple[int, ...], tally: Tally
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

    def _range(
        self, op: LeafOp, start: int, end: int, levels: tuple[int, ...], tally: Tally
    ) -> WalkResult:
        res = WalkResult()
        p = start
        while p < end:
            run_end, before, shared = self.state_run(p)
            lv = op.levels_at(before[0], levels)
            level = next(
                (lv_ for lv_ in lv if p % LEVEL_BYTES[lv_] == 0 and p + LEVEL_BYTES[lv_] <= end),
                None,
            )
            if level is None:  # only larger levels were allowed and none fits here
                res.status, res.failed_gpa = with_details(TdxStatus.OPERAND_INVALID, Operand.RCX), p
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
            if (
                uniform
                and self.module.busy == 0
                and not self.module.l2_sept_missing
                and self.module.host_interrupts == 0
            ):
                # vCPUs in an L2: how many a TDH.MEM.TRACK kicks (a demote's cost)
                key = (op.key(), level, lv, before, shared, self.module.l2_running)
                hit = self._memo.get(key)
                if hit is not None:
                    self._apply(op, p, p + n * size, hit, before, n, shared)
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
                    self._apply(op, p + size, p + n * size, outcome, before, n - 1, shared)
            tally.add(sub, n)
            res.done += n * size
            res.already += n * r.already
            p += n * size
        return res

    def _outcome(
        self,
        p: int,
        size: int,
        before: tuple[SeptEntry, tuple[L2Alias, ...]],
        sub: Tally,
        already: int,
        invept: dict[int, int],
    ) -> BlockOutcome | None:
        """The block's final state if it is one state that can be given to other blocks."""
        sept = self.module.sept
        final = sept.l1.uniform(p, p + size)
        aliases = tuple(amap.uniform(p, p + size) for amap in sept.l2.values())
        shared = self.host.shared.uniform(p, p + size)
        if final is None or any(a is None for a in aliases) or shared is None:
            return None
        if final != before[0] and LEVEL_BYTES[final.level] > size:
            return None
        delta = tuple(
            (vm, c - invept.get(vm, 0))
            for vm, c in self.module.invept.items()
            if c != invept.get(vm, 0)
        )
        return BlockOutcome(
            tuple(sub.items),
            final,
            tuple(a for a in aliases if a is not None),
            already,
            delta,
            shared,
        )

    def _apply(
        self,
        op: LeafOp,
        lo: int,
        hi: int,
        out: BlockOutcome,
        before: tuple[SeptEntry, tuple[L2Alias, ...]],
        blocks: int,
        shared_before: bool,
    ) -> None:
        """Give ``[lo, hi)`` (``blocks`` blocks in state ``before``) the outcome's state."""
        sept = self.module.sept
        if out.shared != shared_before:
            self.host.shared.set(lo, hi, out.shared)
        if out.final != before[0]:
            sept.set_entries(lo, hi, out.final)
            if op.zeroes and out.final.state in ACCEPTED:
                self.module.memory.zero(lo, hi - lo)
        for (vm, _amap), a, old in zip(sept.l2.items(), out.aliases, before[1]):
            if a != old:
                sept.set_alias(vm, lo, hi, a)
        for vm, d in out.invept:
            self.module.invept[vm] = self.module.invept.get(vm, 0) + d * blocks

    def _block(
        self, op: LeafOp, p: int, level: int, lv: tuple[int, ...], tally: Tally
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
            tally.record("l1", name, op.target, "ok" if r.status == 0 else status_name(r.status))
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
                b == TdxStatus.OPERAND_INVALID and level == LEVEL_1G
            )
            if fallback and smaller:
                return self._range(op, p, p + size, smaller, tally)
            return WalkResult(status=r.status, failed_gpa=p)
