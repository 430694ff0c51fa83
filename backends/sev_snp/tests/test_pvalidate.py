"""PVALIDATE rules and return codes (sev-snp.md §4.3), at the instruction and through the
SVSM's core PVALIDATE call (§2.1)."""

from __future__ import annotations

from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp.instructions import RmpRc
from cocopart_sev_snp.rmp import Rmp, RmpEntry
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.client import PageRun
from cocopart.model import PAGE_2M, PAGE_4K, PageSize
from cocopart.ops import Status, ValidatePages
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode


def _private(n2m: int = 4, big: bool = True) -> Rmp:
    rmp = Rmp(n2m * PAGE_2M)
    rmp.set(0, n2m * PAGE_2M, RmpEntry(assigned=True, asid=1, page_size_2m=big))
    return rmp


def test_pvalidate_only_at_vmpl0_a_lower_vmpl_faults_and_changes_nothing() -> None:
    rmp = _private()
    for vmpl in (1, 2, 3):
        r = ins.pvalidate(rmp, asid=1, vmpl=vmpl, gpa=0, page_2m=True, count=1, validate=True)
        assert r.fault == ins.PVALIDATE_OUTSIDE_VMPL0_FAULT == "#GP(0)" and r.done == 0
    assert not rmp.get(0).validated


def test_pvalidate_fail_input_on_misaligned_or_outside_addresses() -> None:
    rmp = _private()
    assert (
        ins.pvalidate(rmp, asid=1, vmpl=0, gpa=PAGE_4K, page_2m=True, count=1, validate=True).rc
        == RmpRc.FAIL_INPUT
        == 1
    )
    assert (
        ins.pvalidate(rmp, asid=1, vmpl=0, gpa=3 * PAGE_2M, page_2m=True, count=2, validate=True).rc
        == RmpRc.FAIL_INPUT
    )


def test_pvalidate_fail_sizemismatch_2m_request_over_4k_entries() -> None:
    rmp = _private(big=False)
    r = ins.pvalidate(rmp, asid=1, vmpl=0, gpa=0, page_2m=True, count=1, validate=True)
    assert r.rc == RmpRc.FAIL_SIZEMISMATCH == 6 and not rmp.get(0).validated


def test_rule_4k_in_2m_raises_npf_sizem_pvalidate() -> None:
    """RULE_4K_IN_2M_RAISES_NPF_SIZEM: a 4K PVALIDATE inside a 2M RMP entry does not return
    FAIL_SIZEMISMATCH — it raises #NPF with SIZEM (bit 35) to the host and changes nothing
    (LX kvm_host.h PFERR_GUEST_SIZEM_MASK; arch/x86/kvm/svm/sev.c sev_handle_rmp_fault)."""
    rmp = _private(big=True)
    r = ins.pvalidate(rmp, asid=1, vmpl=0, gpa=PAGE_4K, page_2m=False, count=1, validate=True)
    assert r.fault == ins.NPF_SIZEM_FAULT and r.rc == RmpRc.SUCCESS and r.done == 0
    assert not rmp.get(PAGE_4K).validated and rmp.get(PAGE_4K).page_size_2m


def test_pvalidate_no_change_is_reported_through_cf_and_stops_the_run() -> None:
    rmp = _private()
    ins.pvalidate(rmp, asid=1, vmpl=0, gpa=PAGE_2M, page_2m=True, count=1, validate=True)
    r = ins.pvalidate(rmp, asid=1, vmpl=0, gpa=0, page_2m=True, count=3, validate=True)
    assert r.no_change and r.rc == 0 and r.done == 1  # page 1 was already validated
    r = ins.pvalidate(
        rmp, asid=1, vmpl=0, gpa=0, page_2m=True, count=4, validate=True, ignore_unchanged=True
    )
    assert r.ok and r.done == 4 and r.unchanged == 2  # pages 0 and 1 were done already


def test_pvalidate_of_a_page_not_assigned_to_the_guest_is_an_npf() -> None:
    rmp = Rmp(2 * PAGE_2M)
    r = ins.pvalidate(rmp, asid=1, vmpl=0, gpa=0, page_2m=False, count=1, validate=True)
    assert r.fault == ins.PVALIDATE_NOT_ASSIGNED_FAULT == "#NPF"


# --- through the SVSM -----------------------------------------------------------------------
def test_svsm_no_change_is_0x8000_1010_unless_ignore_cf() -> None:
    p = validated(16 * MIB)
    r = p.run(ValidatePages(range=rng(0, 4 * MIB)))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.code == int(ResultCode.PVALIDATE_FAIL_NO_CHANGE) == 0x8000_1010
    m = machine(p)
    b = m.client.pvalidate("l2.1", 0, [PageRun(0, PAGE_2M, 2)], validate=True, ignore_cf=True)
    assert b.code == 0 and b.done_bytes == 4 * MIB


def test_svsm_sizemismatch_0x8000_1006_is_redone_as_512_4k_entries() -> None:
    p = guest(8 * MIB, backend_options={"host_page_size": "4K"})
    r = p.run(ValidatePages(range=rng(0, 8 * MIB)))
    assert r.ok and r.data["size_fallbacks"] == 4
    t = p.trace
    assert t.count("PVALIDATE.2M", result="FAIL_SIZEMISMATCH") == 4
    assert t.count("PVALIDATE.4K", issuer="l1", result="ok") == 4 * 512
    assert t.count("RMPUPDATE.4K", issuer="host") == 4 * 512
    [run] = p.memory_view()
    assert run.validated and run.access == {"l2.1": "rwus"}


def test_forced_2m_on_a_misaligned_range_is_refused_by_the_svsm() -> None:
    p = guest(16 * MIB)
    r = p.run(ValidatePages(range=rng(PAGE_4K, 2 * MIB), page_size=PageSize.SIZE_2M))
    assert r.status is Status.ERROR


def test_forced_1g_is_not_supported_on_snp() -> None:
    p = guest(1 << 30)
    r = p.run(ValidatePages(range=rng(0, 1 << 30), page_size=PageSize.SIZE_1G))
    assert r.status is Status.NOT_SUPPORTED and "4K and 2M" in (r.reason or "")


def test_forced_4k_validation_uses_4k_entries_and_4k_rmp_entries() -> None:
    p = guest(16 * MIB)
    r = p.run(ValidatePages(range=rng(0, 2 * MIB), page_size=PageSize.SIZE_4K))
    assert r.ok and p.trace.count("PVALIDATE.4K", result="ok") == 512
    assert not machine(p).rmp_entry(0).page_size_2m


def test_svsm_validate_of_pages_the_host_never_assigned_is_invalid_address() -> None:
    p = guest(16 * MIB)
    m = machine(p)
    b = m.client.pvalidate("l2.1", 0, [PageRun(0, PAGE_2M, 1)], validate=True)
    assert b.code == ResultCode.INVALID_ADDRESS  # PVALIDATE #NPF inside the SVSM


def test_svsm_refuses_protocol_pages_above_guest_ram() -> None:
    p = guest(16 * MIB)
    m = machine(p)
    caa = m.layout.caa(0, 0)
    b = m.client.pvalidate("l2.1", 0, [PageRun(caa, PAGE_4K, 1)], validate=False)
    assert b.code == ResultCode.INVALID_ADDRESS
    assert m.rmp_entry(caa).validated


def test_svsm_pvalidate_partial_progress_reports_next() -> None:
    p = validated(16 * MIB)
    m = machine(p)
    rescind = m.client.pvalidate("l2.1", 0, [PageRun(4 * MIB, PAGE_2M, 1)], validate=False)
    assert rescind.code == 0
    entries = pv.run_entries(0, True, 4, validate=False)
    gpa = m.layout.caa(0, 0) + 8
    m.memory.write(gpa, pv.encode(entries))
    out = m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.PVALIDATE, gpa)
    assert out.code == ResultCode.PVALIDATE_FAIL_NO_CHANGE
    assert int.from_bytes(m.memory.read(gpa + 2, 2), "little") == 2  # next = failing entry


def test_svsm_pvalidate_malformed_entries_are_invalid_parameter() -> None:
    p = validated(16 * MIB)
    m = machine(p)
    gpa = m.layout.caa(0, 0) + 8
    m.memory.write(gpa, pv.encode([0 | 0x10]))  # reserved bit 4 set
    out = m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.PVALIDATE, gpa)
    assert out.code == ResultCode.INVALID_PARAMETER


def test_no_workload_ever_executes_pvalidate_itself() -> None:
    p = validated(16 * MIB, workload_layers=2)
    assert p.trace.count("PVALIDATE") == p.trace.count("PVALIDATE", issuer="l1") > 0


def test_exact_progress_deferred_sizemismatch_fallback_runs_before_a_later_failure() -> None:
    """Issue 11 item 6: a 2M entry refused with FAIL_SIZEMISMATCH is redone as 4K entries
    after the batch (Linux svsm_pval_pages; sev-snp.md §2.1); when a LATER entry of the same
    batch fails, the deferred fallback still runs first, so every page before the reported
    ``next_gpa`` is validated and re-running from there resumes exactly (cocopart.client)."""
    p = guest(16 * MIB, backend_options={"host_page_size": "4K"})  # 4K RMP entries
    assert p.run(ValidatePages(range=rng(2 * MIB, PAGE_4K))).ok
    r = p.run(ValidatePages(range=rng(0, 2 * MIB + PAGE_4K)))  # 2M@0 (4K RMP), 4K@2M (valid)
    assert r.status is Status.PARTIAL and r.progress is not None
    assert (r.progress.done_bytes, r.progress.next_gpa) == (2 * MIB, 2 * MIB)
    assert r.error is not None and r.error.code == ResultCode.PVALIDATE_FAIL_NO_CHANGE
    assert r.changed == []
    view = p.memory_view(0, 2 * MIB + PAGE_4K)
    assert all(v.validated and v.access.get("l2.1") == "rwus" for v in view)
    assert machine(p).trace.count("PVALIDATE.2M", result="FAIL_SIZEMISMATCH") >= 1
