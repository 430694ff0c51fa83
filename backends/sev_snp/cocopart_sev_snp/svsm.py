"""The SVSM at VMPL0: the privileged platform the core's protocol handlers run on, and the
transport that carries a workload's protocol call to it.

:class:`SnpPlatform` implements :class:`~cocopart.backend.PrivilegedPlatform` with SNP
primitives executed at VMPL0 (sev-snp.md §2.1-2.2, CS core.rs / sev/utils.rs):

* validate = PVALIDATE(1) + zero the page + RMPADJUST granting the caller's VMPL RWX;
* rescind = RMPADJUST revoking every workload VMPL, PVALIDATE(0), a global TLB flush
  (per page, as COCONUT does);
* set access = RMPADJUST for the target VMPL;
* CREATE_VCPU = check the VMSA page, revoke the workload VMPLs (+ TLB flush), check the
  VMSA's VMPL / EFER.SVME / SEV_FEATURES, revoke again and set the VMSA bit, then
  VMGEXIT(AP_CREATION) for the target VMPL; DELETE_VCPU undoes it;
* hardware reports through its own guest request with VMPCK0 (the report says VMPL0).

:class:`SnpTransport` implements :class:`~cocopart.backend.Transport`: the calling area's
call_pending handshake (in the core) around VMGEXIT(SNP_RUN_VMPL), over the GHCB protocol
(exit 0x8000_0018, EXITINFO1 = target VMPL 0) or the MSR protocol (0x016 / 0x017);
the SVSM returns with the MSR protocol and writes RAX/RCX/RDX/R8 into the caller's VMSA
(sev-snp.md §1.3-1.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cocopart.spi import (
    PAGE_2M,
    PAGE_4K,
    Access,
    GuestMemory,
    HardwareEvidence,
    PageOpResult,
    PrivilegedPlatform,
    Registers,
    ResultCode,
    ServiceDispatcher,
    Trace,
    Transport,
    protocol_error,
)
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp import npf
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.rmp import page_bytes

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

L1 = "l1"
#: World-switch mechanism of an SVSM call (trace and cost table key).
RUN_VMPL_SWITCH = "VMGEXIT(SNP_RUN_VMPL)"

#: Result the SVSM returns when one of its instructions faults on guest memory (PVALIDATE of
#: a page the RMP does not assign to the guest): CS maps Fault / InvalidAddress errors to
#: INVALID_ADDRESS (sev-snp.md §1.5).
SVSM_RESULT_ON_FAULT = ResultCode.INVALID_ADDRESS

#: The SVSM refuses to validate, rescind or change access to the pages it set up for the
#: protocol (calling areas, vCPU contexts/VMSAs, scratch pages — the region above guest RAM)
#: with INVALID_ADDRESS: they are not guest RAM the workload may hand back (cocopart's SVSM
#: policy; CS refuses its own memory the same way).
RULE_SVSM_PROTECTS_PROTOCOL_PAGES = "protocol pages above guest RAM are not the caller's"

#: With ignore_cf, a page that was already validated is zeroed and granted to the caller
#: again, as COCONUT does (CS core.rs core_pvalidate_one: FAIL_UNCHANGED is ignored, then the
#: page is zeroed and rmp_grant_guest_access runs). The core's authority rules admit only the
#: caller's own pages (docs/authority.md), so no other layer's page is ever zeroed this way.
RULE_IGNORE_CF_ZEROES_OWN_PAGE = "ignore_cf re-validation zeroes and re-grants the caller's page"

#: CREATE_VCPU does not look at the RMP page size of the VMSA page (CS core.rs
#: core_create_vcpu); its 4K RMPADJUSTs on a page inside a 2M entry take the #NPF(SIZEM)
#: path (:data:`~.npf.RULE_SIZEM_NPF_PSMASH_RETRY`), so the host splits the entry and the
#: call succeeds.
RULE_VMSA_IN_2M_ENTRY_IS_SPLIT = "CREATE_VCPU on a page of a 2M entry: the entry is split"

#: A VMSA on a 2M-aligned page hits a hardware erratum (the CPU may signal a spurious RMP
#: violation when a 2M page collides with the VMSA's RMP entry): COCONUT never allocates one
#: there (CS sev/vmsa.rs VmsaPage::new), Linux neither (LX arch/x86/coco/sev/core.c
#: snp_alloc_vmsa_page) and KVM refuses AP creation with one (LX arch/x86/kvm/svm/sev.c
#: sev_snp_ap_creation, "unsafe as it is 2M aligned"). The model's SVSM refuses CREATE_VCPU
#: on such a page with INVALID_PARAMETER before it changes anything (cocopart's choice: CS
#: core.rs core_create_vcpu does not check and would fail later at AP creation); the
#: protocol layout never puts a context page there (RULE_CONTEXT_PAGE_OFF_2M_BOUNDARY).
RULE_VMSA_NOT_2M_ALIGNED = "a VMSA page may not be 2M aligned (hardware erratum)"

#: Permissions the lower VMPL keeps on its own VMSA page, by the backend option
#: ``svsm_vmsa_access``. COCONUT grants READ with the VMSA bit (CS sev/utils.rs
#: rmp_set_guest_vmsa: RMPFlags::VMSA = READ | BIT_VMSA) — option ``"read"``; Linux at VMPL0
#: grants none (arch/x86/coco/sev/core.c snp_set_vmsa: target VMPL1 | VMSA bit, §2.2) —
#: option ``"none"``, the default (RULE_VMSA_GUEST_ACCESS_OPTION).
VMSA_GUEST_ACCESS: dict[str, Access] = {"none": Access.NONE, "read": Access.READ}
#: The default: no lower VMPL can read a live VMSA page at all. A guest never needs to (its
#: registers come back in its own vCPU; the SVSM writes the call's results into the VMSA
#: itself), the authority rules never let a context page be a buffer (RULE_CONTEXT_PAGE_
#: UNTOUCHABLE), and a VMSA also holds state the SVSM wrote for the next entry (the EVENTINJ
#: of Alternate Injection, the guest exit code) — keeping it unreadable is the safer choice;
#: ``"read"`` reproduces COCONUT exactly.
DEFAULT_VMSA_GUEST_ACCESS = "none"
RULE_VMSA_GUEST_ACCESS_OPTION = "a lower VMPL keeps no access to its VMSA unless 'read' is set"
VMSA_GUEST_PERMS = VMSA_GUEST_ACCESS[DEFAULT_VMSA_GUEST_ACCESS]


class SnpPlatform(PrivilegedPlatform):
    """The SVSM's primitives at VMPL0 over one :class:`SnpMachine`."""

    vendor: ClassVar[str] = "amd"

    def __init__(self, machine: SnpMachine) -> None:
        self.m = machine

    # -- helpers ---------------------------------------------------------------------------
    @property
    def vmsa_perms(self) -> Access:
        """What a lower VMPL keeps on its own VMSA page (RULE_VMSA_GUEST_ACCESS_OPTION)."""
        return VMSA_GUEST_ACCESS[self.m.options.svsm_vmsa_access]

    @property
    def _ram(self) -> int:
        return self.m.layout.memory

    def _revoke_targets(self) -> range:
        """VMPLs an SVSM revokes: from the most privileged workload VMPL to VMPL3 (CS: from
        GUEST_VMPL to 3; generalised to several workload VMPLs)."""
        return range(min(self.m.vmpls.values()), 4)

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return gpa >= 0 and size >= 0 and gpa + size <= self.m.layout.total

    def layer_access(self, layer: str, start: int, end: int) -> Access:
        """A VMPL's own access to private memory from the RMP: its permission byte on
        assigned, validated guest pages; none on VMSA pages, pages of another owner and
        shared pages (host-visible memory is never a protocol buffer: RULE_BUFFER_MUST_BE_
        CALLERS takes private memory the caller may use, as on TDX)."""
        if layer == L1:
            return Access.RWX
        vmpl = self.m.vmpls.get(layer)
        if vmpl is None or start < 0 or end > self.m.layout.total:
            return Access.NONE
        held = Access.RWX
        for _s, _e, v in self.m.rmp.runs(start, end):
            if not (v.assigned and v.owned_by(self.m.asid) and v.validated) or v.vmsa:
                return Access.NONE
            held &= Access(v.perm(vmpl))
        return held

    def _adjust(
        self, start: int, end: int, big: bool, target: int, perms: int, vmsa: bool = False
    ) -> ins.InstrResult:
        """RMPADJUST at VMPL0 over ``[start, end)``, traced."""
        ps = page_bytes(big)
        m = self.m

        def run(at: int, n: int) -> ins.InstrResult:
            return ins.rmpadjust(
                m.rmp,
                asid=m.asid,
                vmpl=0,
                gpa=at,
                page_2m=big,
                count=n,
                target_vmpl=target,
                perms=perms,
                vmsa=vmsa,
            )

        r = npf.execute(m, L1, run, start, ps, (end - start) // ps)
        self.m.trace.record(L1, "RMPADJUST", f"VMPL{target}", count=r.done)
        if r.rc:
            self.m.trace.record(L1, "RMPADJUST", f"VMPL{target}", ins.RmpRc(r.rc).name)
        return r

    def _pvalidate(
        self, gpa: int, big: bool, count: int, validate: bool, ignore_unchanged: bool
    ) -> ins.InstrResult:
        """PVALIDATE at VMPL0 over ``count`` pages (4K pages inside a 2M entry take the
        #NPF(SIZEM) path)."""
        m = self.m

        def run(at: int, n: int) -> ins.InstrResult:
            return ins.pvalidate(
                m.rmp,
                asid=m.asid,
                vmpl=0,
                gpa=at,
                page_2m=big,
                count=n,
                validate=validate,
                ignore_unchanged=ignore_unchanged,
            )

        return npf.execute(m, L1, run, gpa, page_bytes(big), count)

    # -- PrivilegedPlatform ----------------------------------------------------------------
    def validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        big = page_bytes == PAGE_2M
        n = min(count, max(0, (self._ram - gpa) // page_bytes))
        if n == 0:
            return PageOpResult(0, ResultCode.INVALID_ADDRESS)  # protocol pages
        size = "2M" if big else "4K"
        r = self._pvalidate(gpa, big, n, True, ignore_unchanged)
        changed = sum(e - s for s, e in r.changed) // page_bytes
        t = self.m.trace
        t.record(L1, f"PVALIDATE.{size}", count=changed)
        t.record(L1, f"PVALIDATE.{size}", result="CF=1", count=r.unchanged)
        target = self.m.vmpls.get(layer)  # None: the SVSM validates for itself
        # RULE_IGNORE_CF_ZEROES_OWN_PAGE: with ignore_cf every page done is zeroed and granted
        fresh = [(gpa, gpa + r.done * page_bytes)] if ignore_unchanged and r.done else r.changed
        for s, e in fresh:
            self.m.memory.zero(s, e - s)
            t.record(L1, f"ZERO.{size}", count=(e - s) // page_bytes)
            if target is not None:
                self._adjust(s, e, big, target, int(Access.RWX))
        code = self._code(r, f"PVALIDATE.{size}")
        if code == ResultCode.SUCCESS and n < count:
            code = ResultCode.INVALID_ADDRESS
        return PageOpResult(r.done, code)

    def _code(self, r: ins.InstrResult, mnemonic: str) -> int:
        """The SVSM result for an instruction outcome (CS errors.rs: base + hw code)."""
        if r.fault is not None:
            self.m.trace.record(L1, mnemonic, result=r.fault)
            return SVSM_RESULT_ON_FAULT
        if r.no_change:
            self.m.trace.record(L1, mnemonic, result="CF=1")
            return ResultCode.PVALIDATE_FAIL_NO_CHANGE
        if r.rc:
            self.m.trace.record(L1, mnemonic, result=ins.RmpRc(r.rc).name)
            return protocol_error(r.rc)
        return ResultCode.SUCCESS

    def rescind_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        big = page_bytes == PAGE_2M
        n = min(count, max(0, (self._ram - gpa) // page_bytes))
        if n == 0:
            return PageOpResult(0, ResultCode.INVALID_ADDRESS)
        limit = n
        code: int = ResultCode.SUCCESS
        for target in self._revoke_targets():
            if not limit:
                break
            r = self._adjust(gpa, gpa + limit * page_bytes, big, target, 0)
            if r.rc or r.fault:  # the first failure is the answer (a 2M entry over 4K RMP
                # entries: FAIL_SIZEMISMATCH)
                limit = r.done
                code = protocol_error(r.rc) if r.rc else SVSM_RESULT_ON_FAULT
        size = "2M" if big else "4K"
        done = 0
        if limit:
            r = self._pvalidate(gpa, big, limit, False, ignore_unchanged)
            changed = sum(e - s for s, e in r.changed) // page_bytes
            self.m.trace.record(L1, f"PVALIDATE.{size}", "rescind", count=changed)
            self.m.trace.record(L1, f"PVALIDATE.{size}", "rescind", "CF=1", count=r.unchanged)
            self.m.trace.record(L1, "TLB.FLUSH", count=changed)
            done = r.done
            if r.done < limit or not r.ok:
                code = self._code(r, f"PVALIDATE.{size}")
        if code == ResultCode.SUCCESS and n < count:
            code = ResultCode.INVALID_ADDRESS
        return PageOpResult(done, code)

    def set_access(
        self, target: str, gpa: int, page_bytes: int, count: int, access: Access
    ) -> PageOpResult:
        end = gpa + page_bytes * count
        done, code = self.grant(self.m.vmpls[target], gpa, end, int(access))
        return PageOpResult(done // page_bytes, code)

    def grant(self, target_vmpl: int, start: int, end: int, perms: int) -> tuple[int, int]:
        """RMPADJUST ``target_vmpl`` to ``perms`` over ``[start, end)`` at VMPL0: 2M pages
        where the range covers a whole 2M entry, 4K pages elsewhere (a 4K page inside a 2M
        entry takes the #NPF(SIZEM) path, :data:`~.npf.RULE_SIZEM_NPF_PSMASH_RETRY`).
        Returns (bytes done, protocol result code)."""
        if end > self._ram:  # RULE_SVSM_PROTECTS_PROTOCOL_PAGES
            return 0, ResultCode.INVALID_ADDRESS
        pieces: list[tuple[int, int, bool]] = []
        for s, e, v in self.m.rmp.runs(start, end):
            lo, hi = -(-s // PAGE_2M) * PAGE_2M, e - e % PAGE_2M
            if not v.page_size_2m or lo >= hi:
                pieces.append((s, e, False))
                continue
            pieces += [p for p in ((s, lo, False), (lo, hi, True), (hi, e, False)) if p[0] < p[1]]
        for s, e, big in pieces:
            r = self._adjust(s, e, big, target_vmpl, perms)
            if r.rc or r.fault:
                code = protocol_error(r.rc) if r.rc else SVSM_RESULT_ON_FAULT
                return s - start + r.done * page_bytes(big), code
        return end - start, ResultCode.SUCCESS

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        m = self.m
        vmpl = m.vmpls[layer]
        if context_gpa % PAGE_2M == 0:  # RULE_VMSA_NOT_2M_ALIGNED
            return ResultCode.INVALID_PARAMETER
        entry = m.rmp.get(context_gpa)
        if (
            not (entry.owned_by(m.asid) and entry.validated)
            or entry.vmsa
            or m.host.in_use(context_gpa, context_gpa + PAGE_4K) is not None
        ):
            return ResultCode.INVALID_PARAMETER  # not a guest-owned, unused page
        # no page-size check: RULE_VMSA_IN_2M_ENTRY_IS_SPLIT
        old = entry.perms
        targets = self._revoke_targets()
        for t in targets:
            self._adjust(context_gpa, context_gpa + PAGE_4K, False, t, 0)
        m.trace.record(L1, "TLB.FLUSH")
        fields = vm.parse(m.memory.read(context_gpa, vm.VMSA_SIZE))
        if (
            fields.vmpl != vmpl
            or not fields.efer & vm.EFER_SVME
            or fields.sev_features != m.sev_features[layer]
        ):
            for t in targets:  # restore the page (CS)
                if old[t - 1]:
                    self._adjust(context_gpa, context_gpa + PAGE_4K, False, t, old[t - 1])
            return ResultCode.INVALID_PARAMETER
        for t in targets:  # CS rmp_set_guest_vmsa revokes again before setting the bit
            self._adjust(context_gpa, context_gpa + PAGE_4K, False, t, 0)
        self._adjust(
            context_gpa, context_gpa + PAGE_4K, False, vmpl, int(self.vmsa_perms), vmsa=True
        )
        page = m.ghcb_page(L1, 0)
        page.request(
            g.ExitCode.AP_CREATION,
            g.ap_creation_info1(g.ApCreateOp.CREATE, vmpl, apic_id),
            context_gpa,
        )
        page.set(g.OFF_RAX, fields.sev_features)
        m.host.exit(L1, page)
        if page.failed():
            self._adjust(
                context_gpa, context_gpa + PAGE_4K, False, vmpl, int(Access.RW), vmsa=False
            )
            return ResultCode.INVALID_REQUEST
        return ResultCode.SUCCESS

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        m = self.m
        vmpl = m.vmpls[layer]
        rec = next(
            ((apic, v) for (apic, v), c in m.host.contexts.items() if c.vmsa_gpa == context_gpa),
            None,
        )
        efer = int.from_bytes(m.memory.read(context_gpa + vm.EFER, 8), "little")
        m.memory.write(context_gpa + vm.EFER, vm.u64(efer & ~vm.EFER_SVME))
        if rec is not None:
            page = m.ghcb_page(L1, 0)
            page.request(
                g.ExitCode.AP_CREATION, g.ap_creation_info1(g.ApCreateOp.DESTROY, rec[1], rec[0]), 0
            )
            m.host.exit(L1, page)
        self._adjust(context_gpa, context_gpa + PAGE_4K, False, vmpl, int(Access.RWX), vmsa=False)
        return ResultCode.SUCCESS

    def apic_ids(self) -> set[int]:
        return set(range(self.m.config.vcpus))

    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        """The SVSM's own guest request with VMPCK0, MSG_REPORT_REQ.vmpl = 0 (CS)."""
        out = self.m.guest_report(L1, report_data)
        if out.report is None and out.code == ResultCode.BUSY:
            return ResultCode.BUSY  # the caller retries the call (sev-snp.md §1.3 step 4)
        if out.report is None:
            return ResultCode.INVALID_REQUEST  # CS: guest-request failure -> INVALID_REQUEST
        return HardwareEvidence(
            raw=out.report,
            certificates=out.certificates,
            cert_table=out.cert_table,
            format="snp-report",
        )

    def extend_measurement(self, register: int, digest: bytes) -> int:
        """SNP has no runtime measurement registers: the vTPM PCR is the only record."""
        return ResultCode.SUCCESS

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """An IPI the SVSM's APIC emulation sends to another vCPU (SVSM_APIC ICR write)."""
        return self.m.interrupts.svsm_post_interrupt(layer, vcpu, vector)

    def apic_emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        """Alternate Injection stopped for a vCPU: hand its APIC to the host, clear the
        AlternateInjection bit in its VMSA (see :meth:`SnpInterrupts.emulation_changed`)."""
        self.m.interrupts.emulation_changed(layer, vcpu, enabled)


class SnpTransport(Transport):
    """VMGEXIT(SNP_RUN_VMPL) between a workload VMPL and the SVSM at VMPL0."""

    mechanism: ClassVar[str] = RUN_VMPL_SWITCH

    def __init__(
        self, dispatcher: ServiceDispatcher, memory: GuestMemory, trace: Trace, machine: SnpMachine
    ) -> None:
        super().__init__(dispatcher, memory, trace)
        self.m = machine
        self._entered: dict[tuple[str, int], bool] = {}

    def _vmsa(self, layer: str, vcpu: int) -> int:
        """The VMSA the host runs for ``layer``'s ``vcpu`` (a vCPU made by CREATE_VCPU may
        have its VMSA on any page of its layer)."""
        ctx = self.m.host.contexts.get((vcpu, self.m.vmpls[layer]))
        if ctx is not None:
            return ctx.vmsa_gpa
        return self.m.layout.context(self.m.workloads.index(layer), vcpu)

    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        m = self.m
        vmpl = m.vmpls[layer]
        if (vcpu, vmpl) not in m.host.contexts:  # a deleted vCPU executes no VMGEXIT
            self._entered[(layer, vcpu)] = False
            return False
        if m.call_protocol == "msr":
            saved = m.ghcb_msr.get((layer, vcpu), 0)
            self.trace.record(layer, "VMGEXIT", "SNP_RUN_VMPL")
            err = m.host.run_vmpl(vcpu, vmpl, 0)
            response = g.msr_vmpl_response(err)
            m.ghcb_msr[(layer, vcpu)] = saved  # Linux restores the GHCB MSR afterwards
            ok = g.msr_info(response) == g.MsrInfo.VMPL_RESP and not g.msr_response_error(response)
        else:
            page = m.ghcb_page(layer, vcpu)
            page.request(g.ExitCode.SNP_RUN_VMPL, 0, 0)
            self.trace.record(layer, "VMGEXIT", "SNP_RUN_VMPL")
            err = m.host.run_vmpl(vcpu, vmpl, 0)
            if err:
                page.input_error(g.GhcbError(err))
            else:
                page.respond(0, 0)
            ok = not page.info1 & 0xFFFF_FFFF
        self._entered[(layer, vcpu)] = ok
        if not ok:
            return False
        self.trace.switch(layer, L1, self.mechanism)
        exit_code = int.from_bytes(
            self.memory.read(self._vmsa(layer, vcpu) + vm.GUEST_EXIT_CODE, 8), "little"
        )
        return exit_code == vm.EXIT_VMGEXIT

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        if not self._entered.pop((layer, vcpu), False):
            return
        base = self._vmsa(layer, vcpu)  # CS writes RAX, RCX, RDX, R8 back into the VMSA
        self.memory.write(base + vm.RAX, vm.u64(regs.rax))
        self.memory.write(base + vm.RCX, vm.u64(regs.rcx) + vm.u64(regs.rdx))  # RDX follows RCX
        self.memory.write(base + vm.R8, vm.u64(regs.r8))
        injected = self.m.interrupts.before_entry(layer, vcpu)  # may cancel and re-evaluate
        self.trace.record(L1, "VMGEXIT", "SNP_RUN_VMPL")
        self.m.host.run_vmpl(vcpu, 0, self.m.vmpls[layer])
        self.trace.switch(L1, layer, self.mechanism)
        self.m.interrupts.after_entry(layer, vcpu, injected)
