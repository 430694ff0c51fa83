"""Host RMP fault policies: what the host does when it *writes* a guest-private page.

With SNP enabled every host write goes through an RMP check; a write to a page the RMP
assigns to a guest (or to the firmware) raises a host #PF with the RMP bit (error code bit
31, sev-snp.md §4.4, LX trap_pf.h). Host *reads* are not checked — they return ciphertext
(:data:`RULE_HOST_READS_UNCHECKED`). What happens next is the host's policy, the backend
option ``host_fault_policy``:

* ``sigbus`` (default) — what Linux does, and what the seed-003 thread kept: a host
  user-space process gets SIGBUS and dies; a host *kernel* write is an unhandled fault and
  panics the host (:data:`RULE_USER_WRITE_SIGBUS`, :data:`RULE_KERNEL_WRITE_PANICS`).
* ``panic`` — a fail-stop host: any RMP violation, from user space or the kernel, panics it
  (:data:`RULE_PANIC_POLICY_FAIL_STOP`, a model policy, not Linux's).
* ``convert`` — Peter Gonda's proposal in the thread: the fault handler converts the page to
  shared and the write proceeds; the guest later takes #VC 0x404 on the page
  (:data:`RULE_CONVERT_ON_FAULT`). The handler meets the three corner cases of the thread:
  a 2M RMP entry (PSMASH first), the VMSA of a running vCPU (kick it out), an RMPADJUST
  holding the entry (retry once it is done).

Whichever the policy, KVM's own accesses that go through its checked mapping path consult
the RMP first and never fault (:data:`RULE_CHECKED_MAP_REFUSES_PRIVATE`), and a write through
a host 2M mapping over a 2M region holding assigned 4K entries faults with a page-size
mismatch that the host resolves by splitting its own mapping
(:data:`RULE_HOST_SPLITS_ON_SIZE_MISMATCH`).

Entry points: :func:`host_write` (one host write, under the machine's or a given policy),
:func:`convert_to_shared` (the convert handler's RMP work) and :func:`guest_private_access`
(the guest touching a page it believes private, after the host took it).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from cocopart.spi import PAGE_2M, PAGE_4K, Access, AccessOutcome, FaultStep, HostAccessor
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp.host_fault_policy import (  # the policies by name, re-exported
    DEFAULT_POLICY as DEFAULT_POLICY,  # noqa: PLC0414
)
from cocopart_sev_snp.host_fault_policy import (
    HOST_FAULT_POLICIES as HOST_FAULT_POLICIES,  # noqa: PLC0414
)
from cocopart_sev_snp.host_fault_policy import HostFaultPolicy
from cocopart_sev_snp.rmp_race import EntryLocks

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

HOST = "host"
KVM = "kvm"


#: The host #PF error-code bit of an RMP violation (LX arch/x86/include/asm/trap_pf.h
#: X86_PF_RMP; sev-snp.md §4.4).
X86_PF_RMP = 1 << 31
HOST_RMP_FAULT = "#PF (RMP)"
HOST_SIZE_MISMATCH_FAULT = "#PF (RMP, page-size mismatch)"
#: Attempts of the convert handler's RMPUPDATE before it gives up (Linux loops without a
#: bound; the model needs one — each attempt is traced).
CONVERT_MAX_ATTEMPTS = 8

# -- rules ------------------------------------------------------------------------------------

#: Host reads of guest-private pages are not RMP-checked; they return ciphertext (seed 003
#: cover letter, Brijesh Singh 2021-08-20: "the read accesses from the hypervisor do not require
#: RMP checks because the data confidentiality is already protected via memory encryption").
RULE_HOST_READS_UNCHECKED = "host reads are not RMP-checked (ciphertext)"

#: A host user-space write to a guest-private page: SIGBUS to the process (seed 003, Peter Gonda
#: 2021-11-12: "if a host userspace process writes a guest private page a SIGBUS is issued";
#: LX v5 08/45 "x86/fault: Add support to handle the RMP fault for user address"; Ashish Kalra
#: 2022-10-31: "send a SIGBUS to the current process"). The model's process does not catch it.
RULE_USER_WRITE_SIGBUS = "user-space write to a private page: SIGBUS, the process dies"

#: A host kernel write to a guest-private page is an unhandled RMP #PF: the kernel panics
#: (seed 003, Peter Gonda 2021-11-12: "the kernel panics due to the unhandled RMP fault";
#: Brijesh Singh: "If kernel accesses guest private memory, it does panic"). Every guest on the
#: host is lost with it.
RULE_KERNEL_WRITE_PANICS = "kernel write to a private page: unhandled #PF, host panic"

#: KVM's own accesses go through a checked mapping: it "consults the RMP table for the page
#: ownership before the access. If the page is shared, then it uses the locking mechanism to
#: ensure that a guest will not be able to change the page ownership while kernel has it
#: mapped" (seed 003, Brijesh Singh). A private page is refused (no fault, no write); a page
#: mapped this way stays shared until unmapped.
RULE_CHECKED_MAP_REFUSES_PRIVATE = "KVM's checked map refuses private pages, locks shared ones"

#: The ``panic`` policy: every host RMP violation panics, whatever the accessor. A model policy
#: (fail-stop host) for comparison — not what Linux does for user space.
RULE_PANIC_POLICY_FAIL_STOP = "panic policy: any host RMP violation panics the host"

#: The ``convert`` policy: "On RMP violation (host or userspace) the page fault handler
#: converts the page from private to shared to allow the write to continue" (seed 003, Peter
#: Gonda 2021-11-12, after s390's arch_make_page_accessible()).
RULE_CONVERT_ON_FAULT = "convert policy: RMPUPDATE the page to shared, the write proceeds"

#: A 4K RMPUPDATE inside an assigned 2M entry returns FAIL_OVERLAP: the handler PSMASHes the
#: 2M entry and retries (sev-snp.md §4.3 FAIL_OVERLAP; KVM's RMP #NPF handler PSMASHes on a
#: size mismatch — LX v5 "KVM: SVM: Add support to handle the RMP nested page fault").
RULE_CONVERT_PSMASH_ON_OVERLAP = "4K RMPUPDATE in a 2M entry: FAIL_OVERLAP, PSMASH, retry"

#: RMPUPDATE of the VMSA page of a running vCPU returns FAIL_INUSE until the vCPU leaves VMRUN:
#: the handler kicks it and retries (seed 003, Peter Gonda: "This VMSA page cannot be changed to
#: shared while the vCPU associated with it is running. So KVM + the #PF handler will need
#: something to kick vCPUs"; Brijesh Singh, KVM list: "After the VMRUN is successful, the VMSA
#: page is marked IN_USE ... any attempt to modify the RMP entries will result in FAIL_INUSE
#: ... The IN_USE marking is automatically cleared by the hardware after the #VMEXIT").
#: The converted vCPU can never run again (its page is no longer a VMSA).
RULE_CONVERT_KICKS_VMSA_VCPU = "VMSA of a running vCPU: FAIL_INUSE, kick the vCPU, retry"

#: RMPUPDATE on an entry a guest RMPADJUST holds: FAIL_INUSE; the handler retries once the
#: RMPADJUST is done (:mod:`cocopart_sev_snp.rmp_race`).
RULE_CONVERT_RETRIES_LOCKED_ENTRY = "entry locked by RMPADJUST: FAIL_INUSE, retry after it"

#: The convert handler cannot take an immutable (firmware) page: RMPUPDATE returns
#: FAIL_PERMISSION (sev-snp.md §4.3) and the fault stays unresolved, so the host falls back to
#: the ``sigbus`` behaviour (SIGBUS for user space, panic for the kernel). UNCONFIRMED: the
#: proposal does not say; the model's choice.
RULE_CONVERT_CANNOT_TAKE_FIRMWARE_PAGES = "convert fails on firmware pages: sigbus behaviour"

#: A host write through a 2M host mapping whose 2M region holds assigned 4K RMP entries faults
#: with a page-size mismatch; the host splits its own mapping to 4K and retries (seed 003 cover
#: letter, Brijesh Singh 2021-08-20: "If RMP check failure is due to the page-size mismatch,
#: then split the large page to resolve the fault"; Michael Roth 2023-02-20,
#: handle_user_rmp_page_fault steps 3-4). UNCONFIRMED: the exact hardware condition; modelled
#: as "some 4K page of the 2M region is assigned".
RULE_HOST_SPLITS_ON_SIZE_MISMATCH = "2M host mapping over assigned 4K entries: split, retry"

#: A guest access with C=1 to a page the RMP says is the hypervisor's exits with #NPF; KVM
#: assigns the page back to the guest (RMPUPDATE to private, not validated) and the guest's
#: retry takes #VC 0x404 (seed 003, Peter Gonda: "Guest gets a #VC error because the page is
#: not PVALIDATED"). UNCONFIRMED: the re-assignment step is the model's reading of how that #VC
#: arises (KVM's RMP #NPF handling; sev-snp.md §4.4).
RULE_PRIVATE_NPF_REASSIGNS = "guest C=1 access to a shared page: #NPF, KVM re-assigns, #VC"

UNCONFIRMED = (
    RULE_CONVERT_CANNOT_TAKE_FIRMWARE_PAGES,
    RULE_HOST_SPLITS_ON_SIZE_MISMATCH,
    RULE_PRIVATE_NPF_REASSIGNS,
    RULE_PANIC_POLICY_FAIL_STOP,
)


class HostAction(str, Enum):
    """What became of the host's write."""

    WRITTEN = "written"  # no fault
    SPLIT_AND_WRITTEN = "split-and-written"  # size-mismatch fault, host mapping split
    REFUSED = "refused"  # KVM's checked map refused the private page; nothing written
    SIGBUS = "sigbus"  # the process got SIGBUS and died; nothing written
    PANIC = "panic"  # the host panicked; nothing written
    CONVERTED = "converted"  # the page became shared; the write proceeded


class Conversion(BaseModel):
    """The convert handler's RMP work on one page."""

    ok: bool
    attempts: int
    smashed: bool = False
    kicked: list[int] = Field(default_factory=list, description="VMSA pages of kicked vCPUs.")
    waited_for: list[int] = Field(
        default_factory=list, description="Entries whose RMPADJUST the host waited out."
    )
    result: str = "ok"  # the last RMPUPDATE's result
    steps: list[FaultStep] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)


class HostWrite(BaseModel):
    """One host write to guest memory and what the host made of it."""

    gpa: int
    accessor: HostAccessor
    process: str
    policy: HostFaultPolicy
    fault: str | None = None
    action: HostAction
    completed: bool
    panicked: bool = False
    killed: str | None = None
    conversion: Conversion | None = None
    steps: list[FaultStep] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)


def _rc(r: ins.InstrResult) -> str:
    return "ok" if r.ok else ins.RmpRc(r.rc).name


def convert_to_shared(
    m: SnpMachine, gpa: int, *, locks: EntryLocks | None = None, kick: bool = True
) -> Conversion:
    """RMPUPDATE the 4K page at ``gpa`` to shared, resolving FAIL_OVERLAP (PSMASH), FAIL_INUSE
    on a running VMSA (kick, when ``kick``) and FAIL_INUSE on an entry a guest RMPADJUST holds
    (``locks``: wait for it) — each attempt traced with the host as issuer."""
    page = gpa - gpa % PAGE_4K
    held = locks or EntryLocks()
    in_use = held.in_use(m.host.in_use)
    out = Conversion(ok=False, attempts=0, rules=[RULE_CONVERT_ON_FAULT])
    for _ in range(CONVERT_MAX_ATTEMPTS):
        out.attempts += 1
        r = ins.rmpupdate(
            m.rmp, gpa=page, page_2m=False, count=1, assigned=False, asid=0, in_use=in_use
        )
        out.result = _rc(r)
        m.trace.record(HOST, "RMPUPDATE.4K", "shared", out.result)
        out.steps.append(
            FaultStep(actor=HOST, action=f"RMPUPDATE({page:#x}, shared)", result=out.result)
        )
        if r.ok:
            out.ok = True
            return out
        if r.rc == ins.RmpRc.FAIL_OVERLAP:
            region = page - page % PAGE_2M
            s = ins.psmash(m.rmp, gpa=region, count=1, in_use=in_use)
            m.trace.record(HOST, "PSMASH", result=_rc(s))
            out.steps.append(FaultStep(actor=HOST, action=f"PSMASH({region:#x})", result=_rc(s)))
            out.rules.append(RULE_CONVERT_PSMASH_ON_OVERLAP)
            if not s.ok:
                out.result = _rc(s)
                return out
            out.smashed = True
        elif r.rc == ins.RmpRc.FAIL_INUSE and m.host.in_use(page, page + PAGE_4K) is not None:
            if not kick or m.host.kick(page) is None:
                return out
            m.trace.record(HOST, "KICK", "vCPU")
            out.kicked.append(page)
            out.steps.append(
                FaultStep(
                    actor=HOST,
                    action="kick the vCPU whose VMSA this is out of VMRUN (IPI, #VMEXIT)",
                    result="IN_USE cleared",
                )
            )
            out.rules.append(RULE_CONVERT_KICKS_VMSA_VCPU)
        elif r.rc == ins.RmpRc.FAIL_INUSE and held.holder(page, page + PAGE_4K) is not None:
            holder = held.holder(page, page + PAGE_4K)
            assert holder is not None
            a = held.complete(m.rmp, holder)
            m.trace.record("l1", "RMPADJUST", result=_rc(a))
            out.waited_for.append(holder)
            out.steps.append(
                FaultStep(
                    actor="l1",
                    action="the guest's RMPADJUST completes and releases the entry lock",
                    result=_rc(a),
                )
            )
            out.rules.append(RULE_CONVERT_RETRIES_LOCKED_ENTRY)
        else:
            return out
    return out


def _fail_stop(m: SnpMachine, w: HostWrite, rule: str) -> HostWrite:
    m.trace.record(HOST, "PANIC", result="RMP #PF")
    w.steps.append(
        FaultStep(
            actor=HOST,
            action="unhandled RMP #PF in the host kernel",
            result="host panic: every guest on it is lost",
        )
    )
    w.rules.append(rule)
    return w.model_copy(update={"action": HostAction.PANIC, "panicked": True})


def _sigbus(m: SnpMachine, w: HostWrite) -> HostWrite:
    m.trace.record(HOST, "SIGBUS", w.process)
    w.steps.append(
        FaultStep(actor=HOST, action=f"send SIGBUS to {w.process}", result=f"{w.process} dies")
    )
    w.rules.append(RULE_USER_WRITE_SIGBUS)
    return w.model_copy(update={"action": HostAction.SIGBUS, "killed": w.process})


def _unresolved(m: SnpMachine, w: HostWrite) -> HostWrite:
    """The fault could not be resolved: sigbus behaviour for the accessor."""
    if w.accessor is HostAccessor.KERNEL:
        return _fail_stop(m, w, RULE_KERNEL_WRITE_PANICS)
    return _sigbus(m, w)


def host_write(
    m: SnpMachine,
    gpa: int,
    data: bytes = b"host data",
    *,
    accessor: HostAccessor = HostAccessor.USER,
    process: str = "qemu",
    policy: HostFaultPolicy | str | None = None,
    checked: bool = False,
    host_map_2m: bool = False,
    locks: EntryLocks | None = None,
) -> HostWrite:
    """The host (``process`` in user space, or the kernel) writes ``data`` at ``gpa``.

    ``checked``: the access goes through KVM's checked mapping path. ``host_map_2m``: the host
    maps the page with a 2M page. ``policy`` defaults to the machine's
    ``host_fault_policy`` option. The write lands in guest memory only if it completes."""
    pol = HostFaultPolicy(policy if policy is not None else m.options.host_fault_policy)
    page = gpa - gpa % PAGE_4K
    who = process if accessor is HostAccessor.USER else "host kernel"
    w = HostWrite(
        gpa=gpa,
        accessor=accessor,
        process=who,
        policy=pol,
        action=HostAction.WRITTEN,
        completed=False,
    )
    e = m.rmp.get(page)
    if checked:
        w.rules.append(RULE_CHECKED_MAP_REFUSES_PRIVATE)
        if e.assigned:
            m.trace.record(KVM, "RMP_CHECK", "private", "refused")
            w.steps.append(
                FaultStep(
                    actor=KVM,
                    action=f"map {gpa:#x}: consult the RMP",
                    result="private: mapping refused, nothing written",
                )
            )
            return w.model_copy(update={"action": HostAction.REFUSED})
        w.steps.append(
            FaultStep(
                actor=KVM,
                action=f"map {gpa:#x}: consult the RMP",
                result="shared: mapped and locked shared",
            )
        )
    if not e.assigned:
        region = page - page % PAGE_2M
        if host_map_2m and any(v.assigned for _s, _e, v in m.rmp.runs(region, region + PAGE_2M)):
            m.trace.record(HOST, "RMP_PF", who, "SIZEM")
            w.steps.append(
                FaultStep(
                    actor=HOST,
                    action=f"{who} writes {gpa:#x} through a 2M mapping",
                    result=HOST_SIZE_MISMATCH_FAULT,
                )
            )
            w.steps.append(FaultStep(actor=HOST, action="split the host mapping to 4K, retry"))
            w.rules.append(RULE_HOST_SPLITS_ON_SIZE_MISMATCH)
            w = w.model_copy(
                update={"fault": HOST_SIZE_MISMATCH_FAULT, "action": HostAction.SPLIT_AND_WRITTEN}
            )
        m.memory.write(gpa, data)
        w.steps.append(
            FaultStep(actor=who, action=f"write {len(data)} bytes at {gpa:#x}", result="written")
        )
        return w.model_copy(update={"completed": True})
    m.trace.record(HOST, "RMP_PF", who, "X86_PF_RMP")
    w.steps.append(
        FaultStep(
            actor=who,
            action=f"write {gpa:#x} ({e.state.value} page)",
            result=f"{HOST_RMP_FAULT}, error code bit 31",
        )
    )
    w = w.model_copy(update={"fault": HOST_RMP_FAULT})
    if pol is HostFaultPolicy.PANIC:
        return _fail_stop(m, w, RULE_PANIC_POLICY_FAIL_STOP)
    if pol is HostFaultPolicy.SIGBUS:
        if accessor is HostAccessor.KERNEL:
            return _fail_stop(m, w, RULE_KERNEL_WRITE_PANICS)
        return _sigbus(m, w)
    if e.immutable:
        w.rules.append(RULE_CONVERT_CANNOT_TAKE_FIRMWARE_PAGES)
        return _unresolved(m, w)
    conv = convert_to_shared(m, page, locks=locks)
    w.steps.extend(conv.steps)
    w.rules.extend(conv.rules)
    w = w.model_copy(update={"conversion": conv})
    if not conv.ok:
        return _unresolved(m, w)
    m.memory.write(gpa, data)
    w.steps.append(
        FaultStep(
            actor=who,
            action=f"the write of {len(data)} bytes at {gpa:#x} continues",
            result="written",
        )
    )
    return w.model_copy(update={"action": HostAction.CONVERTED, "completed": True})


def guest_private_access(
    m: SnpMachine, layer: str, gpa: int, access: Access = Access.READ
) -> tuple[AccessOutcome, list[FaultStep]]:
    """``layer`` touches ``gpa``, which it believes private (C=1), through the one access
    path (:func:`cocopart_sev_snp.npf.guest_access`): if the host took the page (it is the
    hypervisor's in the RMP), the access exits with #NPF, KVM assigns the page back
    unvalidated (:data:`RULE_PRIVATE_NPF_REASSIGNS`) and the retried access takes #VC 0x404."""
    from cocopart_sev_snp.npf import guest_access

    return guest_access(m, layer, gpa, access, c_bit=True)
