"""Issue 13 point 3: page-state-change requests answered as KVM answers them, the SVSM not
depending on PSC PSMASH, and the idealised host that honours it as a named option.

Source: LX arch/x86/kvm/svm/sev.c snp_begin_psc / __snp_complete_one_psc (only private and
shared are supported; other operations are "completed"; INVALID_ENTRY for ``cur_page >
npages`` or a misaligned GFN; a partly done 2M entry is finished as 4K pages; served
entries get ``cur_page = npages``); arch/x86/include/asm/sev-common.h VMGEXIT_PSC_ERROR_*."""

from __future__ import annotations

import struct

import pytest
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.machine import SnpMachine
from cocopart_sev_snp.rmp import PageState
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.client import PageRun
from cocopart.errors import ConfigError
from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.ops import RescindPages, SetAccess
from cocopart.protocol.ids import ResultCode


def _request(m: SnpMachine, entries: list[int], cur: int = 0) -> tuple[int, int, list[int]]:
    """One raw PSC request from l2.1: (EXITINFO2, cur_entry after, entries after)."""
    page = m.ghcb_page("l2.1", 0)
    raw = struct.pack(f"<{len(entries)}Q", *entries)
    page.write_shared(g.PSC_HEADER.pack(cur, len(entries) - 1, 0) + raw)
    page.request(g.ExitCode.PSC, scratch=g.OFF_SHARED_BUFFER)
    m.host.exit("l2.1", page)
    buf = page.shared(g.PSC_HEADER.size + len(raw))
    after = list(struct.unpack_from(f"<{len(entries)}Q", buf, g.PSC_HEADER.size))
    return page.info2, g.psc_header(buf)[0], after


def _cur_page(entry: int) -> int:
    return entry & g.PSC_CUR_PAGE_MASK


def test_rule_psc_entries_as_kvm_invalid_entry_only_for_bad_cur_page_or_gfn() -> None:
    m = machine(guest(16 * MIB))
    ok = g.psc_entry(PAGE_4K, g.PscOp.PRIVATE, False)
    for bad in (
        g.psc_entry(2 * PAGE_4K, g.PscOp.PRIVATE, False) | 2,  # cur_page 2 > 1
        g.psc_entry(PAGE_2M + PAGE_4K, g.PscOp.PRIVATE, True),  # GFN not 2M aligned
        g.psc_entry(2 * PAGE_2M, g.PscOp.PRIVATE, True) | 513,
    ):  # cur_page > 512
        info2, cur, after = _request(m, [ok, bad])
        # the entry before it was served (KVM stops at the bad one); cur_entry points at it
        assert (info2, cur) == (g.PSC_ERROR_INVALID_ENTRY, 1)
        assert m.rmp_entry(PAGE_4K).assigned and _cur_page(after[0]) == 1
        assert _cur_page(after[1]) == _cur_page(bad)


def test_rule_psc_entries_as_kvm_reserved_bits_and_unknown_ops_are_not_errors() -> None:
    m = machine(guest(16 * MIB))
    reserved = g.psc_entry(PAGE_4K, g.PscOp.PRIVATE, False) | (1 << 60)
    unknown = g.psc_entry(2 * PAGE_4K, 7, False)
    smash_4k = g.psc_entry(3 * PAGE_4K, g.PscOp.PSMASH, False)
    info2, cur, after = _request(m, [reserved, unknown, smash_4k])
    assert (info2, cur) == (0, 3)
    assert m.rmp_entry(PAGE_4K).assigned  # reserved bits ignored: served
    assert not m.rmp_entry(2 * PAGE_4K).assigned and not m.rmp_entry(3 * PAGE_4K).assigned
    assert [_cur_page(e) for e in after] == [1, 1, 1]  # all "completed"


def test_rule_psc_entries_as_kvm_a_partly_done_2m_entry_is_finished_as_4k() -> None:
    m = machine(guest(16 * MIB))
    partial = g.psc_entry(PAGE_2M, g.PscOp.PRIVATE, True) | 100
    done = g.psc_entry(2 * PAGE_2M, g.PscOp.PRIVATE, True) | 512
    info2, cur, after = _request(m, [partial, done])
    assert (info2, cur) == (0, 2)
    assert not m.rmp_entry(PAGE_2M + 99 * PAGE_4K).assigned  # the done part is left alone
    e = m.rmp_entry(PAGE_2M + 100 * PAGE_4K)
    assert e.assigned and not e.page_size_2m  # the rest as 4K pages
    assert m.rmp_entry(2 * PAGE_2M - PAGE_4K).assigned
    assert not m.rmp_entry(2 * PAGE_2M).assigned  # cur_page == 512: skipped
    assert [_cur_page(x) for x in after] == [512, 512]


def test_rule_psc_entries_as_kvm_header() -> None:
    """end_entry >= 253 is INVALID_HDR; cur_entry past end_entry is nothing to do."""
    m = machine(guest(16 * MIB))
    page = m.ghcb_page("l2.1", 0)
    page.write_shared(g.PSC_HEADER.pack(2, 1, 0) + g.pack_run(0, False, 2, g.PscOp.PRIVATE))
    page.request(g.ExitCode.PSC, scratch=g.OFF_SHARED_BUFFER)
    m.host.exit("l2.1", page)
    assert not page.failed() and page.info2 == 0 and not m.rmp_entry(0).assigned


def test_rule_kvm_psc_smash_is_a_no_op() -> None:
    """KVM completes PSC PSMASH and UNSMASH entries doing nothing: the 2M entry stays."""
    p = validated(16 * MIB)
    m = machine(p)
    for op in (g.PscOp.PSMASH, g.PscOp.UNSMASH):
        assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 1)], op) is None
        assert m.rmp_entry(0).page_size_2m and m.rmp_entry(0).validated
    assert p.trace.count("PSMASH") == 0


def test_rule_idealised_host_honours_psc_psmash() -> None:
    """``host_psc_psmash = true``: the named idealised host splits the entry (UNSMASH is
    still a no-op)."""
    p = validated(16 * MIB, backend_options={"host_psc_psmash": True})
    m = machine(p)
    assert m.host.options.psc_psmash
    assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 1)], g.PscOp.PSMASH) is None
    assert not m.rmp_entry(0).page_size_2m and m.rmp_entry(0).validated
    assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 1)], g.PscOp.UNSMASH) is None
    assert not m.rmp_entry(0).page_size_2m
    with pytest.raises(ConfigError) as err:
        guest(16 * MIB, backend_options={"host_psc_psmash": "yes"})
    assert err.value.field == "backend_options.host_psc_psmash"


@pytest.mark.parametrize("psmash", [False, True])
def test_svsm_does_not_depend_on_psc_psmash(psmash: bool) -> None:
    """Against KVM (and the idealised host alike) the SVSM never asks for a PSC PSMASH: a 4K
    rescind, a set-access that covers part of a 2M entry and a VMSA inside a 2M entry all
    split through #NPF(SIZEM), with the same result on both hosts."""
    p = validated(16 * MIB, vcpus=2, workload_layers=2, backend_options={"host_psc_psmash": psmash})
    m = machine(p)
    assert p.run(RescindPages(range=rng(PAGE_4K, PAGE_4K))).ok
    assert p.run(
        SetAccess(
            layer="l1", range=rng(2 * PAGE_2M - PAGE_4K, 2 * PAGE_4K), target="l2.2", access="r"
        )
    ).ok
    ctx = 4 * PAGE_2M + 5 * PAGE_4K
    m.memory.write(ctx, vm.build(1, m.sev_features["l2.1"]))
    assert m.client.create_vcpu("l2.1", 0, ctx, m.layout.caa(0, 1), 1).code == ResultCode.SUCCESS
    assert p.trace.count("VMGEXIT", issuer="l1", target="PSC") == 0
    assert p.trace.count("NPF", issuer="l1", result="SIZEM") == 4
    assert m.rmp_entry(ctx).state is PageState.VMSA
    assert m.rmp_entry(2 * PAGE_2M).perm(2) == 1 and m.rmp_entry(2 * PAGE_2M + PAGE_4K).perm(2) == 0
