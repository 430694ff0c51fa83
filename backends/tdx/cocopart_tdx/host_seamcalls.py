"""The host's SEPT SEAMCALLs on one entry, with the TDX module's status codes: TDH.MEM.PAGE.AUG,
TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK, TDH.MEM.RANGE.UNBLOCK, TDH.MEM.PAGE.REMOVE,
TDH.MEM.PAGE.DEMOTE and TDH.MEM.PAGE.PROMOTE, and the SEPT transitions they cause (tdx.md
§4.2, MOD sept_state_lookup; checks as in MOD 1.5
``src/vmm_dispatcher/api_calls/tdh_mem_{page_aug,range_block,page_remove,page_demote,
page_promote}.c``; DEMOTE and PROMOTE are :mod:`cocopart_tdx.sept_resize`).

:mod:`cocopart_tdx.host` drives the same transitions over ranges (AUG on demand, the
BLOCK/TRACK/REMOVE sequence of a conversion) without reporting refusals; this module is the
single-entry, status-reporting view the host fault model and its tests use. It changes the
same :class:`~cocopart_tdx.sept.Sept`.

Transitions (public state numbers, tdx.md §4.2):

=====================  ==========================================  =========================
SEAMCALL (leaf)        from                                        to
=====================  ==========================================  =========================
PAGE.AUG (6)           FREE 0, REMOVED 5                           PENDING 2
RANGE.BLOCK (7)        MAPPED 4 / PENDING 2                        BLOCKED 1 / PENDING_BLOCKED 3
RANGE.UNBLOCK (39)     BLOCKED 1 / PENDING_BLOCKED 3               MAPPED 4 / PENDING 2
PAGE.REMOVE (29)       BLOCKED 1, PENDING_BLOCKED 3 (tracked)      FREE 0
PAGE.DEMOTE (15)       2M BLOCKED 1 / PENDING_BLOCKED 3 (tracked)  512 x 4K MAPPED / PENDING
RANGE.BLOCK (7), 2M    NL_MAPPED 132 (a split 2M entry)            NL_BLOCKED 129
PAGE.PROMOTE (23)      NL_BLOCKED 129 (tracked, equal children)    2M MAPPED 4 / PENDING 2
=====================  ==========================================  =========================
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import IntEnum

from pydantic import BaseModel

from cocopart.spi import RangeMap, Trace
from cocopart_tdx import status as st
from cocopart_tdx.host import TdxHost
from cocopart_tdx.sept import (
    AUG_FROM,
    BLOCK_TRANSITIONS,
    LEVEL_2M,
    LEVEL_4K,
    LEVEL_BYTES,
    LEVEL_NAMES,
    REMOVE_FROM,
    UNBLOCK_TRANSITIONS,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.sept_resize import DEMOTE_LEAF, PROMOTE_LEAF, aliased_vms, demote, promote

HOST = "host"


class Leaf(IntEnum):
    """SEAMCALL leaf numbers (LX arch/x86/virt/vmx/tdx/tdx.h; MOD tdx_api_defs.h)."""

    TDH_MEM_PAGE_AUG = 6
    TDH_MEM_RANGE_BLOCK = 7
    TDH_MEM_PAGE_DEMOTE = DEMOTE_LEAF
    TDH_MEM_PAGE_PROMOTE = PROMOTE_LEAF
    TDH_MEM_PAGE_REMOVE = 29
    TDH_MEM_TRACK = 38
    TDH_MEM_RANGE_UNBLOCK = 39


#: Statuses of the SEPT SEAMCALLs (MOD tdx_error_codes_defs.h; LX kvm tdx_errno.h).
GPA_RANGE_NOT_BLOCKED = int(st.TdxStatus.GPA_RANGE_NOT_BLOCKED)
GPA_RANGE_ALREADY_BLOCKED = int(st.TdxStatus.GPA_RANGE_ALREADY_BLOCKED)  # a warning
TLB_TRACKING_NOT_DONE = int(st.TdxStatus.TLB_TRACKING_NOT_DONE)

#: A SEAMCALL whose state check fails returns TDX_EPT_ENTRY_STATE_INCORRECT (operand RCX)
#: (MOD tdh_mem_page_aug.c / tdh_mem_page_remove.c: "not allowed in current SEPT entry state").
RULE_STATE_CHECK = "a leaf not allowed in the entry's state: EPT_ENTRY_STATE_INCORRECT"

#: RANGE.BLOCK of an entry that is already blocked: TDX_GPA_RANGE_ALREADY_BLOCKED, a warning
#: (MOD tdh_mem_range_block.c).
RULE_BLOCK_TWICE_WARNS = "BLOCK of a blocked entry: GPA_RANGE_ALREADY_BLOCKED (warning)"

#: While the TD runs, PAGE.REMOVE needs the entry blocked (else TDX_GPA_RANGE_NOT_BLOCKED) and
#: the block TLB-tracked by a TDH.MEM.TRACK after it (else TDX_TLB_TRACKING_NOT_DONE); it
#: clears every L2 alias and frees the entry (MOD tdh_mem_page_remove.c: "The TD may be running
#: and this page must be blocked and tracked before it's removed"). The model's TD is always
#: running (built and finalized at launch).
RULE_REMOVE_NEEDS_BLOCK_AND_TRACK = "REMOVE of a running TD's page: BLOCK, TRACK, then REMOVE"

#: AUG may create the paging structure below a larger FREE entry (the host's TDH.MEM.SEPT.ADD,
#: folded in as :mod:`cocopart_tdx.host` does); BLOCK, UNBLOCK and REMOVE need the entry at the
#: requested level, else TDX_EPT_WALK_FAILED (MOD lock_sept_check_and_walk_private_gpa).
#: UNCONFIRMED: which status a level mismatch gives in each direction.
RULE_LEVEL_MUST_MATCH = "BLOCK/UNBLOCK/REMOVE at another level than the leaf: EPT_WALK_FAILED"

UNCONFIRMED = (RULE_LEVEL_MUST_MATCH,)


class SeamcallResult(BaseModel):
    """One SEAMCALL on one SEPT entry."""

    leaf: str
    gpa: int
    level: int
    status: int
    status_name: str
    before: str  # SEPT state name before
    after: str  # and after
    public_before: int
    public_after: int

    @property
    def ok(self) -> bool:
        return not st.is_error(self.status)


status_name = st.status_name


@dataclass
class SeptSeamcalls:
    """The host's single-entry SEPT SEAMCALLs on one TD, with TLB tracking: a block becomes
    *tracked* at the next TDH.MEM.TRACK (the model has no vCPU epochs beyond that)."""

    host: TdxHost
    trace: Trace
    untracked: RangeMap[bool] = field(init=False)
    #: 2M non-leaf entries (split blocks) the host has RANGE.BLOCKed, for PROMOTE.
    nl_blocked: RangeMap[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.untracked = RangeMap(self.host.sept.size, False)
        self.nl_blocked = RangeMap(self.host.sept.size, False)

    def _result(
        self, leaf: Leaf, gpa: int, level: int, status: int, before: SeptState, after: SeptState
    ) -> SeamcallResult:
        name = status_name(status)
        mnemonic = leaf.name.replace("_", ".")
        self.trace.record(
            HOST,
            mnemonic,
            LEVEL_NAMES.get(level, ""),
            "ok" if status == st.TdxStatus.SUCCESS else name,
        )
        return SeamcallResult(
            leaf=mnemonic,
            gpa=gpa,
            level=level,
            status=status,
            status_name=name,
            before=before.name,
            after=after.name,
            public_before=int(before),
            public_after=int(after),
        )

    def _entry(self, gpa: int, level: int) -> tuple[int, int, SeptEntry] | None:
        """(start, end, entry) of the leaf at exactly ``level`` covering ``gpa``."""
        e = self.host.sept.entry(gpa)
        if e.level != level:
            return None
        size = LEVEL_BYTES[level]
        start = gpa - gpa % size
        return start, start + size, e

    def page_aug(self, gpa: int, level: int = 0) -> SeamcallResult:
        """TDH.MEM.PAGE.AUG: add a PENDING page (FREE/REMOVED -> PENDING)."""
        e = self.host.sept.entry(gpa)
        if e.state not in AUG_FROM or level > e.level:
            status = (
                st.with_details(st.TdxStatus.EPT_ENTRY_STATE_INCORRECT, st.Operand.RCX)
                if e.state not in AUG_FROM
                else st.TdxStatus.EPT_WALK_FAILED
            )
            return self._result(Leaf.TDH_MEM_PAGE_AUG, gpa, level, status, e.state, e.state)
        size = LEVEL_BYTES[level]
        start = gpa - gpa % size
        self.host.sept.set_entries(start, start + size, SeptEntry(SeptState.PENDING, level))
        return self._result(
            Leaf.TDH_MEM_PAGE_AUG, gpa, level, st.TdxStatus.SUCCESS, e.state, SeptState.PENDING
        )

    def _nl(self, gpa: int, level: int) -> tuple[int, int] | None:
        """The range of a non-leaf entry at ``level`` (a split 2M block), if that is what a
        walk to ``level`` finds."""
        size = LEVEL_BYTES[level]
        start = gpa - gpa % size
        if (
            level == LEVEL_4K
            or start + size > self.host.sept.size
            or self.host.sept.entry(start).level >= level
        ):
            return None
        return start, start + size

    def range_block(self, gpa: int, level: int = 0) -> SeamcallResult:
        """TDH.MEM.RANGE.BLOCK: MAPPED -> BLOCKED, PENDING -> PENDING_BLOCKED; a split 2M
        entry NL_MAPPED -> NL_BLOCKED (before PROMOTE)."""
        nl = self._nl(gpa, level)
        if nl is not None:
            was = self.nl_blocked.uniform(*nl) is True
            status = GPA_RANGE_ALREADY_BLOCKED if was else st.TdxStatus.SUCCESS
            self.nl_blocked.set(*nl, True)
            self.untracked.set(*nl, True)
            return self._result(
                Leaf.TDH_MEM_RANGE_BLOCK,
                gpa,
                level,
                status,
                SeptState.NL_BLOCKED if was else SeptState.NL_MAPPED,
                SeptState.NL_BLOCKED,
            )
        found = self._entry(gpa, level)
        if found is None:
            e = self.host.sept.entry(gpa)
            return self._result(
                Leaf.TDH_MEM_RANGE_BLOCK, gpa, level, st.TdxStatus.EPT_WALK_FAILED, e.state, e.state
            )
        start, end, e = found
        new = BLOCK_TRANSITIONS.get(e.state)
        if new is None:
            status = (
                GPA_RANGE_ALREADY_BLOCKED
                if e.state in UNBLOCK_TRANSITIONS
                else st.with_details(st.TdxStatus.EPT_ENTRY_STATE_INCORRECT, st.Operand.RCX)
            )
            return self._result(Leaf.TDH_MEM_RANGE_BLOCK, gpa, level, status, e.state, e.state)
        self.host.sept.set_entries(start, end, SeptEntry(new, level))
        self.untracked.set(start, end, True)
        return self._result(
            Leaf.TDH_MEM_RANGE_BLOCK, gpa, level, st.TdxStatus.SUCCESS, e.state, new
        )

    def mem_track(self) -> SeamcallResult:
        """TDH.MEM.TRACK: every block so far is TLB-tracked."""
        self.untracked = RangeMap(self.host.sept.size, False)
        free = SeptState.FREE
        return self._result(Leaf.TDH_MEM_TRACK, 0, 0, st.TdxStatus.SUCCESS, free, free)

    def range_unblock(self, gpa: int, level: int = 0) -> SeamcallResult:
        """TDH.MEM.RANGE.UNBLOCK: BLOCKED -> MAPPED, PENDING_BLOCKED -> PENDING (and a
        blocked split 2M entry back to NL_MAPPED)."""
        nl = self._nl(gpa, level)
        if nl is not None:
            if self.nl_blocked.uniform(*nl) is not True:
                return self._result(
                    Leaf.TDH_MEM_RANGE_UNBLOCK,
                    gpa,
                    level,
                    GPA_RANGE_NOT_BLOCKED,
                    SeptState.NL_MAPPED,
                    SeptState.NL_MAPPED,
                )
            self.nl_blocked.set(*nl, False)
            return self._result(
                Leaf.TDH_MEM_RANGE_UNBLOCK,
                gpa,
                level,
                st.TdxStatus.SUCCESS,
                SeptState.NL_BLOCKED,
                SeptState.NL_MAPPED,
            )
        found = self._entry(gpa, level)
        if found is None:
            e = self.host.sept.entry(gpa)
            return self._result(
                Leaf.TDH_MEM_RANGE_UNBLOCK,
                gpa,
                level,
                st.TdxStatus.EPT_WALK_FAILED,
                e.state,
                e.state,
            )
        start, end, e = found
        new = UNBLOCK_TRANSITIONS.get(e.state)
        if new is None:
            return self._result(
                Leaf.TDH_MEM_RANGE_UNBLOCK, gpa, level, GPA_RANGE_NOT_BLOCKED, e.state, e.state
            )
        self.host.sept.set_entries(start, end, SeptEntry(new, level))
        self.untracked.set(start, end, False)
        return self._result(
            Leaf.TDH_MEM_RANGE_UNBLOCK, gpa, level, st.TdxStatus.SUCCESS, e.state, new
        )

    def page_remove(self, gpa: int, level: int = 0) -> SeamcallResult:
        """TDH.MEM.PAGE.REMOVE: a blocked, tracked leaf -> FREE; L2 aliases cleared; the page
        is zeroed for the model (the host reclaims it)."""
        found = self._entry(gpa, level)
        if found is None:
            e = self.host.sept.entry(gpa)
            return self._result(
                Leaf.TDH_MEM_PAGE_REMOVE, gpa, level, st.TdxStatus.EPT_WALK_FAILED, e.state, e.state
            )
        start, end, e = found
        if e.state not in REMOVE_FROM:
            return self._result(
                Leaf.TDH_MEM_PAGE_REMOVE,
                gpa,
                level,
                st.with_details(st.TdxStatus.EPT_ENTRY_STATE_INCORRECT, st.Operand.RCX),
                e.state,
                e.state,
            )
        if e.state not in UNBLOCK_TRANSITIONS:  # MAPPED / PENDING (/W states) of a running TD
            return self._result(
                Leaf.TDH_MEM_PAGE_REMOVE, gpa, level, GPA_RANGE_NOT_BLOCKED, e.state, e.state
            )
        if any(v for _s, _e, v in self.untracked.runs(start, end)):
            return self._result(
                Leaf.TDH_MEM_PAGE_REMOVE, gpa, level, TLB_TRACKING_NOT_DONE, e.state, e.state
            )
        self.host.sept.set_entries(start, end, SeptEntry(SeptState.FREE, level))
        self.host.sept.drop_aliases(start, end)
        self.host.module.memory.zero(start, end - start)
        return self._result(
            Leaf.TDH_MEM_PAGE_REMOVE, gpa, level, st.TdxStatus.SUCCESS, e.state, SeptState.FREE
        )

    def page_demote(
        self, gpa: int, level: int = LEVEL_2M, l2_pages: Collection[int] | None = None
    ) -> SeamcallResult:
        """TDH.MEM.PAGE.DEMOTE (:func:`cocopart_tdx.sept_resize.demote`): ``l2_pages`` are
        the L2 VMs the host hands a new SEPT page (default: every VM aliasing the range)."""
        size = LEVEL_BYTES.get(level, 0)
        start = gpa - gpa % size if size else gpa
        end = min(start + size, self.host.sept.size)
        before = self.host.sept.entry(gpa).state
        if l2_pages is None:
            l2_pages = aliased_vms(self.host.sept, start, end)
        tracked = not any(v for _s, _e, v in self.untracked.runs(start, end))
        status = demote(
            self.host.sept,
            gpa,
            level,
            tracked=tracked,
            l2_pages=l2_pages,
            interrupted=self.host.module.host_interrupted(),
        )
        if status == st.TdxStatus.SUCCESS:
            self.untracked.set(start, end, False)
        return self._result(
            Leaf.TDH_MEM_PAGE_DEMOTE, gpa, level, status, before, self.host.sept.entry(gpa).state
        )

    def page_promote(self, gpa: int, level: int = LEVEL_2M) -> SeamcallResult:
        """TDH.MEM.PAGE.PROMOTE (:func:`cocopart_tdx.sept_resize.promote`) of a split block the
        host blocked (:meth:`range_block` at 2M) and tracked."""
        nl = self._nl(gpa, level)
        blocked = nl is not None and self.nl_blocked.uniform(*nl) is True
        tracked = nl is None or not any(v for _s, _e, v in self.untracked.runs(*nl))
        before = (
            SeptState.NL_BLOCKED
            if blocked
            else (SeptState.NL_MAPPED if nl is not None else self.host.sept.entry(gpa).state)
        )
        status = promote(
            self.host.sept,
            gpa,
            level,
            blocked=blocked,
            tracked=tracked,
            interrupted=self.host.module.host_interrupted(),
        )
        if status == st.TdxStatus.SUCCESS and nl is not None:
            self.nl_blocked.set(*nl, False)
        after = self.host.sept.entry(gpa).state if status == st.TdxStatus.SUCCESS else before
        return self._result(Leaf.TDH_MEM_PAGE_PROMOTE, gpa, level, status, before, after)
