"""The host's SEPT SEAMCALLs on one entry (issue 7): TDH.MEM.PAGE.AUG, RANGE.BLOCK, TRACK,
RANGE.UNBLOCK and PAGE.REMOVE, the SEPT transitions they cause (tdx.md §4.2, public state
numbers) and the status of each refusal (MOD 1.5 tdh_mem_*.c)."""

from __future__ import annotations

from cocopart_tdx import host_seamcalls as hs
from cocopart_tdx import status as st
from cocopart_tdx.host_seamcalls import SeptSeamcalls
from cocopart_tdx.sept import LEVEL_4K, L2Alias, SeptEntry, SeptState

from cocopart.ops import ValidatePages
from cocopart.partition import Partition

from .tdx_helpers import MIB, PAGE_4K, guest, machine, rng, sept

FREE_PAGE = 8 * MIB  # never accepted
PAGE = 0x1000


def _calls(accepted: bool = True) -> tuple[SeptSeamcalls, Partition]:
    p = guest(16 * MIB)
    if accepted:
        assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    return machine(p).seamcalls, p


def test_leaf_numbers_are_linuxs() -> None:
    assert [int(x) for x in hs.Leaf] == [6, 7, 15, 23, 29, 38, 39]  # + DEMOTE, PROMOTE (issue 14)


def test_page_aug_free_to_pending_0_to_2() -> None:
    calls, _ = _calls(accepted=False)
    r = calls.page_aug(FREE_PAGE, LEVEL_4K)
    assert r.ok and (r.public_before, r.public_after) == (0, 2)
    assert r.leaf == "TDH.MEM.PAGE.AUG"


def test_page_aug_removed_to_pending_5_to_2() -> None:
    calls, p = _calls(accepted=False)
    sept(p).set_entries(FREE_PAGE, FREE_PAGE + PAGE_4K, SeptEntry(SeptState.REMOVED, LEVEL_4K))
    r = calls.page_aug(FREE_PAGE)
    assert r.ok and (r.public_before, r.public_after) == (5, 2)


def test_rule_state_check_aug_of_a_mapped_page_is_ept_entry_state_incorrect() -> None:
    calls, _ = _calls()
    r = calls.page_aug(PAGE)
    assert not r.ok and r.status_name == "EPT_ENTRY_STATE_INCORRECT"
    assert st.details(r.status) == st.Operand.RCX and r.after == "MAPPED"
    assert hs.RULE_STATE_CHECK


def test_a_host_aug_then_the_guests_accept_maps_the_page() -> None:
    calls, p = _calls(accepted=False)
    assert calls.page_aug(FREE_PAGE).ok
    assert p.run(ValidatePages(range=rng(FREE_PAGE, PAGE_4K))).ok
    assert machine(p).sept_state(FREE_PAGE) == ("MAPPED", 4)


def test_range_block_mapped_to_blocked_4_to_1_and_pending_to_pending_blocked_2_to_3() -> None:
    calls, _ = _calls()
    r = calls.range_block(PAGE)
    assert r.ok and (r.public_before, r.public_after) == (4, 1)
    assert calls.page_aug(FREE_PAGE).ok
    r = calls.range_block(FREE_PAGE)
    assert r.ok and (r.public_before, r.public_after) == (2, 3)


def test_rule_block_twice_warns_already_blocked() -> None:
    calls, _ = _calls()
    calls.range_block(PAGE)
    r = calls.range_block(PAGE)
    assert r.status_name == "GPA_RANGE_ALREADY_BLOCKED" and r.ok and st.is_warning(r.status)


def test_range_block_of_a_free_entry_is_state_incorrect() -> None:
    calls, _ = _calls(accepted=False)
    calls.page_aug(FREE_PAGE)
    calls.range_block(FREE_PAGE)
    calls.mem_track()
    calls.page_remove(FREE_PAGE)
    r = calls.range_block(FREE_PAGE)
    assert r.status_name == "EPT_ENTRY_STATE_INCORRECT" and r.before == "FREE"


def test_range_unblock_reverses_the_block() -> None:
    calls, _ = _calls()
    calls.range_block(PAGE)
    r = calls.range_unblock(PAGE)
    assert r.ok and (r.public_before, r.public_after) == (1, 4)
    assert calls.range_unblock(PAGE).status_name == "GPA_RANGE_NOT_BLOCKED"


def test_rule_remove_needs_block_and_track_then_frees_the_page_1_to_0() -> None:
    calls, p = _calls()
    m = machine(p)
    m.memory.write(PAGE, b"td data")
    assert calls.page_remove(PAGE).status_name == "GPA_RANGE_NOT_BLOCKED"
    assert calls.range_block(PAGE).ok
    assert calls.page_remove(PAGE).status_name == "TLB_TRACKING_NOT_DONE"
    assert calls.mem_track().ok
    r = calls.page_remove(PAGE)
    assert r.ok and (r.public_before, r.public_after) == (1, 0)
    assert m.module.sept.alias(1, PAGE) == L2Alias()  # every L2 alias cleared
    assert m.memory.read(PAGE, 7) == bytes(7)
    assert m.sept_state(PAGE + PAGE_4K) == ("MAPPED", 4)  # only that entry


def test_pending_blocked_is_removed_to_free_3_to_0() -> None:
    calls, _ = _calls(accepted=False)
    calls.page_aug(FREE_PAGE)
    calls.range_block(FREE_PAGE)
    calls.mem_track()
    r = calls.page_remove(FREE_PAGE)
    assert r.ok and (r.public_before, r.public_after) == (3, 0)


def test_rule_level_must_match_the_leaf() -> None:
    """A 4K BLOCK inside a 2M leaf: the walk ends at the larger leaf (EPT_WALK_FAILED). A 2M
    BLOCK over 4K leaves blocks the non-leaf entry, NL_MAPPED 132 -> NL_BLOCKED 129 (tdx.md
    §4.2, the first step of a PROMOTE — issue 14 changed this test, which expected the walk
    to fail there too)."""
    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    r = machine(p).seamcalls.range_block(PAGE, level=LEVEL_4K)
    assert r.status_name == "EPT_WALK_FAILED"
    assert hs.RULE_LEVEL_MUST_MATCH in hs.UNCONFIRMED
    calls, _ = _calls()
    r = calls.range_block(PAGE, level=1)
    assert r.ok and (r.public_before, r.public_after) == (132, 129)


def test_every_seamcall_is_traced_with_the_host_as_issuer() -> None:
    calls, p = _calls()
    calls.range_block(PAGE)
    calls.mem_track()
    calls.page_remove(PAGE)
    t = p.trace
    for leaf in ("TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE"):
        assert t.count(leaf, issuer="host") >= 1
