"""RMP model rules: entry fields and page states, host RMPUPDATE/PSMASH return codes, and the
CPU's RMP check of guest and host accesses (sev-snp.md §4)."""

from __future__ import annotations

from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp.instructions import RmpRc
from cocopart_sev_snp.rmp import PageState, Rmp, RmpEntry
from snp_helpers import GIB, MIB, guest, machine, rng, validated

from cocopart.model import PAGE_2M, PAGE_4K, TIB, Access
from cocopart.ops import RescindPages, ValidatePages


def test_rmp_is_runs_not_pages_a_validated_1tib_guest_is_one_run() -> None:
    p = validated(1 * TIB, vcpus=1)
    m = machine(p)
    assert len(list(m.rmp.runs(0, 1 * TIB))) == 1
    assert m.rmp.count_runs() < 16  # RAM + the protocol region's few runs


def test_page_states_follow_the_entry_fields() -> None:
    assert RmpEntry().state is PageState.HYPERVISOR
    assert RmpEntry(assigned=True, asid=1).state is PageState.GUEST_INVALID
    assert RmpEntry(assigned=True, asid=1, validated=True).state is PageState.GUEST_VALID
    assert RmpEntry(assigned=True, asid=1, validated=True, vmsa=True).state is PageState.VMSA
    assert RmpEntry(assigned=True, asid=0, immutable=True).state is PageState.FIRMWARE


def test_vmpl0_always_has_full_access_lower_vmpls_only_their_mask() -> None:
    e = RmpEntry(assigned=True, asid=1, validated=True).with_perm(2, int(Access.READ))
    assert e.perm(0) == int(Access.RWX)
    assert e.perm(2) == int(Access.READ) and e.perm(1) == 0 and e.perm(3) == 0


def test_guest_ram_starts_as_hypervisor_pages_and_validation_makes_it_guest_valid() -> None:
    p = guest(64 * MIB)
    m = machine(p)
    assert m.rmp_entry(0).state is PageState.HYPERVISOR
    assert p.memory_view() == [p.memory_view()[0]] and not p.memory_view()[0].private
    p.run(ValidatePages(range=rng(0, 64 * MIB)))
    e = m.rmp_entry(4 * MIB)
    assert e.state is PageState.GUEST_VALID and e.page_size_2m and e.asid == m.asid


def test_rescinded_pages_are_guest_invalid_with_no_lower_vmpl_permissions() -> None:
    p = validated(64 * MIB)
    p.run(RescindPages(range=rng(0, 8 * MIB)))
    e = machine(p).rmp_entry(0)
    assert e.state is PageState.GUEST_INVALID and e.perms == (0, 0, 0)


# --- RMPUPDATE ------------------------------------------------------------------------------
def _rmp() -> Rmp:
    return Rmp(8 * PAGE_2M)


def test_rmpupdate_fail_input_on_a_misaligned_2m_page() -> None:
    r = ins.rmpupdate(_rmp(), gpa=PAGE_4K, page_2m=True, count=1, assigned=True, asid=1)
    assert r.rc == RmpRc.FAIL_INPUT == 1 and r.done == 0


def test_rmpupdate_fail_permission_on_an_immutable_firmware_page() -> None:
    rmp = _rmp()
    rmp.set(0, PAGE_4K, RmpEntry(assigned=True, asid=0, immutable=True))
    r = ins.rmpupdate(rmp, gpa=0, page_2m=False, count=2, assigned=False, asid=0)
    assert r.rc == RmpRc.FAIL_PERMISSION == 2 and r.done == 0


def test_rmpupdate_fail_inuse_on_the_vmsa_of_a_running_vcpu() -> None:
    p = guest(64 * MIB)
    m = machine(p)
    ctx = m.layout.context(0, 0)
    r = ins.rmpupdate(
        m.rmp,
        gpa=ctx - PAGE_4K,
        page_2m=False,
        count=3,
        assigned=False,
        asid=0,
        in_use=m.host.in_use,
    )
    assert r.rc == RmpRc.FAIL_INUSE == 3 and r.done == 1
    assert m.rmp_entry(ctx).vmsa


def test_rmpupdate_fail_overlap_2m_over_assigned_4k_entries() -> None:
    rmp = _rmp()
    ins.rmpupdate(rmp, gpa=PAGE_2M + PAGE_4K, page_2m=False, count=1, assigned=True, asid=1)
    r = ins.rmpupdate(rmp, gpa=0, page_2m=True, count=2, assigned=True, asid=1)
    assert r.rc == RmpRc.FAIL_OVERLAP == 4 and r.done == 1


def test_rmpupdate_fail_overlap_4k_inside_an_assigned_2m_entry() -> None:
    rmp = _rmp()
    ins.rmpupdate(rmp, gpa=0, page_2m=True, count=1, assigned=True, asid=1)
    r = ins.rmpupdate(rmp, gpa=PAGE_4K, page_2m=False, count=1, assigned=False, asid=0)
    assert r.rc == RmpRc.FAIL_OVERLAP


def test_rmpupdate_resets_validated_vmsa_and_permissions() -> None:
    rmp = _rmp()
    rmp.set(
        0,
        PAGE_2M,
        RmpEntry(
            assigned=True, asid=1, validated=True, vmsa=True, page_size_2m=True, perms=(15, 15, 15)
        ),
    )
    r = ins.rmpupdate(rmp, gpa=0, page_2m=True, count=1, assigned=True, asid=1)
    assert r.ok and rmp.get(0) == RmpEntry(assigned=True, asid=1, page_size_2m=True)


# --- PSMASH ---------------------------------------------------------------------------------
def test_psmash_fail_input_when_not_2m_aligned() -> None:
    assert ins.psmash(_rmp(), gpa=PAGE_4K, count=1).rc == RmpRc.FAIL_INPUT


def test_psmash_code_7_when_the_entry_is_not_a_2m_page() -> None:
    rmp = _rmp()
    ins.rmpupdate(rmp, gpa=0, page_2m=False, count=512, assigned=True, asid=1)
    assert ins.psmash(rmp, gpa=0, count=1).rc == RmpRc.FAIL_UNSMASHABLE == 7


def test_psmash_fail_inuse_and_fail_permission() -> None:
    p = guest(64 * MIB)
    m = machine(p)
    ctx = m.layout.context(0, 0)
    region = ctx // PAGE_2M * PAGE_2M
    m.rmp.set(region, region + PAGE_2M, m.rmp_entry(ctx)._replace(page_size_2m=True))
    assert ins.psmash(m.rmp, gpa=region, count=1, in_use=m.host.in_use).rc == RmpRc.FAIL_INUSE
    rmp = _rmp()
    rmp.set(0, PAGE_2M, RmpEntry(assigned=True, immutable=True, page_size_2m=True))
    assert ins.psmash(rmp, gpa=0, count=1).rc == RmpRc.FAIL_PERMISSION


def test_psmash_keeps_the_state_of_every_4k_entry() -> None:
    rmp = _rmp()
    e = RmpEntry(assigned=True, asid=1, validated=True, page_size_2m=True, perms=(0, 15, 0))
    rmp.set(0, 2 * PAGE_2M, e)
    r = ins.psmash(rmp, gpa=0, count=2)
    assert r.ok and r.done == 2
    assert rmp.get(PAGE_2M + 7 * PAGE_4K) == e._replace(page_size_2m=False)


# --- guest and host accesses ----------------------------------------------------------------
def test_access_to_an_assigned_but_unvalidated_page_raises_vc_0x404() -> None:
    p = validated(64 * MIB)
    p.run(RescindPages(range=rng(0, PAGE_2M)))
    out = machine(p).access("l2.1", PAGE_4K, Access.READ)
    assert not out.ok and out.fault == "#VC 0x404" and out.handled_by == "l2.1"


def test_permission_violation_by_a_lower_vmpl_is_an_npf_to_the_host_recorded_in_the_trace() -> None:
    p = validated(64 * MIB, workload_layers=2)  # l2.1 = VMPL1 validated it; l2.2 = VMPL2
    m = machine(p)
    before = p.trace.count("NPF", issuer="l2.2")
    out = m.access("l2.2", 0, Access.READ)
    assert not out.ok and out.fault == "#NPF" and out.handled_by == "host"
    assert p.trace.count("NPF", issuer="l2.2", target="host") == before + 1


def test_shared_pages_are_accessible_to_every_layer_through_a_c0_mapping() -> None:
    p = guest(64 * MIB, workload_layers=3)
    m = machine(p)
    for layer in ("l1", "l2.1", "l2.2", "l2.3", "host"):
        assert m.access(layer, 0, Access.WRITE, c_bit=False).ok


def test_host_write_to_a_private_page_goes_to_the_host_fault_policy() -> None:
    p = validated(64 * MIB)
    m = machine(p)
    out = m.access("host", 0, Access.WRITE)
    assert not out.ok and out.fault == "#PF (RMP)" and out.handled_by == "host"
    assert m.access("host", 0, Access.READ).ok  # reads return ciphertext


def test_vmpl0_accesses_every_validated_page_including_vmsas() -> None:
    p = validated(64 * MIB)
    m = machine(p)
    assert m.access("l1", 0, Access.WRITE).ok
    assert m.access("l1", m.layout.context(0, 0), Access.WRITE).ok
    assert not m.access("l2.1", m.layout.context(0, 0), Access.READ).ok


def test_memory_view_reports_access_per_workload_layer() -> None:
    p = validated(1 * GIB)
    [run] = p.memory_view()
    assert (run.start, run.end, run.private, run.validated) == (0, 1 * GIB, True, True)
    assert run.access == {"l2.1": "rwus"} and not run.context
