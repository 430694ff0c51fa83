"""``TdxMachine``: one partitioned TD on the model — TDX module, host, L1 and its protocol
service, the L2 VMs — executing vendor-neutral operations.

Launch (not traced): the host builds the TD (TDH.MEM.PAGE.ADD of the protocol region and
L1's own pages, MRTD from them), L1 gives each L2 VM read/write aliases to its calling areas,
state-buffer pages and scratch pages, and starts each L2 VM's vCPU 0 (TDG.VP.WR of its L2
VMCS and the first TDG.VP.ENTER on L1 vCPU 0). Guest RAM starts private and unaccepted:
nothing is mapped until the host AUGs on the first accept.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from cocopart.spi import (
    PAGE_4K,
    Access,
    AccessOutcome,
    Backend,
    CostTable,
    GuestMemory,
    InterruptMode,
    LayerGraph,
    Machine,
    MemoryRun,
    Operation,
    OperationResult,
    PageSize,
    PartitionConfig,
    ResultCode,
    Trace,
    VcpuRecord,
    VcpuView,
    merged,
)
from cocopart_tdx import attributes as attrs
from cocopart_tdx.host import TdxHost, build_td, create_vcpus
from cocopart_tdx.host_faults import MemoryIntegrity, host_access
from cocopart_tdx.host_seamcalls import SeptSeamcalls
from cocopart_tdx.interrupts import TdxInterrupts
from cocopart_tdx.l1 import (
    PROTOCOL_PAGE_GRANT,
    L1Region,
    TdxPlatform,
    TdxTransport,
)
from cocopart_tdx.options import TdxOptions
from cocopart_tdx.sept import ACCEPTED, LEVEL_BYTES, PENDING_FAMILY, L2Alias, Sept, SeptState
from cocopart_tdx.simroots import DEFAULT_TD_ATTRIBUTES, SimulatedIntelRoots
from cocopart_tdx.tdcall import TdConfig, TdxModule
from cocopart_tdx.vp_enter import EnterGuestState
from cocopart_tdx.workload import AP_START_RIP, TdxWorkloadHooks

if TYPE_CHECKING:
    from cocopart.spi import FaultOutcome, HostFaultScenario, ScenarioSetup


@lru_cache(maxsize=8)
def simulated_roots(seed: str) -> SimulatedIntelRoots:
    """The simulated Intel roots of a seed (loaded once per process; cached on disk)."""
    return SimulatedIntelRoots.load(seed)


class TdxMachine(Machine):
    """A partitioned TD on the TDX model."""

    interrupts: TdxInterrupts
    platform: TdxPlatform
    transport: TdxTransport
    hooks: TdxWorkloadHooks

    def __init__(
        self,
        backend: Backend,
        config: PartitionConfig,
        trace: Trace,
        graph: LayerGraph,
        costs: CostTable,
        options: TdxOptions,
    ) -> None:
        super().__init__(backend, config, trace, graph, costs)
        self.options = options
        self.workloads = config.workloads
        self.region = L1Region(self.layout.total, config.workload_layers, config.vcpus)
        total = self.layout.total + self.region.size
        self.memory = GuestMemory(total)
        sept = Sept(total, config.workload_layers)
        self.roots = simulated_roots(config.seed)
        launch = [(self.layout.base, self.layout.total)] + self.region.private_ranges()
        mrtd = build_td(sept, self.memory, launch, self.region.image, config.seed)
        td = TdConfig(
            num_l2_vms=config.workload_layers,
            vcpus=config.vcpus,
            gpaw=options.gpaw,
            module=options.module,
            attributes=int.from_bytes(DEFAULT_TD_ATTRIBUTES, "little"),
            mrtd=mrtd,
        )
        self.module = TdxModule(td, sept, self.memory)
        #: L1 vCPUs as the host built them (TDH.VP.CREATE / ADDCX / INIT).
        self.l1_vcpus = create_vcpus(config.vcpus, config.workload_layers, options.gpaw)
        roots = self.roots
        self.module.report_builder = lambda data, mr, rtmrs: roots.build_tdreport(
            report_data=data, mrtd=mr, rtmrs=rtmrs
        )
        self.host = TdxHost(self.module, options.host_mapping, options.host_memory_fault)
        self.host.quoter = roots.quote_from_tdreport
        q = self.region.quote_buffer
        self.host.shared.set(q, q + self.region.quote_buffer_size, True)
        #: Host touches of TD-private memory (issue 7) and the host's SEPT SEAMCALLs.
        self.integrity = MemoryIntegrity(total)
        self.seamcalls = SeptSeamcalls(self.host, trace)
        platform = TdxPlatform(
            self.module,
            self.host,
            self.memory,
            self.layout,
            self.region,
            self.workloads,
            trace,
            strategy=config.strategy,
            enable_tdvmcall=options.enable_tdvmcall,
            enable_shared_eptp=options.enable_shared_eptp,
        )
        workloads = self.workloads

        def hooks() -> TdxWorkloadHooks:
            self.hooks = TdxWorkloadHooks(config, platform, self.transport, trace, self.roots)
            return self.hooks

        self.serve(
            platform,
            lambda svc: TdxTransport(svc, self.memory, trace, platform),
            hooks,
            level_of=lambda layer: workloads.index(layer) + 1,
            apic_emulation=config.interrupt_mode == InterruptMode.ALTERNATE,
        )
        self._launch()
        #: Interrupt modes and delivery (issue 6); also L1's hooks around each L2 entry.
        self.interrupts = TdxInterrupts(self)

    # -- launch ----------------------------------------------------------------------------------
    def _launch(self) -> None:
        sept = self.module.sept
        for i, layer in enumerate(self.workloads):
            vm = i + 1
            start, end = self.layout.layer_region(i)
            sept.set_alias(vm, start, end, L2Alias(SeptState.L2_MAPPED, PROTOCOL_PAGE_GRANT))
        scratch = Trace()
        self.platform.trace = scratch
        try:
            for i, layer in enumerate(self.workloads):
                ctx, caa = self.layout.context(i, 0), self.layout.caa(i, 0)
                self.memory.write(ctx, EnterGuestState(rip=AP_START_RIP).encode())
                code = self.platform.create_vcpu(layer, ctx, caa, 0)
                if code != ResultCode.SUCCESS:
                    raise RuntimeError(
                        f"launch could not start {layer} vCPU 0: {code:#x} "
                        f"({self.platform.take_error()})"
                    )
                self.service.state.contexts[ctx] = VcpuRecord(layer, 0, 0, caa)
        finally:
            self.platform.trace = self.trace

    def shared_on_fork(self) -> list[Any]:
        return super().shared_on_fork() + [self.roots]

    def interrupt_fast_path(self) -> TdxInterrupts:
        """Repeatable inject -> EOI cycles for :func:`cocopart.interrupts.run_stream`."""
        return self.interrupts

    # -- operations --------------------------------------------------------------------------------
    def execute(self, op: Operation) -> OperationResult:
        self.platform.last_error = None  # an error left by an earlier raw call is not ours
        return super().execute(op)

    # -- views -------------------------------------------------------------------------------------
    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        end = self.config.memory if end is None else end
        sept = self.module.sept
        points = {start, end}
        for m in (sept.l1, self.host.shared, *sept.l2.values()):
            for s, e, _v in m.runs(start, end):  # type: ignore[attr-defined]
                points.update((s, e))
        contexts = {r.context_gpa for r in self.platform.l2_vcpus.values()}
        for c in contexts:
            if start <= c < end:
                points.update((c, min(c + PAGE_4K, end)))
        out: list[MemoryRun] = []
        pts = sorted(points)
        for s, e in pairwise(pts):
            entry = sept.entry(s)
            shared = self.host.shared.get(s)
            accepted = not shared and entry.state in ACCEPTED
            access = {}
            if accepted:
                for vm, amap in sept.l2.items():
                    a = amap.get(s)
                    if a.state is SeptState.L2_MAPPED and attrs.grants_any(a.attr):
                        access[self.workloads[vm - 1]] = attrs.attr_to_access(a.attr).short()
            out.append(
                MemoryRun(
                    start=s,
                    end=e,
                    private=not shared,
                    validated=accepted,
                    access=access,
                    context=s in contexts,
                )
            )
        return merged(out)

    def access(self, layer: str, gpa: int, access: Access) -> AccessOutcome:
        """What happens when ``layer`` touches ``gpa`` (tdx.md §2.4 EPT-violation cases)."""
        if not 0 <= gpa < self.layout.total:
            return AccessOutcome(ok=False, fault="outside guest memory", handled_by="host")
        shared = self.host.shared.get(gpa)
        entry = self.module.sept.entry(gpa)
        if layer == "host":  # zeros from TD-owned lines, no fault (host_faults)
            return host_access(self, gpa, access)
        if layer == "l1":
            if shared or entry.state in ACCEPTED:
                return AccessOutcome(ok=True)
            if entry.state in PENDING_FAMILY:
                if self.module.l1_pending_access(gpa) is not None:  # SEPT_VE_DISABLE
                    return self._td_exit(
                        layer,
                        "EPT-violation TD exit (PENDING page, "
                        "TD_CTLS.PENDING_VE_DISABLE): the host finds the "
                        "page mapped and re-enters; L1 must accept it first",
                    )
                return AccessOutcome(
                    ok=False, fault="#VE (EPT violation on a PENDING page)", handled_by="l1"
                )
            return self._td_exit(layer, "EPT violation TD exit: page not mapped in the SEPT")
        if layer not in self.workloads:
            return AccessOutcome(
                ok=False,
                fault=f"{layer} is not a guest layer that touches memory itself",
                handled_by="l1",
            )
        vm = self.workloads.index(layer) + 1
        if shared:  # the host's shared EPT, if L1 gave it to this L2 VM
            if self.module.l2_shared_eptp(0, vm):
                return AccessOutcome(ok=True)
            return self._td_exit(
                layer,
                "EPT violation on a shared GPA: TD exit to the host "
                "(L2_CTLS.ENABLE_SHARED_EPTP is off: the L2's shared EPTP "
                "points at the TDCS zero page)",
            )
        if entry.state in PENDING_FAMILY:
            return self._l2_exit(layer, "L2->L1 EPT violation: the page is PENDING (R13 type 6)")
        if entry.state not in ACCEPTED:
            return self._td_exit(layer, "EPT violation TD exit: page not mapped in the L1 SEPT")
        alias = self.module.sept.alias(vm, gpa)
        need = attrs.access_to_attr(access)
        if alias.state is SeptState.L2_MAPPED and need and alias.attr & need == need:
            return AccessOutcome(ok=True)
        return self._l2_exit(layer, "L2->L1 EPT violation: no alias or attribute for this access")

    def _l2_exit(self, layer: str, fault: str) -> AccessOutcome:
        self.trace.record("firmware", "EPT_VIOLATION", layer, "L2->L1 exit")
        self.trace.switch(layer, "l1", "L2->L1 exit")
        return AccessOutcome(ok=False, fault=fault, handled_by="l1")

    def _td_exit(self, layer: str, fault: str) -> AccessOutcome:
        self.trace.record("firmware", "EPT_VIOLATION", layer, "TD exit")
        self.trace.switch(layer, "host", "TD exit")
        return AccessOutcome(ok=False, fault=fault, handled_by="host")

    def vcpus(self) -> list[VcpuView]:
        return [
            VcpuView(
                layer=self.workloads[vm - 1],
                vcpu=v,
                state="running",
                context_gpa=rec.context_gpa,
                apic_id=v,
            )
            for (vm, v), rec in sorted(self.platform.l2_vcpus.items())
        ]

    # -- extra views for tests and tools -----------------------------------------------------------
    def sept_state(self, gpa: int) -> tuple[str, int]:
        """L1 SEPT state name and public number at ``gpa``."""
        e = self.module.sept.entry(gpa)
        return e.state.name, int(e.state)

    def rtmrs(self) -> list[bytes]:
        """RTMR0..3 as the module holds them now."""
        return list(self.module.rtmrs)

    def page_size_of(self, gpa: int) -> PageSize:
        """The L1 SEPT leaf size that maps ``gpa``."""
        return PageSize.from_bytes(LEVEL_BYTES[self.module.sept.entry(gpa).level])

    # -- host faults (issue 7; cocopart.host_faults.HostFaultModel) ----------------------------
    def host_fault_policies(self) -> tuple[str, ...]:
        """None: TDX raises no host fault on a host write to TD-private memory."""
        return ()

    def host_fault_scenario(
        self, scenario: HostFaultScenario, setup: ScenarioSetup
    ) -> FaultOutcome:
        from cocopart_tdx.host_scenarios import run

        return run(self, scenario, setup)
