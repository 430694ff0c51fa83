"""The untrusted hypervisor — KVM unless an option says otherwise: what it does with each
VMGEXIT and each nested page fault of the guest.

* Page State Change (GHCB descriptor, or one page over the MSR protocol), read as KVM reads
  it (:data:`~.ghcb.RULE_PSC_ENTRIES_AS_KVM`): RMPUPDATE to make pages private or shared,
  backing private memory with 2M RMP entries or only 4K ones (``HostOptions.page_size_2m``;
  4K makes every 2M PVALIDATE fail with FAIL_SIZEMISMATCH), PSMASH before a 4K change to
  shared inside a 2M entry; PSMASH/UNSMASH entries complete doing nothing
  (:data:`RULE_KVM_PSC_SMASH_IS_A_NO_OP`) unless ``HostOptions.psc_psmash`` (the idealised
  host); it may stop early (``psc_budget``) and report progress through cur_entry. Runs of
  identical full requests over uniform memory can be served as one step with multiplicity
  (:meth:`Host.psc_bulk`), with the same RMP result and trace counters as serving them one
  by one.
* Nested page faults (:meth:`Host.nested_page_fault`, :mod:`.npf`): PSMASH on SIZEM, the
  implicit page-state change of a C=1 access to a hypervisor page.
* AP creation (create on INIT, create, destroy) for a target VMPL, never with a 2M-aligned
  VMSA (:data:`RULE_HOST_REFUSES_2M_ALIGNED_VMSA`); the VMSA pages of running vCPUs are
  "in use" for RMPUPDATE/PSMASH (FAIL_INUSE).
* SNP_RUN_VMPL (GHCB exit 0x8000_0018 or MSR 0x016/0x017): run another VMPL of the vCPU.
* Guest requests: carries the encrypted pages to the AMD-SP (SNP_GUEST_REQUEST).
* Hypervisor features, and the MSR protocol's SEV information, GHCB registration and
  termination requests.

Knobs (``HostOptions``): ``page_size_2m``, ``psc_psmash`` (both backend options),
``psc_budget`` (entries per exit), ``hv_features``, ``guest_request_busy`` (answer BUSY that
many times).

Every executed primitive is recorded in the trace with the host as issuer; the guest's
VMGEXIT and the two world switches are recorded by :meth:`Host.exit`.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field

from cocopart.spi import PAGE_2M, PAGE_4K, GuestMemory, Trace
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp import npf
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.guest_request import GuestRequestFirmware
from cocopart_sev_snp.rmp import Rmp

HOST = "host"
FIRMWARE = "firmware"
#: World-switch mechanism of a guest <-> host exit.
VMGEXIT_SWITCH = "VMGEXIT"

#: The features the model's hypervisor offers by default (sev-snp.md §5.2): everything CS
#: needs (SNP, AP creation, MULTI_VMPL) plus restricted injection, the APIC ID list and the
#: extended interrupts Alternate Injection needs (bit 9, sev-snp.md §3.3, §5.2).
DEFAULT_HV_FEATURES = (
    g.HvFeature.SNP
    | g.HvFeature.AP_CREATION
    | g.HvFeature.RESTRICTED_INJECTION
    | g.HvFeature.RESTRICTED_INJECTION_TIMER
    | g.HvFeature.APIC_ID_LIST
    | g.HvFeature.MULTI_VMPL
    | g.HvFeature.EXTENDED_INTERRUPTS
)

#: KVM implements only the private and shared PSC operations: an entry with any other
#: operation — PSMASH (3), UNSMASH (4), anything else — is treated as completed without doing
#: anything (LX arch/x86/kvm/svm/sev.c snp_begin_psc: "Only shared/private PSC operations are
#: currently supported, so if the entire range consists of unsupported operations (e.g.
#: SMASH/UNSMASH), then consider the entire range completed"). A guest therefore cannot rely
#: on PSC PSMASH to split an RMP entry; the split happens on the #NPF(SIZEM) path
#: (:data:`~.npf.RULE_SIZEM_NPF_PSMASH_RETRY`).
RULE_KVM_PSC_SMASH_IS_A_NO_OP = "PSC PSMASH/UNSMASH (any op but 1, 2) completes doing nothing"

#: The idealised host of the backend option ``host_psc_psmash = true``
#: (``HostOptions.psc_psmash``; a host profile may set it): it honours a PSC PSMASH of a 2M
#: entry by PSMASHing the RMP entry (a region already split counts as done). Not KVM; the
#: default host is KVM's (:data:`RULE_KVM_PSC_SMASH_IS_A_NO_OP`).
RULE_IDEALISED_HOST_HONOURS_PSC_PSMASH = "host_psc_psmash: PSC PSMASH of a 2M entry splits it"

#: KVM refuses AP creation with a VMSA on a 2M-aligned page (a hardware erratum: a 2M page
#: colliding with the VMSA's RMP entry raises a spurious RMP #PF): GHCB input error
#: INVALID_INPUT (LX arch/x86/kvm/svm/sev.c sev_snp_ap_creation, "AP VMSA address ... is
#: unsafe as it is 2M aligned").
RULE_HOST_REFUSES_2M_ALIGNED_VMSA = "AP creation with a 2M-aligned VMSA is refused"

#: EXITINFO2 the model's host returns when an RMP instruction fails while it serves a PSC
#: entry: this base | the instruction's return code (a host's own choice; Linux only checks
#: that EXITINFO2 != 0 — sev-snp.md §5.5).
PSC_ERROR_RMP_BASE = 1 << 33
#: C-bit position the model's hypervisor reports in the SEV information response (51 on
#: EPYC; only its presence matters to the model).
SEV_C_BIT = 51


@dataclass
class HostOptions:
    """How the modelled hypervisor behaves."""

    page_size_2m: bool = True  # back private memory with 2M RMP entries where it can
    psc_budget: int | None = None  # PSC entries served per VMGEXIT before returning early
    hv_features: int = int(DEFAULT_HV_FEATURES)
    guest_request_busy: int = 0  # answer this many guest requests with BUSY (AMD-SP busy)
    #: RULE_IDEALISED_HOST_HONOURS_PSC_PSMASH (False: KVM, RULE_KVM_PSC_SMASH_IS_A_NO_OP)
    psc_psmash: bool = False


@dataclass
class HostVcpu:
    """A vCPU context the host runs: one per (APIC ID, VMPL)."""

    vmsa_gpa: int
    layer: str
    state: str = "running"  # "running" | "init-wait" | "kicked" (out of VMRUN, issue 7)
    sev_features: int = 0


@dataclass
class MessagePages:
    """The two hypervisor-shared pages of a layer's guest messages (Linux sev-guest keeps
    one request and one response page shared). Kept here, outside guest RAM."""

    request: bytes = b""
    response: bytes = b""


@dataclass
class Host:
    """The hypervisor of one guest."""

    rmp: Rmp
    asid: int
    memory: GuestMemory
    trace: Trace
    vcpus: int
    firmware: GuestRequestFirmware
    options: HostOptions = field(default_factory=HostOptions)
    contexts: dict[tuple[int, int], HostVcpu] = field(default_factory=dict)
    mailboxes: dict[str, MessagePages] = field(default_factory=dict)
    terminated: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> reason
    _busy: list[int] = field(default_factory=list)  # sorted VMSA GPAs of running vCPUs
    #: Handlers of further NAE exit codes (the interrupt exits of :mod:`.interrupts`).
    extra_exits: dict[int, Callable[[str, g.GhcbPage], None]] = field(default_factory=dict)

    # -- vCPU table ------------------------------------------------------------------------
    def add_vcpu(self, apic_id: int, vmpl: int, ctx: HostVcpu) -> None:
        old = self.contexts.get((apic_id, vmpl))
        if old is not None:
            self._forget(old.vmsa_gpa)
        self.contexts[(apic_id, vmpl)] = ctx
        insort(self._busy, ctx.vmsa_gpa)

    def remove_vcpu(self, apic_id: int, vmpl: int) -> HostVcpu | None:
        ctx = self.contexts.pop((apic_id, vmpl), None)
        if ctx is not None:
            self._forget(ctx.vmsa_gpa)
        return ctx

    def _forget(self, gpa: int) -> None:
        i = bisect_left(self._busy, gpa)
        if i < len(self._busy) and self._busy[i] == gpa:
            del self._busy[i]

    def in_use(self, start: int, end: int) -> int | None:
        """The first VMSA page of a running vCPU in ``[start, end)``, or None."""
        i = bisect_left(self._busy, start)
        return self._busy[i] if i < len(self._busy) and self._busy[i] < end else None

    def kick(self, vmsa_gpa: int) -> HostVcpu | None:
        """Force the vCPU whose VMSA is at ``vmsa_gpa`` out of VMRUN (an IPI; #VMEXIT): its
        VMSA is no longer in use, so RMPUPDATE/PSMASH on it can succeed (issue 7; seed 003,
        Peter Gonda 2021-11-12: "KVM + the #PF handler will need something to kick vCPUs")."""
        for ctx in self.contexts.values():
            if ctx.vmsa_gpa == vmsa_gpa and ctx.state != "kicked":
                ctx.state = "kicked"
                self._forget(vmsa_gpa)
                return ctx
        return None

    def resume(self, vmsa_gpa: int) -> bool:
        """VMRUN a kicked vCPU again: fails (VMEXIT_INVALID) unless its page is still a
        validated VMSA page of this guest in the RMP (Brijesh Singh, KVM list: "hardware
        enforce that page is marked as VMSA in the RMP table. If not, VMRUN will fail")."""
        e = self.rmp.get(vmsa_gpa)
        for ctx in self.contexts.values():
            if ctx.vmsa_gpa == vmsa_gpa and ctx.state == "kicked":
                if not (e.owned_by(self.asid) and e.validated and e.vmsa):
                    return False
                ctx.state = "running"
                insort(self._busy, vmsa_gpa)
                return True
        return False

    # -- nested page faults ----------------------------------------------------------------
    def nested_page_fault(
        self, issuer: str, gpa: int, error_code: int, *, regions: int = 1
    ) -> bool:
        """``issuer``'s access or RMP instruction at ``gpa`` exited with #NPF and
        ``error_code`` (:mod:`.npf`); ``regions`` > 1: the same SIZEM fault on that many
        consecutive 2M entries of equal state, one exit each. Records each exit and re-entry
        and resolves what KVM resolves; True when the guest may retry.

        * SIZEM: PSMASH the 2M entry (:data:`~.npf.RULE_SIZEM_NPF_PSMASH_RETRY`);
        * a C=1 access (ENC) to a page the RMP gives the hypervisor: the implicit page-state
          change to private, RMPUPDATE not validated (RULE_PRIVATE_NPF_REASSIGNS);
        * anything else (VMPL permission, another owner, a C=0 access to a private page):
          not resolved (KVM re-enters the guest, which faults again)."""
        t = self.trace
        t.record(issuer, "NPF", HOST, npf.cause(error_code), count=regions)
        t.switch(issuer, HOST, npf.NPF_EXIT, count=regions)
        try:
            page = gpa - gpa % PAGE_4K
            if error_code & npf.PFERR_GUEST_SIZEM:
                region = page - page % PAGE_2M
                if not self.rmp.get(region).page_size_2m:
                    return True  # already split (another vCPU's fault): just retry
                done, err = self.smash(region, regions)
                return not err and done == regions
            if (
                error_code & npf.PFERR_GUEST_ENC
                and not error_code & npf.PFERR_GUEST_VMPL
                and not self.rmp.get(page).assigned
            ):
                _done, err = self.make_private(page, False, 1)
                return not err
            return False
        finally:
            t.switch(HOST, issuer, npf.NPF_REENTRY, count=regions)

    # -- exits -----------------------------------------------------------------------------
    def exit(self, issuer: str, page: g.GhcbPage) -> None:
        """The guest layer ``issuer`` executed VMGEXIT with a GHCB request: record it, switch
        to the host, serve it, switch back."""
        code = page.exit_code
        self.trace.record(issuer, "VMGEXIT", g.EXIT_NAMES.get(code, f"{code:#x}"))
        self.trace.switch(issuer, HOST, VMGEXIT_SWITCH)
        try:
            self._serve(issuer, page)
        finally:
            self.trace.switch(HOST, issuer, VMGEXIT_SWITCH)

    def _serve(self, issuer: str, page: g.GhcbPage) -> None:
        for off in (g.OFF_SW_EXITCODE, g.OFF_SW_EXITINFO1, g.OFF_SW_EXITINFO2):
            if not page.is_valid(off):
                page.input_error(g.GhcbError.MISSING_INPUT)
                return
        code = page.exit_code
        if code == g.ExitCode.PSC:
            self._psc(page)
        elif code == g.ExitCode.AP_CREATION:
            self._ap_creation(issuer, page)
        elif code == g.ExitCode.GUEST_REQUEST:
            self._guest_request(issuer, page)
        elif code == g.ExitCode.HV_FEATURES:
            page.respond(0, self.options.hv_features)
        elif code in self.extra_exits:
            self.extra_exits[code](issuer, page)
        else:
            page.input_error(g.GhcbError.INVALID_EVENT)

    def msr_exit(self, issuer: str, value: int) -> int:
        """VMGEXIT with the MSR protocol: ``value`` is the GHCB MSR; returns its new value."""
        info = g.msr_info(value)
        names: dict[int, str] = {
            g.MsrInfo.PSC_REQ: "PSC",
            g.MsrInfo.HV_FEATURES_REQ: "HV_FEATURES",
            g.MsrInfo.VMPL_REQ: "SNP_RUN_VMPL",
        }
        name = names.get(info, f"MSR.{info:#x}")
        self.trace.record(issuer, "VMGEXIT", name)
        self.trace.switch(issuer, HOST, VMGEXIT_SWITCH)
        try:
            if info == g.MsrInfo.PSC_REQ:
                gfn, op = g.msr_psc_decode(value)
                if op == g.PscOp.PRIVATE:
                    _done, err = self.make_private(gfn << 12, False, 1)
                elif op == g.PscOp.SHARED:
                    _done, err = self.make_shared(gfn << 12, False, 1)
                else:
                    err = g.PSC_ERROR_INVALID_ENTRY
                return g.msr_psc_response(0 if not err else (err & 0xFFFF_FFFF) or 1)
            if info == g.MsrInfo.HV_FEATURES_REQ:
                return g.msr_hv_features_response(self.options.hv_features)
            if info == g.MsrInfo.SEV_INFO_REQ:
                return g.msr_sev_info_response(g.GHCB_PROTOCOL_VERSION, 1, SEV_C_BIT)
            if info == g.MsrInfo.REGISTER_GHCB_REQ:
                return g.MsrInfo.REGISTER_GHCB_RESP | (value & ~g.INFO_MASK)
            if info == g.MsrInfo.TERM_REQ:
                self.terminated[issuer] = ((value >> 12) & 0xF, (value >> 16) & 0xFF)
            return 0  # unknown request: no valid response (the guest must stop)
        finally:
            self.trace.switch(HOST, issuer, VMGEXIT_SWITCH)

    # -- SNP_RUN_VMPL ----------------------------------------------------------------------
    def run_vmpl(self, apic_id: int, from_vmpl: int, target_vmpl: int) -> int:
        """Run ``target_vmpl`` of vCPU ``apic_id``; 0 on success, else an error code.

        The exiting VMPL's VMSA gets guest_exit_code = VMGEXIT (0x403), which is how the
        SVSM recognises a request (sev-snp.md §1.4). Needs HV feature MULTI_VMPL and a VMSA
        for the target (the SVSM's VMPL0 context always exists; it is outside the model)."""
        if not self.options.hv_features & g.HvFeature.MULTI_VMPL:
            return g.GhcbError.INVALID_USAGE
        if target_vmpl != 0 and (apic_id, target_vmpl) not in self.contexts:
            return g.GhcbError.INVALID_INPUT
        src = self.contexts.get((apic_id, from_vmpl))
        if src is not None:
            self.memory.write(src.vmsa_gpa + vm.GUEST_EXIT_CODE, vm.u64(vm.EXIT_VMGEXIT))
        return 0

    # -- page state change -----------------------------------------------------------------
    def _psc(self, page: g.GhcbPage) -> None:
        """Serve a PSC descriptor as KVM does (:data:`~.ghcb.RULE_PSC_ENTRIES_AS_KVM`): an
        end_entry beyond the descriptor is INVALID_HDR, a cur_entry past end_entry is
        nothing to do; the ranges are served in order (at most ``psc_budget`` entries), each
        served entry marked done, cur_entry left at the first entry not done; an invalid
        entry stops the request there with INVALID_ENTRY."""
        if not page.is_valid(g.OFF_SW_SCRATCH):
            page.input_error(g.GhcbError.INVALID_SCRATCH)
            return
        buf = bytearray(page.shared(g.SHARED_BUFFER_SIZE))
        first, end, rsvd = g.psc_header(buf)
        if end >= g.VMGEXIT_PSC_MAX_ENTRY:
            page.respond(0, g.PSC_ERROR_INVALID_HEADER)
            return
        if first > end:
            page.respond(0, 0)
            return
        runs, bad = g.psc_runs(bytes(buf), first, end)
        budget = self.options.psc_budget
        left = end - first + 1 if budget is None else budget
        cur, err, served = end + 1 if bad is None else bad, 0, 0
        for run in runs:
            n = min(run.entries, left)
            done, err = self._psc_run(run, n) if n > 0 else (0, 0)
            g.psc_mark_done(buf, run.first, done)
            served += done
            left -= done
            if err or done < run.entries:
                cur = run.first + done
                break
        else:
            if bad is not None:
                err = g.PSC_ERROR_INVALID_ENTRY
        self.trace.record(HOST, "PSC.ENTRY", count=served)
        g.PSC_HEADER.pack_into(buf, 0, cur, end, rsvd)
        page.write_shared(bytes(buf))
        page.respond(0, err)

    def psc_bulk(
        self, issuer: str, page: g.GhcbPage, gpa: int, big: bool, per_request: int, k: int, op: int
    ) -> bool:
        """Serve ``k`` full PSC requests of ``per_request`` contiguous entries from ``gpa`` at
        once, when every one of them would be served the same way: no early return, one
        uniform RMP run, nothing in use, no PSMASH or error on the way. Records exactly what
        ``k`` separate exchanges record and leaves the GHCB as the last one would. False (and
        nothing done) when the requests must go one by one."""
        ps = PAGE_2M if big else PAGE_4K
        end = gpa + ps * per_request * k
        if (
            self.options.psc_budget is not None
            or op not in (g.PscOp.PRIVATE, g.PscOp.SHARED)
            or gpa % ps
            or not self.rmp.contains(gpa, end)
            or self.in_use(gpa, end) is not None
        ):
            return False
        u = self.rmp.map.uniform(gpa, end)
        if u is None:
            return False
        private = op == g.PscOp.PRIVATE
        if u.assigned and not u.owned_by(self.asid):
            return False
        change = not u.assigned if private else u.assigned
        if change and not private and u.page_size_2m and not big:
            return False  # each request would PSMASH first
        entry_2m = (big and self.options.page_size_2m) if private else u.page_size_2m
        last = gpa + ps * per_request * (k - 1)
        page.write_shared(g.psc_encode(g.pack_run(last, big, per_request, op)))
        page.request(g.ExitCode.PSC, 0, 0, scratch=g.OFF_SHARED_BUFFER)
        t = self.trace
        t.record(issuer, "VMGEXIT", "PSC", count=k)
        t.switch(issuer, HOST, VMGEXIT_SWITCH, count=k)
        if change:
            eps = PAGE_2M if entry_2m else PAGE_4K
            r = ins.rmpupdate(
                self.rmp,
                gpa=gpa,
                page_2m=entry_2m,
                count=(end - gpa) // eps,
                assigned=private,
                asid=self.asid,
                in_use=self.in_use,
            )
            assert r.rc == 0, "a uniform, unused, unassigned/owned run cannot fail RMPUPDATE"
            t.record(
                HOST,
                f"RMPUPDATE.{'2M' if entry_2m else '4K'}",
                "private" if private else "shared",
                count=r.done,
            )
        t.record(HOST, "PSC.ENTRY", count=k * per_request)
        buf = bytearray(page.shared(g.PSC_HEADER.size + per_request * g.PSC_ENTRY_SIZE))
        g.psc_mark_done(buf, 0, per_request)
        g.PSC_HEADER.pack_into(buf, 0, per_request, per_request - 1, 0)
        page.write_shared(bytes(buf))
        page.respond(0, 0)
        t.switch(HOST, issuer, VMGEXIT_SWITCH, count=k)
        return True

    def _psc_run(self, run: g.PscRun, n: int) -> tuple[int, int]:
        """Serve ``n`` entries of ``run``: (entries done, error for EXITINFO2). Private and
        shared change the RMP; every other operation is done doing nothing
        (:data:`RULE_KVM_PSC_SMASH_IS_A_NO_OP`), unless the idealised host PSMASHes
        (:data:`RULE_IDEALISED_HOST_HONOURS_PSC_PSMASH`)."""
        pages = run.pages_for(n)
        if run.op == g.PscOp.PRIVATE:
            done, err = self.make_private(run.gpa, run.page_2m, pages)
        elif run.op == g.PscOp.SHARED:
            done, err = self.make_shared(run.gpa, run.page_2m, pages)
        elif run.op == g.PscOp.PSMASH and self.options.psc_psmash and run.page_2m:
            done, err = self.smash(run.gpa, pages)
        else:
            return n, 0
        if run.partial:
            return (1 if done == pages else 0), err
        return done, err

    def _rmpupdate(self, s: int, e: int, big: bool, assigned: bool) -> tuple[int | None, int]:
        """RMPUPDATE ``[s, e)`` with ``big`` pages: (failing address or None, return code)."""
        ps = PAGE_2M if big else PAGE_4K
        r = ins.rmpupdate(
            self.rmp,
            gpa=s,
            page_2m=big,
            count=(e - s) // ps,
            assigned=assigned,
            asid=self.asid,
            in_use=self.in_use,
        )
        name, target = f"RMPUPDATE.{'2M' if big else '4K'}", "private" if assigned else "shared"
        self.trace.record(HOST, name, target, count=r.done)
        if r.rc:
            self.trace.record(HOST, name, target, ins.RmpRc(r.rc).name)
            return s + r.done * ps, r.rc
        return None, 0

    def _update_range(self, s: int, e: int, big_ok: bool, assigned: bool) -> tuple[int | None, int]:
        """RMPUPDATE ``[s, e)`` using 2M entries on the 2M-aligned part when ``big_ok``."""
        lo = -(-s // PAGE_2M) * PAGE_2M if big_ok else e
        hi = e // PAGE_2M * PAGE_2M if big_ok else e
        if lo >= hi:
            return self._rmpupdate(s, e, False, assigned)
        for a, b, big in ((s, lo, False), (lo, hi, True), (hi, e, False)):
            if a < b:
                bad, rc = self._rmpupdate(a, b, big, assigned)
                if bad is not None:
                    return bad, rc
        return None, 0

    def make_private(self, gpa: int, page_2m: bool, count: int) -> tuple[int, int]:
        """Assign pages to the guest (RMPUPDATE), unless already the guest's."""
        ps = PAGE_2M if page_2m else PAGE_4K
        end = gpa + ps * count
        if not self.rmp.contains(gpa, end):
            return 0, g.PSC_ERROR_INVALID_ENTRY
        big_ok = page_2m and self.options.page_size_2m
        for s, e, v in list(self.rmp.runs(gpa, end)):
            if v.owned_by(self.asid):
                continue
            if v.assigned:
                return (s - gpa) // ps, PSC_ERROR_RMP_BASE | ins.RmpRc.FAIL_PERMISSION
            bad, rc = self._update_range(s, e, big_ok, True)
            if bad is not None:
                return (bad - gpa) // ps, PSC_ERROR_RMP_BASE | rc
        return count, 0

    def make_shared(self, gpa: int, page_2m: bool, count: int) -> tuple[int, int]:
        """Give guest pages back to the hypervisor (RMPUPDATE to shared), PSMASHing a 2M
        entry first when only part of it changes."""
        ps = PAGE_2M if page_2m else PAGE_4K
        end = gpa + ps * count
        if not self.rmp.contains(gpa, end):
            return 0, g.PSC_ERROR_INVALID_ENTRY
        for s, e, v in list(self.rmp.runs(gpa, end)):
            if not v.assigned:
                continue
            if not v.owned_by(self.asid):
                return (s - gpa) // ps, PSC_ERROR_RMP_BASE | ins.RmpRc.FAIL_PERMISSION
            if v.page_size_2m and (s % PAGE_2M or e % PAGE_2M):
                lo, hi = s // PAGE_2M * PAGE_2M, -(-e // PAGE_2M) * PAGE_2M
                done, err = self.smash(lo, (hi - lo) // PAGE_2M)
                if err:
                    return (max(lo + done * PAGE_2M, s) - gpa) // ps, err
                bad, rc = self._rmpupdate(s, e, False, False)
            else:
                bad, rc = self._rmpupdate(s, e, v.page_size_2m, False)
            if bad is not None:
                return (bad - gpa) // ps, PSC_ERROR_RMP_BASE | rc
        return count, 0

    def smash(self, gpa: int, count: int) -> tuple[int, int]:
        """PSMASH 2M entries; a region already in 4K entries counts as done."""
        end = gpa + PAGE_2M * count
        if gpa % PAGE_2M or not self.rmp.contains(gpa, end):
            return 0, g.PSC_ERROR_INVALID_ENTRY
        for s, e, v in list(self.rmp.runs(gpa, end)):
            if not v.page_size_2m:
                continue
            r = ins.psmash(self.rmp, gpa=s, count=(e - s) // PAGE_2M, in_use=self.in_use)
            self.trace.record(HOST, "PSMASH", count=r.done)
            if r.rc:
                self.trace.record(HOST, "PSMASH", result=ins.RmpRc(r.rc).name)
                return (s + r.done * PAGE_2M - gpa) // PAGE_2M, PSC_ERROR_RMP_BASE | r.rc
        return count, 0

    # -- AP creation -----------------------------------------------------------------------
    def _ap_creation(self, issuer: str, page: g.GhcbPage) -> None:
        op, vmpl, apic = g.ap_creation_decode(page.info1)
        feats = self.options.hv_features
        if not feats & g.HvFeature.AP_CREATION or (vmpl and not feats & g.HvFeature.MULTI_VMPL):
            page.input_error(g.GhcbError.INVALID_USAGE)
            return
        if op not in tuple(g.ApCreateOp) or apic >= self.vcpus:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        if op == g.ApCreateOp.DESTROY:
            if self.remove_vcpu(apic, vmpl) is None:
                page.input_error(g.GhcbError.INVALID_INPUT)
                return
            page.respond(0, 0)
            return
        if not page.is_valid(g.OFF_RAX):
            page.input_error(g.GhcbError.MISSING_INPUT)
            return
        gpa = page.info2
        if (
            gpa % PAGE_4K or not self.rmp.contains(gpa, gpa + PAGE_4K) or gpa % PAGE_2M == 0
        ):  # RULE_HOST_REFUSES_2M_ALIGNED_VMSA
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        entry = self.rmp.get(gpa)
        if not (entry.owned_by(self.asid) and entry.validated and entry.vmsa):
            page.input_error(g.GhcbError.INVALID_INPUT)  # VMRUN would fail on this page
            return
        state = "init-wait" if op == g.ApCreateOp.CREATE_ON_INIT else "running"
        self.add_vcpu(apic, vmpl, HostVcpu(gpa, issuer, state, page.get(g.OFF_RAX)))
        page.respond(0, 0)

    # -- guest request ---------------------------------------------------------------------
    def _guest_request(self, issuer: str, page: g.GhcbPage) -> None:
        if self.options.guest_request_busy > 0:  # the AMD-SP is busy: throttled, not sent
            self.options.guest_request_busy -= 1
            page.respond(0, g.guest_request_info2(g.VmmError.BUSY, 0))
            return
        box = self.mailboxes.setdefault(issuer, MessagePages())
        seqno_vmpck = box.request[0x3C] if len(box.request) > 0x3C else 0
        self.trace.record(FIRMWARE, "SNP_GUEST_REQUEST", f"VMPCK{seqno_vmpck}")
        status, response = self.firmware.handle(box.request)
        box.response = response
        page.respond(0, g.guest_request_info2(g.VmmError.OK, status))
