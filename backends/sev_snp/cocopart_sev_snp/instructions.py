"""PVALIDATE, RMPADJUST, RMPUPDATE and PSMASH over the RMP, with the architecture's return
codes (sev-snp.md §4.3).

Each instruction acts on a *run*: ``count`` pages of one size from ``gpa``, as if executed
once per page in address order, stopping at the first page that fails. It returns how many
pages completed (:attr:`InstrResult.done`), the return code of the page that stopped it
(RAX), whether that stop was a "no change" (PVALIDATE CF=1) and any fault the page raised
instead of returning. Work is proportional to the runs of equal RMP state the range
crosses, never to the number of pages.

The instructions do not trace: their callers (the SVSM platform, the host, the workload
side) record what they executed, with ``count`` = pages.

Modelled rules whose exact wording the references do not confirm are named constants
(``RULE_*`` and the fault constants below), each with its source and the choice made.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

from cocopart_sev_snp.rmp import NO_PERMS, VMPL_COUNT, Rmp, RmpEntry, page_bytes


class RmpRc(IntEnum):
    """Return codes in RAX (sev-snp.md §4.3, MSDOC return-code tables)."""

    SUCCESS = 0
    FAIL_INPUT = 1
    FAIL_PERMISSION = 2
    FAIL_INUSE = 3
    FAIL_OVERLAP = 4
    FAIL_SIZEMISMATCH = 6
    #: PSMASH: "page not eligible for split" (sev-snp.md §4.3 lists code 7 for PSMASH).
    FAIL_UNSMASHABLE = 7


#: PVALIDATE "can only be performed at VMPL0" (sev-snp.md §4.3, Linux patch text). What a
#: lower VMPL sees is not in the references: modelled as a general-protection fault that
#: leaves the RMP unchanged (unconfirmed choice; the alternative would be a return code).
PVALIDATE_OUTSIDE_VMPL0_FAULT = "#GP(0)"

#: PVALIDATE of a page the RMP does not assign to the executing guest (hypervisor/shared,
#: firmware, another ASID) fails the RMP check of the access: modelled as a nested page
#: fault to the host (sev-snp.md §4.4 "Guest access failing RMP checks -> #VMEXIT(NPF)"),
#: not as a return code. Unconfirmed choice.
PVALIDATE_NOT_ASSIGNED_FAULT = "#NPF"

#: A 2M PVALIDATE or RMPADJUST over a region the RMP holds as 4K entries returns
#: FAIL_SIZEMISMATCH (6) to the guest (sev-snp.md §4.3); it is the one size mismatch a guest
#: sees, and the only one Linux falls back on, redoing the 2M page as 512 4K pages (LX
#: arch/x86/coco/sev/core.c pvalidate_pages / svsm_pval_pages).
RULE_2M_OVER_4K_IS_SIZEMISMATCH = "a 2M request over 4K RMP entries returns FAIL_SIZEMISMATCH"

#: A 4K PVALIDATE or RMPADJUST on a page covered by a 2M RMP entry does not return: the CPU
#: raises a nested page fault to the host with error-code bit 35 SIZEM (LX
#: arch/x86/include/asm/kvm_host.h PFERR_GUEST_SIZEM_MASK); the instruction has not executed
#: on that page. KVM's RMP fault handler PSMASHes the entry and re-enters the guest, which
#: re-executes the instruction (LX arch/x86/kvm/svm/sev.c sev_handle_rmp_fault: "Only
#: RMPADJUST/PVALIDATE should cause PFERR_GUEST_SIZEM"). The fault and the host's answer are
#: in :mod:`cocopart_sev_snp.npf`.
RULE_4K_IN_2M_RAISES_NPF_SIZEM = "a 4K request inside a 2M RMP entry raises #NPF(SIZEM)"
#: The fault an instruction reports for :data:`RULE_4K_IN_2M_RAISES_NPF_SIZEM`.
NPF_SIZEM_FAULT = "#NPF(SIZEM)"

#: RMPADJUST needs a page assigned to the executing guest (validated or not); any other page
#: returns FAIL_INPUT. Unconfirmed: chosen so that the SVSM's rescind (revoke first, then
#: PVALIDATE(0)) reaches PVALIDATE's "no change" report on a page that is not validated.
RULE_RMPADJUST_NEEDS_ASSIGNED_PAGE = "RMPADJUST acts only on pages assigned to the guest"

#: "A caller cannot grant a permission it does not hold": every bit of the new permission
#: mask for the target VMPL must be held by the executing VMPL on that page (VMPL0 holds
#: all), else FAIL_PERMISSION. sev-snp.md §4.3 (MSDOC "current VMPL has insufficient
#: permissions"; precise rule text unconfirmed, §9.3). Revoking (mask 0) is always allowed.
RULE_NO_PERMISSION_ESCALATION = "RMPADJUST cannot grant a permission the caller does not hold"

#: RMPADJUST may only change a numerically higher (less privileged) VMPL, else
#: FAIL_PERMISSION (sev-snp.md §4.3, EDK2 AmdSev.c, LX sev.h).
RULE_TARGET_LESS_PRIVILEGED = "RMPADJUST targets only a numerically higher VMPL"

#: The VMSA bit of RMPADJUST is applied only at VMPL0 — there it is *set to the given value*
#: (Linux snp_set_vmsa / cleanup use it both ways) — and silently ignored at any other VMPL,
#: where the instruction still succeeds (sev-snp.md §4.3, MSDOC "Ignored when the current
#: VMPL != 0").
RULE_VMSA_BIT_ONLY_FROM_VMPL0 = "RMPADJUST's VMSA bit takes effect only at VMPL0"

#: RMPUPDATE resets the entry: validated, VMSA and every lower-VMPL permission are cleared
#: (sev-snp.md §4.2: "after RMPUPDATE to guest" the page is guest-invalid; §4.1 validation
#: sets no lower-VMPL permissions).
RULE_RMPUPDATE_RESETS_ENTRY = "RMPUPDATE clears validated, VMSA and VMPL1-3 permissions"


class InstrResult(NamedTuple):
    """Outcome of an instruction over a run of pages."""

    done: int  # pages completed before the stop
    rc: int = RmpRc.SUCCESS  # return code of the page that stopped the run (RAX)
    no_change: bool = False  # PVALIDATE: stopped because CF=1 (state already as asked)
    fault: str | None = None  # a fault raised instead of returning ("#GP(0)", "#NPF", ...)
    changed: tuple[tuple[int, int], ...] = ()  # address ranges whose state changed
    unchanged: int = 0  # pages skipped as "no change" when that is ignored

    @property
    def ok(self) -> bool:
        return self.rc == RmpRc.SUCCESS and self.fault is None and not self.no_change


#: Callback telling whether a range holds a page in use (a running vCPU's VMSA): the first
#: such address, or None.
InUse = Callable[[int, int], "int | None"]


def _bounds(rmp: Rmp, gpa: int, ps: int, count: int) -> bool:
    return count > 0 and gpa % ps == 0 and rmp.contains(gpa, gpa + ps * count)


def _floor(gpa: int, addr: int, ps: int) -> int:
    """``addr`` rounded down to a page boundary of the run starting at ``gpa``."""
    return gpa + (addr - gpa) // ps * ps


def _host_stop(
    rmp: Rmp,
    gpa: int,
    end: int,
    ps: int,
    in_use: InUse | None,
    refuse: Callable[[RmpEntry], int | None],
) -> tuple[int, int]:
    """Where a host RMP instruction over ``[gpa, end)`` stops and its return code: at the
    first immutable entry (FAIL_PERMISSION) or the first one ``refuse`` gives a code, then at
    a page in use (FAIL_INUSE); rounded down to a page of size ``ps``."""
    stop, rc = end, int(RmpRc.SUCCESS)
    for s, _e, v in rmp.runs(gpa, end):
        if v.immutable:
            stop, rc = s, RmpRc.FAIL_PERMISSION
            break
        code = refuse(v)
        if code is not None:
            stop, rc = s, code
            break
    busy = in_use(gpa, stop) if in_use is not None and stop > gpa else None
    if busy is not None:
        stop, rc = busy, RmpRc.FAIL_INUSE
    return _floor(gpa, stop, ps), rc


def _size_mismatch(at: int, page_2m: bool) -> tuple[int, int, str | None]:
    """(stop, return code, fault) of a page whose RMP entry has the other size."""
    if page_2m:  # RULE_2M_OVER_4K_IS_SIZEMISMATCH
        return at, RmpRc.FAIL_SIZEMISMATCH, None
    return at, RmpRc.SUCCESS, NPF_SIZEM_FAULT  # RULE_4K_IN_2M_RAISES_NPF_SIZEM


def _apply(
    rmp: Rmp, ranges: list[tuple[int, int]], stop: int, fn: Callable[[RmpEntry], RmpEntry]
) -> tuple[tuple[int, int], ...]:
    out = []
    for s, e in ranges:
        e = min(e, stop)
        if s < e:
            rmp.map.update(s, e, fn)
            out.append((s, e))
    return tuple(out)


def pvalidate(
    rmp: Rmp,
    *,
    asid: int,
    vmpl: int,
    gpa: int,
    page_2m: bool,
    count: int,
    validate: bool,
    ignore_unchanged: bool = False,
) -> InstrResult:
    """PVALIDATE ``count`` pages: set (``validate``) or clear the validated bit.

    Per page: VMPL0 only (else :data:`PVALIDATE_OUTSIDE_VMPL0_FAULT`), aligned
    (FAIL_INPUT), assigned to this guest (else :data:`PVALIDATE_NOT_ASSIGNED_FAULT`), sizes
    equal (:data:`RULE_2M_OVER_4K_IS_SIZEMISMATCH`, :data:`RULE_4K_IN_2M_RAISES_NPF_SIZEM`);
    a page already in the requested state is "no change" (CF=1, RAX 0) — the run stops there
    unless ``ignore_unchanged``. sev-snp.md §4.3.
    """
    if vmpl != 0:
        return InstrResult(0, fault=PVALIDATE_OUTSIDE_VMPL0_FAULT)
    ps = page_bytes(page_2m)
    if not _bounds(rmp, gpa, ps, count):
        return InstrResult(0, RmpRc.FAIL_INPUT)
    end = gpa + ps * count
    stop, rc, fault, no_change = end, int(RmpRc.SUCCESS), None, False
    todo: list[tuple[int, int]] = []
    unchanged = 0
    for s, e, v in rmp.runs(gpa, end):
        if not v.owned_by(asid):
            stop, fault = s, PVALIDATE_NOT_ASSIGNED_FAULT
            break
        if v.page_size_2m != page_2m:
            stop, rc, fault = _size_mismatch(s, page_2m)
            break
        if v.validated == validate:
            if not ignore_unchanged:
                stop, no_change = s, True
                break
            unchanged += (e - s) // ps
        else:
            todo.append((s, e))
    stop = _floor(gpa, stop, ps)
    changed = _apply(rmp, todo, stop, lambda x: x._replace(validated=validate))
    return InstrResult((stop - gpa) // ps, rc, no_change, fault, changed, unchanged)


def rmpadjust(
    rmp: Rmp,
    *,
    asid: int,
    vmpl: int,
    gpa: int,
    page_2m: bool,
    count: int,
    target_vmpl: int,
    perms: int,
    vmsa: bool = False,
) -> InstrResult:
    """RMPADJUST ``count`` pages: set ``target_vmpl``'s permission mask to ``perms``.

    Rules in order: a valid target and mask, aligned (FAIL_INPUT);
    :data:`RULE_TARGET_LESS_PRIVILEGED` (FAIL_PERMISSION); per page
    :data:`RULE_RMPADJUST_NEEDS_ASSIGNED_PAGE` (FAIL_INPUT), the page sizes
    (:data:`RULE_2M_OVER_4K_IS_SIZEMISMATCH`, :data:`RULE_4K_IN_2M_RAISES_NPF_SIZEM`),
    :data:`RULE_NO_PERMISSION_ESCALATION` (FAIL_PERMISSION). The VMSA bit follows
    :data:`RULE_VMSA_BIT_ONLY_FROM_VMPL0`. sev-snp.md §4.3.
    """
    ps = page_bytes(page_2m)
    if (
        not 0 <= target_vmpl < VMPL_COUNT
        or not 0 <= perms <= 0xF
        or not _bounds(rmp, gpa, ps, count)
    ):
        return InstrResult(0, RmpRc.FAIL_INPUT)
    if target_vmpl <= vmpl:
        return InstrResult(0, RmpRc.FAIL_PERMISSION)
    end = gpa + ps * count
    stop, rc, fault = end, int(RmpRc.SUCCESS), None
    for s, _e, v in rmp.runs(gpa, end):
        if not v.owned_by(asid):
            stop, rc = s, RmpRc.FAIL_INPUT
            break
        if v.page_size_2m != page_2m:
            stop, rc, fault = _size_mismatch(s, page_2m)
            break
        if perms & ~v.perm(vmpl):
            stop, rc = s, RmpRc.FAIL_PERMISSION
            break
    stop = _floor(gpa, stop, ps)
    if vmpl == 0:

        def fn(x: RmpEntry) -> RmpEntry:
            return x.with_perm(target_vmpl, perms)._replace(vmsa=vmsa)
    else:

        def fn(x: RmpEntry) -> RmpEntry:
            return x.with_perm(target_vmpl, perms)

    changed = _apply(rmp, [(gpa, end)], stop, fn)
    return InstrResult((stop - gpa) // ps, rc, fault=fault, changed=changed)


def rmpupdate(
    rmp: Rmp,
    *,
    gpa: int,
    page_2m: bool,
    count: int,
    assigned: bool,
    asid: int,
    immutable: bool = False,
    in_use: InUse | None = None,
) -> InstrResult:
    """RMPUPDATE (host, ASID 0) ``count`` pages to a new assignment.

    Per page: aligned (FAIL_INPUT); not immutable (FAIL_PERMISSION); a 2M assignment over a
    region holding assigned 4K entries, or a 4K update inside an assigned 2M entry, is
    FAIL_OVERLAP (the host must PSMASH first); a page in use — the VMSA of a running vCPU —
    is FAIL_INUSE. The new entry follows :data:`RULE_RMPUPDATE_RESETS_ENTRY`.
    sev-snp.md §4.3 (MSDOC, LX sev.c).
    """
    ps = page_bytes(page_2m)
    if not _bounds(rmp, gpa, ps, count):
        return InstrResult(0, RmpRc.FAIL_INPUT)
    end = gpa + ps * count

    def overlap(v: RmpEntry) -> int | None:
        if v.assigned and (
            page_2m and assigned and not v.page_size_2m or not page_2m and v.page_size_2m
        ):
            return RmpRc.FAIL_OVERLAP
        return None

    stop, rc = _host_stop(rmp, gpa, end, ps, in_use, overlap)
    new = RmpEntry(
        assigned=assigned,
        validated=False,
        vmsa=False,
        immutable=immutable,
        page_size_2m=page_2m,
        asid=asid if assigned else 0,
        perms=NO_PERMS,
    )
    changed = _apply(rmp, [(gpa, end)], stop, lambda _x: new)
    return InstrResult((stop - gpa) // ps, rc, changed=changed)


def psmash(rmp: Rmp, *, gpa: int, count: int, in_use: InUse | None = None) -> InstrResult:
    """PSMASH (host) ``count`` 2M entries into 512 4K entries each, keeping their state.

    Per page: 2M aligned (FAIL_INPUT); not immutable (FAIL_PERMISSION); a 2M entry
    (FAIL_UNSMASHABLE, 7, otherwise); not in use (FAIL_INUSE). sev-snp.md §4.3.
    """
    ps = page_bytes(True)
    if not _bounds(rmp, gpa, ps, count):
        return InstrResult(0, RmpRc.FAIL_INPUT)
    end = gpa + ps * count
    stop, rc = _host_stop(
        rmp, gpa, end, ps, in_use, lambda v: None if v.page_size_2m else RmpRc.FAIL_UNSMASHABLE
    )
    changed = _apply(rmp, [(gpa, end)], stop, lambda x: x._replace(page_size_2m=False))
    return InstrResult((stop - gpa) // ps, rc, changed=changed)
