"""TDH.MEM.PAGE.DEMOTE (SEAMCALL 15) and TDH.MEM.PAGE.PROMOTE (SEAMCALL 23) as the TDX module
checks and performs them on a running TD (MOD 1.5
``src/vmm_dispatcher/api_calls/tdh_mem_page_demote.c``, ``tdh_mem_page_promote.c``).

Both act on one 2M (or 1G) range of the L1 SEPT and of every L2 SEPT that aliases it, and
both are the host's: :mod:`cocopart_tdx.host` drives them in KVM's sequence (BLOCK, TRACK
and the vCPU kicks, then DEMOTE or PROMOTE, restarted while interrupted) and
:mod:`cocopart_tdx.host_seamcalls` offers them one SEAMCALL at a time with their statuses.
The functions here are the module's side: checks in the module's order, then the commit.

DEMOTE splits a *blocked, TLB-tracked* leaf into 512 leaves of the next level, unblocked
(``RULE_DEMOTE_NEEDS_BLOCK_AND_TRACK``); the host hands it one new SEPT page for the L1 SEPT
and one per L2 VM that aliases the range (``RULE_DEMOTE_NEEDS_AN_L2_SEPT_PAGE_PER_ALIAS``);
a pending host-side interrupt aborts it with TDX_INTERRUPTED_RESTARTABLE before it commits
(``RULE_DEMOTE_IS_INTERRUPTIBLE``). PROMOTE merges a blocked, tracked non-leaf entry whose
512 children are equal MAPPED (or PENDING) leaves — and whose L2 SEPT pages are equal too —
into one leaf of the merged state (``RULE_PROMOTE_NEEDS_EQUAL_CHILDREN``).
"""

from __future__ import annotations

from collections.abc import Collection

from cocopart_tdx.sept import (
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_BYTES,
    UNBLOCK_TRANSITIONS,
    Sept,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.status import Operand, TdxStatus, with_details

DEMOTE_LEAF, PROMOTE_LEAF = 15, 23
#: States DEMOTE accepts on a running TD's leaf: MAPPED / PENDING (then GPA_RANGE_NOT_BLOCKED)
#: and their blocked forms, which it splits into unblocked children.
DEMOTE_STATES = frozenset({SeptState.MAPPED, SeptState.PENDING, *UNBLOCK_TRANSITIONS})
#: Children PROMOTE can merge (MOD ``sept_state_is_mapped_or_pending``).
PROMOTE_STATES = frozenset({SeptState.MAPPED, SeptState.PENDING})

#: On a running TD the leaf must be blocked (TDX_GPA_RANGE_NOT_BLOCKED) and the block
#: TLB-tracked (TDX_TLB_TRACKING_NOT_DONE) before DEMOTE; the same holds for the non-leaf
#: entry PROMOTE merges (tdh_mem_page_demote.c / tdh_mem_page_promote.c, Step #1).
RULE_DEMOTE_NEEDS_BLOCK_AND_TRACK = "DEMOTE/PROMOTE of a running TD: BLOCK, TRACK, then the call"
#: DEMOTE takes a new SEPT page for each L2 VM that aliases the range (R9..R11 for VM 1..3);
#: a missing one is TDX_L2_SEPT_PAGE_NOT_PROVIDED with operand R8+vm (Step #2).
RULE_DEMOTE_NEEDS_AN_L2_SEPT_PAGE_PER_ALIAS = "DEMOTE needs one L2 SEPT page per aliased L2 VM"
#: A host-side interrupt pending at the checkpoints (before each L2 SEPT split, before the
#: PAMT split) aborts DEMOTE with TDX_INTERRUPTED_RESTARTABLE, nothing committed; the host
#: re-issues it. TDX_FEATURES0.ENHANCED_DEMOTE_INTERRUPTIBILITY (bit 51, module 1.5.28+) removes
#: that only for TDs without L2 VMs — a partitioned TD stays interruptible (the KVM TDX
#: huge-page series, which requires the feature; PROMOTE has the same checkpoints).
RULE_DEMOTE_IS_INTERRUPTIBLE = "DEMOTE/PROMOTE may end INTERRUPTED_RESTARTABLE; the host retries"
#: PROMOTE merges only 512 equal MAPPED/PENDING leaves (same state, contiguous pages) whose
#: aliased L2 SEPT pages are equal as well, else TDX_EPT_INVALID_PROMOTE_CONDITIONS (Step #2).
RULE_PROMOTE_NEEDS_EQUAL_CHILDREN = "PROMOTE merges only equal leaves with equal L2 aliases"


def aliased_vms(sept: Sept, start: int, end: int) -> tuple[int, ...]:
    """L2 VMs with an alias anywhere in ``[start, end)``."""
    return tuple(
        vm
        for vm, amap in sept.l2.items()
        if any(a.state is not SeptState.L2_FREE for _s, _e, a in amap.runs(start, end))
    )


def _range(sept: Sept, gpa: int, level: int) -> tuple[int, int] | int:
    """The aligned range of a DEMOTE/PROMOTE operand, or OPERAND_INVALID(RCX) /
    EPT_WALK_FAILED (MOD helpers.c verify_page_info_input: levels 2M..1G, aligned)."""
    if level not in (LEVEL_2M, LEVEL_1G) or gpa % LEVEL_BYTES[level]:
        return with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    if gpa < 0 or gpa + LEVEL_BYTES[level] > sept.size:
        return with_details(TdxStatus.EPT_WALK_FAILED, Operand.RCX)
    return gpa, gpa + LEVEL_BYTES[level]


def demote(
    sept: Sept, gpa: int, level: int, *, tracked: bool, l2_pages: Collection[int], interrupted: bool
) -> int:
    """TDH.MEM.PAGE.DEMOTE of the leaf at ``level`` covering ``gpa``; returns the status.

    ``tracked``: a TDH.MEM.TRACK followed the BLOCK; ``l2_pages``: the L2 VMs the host gave a
    new SEPT page; ``interrupted``: a host-side interrupt is pending at the checkpoints."""
    rng = _range(sept, gpa, level)
    if isinstance(rng, int):
        return rng
    start, end = rng
    e = sept.entry(start)
    if e.level > level:  # the walk ends at a larger leaf before reaching ``level``
        return with_details(TdxStatus.EPT_WALK_FAILED, Operand.RCX)
    if e.level < level or e.state not in DEMOTE_STATES:  # non-leaf, FREE, ...
        return with_details(TdxStatus.EPT_ENTRY_STATE_INCORRECT, Operand.RCX)
    if e.state not in UNBLOCK_TRANSITIONS:
        return with_details(TdxStatus.GPA_RANGE_NOT_BLOCKED, Operand.RCX)
    if not tracked:
        return with_details(TdxStatus.TLB_TRACKING_NOT_DONE, Operand.RCX)
    for vm in aliased_vms(sept, start, end):
        if vm not in l2_pages:
            return with_details(TdxStatus.L2_SEPT_PAGE_NOT_PROVIDED, Operand.R8 + vm)
    if interrupted:
        return int(TdxStatus.INTERRUPTED_RESTARTABLE)
    sept.set_entries(start, end, SeptEntry(UNBLOCK_TRANSITIONS[e.state], level - 1))
    return int(TdxStatus.SUCCESS)


def promote(
    sept: Sept, gpa: int, level: int, *, blocked: bool, tracked: bool, interrupted: bool
) -> int:
    """TDH.MEM.PAGE.PROMOTE of the non-leaf entry at ``level`` covering ``gpa``; returns the
    status. ``blocked``: the host's RANGE.BLOCK of that non-leaf entry is in effect."""
    rng = _range(sept, gpa, level)
    if isinstance(rng, int):
        return rng
    start, end = rng
    e = sept.entry(start)
    if e.level > level:
        return with_details(TdxStatus.EPT_WALK_FAILED, Operand.RCX)
    if e.level == level:  # already a leaf: not a state PROMOTE accepts
        return with_details(TdxStatus.EPT_ENTRY_STATE_INCORRECT, Operand.RCX)
    if not blocked:
        return with_details(TdxStatus.GPA_RANGE_NOT_BLOCKED, Operand.RCX)
    if not tracked:
        return with_details(TdxStatus.TLB_TRACKING_NOT_DONE, Operand.RCX)
    child = sept.l1.uniform(start, end)
    if child is None or child.level != level - 1 or child.state not in PROMOTE_STATES:
        return with_details(TdxStatus.EPT_INVALID_PROMOTE_CONDITIONS, Operand.RCX)
    for vm in aliased_vms(sept, start, end):
        if interrupted:
            return int(TdxStatus.INTERRUPTED_RESTARTABLE)
        if sept.l2[vm].uniform(start, end) is None:
            return with_details(TdxStatus.EPT_INVALID_PROMOTE_CONDITIONS, Operand.RCX)
    if interrupted:
        return int(TdxStatus.INTERRUPTED_RESTARTABLE)
    sept.set_entries(start, end, SeptEntry(child.state, level))
    return int(TdxStatus.SUCCESS)
