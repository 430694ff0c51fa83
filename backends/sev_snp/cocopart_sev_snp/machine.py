"""``SnpMachine``: one executable model of a partitioned SEV-SNP guest.

It owns the hardware state (the RMP, guest memory, GHCBs and the GHCB MSR of each layer and
vCPU, the secrets page copies), the host and the AMD-SP, the SVSM (platform, protocol
service, transport) and the workload side, and wires them:

* at launch the SVSM has set up, above guest RAM, each workload layer's calling areas,
  vCPU-context pages and scratch pages (validated, 4K, read/write for that layer) and one
  VMSA for its BSP; guest RAM itself belongs to the hypervisor until the guest converts it;
* the core's :class:`~cocopart.workload.WorkloadSide` carries out each request with
  :class:`~.workload.SnpWorkloadHooks`; interrupts go to :class:`~.interrupts.SnpInterrupts`;
* :meth:`access` is the CPU's RMP check of one guest access; :meth:`memory_view` and
  :meth:`vcpus` read state in neutral terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocopart.spi import (
    PAGE_2M,
    Access,
    AccessOutcome,
    ArchError,
    Backend,
    ConfigError,
    CostTable,
    InterruptMode,
    LayerGraph,
    Machine,
    MemoryRun,
    PageRun,
    PartitionConfig,
    ResultCode,
    RunState,
    Trace,
    VcpuRecord,
    VcpuView,
    Vtpm,
    build_view,
)
from cocopart_sev_snp import cert_table, npf, secrets
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.guest_request import (
    GuestMessageError,
    GuestMessenger,
    GuestRequestFirmware,
    MsgType,
)
from cocopart_sev_snp.host import Host, HostOptions, HostVcpu, MessagePages
from cocopart_sev_snp.interrupts import SnpInterrupts
from cocopart_sev_snp.page_tables import GuestMappings
from cocopart_sev_snp.report import ReportRequest, ReportResponse
from cocopart_sev_snp.rmp import Rmp, RmpEntry
from cocopart_sev_snp.svsm import SnpPlatform, SnpTransport
from cocopart_sev_snp.workload import SnpWorkloadHooks

if TYPE_CHECKING:
    from cocopart.spi import FaultOutcome, HostFaultScenario, ScenarioSetup
    from cocopart_sev_snp.backend import SnpOptions
    from cocopart_sev_snp.host_faults import HostWrite
    from cocopart_sev_snp.simroots import SimulatedAmdRoots

L1 = "l1"
#: The guest's ASID (any non-zero value; the model runs one guest).
GUEST_ASID = 1
#: How often a workload's guest request is retried when the hypervisor answers BUSY (Linux
#: retries every 2 s for up to 60 s: 30 tries — cost-model.md §1). The SVSM does not retry
#: itself: it returns BUSY to its caller, whose protocol call is then retried (§1.3).
GUEST_REQUEST_BUSY_RETRIES = 30

#: The host's reads of a guest-private page complete (returning ciphertext); only its writes
#: fault with an RMP #PF, which the host's fault policy handles (issue 7; sev-snp.md §4.4).
HOST_WRITE_FAULT = "#PF (RMP)"


class RootsProvider:
    """The simulated AMD roots, loaded on first use (generation is slow; loading from the
    cache is not free either), shared by forks of a machine."""

    def __init__(self, seed: str, product: str, vcpus: int = 1) -> None:
        self.seed = seed
        self.product = product
        self.vcpus = vcpus
        self._roots: SimulatedAmdRoots | None = None
        self._measurement: bytes | None = None

    @property
    def measurement(self) -> bytes:
        """The launch digest of the simulated image (what a relying party pins)."""
        if self._measurement is None:
            from cocopart_sev_snp.measure import cpu_signature, simulated_launch_digest
            from cocopart_sev_snp.simroots import CPUID

            sig = cpu_signature(*CPUID[self.product])  # type: ignore[index]
            self._measurement = simulated_launch_digest(self.seed, self.vcpus, sig)
        return self._measurement

    def roots(self) -> SimulatedAmdRoots:
        if self._roots is None:
            from cocopart_sev_snp.simroots import SimulatedAmdRoots

            self._roots = SimulatedAmdRoots.load(self.seed, self.product)
        return self._roots

    def build_report(self, report_data: bytes, vmpl: int) -> bytes:
        """The AMD-SP's signed ATTESTATION_REPORT for ``vmpl`` (the one attestation hook)."""
        return self.roots().build_report(
            report_data=report_data, vmpl=vmpl, measurement=self.measurement
        )

    def certificates(self) -> list[tuple[str, bytes]]:
        vcek, ask, ark = self.roots().certificates()
        return [("VCEK", vcek), ("ASK", ask), ("ARK", ark)]


@dataclass
class GuestReport:
    """Outcome of a guest request for a report."""

    report: bytes | None
    certificates: list[bytes] = field(default_factory=list)
    cert_table: bytes = b""
    mnemonic: str = ""
    code: int = 0
    message: str = ""


class SnpMachine(Machine):
    """A partitioned SEV-SNP guest: RMP, host, AMD-SP, SVSM and workload VMPLs."""

    interrupts: SnpInterrupts
    platform: SnpPlatform
    transport: SnpTransport

    def __init__(
        self,
        backend: Backend,
        config: PartitionConfig,
        trace: Trace,
        graph: LayerGraph,
        costs: CostTable,
        options: SnpOptions,
    ) -> None:
        super().__init__(backend, config, trace, graph, costs)
        self.options = options
        self.workloads = config.workloads
        self.vmpls: dict[str, int] = dict(zip(self.workloads, options.workload_vmpls, strict=True))
        self.call_protocol = options.call_protocol
        self.asid = GUEST_ASID
        self.rmp = Rmp(self.layout.total)
        features = int(vm.workload_features(config.interrupt_mode))
        self.sev_features = {w: features for w in self.workloads}
        self.roots = RootsProvider(config.seed, options.product, config.vcpus)
        vmpcks = secrets.derive_vmpcks(config.seed)
        self.secrets_page = secrets.build(
            vmpcks, caa=self.layout.caa(0, 0), guest_vmpl=self.vmpls[self.workloads[0]]
        )
        self.messengers = {L1: GuestMessenger(bytearray(self.secrets_page))}
        for i, w in enumerate(self.workloads):
            copy = secrets.copy_for_vmpl(self.secrets_page, self.vmpls[w], self.layout.caa(i, 0))
            self.messengers[w] = GuestMessenger(bytearray(copy))
        self.host = Host(
            self.rmp,
            self.asid,
            self.memory,
            trace,
            config.vcpus,
            GuestRequestFirmware(vmpcks, self.roots.build_report),
            HostOptions(page_size_2m=options.host_page_size_2m, psc_psmash=options.host_psc_psmash),
        )
        #: The C-bit of the guest's mappings (:mod:`.page_tables`).
        self.mappings = GuestMappings(self.layout.total)
        self.ghcb_pages: dict[tuple[str, int], g.GhcbPage] = {}
        self.ghcb_msr: dict[tuple[str, int], int] = {}
        self.serve(
            SnpPlatform(self),
            lambda svc: SnpTransport(svc, self.memory, trace, self),
            lambda: SnpWorkloadHooks(self),
            level_of=self.vmpls.__getitem__,
            apic_emulation=config.interrupt_mode == InterruptMode.ALTERNATE,
        )
        #: Interrupt modes and delivery (issue 6): host, SVSM and guest sides.
        self.interrupts = SnpInterrupts(self)
        #: Serve runs of identical full PSC requests as one step (see :meth:`psc`).
        self.fast_forward = True
        self._launch()
        self.interrupts.boot()

    def shared_on_fork(self) -> list[Any]:
        return [*super().shared_on_fork(), self.roots]

    def interrupt_fast_path(self) -> SnpInterrupts:
        """Repeatable inject -> EOI cycles for :func:`cocopart.interrupts.run_stream`."""
        return self.interrupts

    # -- launch ----------------------------------------------------------------------------
    def _launch(self) -> None:
        """The state the SVSM leaves before the workloads run (not traced)."""
        for i, w in enumerate(self.workloads):
            v = self.vmpls[w]
            start, end = self.layout.layer_region(i)
            page = RmpEntry(assigned=True, validated=True, asid=self.asid).with_perm(
                v, int(Access.RW)
            )
            self.rmp.set(start, end, page)
            ctx = self.layout.context(i, 0)
            self.rmp.set(
                ctx,
                ctx + 4096,
                page.with_perm(v, int(self.platform.vmsa_perms))._replace(vmsa=True),
            )
            self.memory.write(ctx, vm.build(v, self.sev_features[w]))
            self.host.add_vcpu(0, v, HostVcpu(ctx, w))
            self.register_vcpu(w, 0, ctx, self.layout.caa(i, 0))

    def register_vcpu(self, layer: str, vcpu: int, ctx: int, caa: int) -> None:
        """Record a vCPU context in the SVSM's service state."""
        self.service.state.contexts[ctx] = VcpuRecord(layer, vcpu, vcpu, caa)
        self.service.state.areas[(layer, vcpu)] = caa

    # -- small accessors -------------------------------------------------------------------
    def vmpl_of(self, layer: str) -> int:
        """VMPL of a layer (the SVSM and its services: 0)."""
        if layer in self.vmpls:
            return self.vmpls[layer]
        if layer == L1 or layer in self.config.services:
            return 0
        raise ConfigError(f"{layer} is not a guest layer with a VMPL", field="layer")

    def layer_map(self) -> dict[str, str]:
        out = {"VMPL0": L1}
        out.update({f"VMPL{v}": w for w, v in self.vmpls.items()})
        return out

    def ghcb_page(self, layer: str, vcpu: int) -> g.GhcbPage:
        key = (layer, vcpu)
        page = self.ghcb_pages.get(key)
        if page is None:
            page = self.ghcb_pages[key] = g.GhcbPage()
        return page

    def vtpm(self) -> Vtpm:
        """The SVSM's vTPM (only called when the guest runs the vtpm service)."""
        tpm = self.service.vtpm
        if tpm is None:
            raise ConfigError("this guest's SVSM runs no vTPM", field="services")
        return tpm

    # -- GHCB requests the guest side issues -----------------------------------------------
    def psc(
        self,
        issuer: str,
        vcpu: int,
        runs: list[PageRun],
        op: int,
        per_request: int = g.VMGEXIT_PSC_MAX_ENTRY,
    ) -> ArchError | None:
        """Page State Change through ``issuer``'s GHCB, at most ``per_request`` entries per
        request, re-issued while the host returns early (sev-snp.md §5.5). None on success.

        Fast-forward: when the next requests are full requests cut from one run over a
        region the host treats uniformly, :meth:`Host.psc_bulk` serves them as one step with
        multiplicity (same RMP, same trace counters; tested against the one-by-one path)."""
        page = self.ghcb_page(issuer, vcpu)
        queue = list(runs)
        while queue:
            head = queue[0]
            k = head.count // per_request
            big = head.page_bytes == PAGE_2M
            if (
                self.fast_forward
                and k >= 2
                and self.host.psc_bulk(issuer, page, head.gpa, big, per_request, k, op)
            ):
                used = k * per_request
                if used == head.count:
                    queue.pop(0)
                else:
                    queue[0] = PageRun(
                        head.gpa + used * head.page_bytes, head.page_bytes, head.count - used
                    )
                continue
            group, room = [], per_request
            while queue and room:
                r = queue[0]
                take = min(room, r.count)
                group.append(PageRun(r.gpa, r.page_bytes, take))
                room -= take
                if take == r.count:
                    queue.pop(0)
                else:
                    queue[0] = PageRun(r.gpa + take * r.page_bytes, r.page_bytes, r.count - take)
            err = self._psc_request(issuer, page, group, op)
            if err is not None:
                return err
        for r in runs:  # the guest maps them with the new C-bit (RULE_GUEST_OWNS_THE_C_BIT)
            self.mappings.page_state_changed(r.gpa, r.gpa + r.count * r.page_bytes, op)
        return None

    def _psc_request(
        self, issuer: str, page: g.GhcbPage, group: list[PageRun], op: int
    ) -> ArchError | None:
        """One PSC descriptor, re-issued until the host has served every entry."""
        entries = b"".join(g.pack_run(r.gpa, r.page_bytes == PAGE_2M, r.count, op) for r in group)
        page.write_shared(g.psc_encode(entries))
        n = len(entries) // g.PSC_ENTRY_SIZE
        prev = 0
        while True:
            page.request(g.ExitCode.PSC, 0, 0, scratch=g.OFF_SHARED_BUFFER)
            self.host.exit(issuer, page)
            cur, end, rsvd = g.psc_header(page.shared(g.PSC_HEADER.size))
            if page.failed() or page.info2:
                return ArchError(
                    vendor="amd",
                    mnemonic="VMGEXIT(PSC)",
                    code=page.info2 or page.info1,
                    message=f"the host failed page state change entry {cur} "
                    f"of {n} (EXITINFO2 {page.info2:#x}).",
                )
            if rsvd or end != n - 1 or cur <= prev:
                return ArchError(
                    vendor="amd",
                    mnemonic="VMGEXIT(PSC)",
                    code=0,
                    message="the host's PSC header went wrong (reserved bits, a "
                    "changed end, or no progress): the guest stops.",
                )
            if cur > end:
                return None
            prev = cur

    def guest_report(
        self, layer: str, report_data: bytes, *, vmpl: int | None = None, vmpck: int | None = None
    ) -> GuestReport:
        """MSG_REPORT_REQ through ``layer``'s GHCB (VMGEXIT GUEST_REQUEST) with its own VMPCK
        unless ``vmpck`` says otherwise; the report's VMPL defaults to the layer's."""
        own = self.vmpl_of(layer)
        key = own if vmpck is None else vmpck
        req = ReportRequest(
            user_data=report_data.ljust(64, b"\0")[:64], vmpl=own if vmpl is None else vmpl
        )
        messenger = self.messengers[layer]
        try:
            seqno, request = messenger.prepare(key, MsgType.REPORT_REQ, req.encode())
        except GuestMessageError as err:
            return GuestReport(None, mnemonic="SNP_GUEST_REQUEST", message=f"{err}.")
        box = self.host.mailboxes.setdefault(layer, MessagePages())
        page = self.ghcb_page(layer, 0)
        tries = 1 if layer == L1 else 1 + GUEST_REQUEST_BUSY_RETRIES
        for _ in range(tries):
            box.request = request
            page.request(g.ExitCode.GUEST_REQUEST, 0, 0)
            self.host.exit(layer, page)
            vmm_err, fw_err = g.guest_request_errors(page.info2)
            if vmm_err != g.VmmError.BUSY:
                break
        if vmm_err == g.VmmError.BUSY:  # never reached the AMD-SP: the key stays usable
            return GuestReport(
                None,
                mnemonic="SNP_GUEST_REQUEST",
                code=int(ResultCode.BUSY),
                message="the hypervisor answered BUSY (AMD-SP throttling).",
            )
        if page.failed() or vmm_err or fw_err:
            messenger.wipe(key)
            return GuestReport(
                None,
                mnemonic="SNP_GUEST_REQUEST",
                code=fw_err or vmm_err,
                message=f"the AMD-SP refused the request (firmware status "
                f"{fw_err:#x}, hypervisor error {vmm_err}); VMPCK{key} wiped.",
            )
        try:
            payload = messenger.complete(key, seqno, MsgType.REPORT_REQ, box.response)
        except GuestMessageError as err:
            return GuestReport(None, mnemonic="SNP_GUEST_REQUEST", message=f"{err}.")
        rsp = ReportResponse.decode(payload)
        if rsp.status:
            return GuestReport(
                None,
                mnemonic="MSG_REPORT_RSP",
                code=rsp.status,
                message=f"MSG_REPORT_RSP status {rsp.status:#x}: a report for "
                f"VMPL{req.vmpl} requested with VMPCK{key} was refused.",
            )
        certs = self.roots.certificates()
        return GuestReport(rsp.report, [c for _n, c in certs], cert_table.build(certs))

    def detect_svsm(self, layer: str) -> secrets.SvsmDetection:
        """What ``layer`` concludes at boot about an SVSM (sev-snp.md §2.3)."""
        from cocopart_sev_snp import instructions as ins

        vmpl = self.vmpl_of(layer)
        probe_page = (
            self.layout.caa(self.workloads.index(layer), 0)
            if layer in self.vmpls
            else self.layout.caa(0, 0)
        )

        def probe() -> int:
            r = ins.rmpadjust(
                self.rmp,
                asid=self.asid,
                vmpl=vmpl,
                gpa=probe_page,
                page_2m=False,
                count=1,
                target_vmpl=1,
                perms=0,
            )
            self.trace.record(layer, "RMPADJUST", "VMPL1", ins.RmpRc(r.rc).name if r.rc else "ok")
            return r.rc

        msr = self.host.msr_exit(layer, g.MsrInfo.HV_FEATURES_REQ)
        page = bytes(self.messengers[layer].secrets_page)
        found = secrets.detect_svsm(probe, page, msr >> 12)
        if found.terminate is not None:  # sev_es_terminate: the MSR protocol's request
            self.host.msr_exit(layer, g.msr_term_request(*found.terminate))
        return found

    # -- Machine ---------------------------------------------------------------------------
    def access(
        self, layer: str, gpa: int, access: Access, *, c_bit: bool | None = None
    ) -> AccessOutcome:
        """The CPU's check of one access. A guest layer's access carries the C-bit of its
        mapping (``c_bit``; by default the guest's page tables, :mod:`.page_tables`) and takes
        the one path of :func:`.npf.guest_access` (faults the host resolves are retried)."""
        if not 0 <= gpa < self.layout.total:
            raise ConfigError(f"GPA {gpa:#x} is outside the guest", field="gpa")
        e = self.rmp.get(gpa)
        if layer == "firmware":
            return AccessOutcome(ok=True)
        if layer == "host":
            if e.assigned and access & ~Access.READ:
                return AccessOutcome(ok=False, fault=HOST_WRITE_FAULT, handled_by="host")
            return AccessOutcome(ok=True)
        self.vmpl_of(layer)  # a guest layer, or ConfigError
        c = self.mappings.c_bit(gpa) if c_bit is None else c_bit
        return npf.guest_access(self, layer, gpa, access, c)[0]

    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        end = self.config.memory if end is None else end
        vmpls = tuple(self.vmpls.items())

        def state(v: RmpEntry) -> RunState:
            return (
                v.assigned,
                v.validated,
                tuple((w, Access(v.perm(n)).short()) for w, n in vmpls if v.perm(n)),
                v.vmsa,
            )

        return build_view(self.rmp.runs(start, end), state)

    def vcpus(self) -> list[VcpuView]:
        out = []
        for ctx, rec in sorted(
            self.service.state.contexts.items(), key=lambda kv: (kv[1].layer, kv[1].vcpu)
        ):
            host = self.host.contexts.get((rec.apic_id, self.vmpls[rec.layer]))
            state = (
                "running"
                if host is not None and host.state == "running" and host.vmsa_gpa == ctx
                else "stopped"
            )
            out.append(
                VcpuView(
                    layer=rec.layer,
                    vcpu=rec.vcpu,
                    state=state,
                    context_gpa=ctx,
                    apic_id=rec.apic_id,
                )
            )
        return out

    def rmp_entry(self, gpa: int) -> RmpEntry:
        """The RMP entry covering ``gpa`` (for tests and tools below the neutral API)."""
        return self.rmp.get(gpa)

    # -- host faults (issue 7; cocopart.host_faults.HostFaultModel) ------------------------
    def host_write(self, gpa: int, data: bytes = b"host data", **kw: Any) -> HostWrite:
        """The host writes guest memory; an RMP #PF goes to the ``host_fault_policy``
        (:func:`cocopart_sev_snp.host_faults.host_write` has the keywords)."""
        from cocopart_sev_snp.host_faults import host_write

        return host_write(self, gpa, data, **kw)

    def host_fault_policies(self) -> tuple[str, ...]:
        from cocopart_sev_snp.host_faults import HOST_FAULT_POLICIES

        return HOST_FAULT_POLICIES

    def host_fault_scenario(
        self, scenario: HostFaultScenario, setup: ScenarioSetup
    ) -> FaultOutcome:
        from cocopart_sev_snp.host_scenarios import run

        return run(self, scenario, setup)
