"""Issue 13 points 1 and 2: a 4K PVALIDATE or RMPADJUST on a page covered by a 2M RMP entry
is a nested page fault to the host with SIZEM (bit 35); the host PSMASHes the entry and the
guest's instruction is re-executed and succeeds — counted in the trace as an NPF exit and a
re-entry. Only a 2M request over 4K entries returns FAIL_SIZEMISMATCH to the guest.

Sources: LX arch/x86/include/asm/kvm_host.h PFERR_GUEST_SIZEM_MASK; arch/x86/kvm/svm/sev.c
sev_handle_rmp_fault ("Only RMPADJUST/PVALIDATE should cause PFERR_GUEST_SIZEM"); CS
kernel/src/protocols/core.rs core_create_vcpu (no page-size check)."""

from __future__ import annotations

from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp import npf
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.ghcb import PscOp
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.client import PageRun
from cocopart.model import PAGE_2M, PAGE_4K, Access, PageSize
from cocopart.ops import CreateVcpu, RescindPages, Status, ValidatePages
from cocopart.partition import Partition
from cocopart.protocol.ids import ResultCode


def _npf_exits(p: Partition, layer: str) -> tuple[int, int]:
    """(exits layer -> host, re-entries host -> layer) of nested page faults."""
    sw = p.trace.switches
    out = sum(
        n for k, n in sw.items() if (k.source, k.dest, k.mechanism) == (layer, "host", npf.NPF_EXIT)
    )
    back = sum(
        n
        for k, n in sw.items()
        if (k.source, k.dest, k.mechanism) == ("host", layer, npf.NPF_REENTRY)
    )
    return out, back


def test_rule_sizem_npf_psmash_retry_4k_rescind_and_validate_inside_a_2m_entry() -> None:
    """The SVSM's 4K RMPADJUST/PVALIDATE inside a 2M entry: one #NPF(SIZEM), one PSMASH,
    then success — the workload gets SUCCESS, never 0x80001006."""
    p = validated(16 * MIB)
    m = machine(p)
    assert m.rmp_entry(PAGE_4K).page_size_2m
    r = p.run(RescindPages(range=rng(PAGE_4K, PAGE_4K)))
    assert r.ok, r.reason
    t = p.trace
    assert t.count("NPF", issuer="l1", target="host", result="SIZEM") == 1
    assert t.count("PSMASH", issuer="host") == 1
    assert t.count("PVALIDATE", result="FAIL_SIZEMISMATCH") == 0
    assert _npf_exits(p, "l1") == (1, 1)
    assert not m.rmp_entry(PAGE_4K).validated and m.rmp_entry(0).validated
    assert not m.rmp_entry(0).page_size_2m and m.rmp_entry(PAGE_2M).page_size_2m
    # a raw 4K PVALIDATE call of the workload on a page of another 2M entry: SUCCESS
    res = m.client.pvalidate("l2.1", 0, [PageRun(PAGE_2M + PAGE_4K, PAGE_4K, 1)], validate=False)
    assert res.code == ResultCode.SUCCESS and res.done_bytes == PAGE_4K
    assert t.count("NPF", issuer="l1", result="SIZEM") == 2
    r = p.run(ValidatePages(range=rng(PAGE_4K, PAGE_4K), page_size=PageSize.SIZE_4K))
    assert r.ok and m.access("l2.1", PAGE_4K, Access.WRITE).ok
    assert t.count("NPF", issuer="l1", result="SIZEM") == 2  # already split: no new fault


def test_rule_4k_in_2m_raises_npf_sizem_only_2m_over_4k_reaches_the_guest() -> None:
    """RULE_2M_OVER_4K_IS_SIZEMISMATCH: a 2M PVALIDATE entry over 4K RMP entries is still
    answered PVALIDATE_FAIL_SIZEMISMATCH (Linux falls back to 4K on exactly this)."""
    p = validated(16 * MIB, backend_options={"host_page_size": "4K"})
    res = machine(p).client.pvalidate("l2.1", 0, [PageRun(0, PAGE_2M, 1)], validate=False)
    # the SVSM answered SIZEMISMATCH for the 2M entry and the caller redid it as 512 4K
    assert res.code == ResultCode.SUCCESS and res.fallbacks == 1 and res.done_bytes == PAGE_2M
    assert p.trace.count("RMPADJUST", issuer="l1", result="FAIL_SIZEMISMATCH") == 1
    assert p.trace.count("NPF") == 0


def test_rule_sizem_npf_psmash_retry_counts_one_exit_per_2m_region() -> None:
    """A 4K validate over 32 2M entries faults once per region (32 exits, 32 PSMASH, all
    counted); runs of equal regions are served as one step."""
    p = guest(64 * MIB)
    m = machine(p)
    assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 32)], PscOp.PRIVATE) is None
    assert len(list(m.rmp.runs(0, 64 * MIB))) == 1  # private RAM: one run of 2M entries
    r = p.run(ValidatePages(range=rng(0, 64 * MIB), page_size=PageSize.SIZE_4K))
    assert r.ok, r.reason
    t = p.trace
    assert t.count("NPF", issuer="l1", target="host", result="SIZEM") == 32
    assert t.count("PSMASH", issuer="host") == 32
    assert _npf_exits(p, "l1") == (32, 32)
    assert t.count("PVALIDATE.4K", result="ok") == 64 * MIB // PAGE_4K
    e = m.rmp_entry(64 * MIB - PAGE_4K)
    assert e.validated and not e.page_size_2m


def test_rule_sizem_npf_psmash_retry_is_exact_when_the_run_stops() -> None:
    """Regions are split only where the instruction really faulted: a 4K validate that stops
    in region 2 (already validated: CF=1) leaves regions 3.. as 2M entries."""
    p = guest(16 * MIB)
    m = machine(p)
    assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 8)], PscOp.PRIVATE) is None
    assert p.run(ValidatePages(range=rng(2 * PAGE_2M, PAGE_2M))).ok
    r = p.run(ValidatePages(range=rng(0, 16 * MIB), page_size=PageSize.SIZE_4K))
    assert r.status is Status.PARTIAL and r.error is not None
    assert r.error.code == ResultCode.PVALIDATE_FAIL_NO_CHANGE
    assert r.progress is not None and r.progress.next_gpa == 2 * PAGE_2M
    assert p.trace.count("PSMASH", issuer="host") == 3
    assert [m.rmp_entry(i * PAGE_2M).page_size_2m for i in range(8)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert m.rmp_entry(PAGE_2M + 5 * PAGE_4K).validated
    assert not m.rmp_entry(3 * PAGE_2M).validated


def test_rule_sizem_npf_psmash_retry_instruction_level() -> None:
    """The CPU side (npf.execute): the fault, the host's PSMASH, the retry; the merged result
    covers the whole run."""
    p = guest(16 * MIB)
    m = machine(p)
    assert m.psc("l2.1", 0, [PageRun(0, PAGE_2M, 2)], PscOp.PRIVATE) is None

    def run(at: int, n: int) -> ins.InstrResult:
        return ins.pvalidate(
            m.rmp, asid=m.asid, vmpl=0, gpa=at, page_2m=False, count=n, validate=True
        )

    first = run(PAGE_4K, 3)
    assert first.fault == ins.NPF_SIZEM_FAULT and first.done == 0
    r = npf.execute(m, "l1", run, PAGE_2M - PAGE_4K, PAGE_4K, 2)  # straddles two regions
    assert r.ok and r.done == 2 and sum(e - s for s, e in r.changed) == 2 * PAGE_4K
    assert p.trace.count("NPF", result="SIZEM") == 2


def test_rule_vmsa_in_2m_entry_is_split_create_vcpu_succeeds() -> None:
    """Point 2: CREATE_VCPU with a VMSA page inside a 2M RMP entry succeeds — the SVSM's 4K
    RMPADJUSTs take the #NPF(SIZEM) path (CS core.rs core_create_vcpu checks no page size)."""
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    ctx, caa = 3 * PAGE_4K, m.layout.caa(0, 1)
    assert m.rmp_entry(ctx).page_size_2m
    m.memory.write(ctx, vm.build(2, m.sev_features["l2.1"]))
    code = m.client.create_vcpu("l2.1", 0, ctx, caa, 1).code
    assert code == ResultCode.SUCCESS
    e = m.rmp_entry(ctx)
    assert e.vmsa and not e.page_size_2m and e.perm(2) == 0
    assert p.trace.count("NPF", issuer="l1", result="SIZEM") == 1
    assert m.rmp_entry(ctx + PAGE_4K).perm(2) == int(Access.RWX)  # the rest keeps its state
    assert [v.state for v in p.vcpus() if v.vcpu == 1] == ["running"]


def test_create_vcpu_through_the_api_still_uses_the_layout_context_page() -> None:
    p = validated(16 * MIB, vcpus=2)
    assert p.run(CreateVcpu(vcpu=1)).ok
    assert p.trace.count("NPF") == 0
