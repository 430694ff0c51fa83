"""Issue 14 point 4: splitting and merging leaves of a running partitioned TD.

DEMOTE needs the leaf blocked and TLB-tracked (TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK with the vCPU
kicks), one new L2 SEPT page per aliased L2 VM, and may be interrupted (MOD 1.5
src/vmm_dispatcher/api_calls/tdh_mem_page_demote.c: GPA_RANGE_NOT_BLOCKED,
TLB_TRACKING_NOT_DONE, L2_SEPT_PAGE_NOT_PROVIDED, INTERRUPTED_RESTARTABLE); PROMOTE merges 512
equal leaves back (tdh_mem_page_promote.c). The 2M host runs both in KVM's sequence
(cocopart_tdx.host) and each step is costed."""

from __future__ import annotations

from cocopart_tdx import sept_resize as sr
from cocopart_tdx import status as st
from cocopart_tdx.host import MAX_RESTARTS
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, SeptEntry, SeptState
from cocopart_tdx.tdcall import FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY

from cocopart.ops import CreateVcpu, SetAccess, ValidatePages
from cocopart.partition import Partition

from .tdx_helpers import MIB, PAGE_2M, PAGE_4K, guest, machine, rng

BLOCK = 2 * MIB  # a 2M block of RAM


def two_m(layers: int = 1, vcpus: int = 1, **opts: object) -> Partition:
    """A 2M host whose L2 VM 1 accepted [0, 4M) as two 2M leaves."""
    p = guest(16 * MIB, vcpus=vcpus, layers=layers, host_mapping="2M", **opts)
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    assert machine(p).module.sept.entry(BLOCK) == SeptEntry(SeptState.MAPPED, LEVEL_2M)
    return p


def test_rule_demote_needs_block_and_track() -> None:
    """tdh_mem_page_demote.c Step #1: the leaf must be blocked, then tracked; the children
    come out unblocked 4K leaves of the same state."""
    p = two_m()
    calls = machine(p).seamcalls
    r = calls.page_demote(BLOCK)
    assert r.status_name == "GPA_RANGE_NOT_BLOCKED" and st.details(r.status) == st.Operand.RCX
    assert calls.range_block(BLOCK, LEVEL_2M).ok
    assert calls.page_demote(BLOCK).status_name == "TLB_TRACKING_NOT_DONE"
    assert calls.mem_track().ok
    r = calls.page_demote(BLOCK)
    assert r.ok and (r.before, r.after) == ("BLOCKED", "MAPPED")
    sept = machine(p).module.sept
    assert sept.l1.uniform(BLOCK, BLOCK + PAGE_2M) == SeptEntry(SeptState.MAPPED, LEVEL_4K)
    assert sr.RULE_DEMOTE_NEEDS_BLOCK_AND_TRACK


def test_rule_demote_needs_an_l2_sept_page_per_alias() -> None:
    """Step #2: one new SEPT page per L2 VM aliasing the range; without VM 2's page the
    answer is L2_SEPT_PAGE_NOT_PROVIDED naming operand R8 + 2 (R10)."""
    p = two_m(layers=2)
    assert p.run(SetAccess(layer="l1", range=rng(BLOCK, PAGE_2M), target="l2.2", access="r")).ok
    calls = machine(p).seamcalls
    calls.range_block(BLOCK, LEVEL_2M)
    calls.mem_track()
    r = calls.page_demote(BLOCK, l2_pages={1})
    assert r.status_name == "L2_SEPT_PAGE_NOT_PROVIDED"
    assert st.details(r.status) == st.Operand.R8 + 2
    assert calls.page_demote(BLOCK, l2_pages={1, 2}).ok
    assert sr.RULE_DEMOTE_NEEDS_AN_L2_SEPT_PAGE_PER_ALIAS


def test_rule_demote_is_interruptible_even_with_enhanced_demote_interruptibility() -> None:
    """A host interrupt pending at DEMOTE's checkpoints: INTERRUPTED_RESTARTABLE, nothing
    committed. TDX_FEATURES0.ENHANCED_DEMOTE_INTERRUPTIBILITY (bit 51, which the KVM TDX
    huge-page series requires) removes that only for TDs without L2 VMs — a partitioned TD
    stays interruptible, so the host re-issues DEMOTE."""
    p = two_m(module="2.0")
    m = machine(p)
    assert m.module.tdx_features0 & FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY
    calls = m.seamcalls
    calls.range_block(BLOCK, LEVEL_2M)
    calls.mem_track()
    m.module.host_interrupts = 1
    r = calls.page_demote(BLOCK)
    assert r.status == st.TdxStatus.INTERRUPTED_RESTARTABLE and r.after == "BLOCKED"
    assert calls.page_demote(BLOCK).ok
    assert (
        not machine(guest(16 * MIB)).module.tdx_features0 & FEATURE_ENHANCED_DEMOTE_INTERRUPTIBILITY
    )  # the 1.5.01 source lacks it
    assert sr.RULE_DEMOTE_IS_INTERRUPTIBLE


def test_rule_host_demote_protocol_block_track_kicks_demote() -> None:
    """A 4K ATTR.WR on a 2M leaf: the TD exit makes the host run BLOCK, TRACK with one kick
    per other vCPU running an L2 (each a TD exit and re-entry), DEMOTE with the L2 SEPT page
    of the aliased VM — re-issued while interrupted — instead of a bare DEMOTE."""
    p = two_m(vcpus=3)
    for v in (1, 2):
        assert p.run(CreateVcpu(vcpu=v)).ok
    m = machine(p)
    m.module.host_interrupts = 2
    mark = p.trace.mark()
    assert p.run(SetAccess(layer="l1", range=rng(BLOCK, PAGE_4K), target="l2.1", access="r")).ok
    d = p.trace.since(mark)
    c = {(k.mnemonic, k.target, k.result): n for k, n in d.primitives.items() if k.issuer == "host"}
    assert c[("TDH.MEM.RANGE.BLOCK", "2M", "ok")] == 1
    assert c[("TDH.MEM.TRACK", "", "ok")] == 1
    assert c[("IPI.KICK", "vCPU", "ok")] == 2  # the APs' L2 vCPUs on L1 vCPUs 1 and 2
    assert c[("TDH.MEM.PAGE.DEMOTE", "2M", "INTERRUPTED_RESTARTABLE")] == 2
    assert c[("TDH.MEM.PAGE.DEMOTE", "2M", "ok")] == 1
    assert c[("TDH.MEM.PAGE.DEMOTE.L2_SEPT", "2M", "ok")] == 1
    assert d.switches[("l1", "host", "TD exit")] == 1 + 2  # the ATTR.WR's exit + the kicks
    assert m.module.sept.entry(BLOCK) == SeptEntry(SeptState.MAPPED, LEVEL_4K)
    costs = p.costs
    demote_ns = (
        costs.primitive_ns("TDH.MEM.RANGE.BLOCK")
        + costs.primitive_ns("TDH.MEM.TRACK")
        + 3 * costs.primitive_ns("TDH.MEM.PAGE.DEMOTE")
        + costs.primitive_ns("TDH.MEM.PAGE.DEMOTE.L2_SEPT")
        + 2
        * (
            costs.primitive_ns("IPI.KICK")
            + costs.switch_ns("TD exit")
            + costs.switch_ns("TDH.VP.ENTER")
        )
    )
    assert demote_ns > 4 * costs.primitive_ns("TDH.MEM.PAGE.DEMOTE")  # not a bare DEMOTE


def test_host_gives_up_after_max_restarts_and_unblocks() -> None:
    """An interrupt storm: after MAX_RESTARTS re-issues the host gives up, unblocks the leaf
    and the guest's TDCALL fails with the unresolved EPT violation."""
    p = two_m()
    m = machine(p)
    m.module.host_interrupts = MAX_RESTARTS + 1
    r = p.run(SetAccess(layer="l1", range=rng(BLOCK, PAGE_4K), target="l2.1", access="r"))
    assert not r.ok and r.error is not None and r.error.mnemonic == "EPT_VIOLATION"
    assert m.module.sept.entry(BLOCK) == SeptEntry(SeptState.MAPPED, LEVEL_2M)
    assert p.trace.count("TDH.MEM.RANGE.UNBLOCK", issuer="host") >= 1


def test_rule_promote_needs_equal_children() -> None:
    """tdh_mem_page_promote.c: a blocked, tracked split block merges only when its 512 leaves
    and its L2 aliases are all equal; else EPT_INVALID_PROMOTE_CONDITIONS."""
    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(BLOCK, PAGE_2M), page_size="4K")).ok
    m = machine(p)
    assert m.module.sept.entry(BLOCK) == SeptEntry(SeptState.MAPPED, LEVEL_2M)  # promoted
    calls = m.seamcalls
    calls.range_block(BLOCK, LEVEL_2M)
    calls.mem_track()
    assert calls.page_demote(BLOCK).ok
    m.module.sept.set_alias(
        1, BLOCK, BLOCK + PAGE_4K, m.module.sept.alias(1, BLOCK)._replace(attr=1)
    )
    assert calls.page_promote(BLOCK).status_name == "GPA_RANGE_NOT_BLOCKED"
    assert calls.range_block(BLOCK, LEVEL_2M).ok
    assert calls.page_promote(BLOCK).status_name == "TLB_TRACKING_NOT_DONE"
    calls.mem_track()
    assert calls.page_promote(BLOCK).status_name == "EPT_INVALID_PROMOTE_CONDITIONS"
    assert sr.RULE_PROMOTE_NEEDS_EQUAL_CHILDREN


def test_rule_host_promotes_uniform_blocks_after_a_4k_accept() -> None:
    """A 2M host that had to map a block at 4K (the guest accepted 4K pages) promotes it
    back once all 512 pages are accepted with equal attributes: BLOCK (2M), TRACK, PROMOTE;
    a 4K host never promotes."""
    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(BLOCK, PAGE_2M), page_size="4K")).ok
    t = p.trace
    assert t.count("TDH.MEM.PAGE.AUG", target="4K") == 512
    assert t.count("TDH.MEM.PAGE.PROMOTE", issuer="host", result="ok") == 1
    assert machine(p).page_size_of(BLOCK).value == "2M"
    q = guest(16 * MIB)
    assert q.run(ValidatePages(range=rng(BLOCK, PAGE_2M), page_size="4K")).ok
    assert q.trace.count("TDH.MEM.PAGE.PROMOTE") == 0


def test_demote_then_equal_attributes_promote_back() -> None:
    """Lowering one 4K page's access splits the leaf; restoring it makes the block uniform
    again and the host promotes it back to 2M."""
    p = two_m()
    s = p.run(SetAccess(layer="l1", range=rng(BLOCK, PAGE_4K), target="l2.1", access="r"))
    assert s.ok and machine(p).page_size_of(BLOCK).value == "4K"
    assert p.run(SetAccess(layer="l1", range=rng(BLOCK, PAGE_4K), target="l2.1", access="rwus")).ok
    assert machine(p).page_size_of(BLOCK).value == "2M"
    assert p.trace.count("TDH.MEM.PAGE.DEMOTE", result="ok") == 1
    assert p.trace.count("TDH.MEM.PAGE.PROMOTE", result="ok") == 1


def test_promote_blocks_one_and_many_blocks_in_a_run() -> None:
    """One uniform block promotes alone; a run of equal blocks is promoted through the first
    block's checked sequence and counted for each (the same counts as block by block)."""
    for blocks in (1, 3):
        p = guest(16 * MIB, vcpus=2, host_mapping="2M")
        assert p.run(CreateVcpu(vcpu=1)).ok
        assert p.run(ValidatePages(range=rng(0, blocks * PAGE_2M), page_size="4K")).ok
        assert p.trace.count("TDH.MEM.PAGE.PROMOTE", result="ok") == blocks
        assert p.trace.count("IPI.KICK") == 2 * blocks  # vCPU 1's L2 and vCPU 0 (L1)
        assert all(machine(p).page_size_of(b * PAGE_2M).value == "2M" for b in range(blocks))
