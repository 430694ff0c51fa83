"""TDG.MEM.PAGE.ACCEPT (tdx.md §4.1) and the L1 accept strategies (cost-model.md §3): one test
per rule, on the module directly and through the public API."""

from __future__ import annotations

import pytest
from cocopart_tdx.sept import LEVEL_1G, LEVEL_2M, LEVEL_4K, L2Alias, SeptEntry, SeptState
from cocopart_tdx.status import Operand, TdxStatus, details, is_error, status_name, with_details

from cocopart.client import PageRun
from cocopart.model import Access
from cocopart.ops import ValidatePages
from cocopart.protocol.ids import ResultCode

from .tdx_helpers import GIB, MIB, PAGE_2M, PAGE_4K, guest, machine, module, rng, sept


def pend(p, gpa: int, level: int) -> None:  # type: ignore[no-untyped-def]
    size = {LEVEL_4K: PAGE_4K, LEVEL_2M: PAGE_2M}[level]
    sept(p).set_entries(gpa, gpa + size, SeptEntry(SeptState.PENDING, level))


def test_accept_pending_4k_maps_it_and_zeroes_it() -> None:
    p = guest()
    m = module(p)
    pend(p, 0x3000, LEVEL_4K)
    m.memory.write(0x3000, b"stale")
    assert m.accept(0x3000, LEVEL_4K).status == TdxStatus.SUCCESS
    assert m.sept.entry(0x3000) == SeptEntry(SeptState.MAPPED, LEVEL_4K)
    assert m.memory.read(0x3000, 5) == bytes(5)


def test_accept_pending_2m_leaf_at_2m() -> None:
    p = guest()
    pend(p, PAGE_2M, LEVEL_2M)
    assert module(p).accept(PAGE_2M, LEVEL_2M).status == 0
    assert sept(p).entry(PAGE_2M + 0x5000) == SeptEntry(SeptState.MAPPED, LEVEL_2M)


def test_accept_1g_is_operand_invalid_on_module_1_5() -> None:
    r = module(guest(2 * GIB)).accept(0, LEVEL_1G)
    assert r.status == with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)


def test_accept_1g_is_allowed_on_module_2_0() -> None:
    r = module(guest(2 * GIB, module="2.0")).accept(0, LEVEL_1G)
    # the 1G entry is a non-leaf (the host's structures reach the 2M level): size mismatch
    assert status_name(r.status) == "PAGE_SIZE_MISMATCH" and details(r.status) == LEVEL_1G


def test_page_already_accepted_is_a_warning_with_the_level() -> None:
    p = guest()
    pend(p, 0, LEVEL_2M)
    module(p).accept(0, LEVEL_2M)
    r = module(p).accept(0x1000, LEVEL_4K)  # the 2M leaf above the 4K level is accessible
    assert status_name(r.status) == "PAGE_ALREADY_ACCEPTED" and not is_error(r.status)
    assert details(r.status) == LEVEL_2M


def test_page_size_mismatch_when_mapped_smaller() -> None:
    p = guest()
    pend(p, 0, LEVEL_4K)
    r = module(p).accept(0, LEVEL_2M)
    assert r.status == with_details(TdxStatus.PAGE_SIZE_MISMATCH, LEVEL_2M)


def test_operand_busy_is_retried_by_l1() -> None:
    p = guest(host_mapping="2M")
    module(p).busy = 2
    r = p.run(ValidatePages(range=rng(0, 2 * MIB)))
    assert r.ok
    assert p.trace.count("TDG.MEM.PAGE.ACCEPT.2M", result="OPERAND_BUSY") == 2
    assert module(p).accept(0, LEVEL_2M).status >> 32 == TdxStatus.PAGE_ALREADY_ACCEPTED >> 32


def test_operand_busy_carries_rcx_operand() -> None:
    p = guest()
    module(p).busy = 1
    r = module(p).accept(0, LEVEL_4K)
    assert r.status == with_details(TdxStatus.OPERAND_BUSY, Operand.RCX)


@pytest.mark.parametrize("state", [SeptState.FREE, SeptState.BLOCKED, SeptState.REMOVED])
def test_accept_of_a_non_pending_page_is_an_ept_violation_td_exit(state: SeptState) -> None:
    p = guest()
    sept(p).set_entries(0, PAGE_4K, SeptEntry(state, LEVEL_4K))
    r = module(p).accept(0, LEVEL_4K)
    assert r.exit is not None and r.exit.reason == "EPT_VIOLATION" and r.exit.eeq_type == 1


def test_accept_of_a_larger_pending_leaf_is_a_td_exit_the_host_demotes() -> None:
    p = guest()
    pend(p, 0, LEVEL_2M)
    r = module(p).accept(0, LEVEL_4K)
    assert r.exit is not None
    assert p.run(ValidatePages(range=rng(0, PAGE_4K), page_size="4K")).ok
    assert p.trace.count("TDH.MEM.PAGE.DEMOTE", issuer="host", target="2M") == 1
    assert sept(p).entry(0x1000) == SeptEntry(SeptState.PENDING, LEVEL_4K)


def test_accept_of_a_blocked_page_the_host_will_not_fix_is_an_arch_error() -> None:
    p = guest()
    sept(p).set_entries(0, PAGE_2M, SeptEntry(SeptState.BLOCKED, LEVEL_2M))
    r = p.run(ValidatePages(range=rng(0, PAGE_2M)))
    assert not r.ok and r.error is not None
    assert (r.error.vendor, r.error.mnemonic, r.error.code) == ("intel", "EPT_VIOLATION", 48)


@pytest.mark.parametrize("rcx", [1 << 47 | 0, 0x1000 | 1, 0x8 | 0, 1 << 60])
def test_accept_operand_rules_shared_misaligned_reserved(rcx: int) -> None:
    assert module(guest()).accept_rcx(rcx).status == with_details(
        TdxStatus.OPERAND_INVALID, Operand.RCX
    )


def test_accept_unblocks_existing_l2_aliases() -> None:
    p = guest()
    pend(p, 0, LEVEL_4K)
    sept(p).set_alias(1, 0, PAGE_4K, L2Alias(SeptState.L2_BLOCKED, 0x3))
    module(p).accept(0, LEVEL_4K)
    assert sept(p).alias(1, 0) == L2Alias(SeptState.L2_MAPPED, 0x3)


def test_already_accepted_is_no_change_for_the_protocol_unless_ignore_cf() -> None:
    p = guest(host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    r = p.run(ValidatePages(range=rng(0, 4 * MIB)))
    assert not r.ok and r.error is not None and r.error.mnemonic == "TDX_PAGE_ALREADY_ACCEPTED"
    m = machine(p)
    m.memory.write(0x1000, b"data")
    out = m.client.pvalidate("l2.1", 0, [PageRun(0, PAGE_2M, 2)], validate=True, ignore_cf=True)
    assert out.code == ResultCode.SUCCESS
    assert m.memory.read(0x1000, 4) == bytes(4)  # L1 zeroes already-accepted pages itself


def test_optimal_2m_host_accepts_each_2m_once_after_one_aug() -> None:
    p = guest(64 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, 64 * MIB))).ok
    t, n = p.trace, 32
    assert t.count("TDG.MEM.PAGE.ACCEPT.2M", result="EPT_VIOLATION") == n
    assert t.count("TDG.MEM.PAGE.ACCEPT.2M", result="ok") == n
    assert t.count("TDH.MEM.PAGE.AUG", target="2M") == n
    assert t.count("TDG.MEM.PAGE.ACCEPT.4K") == 0


def test_4k_only_host_512x_the_exits_and_augs_of_a_2m_host() -> None:
    counts = {}
    for mapping in ("4K", "2M"):
        p = guest(64 * MIB, host_mapping=mapping)
        assert p.run(ValidatePages(range=rng(0, 64 * MIB))).ok
        t = p.trace
        counts[mapping] = (
            t.switches[("l1", "host", "TD exit")],
            t.count("TDH.MEM.PAGE.AUG"),
            t.count("TDG.MEM.PAGE.ATTR.WR", target="L2 VM 1"),
        )
    assert counts["2M"] == (32, 32, 32)
    assert counts["4K"] == (32 * 512, 32 * 512, 32 * 512)
    # the 4K-only host: each 2M try exits once then mismatches, then 512 4K accepts of which
    # the first finds the page the host already added
    p = guest(64 * MIB)
    p.run(ValidatePages(range=rng(0, 64 * MIB)))
    t = p.trace
    assert t.count("TDG.MEM.PAGE.ACCEPT.2M", result="EPT_VIOLATION") == 32
    assert t.count("TDG.MEM.PAGE.ACCEPT.2M", result="PAGE_SIZE_MISMATCH") == 32
    assert t.count("TDG.MEM.PAGE.ACCEPT.4K", result="ok") == 32 * 512
    assert t.count("TDG.MEM.PAGE.ACCEPT.4K", result="EPT_VIOLATION") == 32 * 511


def test_linux_strategy_tries_1g_which_module_1_5_refuses() -> None:
    p = guest(3 * GIB, strategy="linux")
    assert p.run(ValidatePages(layer="l1", range=rng(0, 3 * GIB))).ok
    t = p.trace
    assert t.count("TDG.MEM.PAGE.ACCEPT.1G", result="OPERAND_INVALID") == 3
    assert t.count("TDG.MEM.PAGE.ACCEPT.2M", result="PAGE_SIZE_MISMATCH") == 3 * 512
    p2 = guest(3 * GIB, strategy="optimal")
    p2.run(ValidatePages(layer="l1", range=rng(0, 3 * GIB)))
    assert p2.trace.count("TDG.MEM.PAGE.ACCEPT.1G") == 0


def test_linux_strategy_sends_64_entries_per_call_optimal_510() -> None:
    for strategy, calls in (("linux", 16), ("optimal", 3)):  # 1024 2M entries
        p = guest(2 * GIB, strategy=strategy, host_mapping="2M")
        r = p.run(ValidatePages(range=rng(0, 2 * GIB)))
        assert r.ok and r.data["calls"] == calls
        assert p.trace.switches[("l2.1", "l1", "L2->L1 exit")] == calls


def test_forced_2m_accept_by_l1_on_a_4k_host_is_a_size_mismatch_error() -> None:
    p = guest()
    r = p.run(ValidatePages(layer="l1", range=rng(0, PAGE_2M), page_size="2M"))
    assert not r.ok and r.error is not None and r.error.mnemonic == "TDX_PAGE_SIZE_MISMATCH"
    assert r.error.code == with_details(TdxStatus.PAGE_SIZE_MISMATCH, LEVEL_2M)


def test_1g_protocol_entries_do_not_exist_for_an_l2() -> None:
    r = guest(2 * GIB, module="2.0").run(ValidatePages(range=rng(0, GIB), page_size="1G"))
    assert r.status.value == "not-supported" and "4K or 2M" in (r.reason or "")


def test_validated_pages_are_usable_by_the_l2_and_not_before() -> None:
    p = guest()
    assert not machine(p).access("l2.1", 0, Access.READ).ok
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert machine(p).access("l2.1", 0x1000, Access.WRITE).ok
    assert not machine(p).access("l2.1", 2 * MIB, Access.READ).ok


@pytest.mark.parametrize("mapping", ["4K", "2M"])
def test_runs_count_like_page_by_page_execution(mapping: str) -> None:
    """Executing a run once and replicating it records what executing every block does."""
    bulk = guest(64 * MIB, host_mapping=mapping)
    assert bulk.run(ValidatePages(range=rng(0, 64 * MIB))).ok
    single = guest(64 * MIB, host_mapping=mapping)
    m = machine(single)
    for i in range(32):  # every 2M entry on its own, with nothing remembered between them
        m.platform.walker._memo.clear()
        m.platform._vmemo.clear()
        assert single.run(ValidatePages(range=rng(i * PAGE_2M, PAGE_2M))).ok
    skip = {"HANDLE", "TDCALL", "TDG.VP.ENTER"}  # per protocol call: 1 vs 32 calls
    strip = {k: n for k, n in bulk.trace.primitives.items() if k.mnemonic not in skip}
    assert strip == {k: n for k, n in single.trace.primitives.items() if k.mnemonic not in skip}
    assert list(sept(bulk).l1.runs(0, 64 * MIB)) == list(sept(single).l1.runs(0, 64 * MIB))
    assert list(sept(bulk).l2[1].runs(0, 64 * MIB)) == list(sept(single).l2[1].runs(0, 64 * MIB))
