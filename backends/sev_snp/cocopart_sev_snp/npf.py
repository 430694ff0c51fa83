"""Nested page faults: what the CPU raises when a guest access or a guest RMP instruction
fails an RMP check, and the guest side of the host's answer (the access or instruction is
re-executed when the host resolved the fault).

A failed RMP check exits to the host with #VMEXIT(NPF); the error code says why (LX
arch/x86/include/asm/kvm_host.h PFERR_GUEST_*: bit 31 RMP, 34 ENC — a C=1 access, 35 SIZEM,
36 VMPL; sev-snp.md §4.4). What the host does with it is :meth:`Host.nested_page_fault`
(KVM: arch/x86/kvm/svm/sev.c sev_handle_rmp_fault and the implicit page-state change of
kvm_mmu_page_fault).

Two entry points, so that every guest access and every guest RMP instruction takes the same
path:

* :func:`execute` runs PVALIDATE or RMPADJUST over a run of pages and, when a page raises
  #NPF(SIZEM) (:data:`~.instructions.RULE_4K_IN_2M_RAISES_NPF_SIZEM`), exits to the host and
  re-executes from that page once the host has PSMASHed the entry
  (:data:`RULE_SIZEM_NPF_PSMASH_RETRY`);
* :func:`guest_access` is the CPU's check of one load/store with the C-bit
  (:data:`RULE_C_BIT_SELECTS_THE_CHECK`).

Every exit is counted in the trace: the faulting layer's ``NPF`` primitive (target ``host``,
result the cause: ``SIZEM``, ``RMP`` or ``VMPL``) and a world switch layer -> host
(:data:`NPF_EXIT`) and back (:data:`NPF_REENTRY`). A run of equal 2M entries that a 4K run
faults on region after region is served as one step counted once per region (the state is
the same in each, so each fault, PSMASH and retry is the same): cost grows with the runs of
RMP state, not with the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cocopart.spi import PAGE_2M, PAGE_4K, Access, AccessOutcome, FaultStep
from cocopart_sev_snp import instructions as ins

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

#: #NPF error-code bits (LX arch/x86/include/asm/kvm_host.h PFERR_GUEST_RMP_MASK,
#: PFERR_GUEST_ENC_MASK, PFERR_GUEST_SIZEM_MASK, PFERR_GUEST_VMPL_MASK; sev-snp.md §4.4).
PFERR_GUEST_RMP = 1 << 31
PFERR_GUEST_ENC = 1 << 34
PFERR_GUEST_SIZEM = 1 << 35
PFERR_GUEST_VMPL = 1 << 36
#: World-switch mechanisms of a nested page fault (trace and cost table keys).
NPF_EXIT = "VMEXIT(NPF)"
NPF_REENTRY = "VMRUN"
#: #VC error code of a C=1 access to a page that is assigned but not validated (CS
#: cpu/vc.rs; sev-snp.md §4.4).
VC_PAGE_NOT_VALIDATED = 0x404

#: A 4K PVALIDATE/RMPADJUST inside a 2M RMP entry exits with #NPF(SIZEM); the host PSMASHes
#: the 2M entry into 512 4K entries with the same state and re-enters the guest, which
#: re-executes the instruction on the faulting page and goes on (LX arch/x86/kvm/svm/sev.c
#: sev_handle_rmp_fault: PSMASH on PFERR_GUEST_SIZEM_MASK). The guest never sees the
#: mismatch; FAIL_SIZEMISMATCH is only returned for a 2M request over 4K entries.
RULE_SIZEM_NPF_PSMASH_RETRY = "4K in 2M: #NPF(SIZEM) -> host PSMASH -> instruction retried"

#: A guest access carries the C-bit of its page-table entry. C=1 (private): the page must be
#: assigned to this guest (else #NPF to the host; a hypervisor page is assigned back by
#: KVM's implicit page-state change and the retry takes #VC 0x404, RULE_PRIVATE_NPF_REASSIGNS
#: in :mod:`.host_faults`), validated (else #VC 0x404, RULE_VALIDATED_CHECK_FIRST) and
#: permitted for the VMPL (else #NPF with the VMPL bit). C=0 (shared): a hypervisor page is
#: fine; an assigned page fails the RMP check (#NPF RMP, ENC clear), which the model's host
#: does not resolve. sev-snp.md §4.4 (APM vol. 2 §15.36.10 "RMP and VMPL Access Checks");
#: CS cpu/vc.rs.
RULE_C_BIT_SELECTS_THE_CHECK = "C=1 needs private, validated, permitted; C=0 needs shared"

#: On a guest access, the validated check (#VC 0x404) comes before the VMPL permission check
#: (#NPF). The references do not give the order (unconfirmed, sev-snp.md §4.4); with the
#: other order a lower VMPL could never observe #VC 0x404, because a page that is not
#: validated carries no lower-VMPL permissions.
RULE_VALIDATED_CHECK_FIRST = "#VC 0x404 is raised before a VMPL permission #NPF"

#: One instruction execution over ``count`` pages from ``gpa``: ``(gpa, count) -> result``.
Execute = Callable[[int, int], ins.InstrResult]


def cause(error_code: int) -> str:
    """The trace's name for an #NPF error code."""
    if error_code & PFERR_GUEST_SIZEM:
        return "SIZEM"
    if error_code & PFERR_GUEST_VMPL:
        return "VMPL"
    return "RMP"


def _same_2m_regions(m: SnpMachine, region: int, end: int) -> int:
    """How many 2M entries from ``region`` up to ``end`` (rounded up) are one run of equal
    state: the regions a 4K run would fault on one after the other, each the same way."""
    hi = -(-end // PAGE_2M) * PAGE_2M
    for s, e, v in m.rmp.runs(region, hi):
        if s != region or not v.page_size_2m:
            return 1
        return max(1, (e - region) // PAGE_2M)
    return 1


def execute(
    m: SnpMachine, layer: str, run: Execute, gpa: int, page_bytes: int, count: int
) -> ins.InstrResult:
    """Execute an RMP instruction over ``count`` pages as ``layer``'s CPU does: each
    #NPF(SIZEM) exits to the host; when the host resolved it the instruction is executed
    again from the faulting page (:data:`RULE_SIZEM_NPF_PSMASH_RETRY`). The result covers
    the whole run (pages done, what changed, the page that finally stopped it)."""
    at, left = gpa, count
    done = unchanged = 0
    changed: list[tuple[int, int]] = []
    last_region: int | None = None
    last_entry = None
    while True:
        r = run(at, left)
        done += r.done
        unchanged += r.unchanged
        changed += r.changed
        if r.fault != ins.NPF_SIZEM_FAULT:
            return r._replace(done=done, changed=tuple(changed), unchanged=unchanged)
        fault_at = at + r.done * page_bytes
        region = fault_at - fault_at % PAGE_2M
        entry = m.rmp.get(region)
        # The retry went through the whole previous region and faults on the next one, whose
        # entry is what the previous one was: the rest of that run goes the same way.
        regions = (
            _same_2m_regions(m, region, gpa + count * page_bytes)
            if last_region is not None and region == last_region + PAGE_2M and entry == last_entry
            else 1
        )
        if not m.host.nested_page_fault(
            layer, fault_at, PFERR_GUEST_RMP | PFERR_GUEST_SIZEM, regions=regions
        ):
            return r._replace(done=done, changed=tuple(changed), unchanged=unchanged)
        last_region, last_entry = region + (regions - 1) * PAGE_2M, entry
        at, left = fault_at, left - r.done


def guest_access(
    m: SnpMachine, layer: str, gpa: int, access: Access, c_bit: bool
) -> tuple[AccessOutcome, list[FaultStep]]:
    """``layer`` (a guest VMPL) touches ``gpa`` with ``access`` through a mapping with the
    given C-bit (:data:`RULE_C_BIT_SELECTS_THE_CHECK`). A fault the host resolves is followed
    by the retried access. Returns the outcome and the steps, for narratives."""
    page = gpa - gpa % PAGE_4K
    steps: list[FaultStep] = []
    vmpl = m.vmpl_of(layer)
    for _attempt in range(2):
        e = m.rmp.get(page)
        if not c_bit:
            if not e.assigned:
                steps.append(
                    FaultStep(
                        actor=layer, action=f"access {gpa:#x} with C=0", result="ok (shared page)"
                    )
                )
                return AccessOutcome(ok=True), steps
            return _to_host(
                m,
                layer,
                page,
                PFERR_GUEST_RMP,
                steps,
                "#NPF: a C=0 access to a page the RMP assigns to the guest",
            )
        if not e.assigned:
            if _to_host(
                m,
                layer,
                page,
                PFERR_GUEST_RMP | PFERR_GUEST_ENC,
                steps,
                "#NPF: the RMP does not assign the page to the guest",
            )[0].ok:
                continue  # the host assigned it back: the access is retried
            break
        if not e.owned_by(m.asid):
            return _to_host(
                m,
                layer,
                page,
                PFERR_GUEST_RMP | PFERR_GUEST_ENC,
                steps,
                "#NPF: the page is not this guest's",
            )
        if not e.validated:  # RULE_VALIDATED_CHECK_FIRST
            fault = f"#VC {VC_PAGE_NOT_VALIDATED:#x}"
            steps.append(
                FaultStep(
                    actor=layer,
                    action=f"access {gpa:#x} with C=1",
                    result=f"{fault}: the page is not validated",
                )
            )
            return AccessOutcome(ok=False, fault=fault, handled_by=layer), steps
        if int(access) & ~e.perm(vmpl):
            return _to_host(
                m,
                layer,
                page,
                PFERR_GUEST_RMP | PFERR_GUEST_ENC | PFERR_GUEST_VMPL,
                steps,
                f"#NPF: VMPL{vmpl} lacks {Access(int(access)).short()}",
            )
        steps.append(FaultStep(actor=layer, action=f"access {gpa:#x} with C=1", result="ok"))
        return AccessOutcome(ok=True), steps
    return AccessOutcome(ok=False, fault="#NPF", handled_by="host"), steps


def _to_host(
    m: SnpMachine, layer: str, page: int, error_code: int, steps: list[FaultStep], why: str
) -> tuple[AccessOutcome, list[FaultStep]]:
    """Exit to the host with ``error_code``; ok=True in the outcome when the host resolved the
    fault (the caller retries the access), else the fault the access ends with."""
    steps.append(FaultStep(actor=layer, action=f"access {page:#x}", result=why))
    resolved = m.host.nested_page_fault(layer, page, error_code)
    steps.append(
        FaultStep(
            actor="host",
            action=f"#NPF error code {error_code:#x}",
            result="resolved: the guest retries" if resolved else "not resolved",
        )
    )
    if resolved:
        return AccessOutcome(ok=True), steps
    return AccessOutcome(ok=False, fault="#NPF", handled_by="host"), steps
