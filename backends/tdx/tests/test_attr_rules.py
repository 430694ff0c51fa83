"""Per-L2 attributes: TDG.MEM.PAGE.ATTR.RD/WR legality and effects (tdx.md §3), and L1's
policy when an L2 asks for an attribute change."""

from __future__ import annotations

import pytest
from cocopart_tdx import attributes as A
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, NO_ALIAS, L2Alias, SeptEntry, SeptState
from cocopart_tdx.status import Operand, TdxStatus, status_name, with_details
from cocopart_tdx.tdcall import PENDING_BIT, TdxModule

from cocopart.model import Access
from cocopart.ops import SetAccess, ValidatePages

from .tdx_helpers import MIB, PAGE_2M, PAGE_4K, guest, machine, module, rng

BAD_RDX = with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
BAD_R8 = with_details(TdxStatus.OPERAND_INVALID, Operand.R8)


def accepted(layers: int = 1, level: int = LEVEL_4K) -> TdxModule:
    m = module(guest(16 * MIB, layers=layers))
    size = PAGE_2M if level == LEVEL_2M else PAGE_4K
    m.sept.set_entries(0, size, SeptEntry(SeptState.MAPPED, level))
    return m


def wr(m: TdxModule, words: dict[int, int], masks: dict[int, int], level: int = LEVEL_4K) -> int:
    return m.attr_wr(0, level, A.pack(words), A.pack(masks)).status


def test_gpa_attr_is_four_16_bit_words() -> None:
    assert A.pack({1: 0x8001, 3: 0x8003}) == 0x8003_0000_8001_0000
    assert A.word(0x8003_0000_8001_0000, 3) == 0x8003
    assert (A.R, A.W, A.XS, A.XU, A.VGP, A.PWA, A.SSS, A.SVE, A.VALID) == (
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        0x8000,
    )
    assert A.GUEST_L2_GPA_ATTR_MASK == 0x807F


def test_write_requires_read() -> None:
    m = accepted()
    r = m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.W}), A.pack({1: A.RWX}))
    assert r.status == TdxStatus.PAGE_ATTR_INVALID
    assert r.out == {"rcx": 0, "rdx": 0}  # RCX = 0, RDX = the current attributes


def test_pwa_requires_read() -> None:
    """PWA without R is illegal once the result is present (here through Xs); issue 14
    point 5: a PWA-only result is not present, so it is no longer PAGE_ATTR_INVALID (see
    test_rule_attr_wr_legal_only_when_present)."""
    assert wr(accepted(), {1: A.VALID | A.PWA | A.XS}, {1: 0xFF}) == TdxStatus.PAGE_ATTR_INVALID


def test_sve_must_be_zero() -> None:
    assert wr(accepted(), {1: A.VALID | A.R | A.SVE}, {1: 0xFF}) == TdxStatus.PAGE_ATTR_INVALID


def test_reserved_bits_14_8_must_be_zero() -> None:
    """Reserved bits reach the result only where the mask selects them (issue 14 point 5:
    with mask 0xFF the bit is dropped, see test_rule_attr_wr_mask_not_checked)."""
    assert wr(accepted(), {1: A.VALID | A.R | 0x100}, {1: 0x1FF}) == TdxStatus.PAGE_ATTR_INVALID


def test_valid_zero_leaves_the_vm_alone_and_the_rest_must_be_zero() -> None:
    m = accepted(layers=2)
    assert wr(m, {1: A.VALID | A.R, 2: A.VALID | A.R}, {1: A.RWX, 2: A.RWX}) == 0
    assert wr(m, {1: A.VALID | A.RWX, 2: 0}, {1: A.RWX}) == 0
    assert m.sept.alias(2, 0) == L2Alias(SeptState.L2_MAPPED, A.R)  # untouched
    assert wr(m, {1: A.VALID | A.R, 2: A.R}, {1: A.RWX}) == BAD_RDX


def test_attr_and_mask_of_vm_0_must_be_zero() -> None:
    assert wr(accepted(), {0: A.VALID | A.R}, {}) == BAD_RDX
    assert wr(accepted(), {1: A.VALID | A.R}, {0: 1, 1: A.RWX}) == BAD_R8


def test_words_of_non_existent_vms_must_be_zero() -> None:
    assert wr(accepted(layers=1), {2: A.VALID | A.R}, {}) == BAD_RDX
    assert wr(accepted(layers=1), {1: A.VALID | A.R}, {1: A.RWX, 3: A.R}) == BAD_R8


def test_mask_selects_the_bits_that_change() -> None:
    m = accepted()
    assert wr(m, {1: A.VALID | A.R | A.W | A.XS}, {1: A.RWX}) == 0
    assert wr(m, {1: A.VALID | A.XU}, {1: A.XS | A.XU}) == 0  # R and W kept
    assert m.sept.alias(1, 0).attr == A.R | A.W | A.XU


def test_no_r_w_xs_xu_removes_the_alias() -> None:
    m = accepted()
    assert wr(m, {1: A.VALID | A.RWX}, {1: A.RWX}) == 0
    before = m.invept.get(1, 0)
    assert wr(m, {1: A.VALID}, {1: A.RWX | A.FLAG_INVEPT}) == 0
    assert m.sept.alias(1, 0) == NO_ALIAS
    assert m.invept[1] == before + 1  # mask bit 15: INVEPT of that VM after the update


def test_alias_of_a_pending_page_is_created_blocked_and_unblocked_by_accept() -> None:
    m = accepted()
    m.sept.set_entries(0, PAGE_4K, SeptEntry(SeptState.PENDING, LEVEL_4K))
    r = m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.RWX}), A.pack({1: A.RWX}))
    assert r.status == 0 and r.out["rcx"] & PENDING_BIT
    assert m.sept.alias(1, 0).state is SeptState.L2_BLOCKED
    m.accept(0, LEVEL_4K)
    assert m.sept.alias(1, 0).state is SeptState.L2_MAPPED


def test_level_must_equal_the_l1_leaf_level() -> None:
    m = accepted(level=LEVEL_4K)
    assert status_name(wr(m, {1: A.VALID | A.R}, {1: A.RWX}, LEVEL_2M)) == "PAGE_SIZE_MISMATCH"
    m2 = accepted(level=LEVEL_2M)
    r = m2.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.R}), A.pack({1: A.RWX}))
    assert r.exit is not None and r.exit.eeq_type == 5  # larger leaf: the host must demote


@pytest.mark.parametrize("state", [SeptState.FREE, SeptState.BLOCKED, SeptState.BLOCKEDW])
def test_l1_state_not_allowed_is_an_ept_violation_td_exit(state: SeptState) -> None:
    m = accepted()
    m.sept.set_entries(0, PAGE_4K, SeptEntry(state, LEVEL_4K))
    r = m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.R}), A.pack({1: A.RWX}))
    assert r.exit is not None and r.exit.reason == "EPT_VIOLATION"


def test_missing_l2_sept_page_fails_or_exits_with_vm_ctls_bit_0() -> None:
    m = accepted(layers=2)
    m.l2_sept_missing.add((2, 0))
    r = m.attr_wr(0, LEVEL_4K, A.pack({2: A.VALID | A.R}), A.pack({2: A.RWX}))
    assert r.status == with_details(TdxStatus.L2_SEPT_WALK_FAILED, (2 << 16) | LEVEL_4K)
    m.vm_ctls[2] = 1
    r = m.attr_wr(0, LEVEL_4K, A.pack({2: A.VALID | A.R}), A.pack({2: A.RWX}))
    assert r.exit is not None and (r.exit.eeq_type, r.exit.vm) == (2, 2)


def test_missing_l2_sept_page_added_by_the_host_then_l1_retries() -> None:
    p = guest(16 * MIB, layers=2)
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    module(p).l2_sept_missing.add((2, 0))
    module(p).vm_ctls[2] = 1
    assert p.run(SetAccess(layer="l1", range=rng(0, PAGE_4K), target="l2.2", access="r")).ok
    assert p.trace.count("TDH.MEM.SEPT.ADD", target="L2 VM 2") == 1


def test_attr_rd_reports_mapping_pending_bit_and_valid_words() -> None:
    m = accepted(layers=2)
    wr(m, {2: A.VALID | A.R | A.XU}, {2: A.RWX})
    r = m.attr_rd(0x0)
    assert r.out == {"rcx": 0 | LEVEL_4K, "rdx": A.pack({2: A.VALID | A.R | A.XU})}
    m.sept.set_entries(PAGE_4K, 2 * PAGE_4K, SeptEntry(SeptState.PENDING, LEVEL_4K))
    assert m.attr_rd(PAGE_4K).out["rcx"] == PAGE_4K | PENDING_BIT
    assert m.attr_rd(2 * PAGE_4K).exit is not None  # FREE: EPT-violation TD exit


def test_access_maps_onto_r_w_xs_xu() -> None:
    assert A.access_to_attr(Access.RWX) == A.RWX
    assert A.access_to_attr(Access.SUPERVISOR_EXEC) == A.XS
    assert A.attr_to_access(A.R | A.XU) == Access.READ | Access.USER_EXEC


# -- through the public API ------------------------------------------------------------------
def two_l2() -> tuple:  # type: ignore[type-arg]
    p = guest(16 * MIB, layers=2)
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    assert p.run(ValidatePages(layer="l2.2", range=rng(4 * MIB, 4 * MIB))).ok
    return p, machine(p)


def test_set_access_by_l1_changes_what_an_l2_may_do() -> None:
    p, m = two_l2()
    assert not m.access("l2.2", 0, Access.READ).ok
    assert p.run(SetAccess(layer="l1", range=rng(0, 2 * MIB), target="l2.2", access="r")).ok
    assert m.access("l2.2", 0, Access.READ).ok
    out = m.access("l2.2", 0, Access.WRITE)
    assert not out.ok and out.handled_by == "l1" and "L2->L1" in (out.fault or "")


def test_set_access_write_without_read_is_page_attr_invalid() -> None:
    p, _m = two_l2()
    r = p.run(SetAccess(layer="l1", range=rng(0, PAGE_4K), target="l2.2", access="w"))
    assert r.error is not None
    assert (r.error.vendor, r.error.mnemonic, r.error.code) == (
        "intel",
        "TDX_PAGE_ATTR_INVALID",
        TdxStatus.PAGE_ATTR_INVALID,
    )


def test_peer_access_needs_ownership_an_l2_cannot_grant_itself_a_peers_page() -> None:
    """RULE PEER_ACCESS_NEEDS_OWNERSHIP: L2 VMs are peers; only the owner's pages may have
    their attributes changed at an L2's request (docs/authority.md). Refused before anything
    runs; nothing changes."""
    p, m = two_l2()
    r = p.run(SetAccess(range=rng(4 * MIB, PAGE_4K), target="l2.1", access="rw"))
    assert r.error is not None and r.error.mnemonic == "PEER_ACCESS_NEEDS_OWNERSHIP"
    assert r.primitives == r.world_switches == 0
    assert not m.access("l2.1", 4 * MIB, Access.READ).ok


def test_l1_refuses_a_raw_attr_wr_on_a_peers_page_with_tdx_operand_invalid() -> None:
    """The same rule where it is enforced on TDX: L1 emulating the L2's ATTR.WR (every L2
    TDCALL but VMCALL exits to L1 — tdx.md §2.4) answers TDX_OPERAND_INVALID (RDX)."""
    _p, m = two_l2()
    w = m.hooks.exits
    state = w.transport.l2_exit("l2.1", 0, {"rax": 0}, "TDG.MEM.PAGE.ATTR.WR")
    assert state is not None
    status = w.emulate_attr_wr(
        "l2.1", state, 4 * MIB, 4 * MIB + PAGE_4K, 1, A.access_to_attr(Access.RW)
    )
    w.transport.l2_resume("l2.1", 0, state)
    assert status == BAD_RDX
    assert not m.access("l2.1", 4 * MIB, Access.READ).ok
    # and a peer's own access on its own page is not lowered by l2.1 either
    state = w.transport.l2_exit("l2.1", 0, {"rax": 0}, "TDG.MEM.PAGE.ATTR.WR")
    assert state is not None
    assert w.emulate_attr_wr("l2.1", state, 4 * MIB, 4 * MIB + PAGE_4K, 2, 0) == BAD_RDX
    w.transport.l2_resume("l2.1", 0, state)
    assert m.access("l2.2", 4 * MIB, Access.WRITE).ok


def test_an_l2_grants_a_peer_only_its_own_pages_within_what_it_holds() -> None:
    p, m = two_l2()
    assert p.run(SetAccess(range=rng(0, 2 * MIB), target="l2.2", access="rw")).ok
    assert m.access("l2.2", 0x1000, Access.WRITE).ok
    r = p.run(SetAccess(range=rng(4 * MIB, PAGE_4K), target="l2.2", access="r"))
    assert r.error is not None and r.error.mnemonic == "PEER_ACCESS_NEEDS_OWNERSHIP"
    assert p.trace.count("TDCALL", issuer="l2.1", target="TDG.MEM.PAGE.ATTR.WR") == 1


def test_set_access_for_a_non_l2_target_is_not_supported() -> None:
    p, _m = two_l2()
    r = p.run(SetAccess(layer="l1", range=rng(0, PAGE_4K), target="l1", access="rw"))
    assert r.status.value == "not-supported"


def test_an_l2_may_lower_its_own_access_grant_within_held() -> None:
    """RULE GRANT_WITHIN_HELD: lowering is allowed, raising back is not."""
    p, m = two_l2()
    assert p.run(SetAccess(range=rng(0, 2 * MIB), target="l2.1", access="r")).ok
    assert m.access("l2.1", 0, Access.READ).ok and not m.access("l2.1", 0, Access.WRITE).ok
    r = p.run(SetAccess(range=rng(0, 2 * MIB), target="l2.1", access="rw"))  # back up: no
    assert r.error is not None and r.error.mnemonic == "GRANT_WITHIN_HELD"


# -- issue 14 point 5: ATTR.WR exactly as MOD 1.5 tdg_mem_page_attr_wr.c checks it -----------
def test_rule_attr_wr_words_before_rcx() -> None:
    """MOD tdg_mem_page_attr_wr.c ``tdg_mem_page_attr_wr``: the per-VM RDX/R8 words are
    checked before ``verify_page_info_input`` (RCX), so a bad RCX and a bad RDX give
    OPERAND_INVALID(RDX); a bad RCX and a bad R8 word of VM 0 give OPERAND_INVALID(R8)."""
    m = accepted()
    bad_rcx = 0x7 << 3  # reserved bits 11:3 of the page info
    r = m.attr_wr_rcx(bad_rcx, A.pack({2: A.VALID | A.R}), 0)
    assert r.status == BAD_RDX and A.RULE_ATTR_WR_WORDS_BEFORE_RCX
    assert m.attr_wr_rcx(bad_rcx, A.pack({1: A.VALID | A.R}), A.pack({0: 1})).status == BAD_R8
    assert m.attr_wr_rcx(
        bad_rcx, A.pack({1: A.VALID | A.R}), A.pack({1: A.RWX})
    ).status == with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)


def test_rule_attr_wr_mask_not_checked() -> None:
    """MOD tdg_mem_page_attr_wr.c ``get_all_l2_sept_entries``: the new attributes are ANDed
    with the mask (bit 15 forced so VALID passes); reserved mask bits of an existing VM are
    never OPERAND_INVALID(R8), and new bits the mask does not select are dropped."""
    m = accepted()
    assert wr(m, {1: A.VALID | A.R | A.W}, {1: 0x7F00 | A.RWX}) == 0
    assert m.sept.alias(1, 0).attr == A.R | A.W
    assert wr(m, {1: A.VALID | A.R | 0x100}, {1: A.R}) == 0  # bit 8 not selected: dropped
    assert m.sept.alias(1, 0).attr == A.R | A.W
    assert A.RULE_ATTR_WR_MASK_NOT_CHECKED


def test_rule_attr_wr_legal_only_when_present() -> None:
    """MOD tdg_mem_page_attr_wr.c / helpers.h ``is_gpa_attr_present``: legality is checked only
    when the resulting attributes hold one of R/W/Xs/Xu; a result with none removes the alias
    and returns TDX_SUCCESS with that VM's RDX word = VALID only."""
    m = accepted()
    assert wr(m, {1: A.VALID | A.R | A.W}, {1: A.RWX}) == 0
    r = m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.PWA}), A.pack({1: A.RWX | A.PWA}))
    assert r.status == 0 and r.out["rdx"] == A.pack({1: A.VALID})
    assert m.sept.alias(1, 0) == NO_ALIAS
    # never aliased: a non-present request creates nothing and succeeds (RDX = the input)
    r = m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.SVE}), A.pack({1: 0xFF}))
    assert r.status == 0 and m.sept.alias(1, 0) == NO_ALIAS
    assert r.out["rdx"] == A.pack({1: A.VALID | A.SVE})
    assert A.RULE_ATTR_WR_LEGAL_ONLY_WHEN_PRESENT


def test_attr_wr_page_attr_invalid_returns_current_words_and_commits_nothing() -> None:
    """MOD tdg_mem_page_attr_wr.c: an illegal combined value of an aliased VM reports that
    VM's current attributes in RDX (RCX = 0) and nothing is committed, for any VM."""
    m = accepted(layers=2)
    assert wr(m, {1: A.VALID | A.R | A.W, 2: A.VALID | A.R}, {1: A.RWX, 2: A.RWX}) == 0
    r = m.attr_wr(
        0, LEVEL_4K, A.pack({1: A.VALID | A.XS, 2: A.VALID | A.W}), A.pack({1: A.RWX, 2: A.R | A.W})
    )  # VM 2 would be W without R
    assert r.status == TdxStatus.PAGE_ATTR_INVALID
    assert r.out == {"rcx": 0, "rdx": A.pack({1: A.VALID | A.XS, 2: A.VALID | A.R})}
    assert m.sept.alias(1, 0).attr == A.R | A.W and m.sept.alias(2, 0).attr == A.R
