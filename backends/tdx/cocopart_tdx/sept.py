"""The secure EPT (SEPT): L1 SEPT state per range, and each L2 VM's alias state per range.

States carry their *public* numbers, the values TDH.MEM.SEPT.RD reports (tdx.md §4.2, MOD
sept_state_lookup.h/.c). Everything is kept as runs (:class:`cocopart.ranges.RangeMap`), never
one object per page.

Per 4K page the L1 map holds :class:`SeptEntry` ``(state, level)``: the state of the SEPT
entry where a walk for that page ends, and that entry's level (0 = 4K, 1 = 2M, 2 = 1G). A
leaf at level 1 covers its whole 2M block, so every page of the block holds the same value;
a FREE entry at level 1 means "no 4K paging structure below this 2M entry". This gives the
**level invariant** the module relies on: inside an aligned block of level L either every
page has ``level >= L`` (one entry at or above L covers it) or every page has ``level < L``
(the entry at level L is a non-leaf). :meth:`Sept.set_entries` keeps it by splitting the
boundary blocks first, as the host's TDH.MEM.SEPT.ADD / TDH.MEM.PAGE.DEMOTE would.

Per L2 VM a second map holds :class:`L2Alias` ``(state, attr)``: L2_FREE (no alias),
L2_MAPPED or L2_BLOCKED, and the VM's 16-bit GPA attribute (:mod:`cocopart_tdx.attributes`).
"""

from __future__ import annotations

from enum import IntEnum
from itertools import pairwise
from typing import NamedTuple

from cocopart.spi import PAGE_1G, PAGE_2M, PAGE_4K, RangeMap


class SeptState(IntEnum):
    """SEPT entry states with their public numbers (tdx.md §4.2)."""

    FREE = 0
    BLOCKED = 1
    PENDING = 2
    PENDING_BLOCKED = 3
    MAPPED = 4
    REMOVED = 5
    BLOCKEDW = 8
    EXPORTED_BLOCKEDW = 9
    EXPORTED_DIRTY = 11
    EXPORTED_DIRTY_BLOCKEDW = 12
    PENDING_BLOCKEDW = 16
    PENDING_EXPORTED_BLOCKEDW = 17
    PENDING_EXPORTED_DIRTY = 19
    PENDING_EXPORTED_DIRTY_BLOCKEDW = 20
    L2_FREE = 64
    L2_BLOCKED = 65
    L2_MAPPED = 68
    NL_BLOCKED = 129
    NL_MAPPED = 132
    L2_NL_BLOCKED = 193
    L2_NL_MAPPED = 196


#: Leaf states in which the page is accepted: the guest can use it, ACCEPT answers
#: PAGE_ALREADY_ACCEPTED (tdx.md §4.1 "leaf ... guest-accessible").
ACCEPTED = frozenset(
    {
        SeptState.MAPPED,
        SeptState.BLOCKEDW,
        SeptState.EXPORTED_BLOCKEDW,
        SeptState.EXPORTED_DIRTY,
        SeptState.EXPORTED_DIRTY_BLOCKEDW,
    }
)
#: PENDING-family leaves: the host added the page, the guest has not accepted it.
PENDING_FAMILY = frozenset(
    {
        SeptState.PENDING,
        SeptState.PENDING_BLOCKED,
        SeptState.PENDING_BLOCKEDW,
        SeptState.PENDING_EXPORTED_BLOCKEDW,
        SeptState.PENDING_EXPORTED_DIRTY,
        SeptState.PENDING_EXPORTED_DIRTY_BLOCKEDW,
    }
)
#: ACCEPT turns these into the mapped state on the right (tdx.md §4.2 "Guest: ACCEPT").
ACCEPT_TRANSITIONS = {
    SeptState.PENDING: SeptState.MAPPED,
    SeptState.PENDING_EXPORTED_DIRTY: SeptState.EXPORTED_DIRTY,
}
#: L1 SEPT states in which TDG.MEM.PAGE.ATTR.RD works (tdx.md §3).
ATTR_RD_STATES = frozenset(
    {
        SeptState.MAPPED,
        SeptState.BLOCKEDW,
        SeptState.EXPORTED_BLOCKEDW,
        SeptState.EXPORTED_DIRTY,
        SeptState.EXPORTED_DIRTY_BLOCKEDW,
        SeptState.PENDING,
        SeptState.PENDING_BLOCKEDW,
        SeptState.PENDING_EXPORTED_BLOCKEDW,
        SeptState.PENDING_EXPORTED_DIRTY,
        SeptState.PENDING_EXPORTED_DIRTY_BLOCKEDW,
    }
)
#: L1 SEPT states in which TDG.MEM.PAGE.ATTR.WR works (tdx.md §3).
ATTR_WR_STATES = frozenset(
    {
        SeptState.MAPPED,
        SeptState.EXPORTED_DIRTY,
        SeptState.PENDING,
        SeptState.PENDING_EXPORTED_DIRTY,
    }
)
#: Host transitions (tdx.md §4.2): PAGE.AUG, RANGE.BLOCK, RANGE.UNBLOCK, PAGE.REMOVE.
AUG_FROM = frozenset({SeptState.FREE, SeptState.REMOVED})
BLOCK_TRANSITIONS = {
    SeptState.MAPPED: SeptState.BLOCKED,
    SeptState.PENDING: SeptState.PENDING_BLOCKED,
}
UNBLOCK_TRANSITIONS = {v: k for k, v in BLOCK_TRANSITIONS.items()}
REMOVE_FROM = frozenset(
    {
        SeptState.MAPPED,
        SeptState.BLOCKED,
        SeptState.PENDING,
        SeptState.PENDING_BLOCKED,
        SeptState.BLOCKEDW,
        SeptState.PENDING_BLOCKEDW,
    }
)

LEVEL_4K, LEVEL_2M, LEVEL_1G = 0, 1, 2
LEVEL_BYTES = {LEVEL_4K: PAGE_4K, LEVEL_2M: PAGE_2M, LEVEL_1G: PAGE_1G}
LEVEL_NAMES = {LEVEL_4K: "4K", LEVEL_2M: "2M", LEVEL_1G: "1G"}


def level_of_bytes(page_bytes: int) -> int:
    """SEPT level of a page size."""
    for level, size in LEVEL_BYTES.items():
        if size == page_bytes:
            return level
    raise ValueError(f"{page_bytes} is not a SEPT page size")


class SeptEntry(NamedTuple):
    """The L1 SEPT entry a walk for a page ends at: its state and level."""

    state: SeptState
    level: int


class L2Alias(NamedTuple):
    """One L2 VM's alias of a page: L2_FREE / L2_MAPPED / L2_BLOCKED and its 16-bit ATTR."""

    state: SeptState = SeptState.L2_FREE
    attr: int = 0


NO_ALIAS = L2Alias()
#: What a never-touched GPA looks like at TD build: nothing mapped, the host's paging
#: structures present down to the 2M level (modelling decision: KVM builds them lazily; the
#: difference is one extra TD exit per GiB for a 1G accept — listed in the report).
INITIAL_ENTRY = SeptEntry(SeptState.FREE, LEVEL_2M)


class Sept:
    """The L1 SEPT and the L2 SEPTs of one TD, as runs over ``[0, size)``."""

    def __init__(self, size: int, num_l2_vms: int) -> None:
        if size % PAGE_2M:
            raise ValueError("the SEPT covers a whole number of 2M blocks")
        self.size = size
        self.num_l2_vms = num_l2_vms
        self.l1: RangeMap[SeptEntry] = RangeMap(size, INITIAL_ENTRY)
        #: Highest level any entry has had: splitting skips levels no entry ever reached.
        self.max_level = INITIAL_ENTRY.level
        self.l2: dict[int, RangeMap[L2Alias]] = {
            vm: RangeMap(size, NO_ALIAS) for vm in range(1, num_l2_vms + 1)
        }

    # -- L1 ----------------------------------------------------------------------------------
    def entry(self, gpa: int) -> SeptEntry:
        return self.l1.get(gpa)

    def _split_block(self, block: int, level: int) -> None:
        """Split an entry at or above ``level`` covering ``block`` down to ``level - 1``."""
        size = LEVEL_BYTES[level]
        if block < 0 or block >= self.size:
            return
        end = min(block + size, self.size)
        v = self.l1.get(block)
        if v.level >= level:
            self.l1.set(block, end, v._replace(level=level - 1))

    def set_entries(self, start: int, end: int, entry: SeptEntry) -> None:
        """Give every page of ``[start, end)`` the entry ``entry`` (level-aligned range),
        first splitting larger entries across the range's boundary blocks."""
        size = LEVEL_BYTES[entry.level]
        if start % size or end % size:
            raise ValueError(
                f"[{start:#x}, {end:#x}) is not aligned to a level-{entry.level} entry"
            )
        self.max_level = max(self.max_level, entry.level)
        for level in (LEVEL_1G, LEVEL_2M):
            if level <= entry.level or level > self.max_level:
                continue
            bsize = LEVEL_BYTES[level]
            if start % bsize:  # only blocks the range covers in part need splitting
                self._split_block(start - start % bsize, level)
            if end % bsize:
                self._split_block(end - end % bsize, level)
        self.l1.set(start, end, entry)

    def leaves(self, start: int, end: int) -> int:
        """How many SEPT entries (leaves or free entries) the walks of ``[start, end)`` end at."""
        n = 0
        for s, e, v in self.l1.runs(start, end):
            size = LEVEL_BYTES[v.level]
            lo = s - s % size
            hi = -(-e // size) * size
            n += (hi - lo) // size
        return n

    def segments(self, start: int, end: int, *others: RangeMap[bool]) -> list[tuple[int, int]]:
        """``[start, end)`` cut where the L1 SEPT, any L2 alias map or any of ``others``
        changes value: inside each piece every map is one run."""
        points = {start, end}
        for m in (self.l1, *self.l2.values(), *others):
            for s, e, _v in m.runs(start, end):  # type: ignore[attr-defined]
                points.update((s, e))
        return list(pairwise(sorted(points)))

    # -- L2 ----------------------------------------------------------------------------------
    def alias(self, vm: int, gpa: int) -> L2Alias:
        return self.l2[vm].get(gpa)

    def set_alias(self, vm: int, start: int, end: int, alias: L2Alias) -> None:
        self.l2[vm].set(start, end, alias)

    def unblock_aliases(self, start: int, end: int) -> None:
        """ACCEPT makes existing L2 aliases of the pages usable (tdx.md §4.1)."""
        for amap in self.l2.values():
            blocked = [
                (s, e, a) for s, e, a in amap.runs(start, end) if a.state is SeptState.L2_BLOCKED
            ]
            for s, e, a in blocked:
                amap.set(s, e, a._replace(state=SeptState.L2_MAPPED))

    def drop_aliases(self, start: int, end: int) -> None:
        """The physical page left the TD: no L2 VM keeps an alias (host PAGE.REMOVE)."""
        for amap in self.l2.values():
            amap.set(start, end, NO_ALIAS)

    def copy(self) -> Sept:
        other = Sept.__new__(Sept)
        other.size, other.num_l2_vms = self.size, self.num_l2_vms
        other.max_level = self.max_level
        other.l1 = self.l1.copy()
        other.l2 = {vm: m.copy() for vm, m in self.l2.items()}
        return other
