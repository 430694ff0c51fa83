"""RMPADJUST rules and return codes (sev-snp.md §4.3), and setting access through the public
API: directly from a more privileged VMPL, or through the SVSM."""

from __future__ import annotations

from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp.instructions import RmpRc
from cocopart_sev_snp.rmp import Rmp, RmpEntry
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.model import PAGE_2M, PAGE_4K, Access
from cocopart.ops import SetAccess, Status

RW, RWX = int(Access.RW), int(Access.RWX)


def _valid(big: bool = True, perms: tuple[int, int, int] = (0, 0, 0)) -> Rmp:
    rmp = Rmp(4 * PAGE_2M)
    rmp.set(
        0,
        4 * PAGE_2M,
        RmpEntry(assigned=True, asid=1, validated=True, page_size_2m=big, perms=perms),
    )
    return rmp


def _adjust(
    rmp: Rmp,
    vmpl: int,
    target: int,
    perms: int,
    *,
    gpa: int = 0,
    big: bool = True,
    count: int = 1,
    vmsa: bool = False,
) -> ins.InstrResult:
    return ins.rmpadjust(
        rmp,
        asid=1,
        vmpl=vmpl,
        gpa=gpa,
        page_2m=big,
        count=count,
        target_vmpl=target,
        perms=perms,
        vmsa=vmsa,
    )


def test_rmpadjust_only_towards_a_numerically_higher_vmpl() -> None:
    rmp = _valid(perms=(RWX, RWX, RWX))
    assert _adjust(rmp, 2, 2, 0).rc == RmpRc.FAIL_PERMISSION == 2  # same VMPL
    assert _adjust(rmp, 2, 1, 0).rc == RmpRc.FAIL_PERMISSION  # more privileged
    assert _adjust(rmp, 1, 2, RW).ok and rmp.get(0).perm(2) == RW
    assert _adjust(rmp, 0, 1, RW).ok


def test_rule_no_permission_escalation_caller_cannot_grant_what_it_does_not_hold() -> None:
    rmp = _valid(perms=(int(Access.READ), 0, 0))
    r = _adjust(rmp, 1, 2, RW)
    assert r.rc == RmpRc.FAIL_PERMISSION and rmp.get(0).perm(2) == 0
    assert _adjust(rmp, 1, 2, int(Access.READ)).ok  # a subset of what it holds
    assert _adjust(rmp, 1, 3, 0).ok  # revoking is always allowed


def test_vmsa_bit_only_from_vmpl0_and_silently_ignored_elsewhere() -> None:
    rmp = _valid(big=False, perms=(RWX, 0, 0))
    r = _adjust(rmp, 1, 2, 0, big=False, vmsa=True)
    assert r.ok and not rmp.get(0).vmsa  # succeeds, bit ignored
    assert _adjust(rmp, 0, 2, 0, big=False, vmsa=True).ok and rmp.get(0).vmsa
    assert _adjust(rmp, 0, 2, 0, big=False, vmsa=False).ok and not rmp.get(0).vmsa


def test_rule_2m_over_4k_is_sizemismatch_and_4k_in_2m_raises_npf_sizem() -> None:
    """RULE_2M_OVER_4K_IS_SIZEMISMATCH / RULE_4K_IN_2M_RAISES_NPF_SIZEM: only a 2M request
    over 4K entries returns FAIL_SIZEMISMATCH (6); a 4K one inside a 2M entry faults to the
    host (LX kvm_host.h PFERR_GUEST_SIZEM_MASK; sev.c sev_handle_rmp_fault)."""
    assert _adjust(_valid(big=False), 0, 2, RW, big=True).rc == RmpRc.FAIL_SIZEMISMATCH == 6
    rmp = _valid(big=True)
    r = _adjust(rmp, 0, 2, RW, big=False, gpa=PAGE_4K)
    assert r.fault == ins.NPF_SIZEM_FAULT and r.rc == 0 and r.done == 0
    assert rmp.get(PAGE_4K).perm(2) == 0


def test_rmpadjust_fail_input_bad_target_mask_alignment_or_unassigned_page() -> None:
    rmp = _valid()
    assert _adjust(rmp, 0, 4, 0).rc == RmpRc.FAIL_INPUT == 1
    assert _adjust(rmp, 0, 2, 0x10).rc == RmpRc.FAIL_INPUT
    assert _adjust(rmp, 0, 2, 0, gpa=PAGE_4K).rc == RmpRc.FAIL_INPUT
    assert _adjust(Rmp(PAGE_2M), 0, 2, 0, big=False).rc == RmpRc.FAIL_INPUT


def test_rmpadjust_stops_at_the_first_failing_page() -> None:
    rmp = _valid(big=False, perms=(RWX, 0, 0))
    rmp.set(3 * PAGE_4K, 4 * PAGE_4K, RmpEntry(assigned=True, asid=1, validated=True))
    r = _adjust(rmp, 1, 2, RW, big=False, count=8)
    assert r.rc == RmpRc.FAIL_PERMISSION and r.done == 3
    assert rmp.get(2 * PAGE_4K).perm(2) == RW and rmp.get(4 * PAGE_4K).perm(2) == 0


# --- through the public API -----------------------------------------------------------------
def test_set_access_from_a_more_privileged_workload_is_a_direct_rmpadjust() -> None:
    p = validated(16 * MIB, workload_layers=2)  # l2.1 = VMPL1, l2.2 = VMPL2
    r = p.run(SetAccess(layer="l2.1", range=rng(0, 4 * MIB), target="l2.2", access="rw"))
    assert r.ok and r.world_switches == 0
    assert p.trace.count("RMPADJUST", issuer="l2.1", target="VMPL2") == 2
    view = p.memory_view(0, 4 * MIB)
    assert view[0].access == {"l2.1": "rwus", "l2.2": "rw--"}
    assert machine(p).access("l2.2", 0, Access.WRITE).ok
    assert not machine(p).access("l2.2", 0, Access.USER_EXEC).ok


def test_direct_rmpadjust_escalation_is_fail_permission_through_the_api() -> None:
    p = validated(16 * MIB, workload_layers=2)
    p.run(SetAccess(layer="l1", range=rng(0, 2 * MIB), target="l2.1", access="r"))
    r = p.run(SetAccess(layer="l2.1", range=rng(0, 2 * MIB), target="l2.2", access="rw"))
    assert r.status is Status.ERROR and r.error is not None
    assert (r.error.mnemonic, r.error.code) == ("RMPADJUST", RmpRc.FAIL_PERMISSION)


def test_rule_sizem_npf_psmash_retry_direct_rmpadjust_4k_inside_a_2m_entry() -> None:
    """RULE_SIZEM_NPF_PSMASH_RETRY: the workload's own 4K RMPADJUST inside a 2M entry exits
    with #NPF(SIZEM), the host PSMASHes and the instruction is retried — no PSC request and
    no FAIL_SIZEMISMATCH (LX arch/x86/kvm/svm/sev.c sev_handle_rmp_fault)."""
    p = validated(16 * MIB, workload_layers=2)
    psc_before = p.trace.count("VMGEXIT", issuer="l2.1", target="PSC")
    r = p.run(SetAccess(layer="l2.1", range=rng(PAGE_4K, PAGE_4K), target="l2.2", access="r"))
    assert r.ok
    t = p.trace
    assert t.count("RMPADJUST", result="FAIL_SIZEMISMATCH") == 0
    assert t.count("NPF", issuer="l2.1", target="host", result="SIZEM") == 1
    assert t.count("PSMASH", issuer="host") == 1
    assert t.count("VMGEXIT", issuer="l2.1", target="PSC") == psc_before
    assert r.world_switches == 2  # l2.1 -> host VMEXIT(NPF), host -> l2.1 VMRUN
    assert machine(p).rmp_entry(PAGE_4K).perm(2) == int(Access.READ)
    assert machine(p).rmp_entry(0).perm(2) == 0


def test_lower_never_acts_on_higher_snp_vmpl2_cannot_set_vmpl1_access() -> None:
    """RULE LOWER_NEVER_ACTS_ON_HIGHER (docs/authority.md). Source: APM vol. 3 RMPADJUST —
    the target VMPL must be numerically higher than the current one; the SVSM protocol has
    no call that sets a VMPL's access (sev-snp.md §2)."""
    p = validated(16 * MIB, workload_layers=2, layer="l2.2")
    before = p.memory_view(0, 2 * MIB)
    for access in ("r", "none", "rwx"):
        r = p.run(SetAccess(layer="l2.2", range=rng(0, 2 * MIB), target="l2.1", access=access))
        assert r.status is Status.NOT_SUPPORTED and "controls" in (r.reason or "")
        assert r.primitives == r.world_switches == 0
    assert p.memory_view(0, 2 * MIB) == before


def test_a_vmpl_cannot_set_its_own_access_on_snp() -> None:
    """RMPADJUST never targets the current VMPL; no SVSM call does it either."""
    p = validated(16 * MIB, workload_layers=2)
    r = p.run(SetAccess(layer="l2.1", range=rng(0, 2 * MIB), target="l2.1", access="r"))
    assert r.status is Status.NOT_SUPPORTED
    assert machine(p).access("l2.1", 0, Access.WRITE).ok


def test_set_access_for_vmpl0_or_non_guest_layers_is_not_supported() -> None:
    p = validated(16 * MIB)
    for target in ("l1", "host"):
        r = p.run(SetAccess(layer="l2.1", range=rng(0, 2 * MIB), target=target, access="r"))
        assert r.status is Status.NOT_SUPPORTED and r.reason


def test_set_access_from_l1_uses_rmp_page_sizes() -> None:
    p = guest(16 * MIB, workload_layers=2)
    p.run(SetAccess(layer="l1", range=rng(0, 2 * MIB), target="l2.1", access="r"))  # unassigned
    assert p.history[-1].status is Status.ERROR
    p = validated(16 * MIB, workload_layers=2)
    r = p.run(
        SetAccess(
            layer="l1",
            range=rng(2 * MIB - PAGE_4K, 2 * MIB + 2 * PAGE_4K),
            target="l2.2",
            access="rwx",
        )
    )
    assert r.ok and p.trace.count("PSMASH") == 2
