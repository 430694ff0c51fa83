"""A minimal backend that lives in tests only: an idealised architecture used to test the
core (graph routing, TCB, the protocol service, Partition) without any vendor package.

Memory state per run: (private, validated, access of l2.1, l2.2, l2.3). The "hardware" has
one primitive per neutral action (FAKE.VALIDATE, FAKE.GRANT, ...) and the transport is one
world switch each way.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from cocopart.backend import (
    AccessOutcome,
    Backend,
    CapabilityAnswer,
    HardwareEvidence,
    Machine,
    MemoryRun,
    PageOpResult,
    PrivilegedPlatform,
    Transport,
    VcpuView,
)
from cocopart.client import PageRun, ProtocolClient
from cocopart.layers import EdgeKind, LayerGraph
from cocopart.model import PAGE_2M, Access, Layer, LayerRole, PartitionConfig
from cocopart.ops import (
    Attest,
    ConvertPages,
    CreateVcpu,
    Operation,
    OperationResult,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.protocol.call import Registers
from cocopart.protocol.ids import ResultCode
from cocopart.ranges import RangeMap
from cocopart.service.build import build_service
from cocopart.trace import Cost, CostTable, Trace


class Page(NamedTuple):
    private: bool = False
    validated: bool = False
    access: tuple[int, int, int] = (0, 0, 0)


class FakePlatform(PrivilegedPlatform):
    vendor: ClassVar[str] = "fake"

    def __init__(self, machine: FakeMachine) -> None:
        self.m = machine

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return 0 <= gpa and gpa + size <= self.m.layout.total

    def _idx(self, layer: str) -> int:
        return self.m.workloads.index(layer)

    def layer_access(self, layer: str, start: int, end: int) -> Access:
        if layer == "l1":
            return Access.RWX
        held = Access.RWX
        for _s, _e, v in self.m.pages.runs(start, end):
            held &= Access(v.access[self._idx(layer)]) if v.private else Access.RWX
        return held

    def validate_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                       ignore_unchanged: bool) -> PageOpResult:
        end = gpa + page_bytes * count
        v = self.m.pages.uniform(gpa, end)
        if v is not None and v.validated and not ignore_unchanged:
            return PageOpResult(0, ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        acc = [0, 0, 0]
        acc[self._idx(layer)] = int(Access.RWX)
        self.m.pages.set(gpa, end, Page(True, True, (acc[0], acc[1], acc[2])))
        self.m.trace.record("l1", "FAKE.VALIDATE", f"{page_bytes >> 10}K", count=count)
        return PageOpResult(count, ResultCode.SUCCESS)

    def rescind_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                      ignore_unchanged: bool) -> PageOpResult:
        self.m.pages.set(gpa, gpa + page_bytes * count, Page(True, False))
        self.m.trace.record("l1", "FAKE.RESCIND", count=count)
        return PageOpResult(count, ResultCode.SUCCESS)

    def set_access(self, target: str, gpa: int, page_bytes: int, count: int,
                   access: Access) -> PageOpResult:
        i = self._idx(target)

        def grant(p: Page) -> Page:
            acc = list(p.access)
            acc[i] = int(access)
            return p._replace(access=(acc[0], acc[1], acc[2]))

        self.m.pages.update(gpa, gpa + page_bytes * count, grant)
        self.m.trace.record("l1", "FAKE.GRANT", target, count=count)
        return PageOpResult(count, ResultCode.SUCCESS)

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        self.m.running[(layer, apic_id)] = context_gpa
        self.m.trace.record("l1", "FAKE.START_VCPU", layer)
        return ResultCode.SUCCESS

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        for k, v in list(self.m.running.items()):
            if v == context_gpa:
                del self.m.running[k]
        return ResultCode.SUCCESS

    def apic_ids(self) -> set[int]:
        return set(range(self.m.config.vcpus))

    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        self.m.trace.record("l1", "FAKE.REPORT", on_behalf_of)
        return HardwareEvidence(raw=b"FAKE" + report_data, format="fake-report")

    def extend_measurement(self, register: int, digest: bytes) -> int:
        return ResultCode.SUCCESS

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        return ResultCode.SUCCESS

    def apic_emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        self.m.feature_bits[(layer, vcpu)] = enabled


class FakeTransport(Transport):
    mechanism: ClassVar[str] = "FAKE.SWITCH"

    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        self.trace.switch(layer, "l1", self.mechanism)
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        self.trace.switch("l1", layer, self.mechanism)


class FakeMachine(Machine):
    def __init__(self, backend: Backend, config: PartitionConfig, trace: Trace,
                 graph: LayerGraph, costs: CostTable) -> None:
        super().__init__(backend, config, trace, graph, costs)
        self.workloads = config.workloads
        self.pages: RangeMap[Page] = RangeMap(self.layout.total, Page())
        for i, layer in enumerate(self.workloads):  # protocol pages ready at launch
            s, e = self.layout.layer_region(i)
            acc = [0, 0, 0]
            acc[i] = int(Access.RW)
            self.pages.set(s, e, Page(True, True, (acc[0], acc[1], acc[2])))
        self.running: dict[tuple[str, int], int] = {}
        self.platform = FakePlatform(self)
        self.service = build_service(self.platform, self.memory, self.layout, self.workloads,
                                     trace, services=config.services, seed=config.seed,
                                     level_of=lambda layer: self.workloads.index(layer) + 1,
                                     apic_emulation=config.interrupt_mode == "alternate",
                                     authority=self.authority,
                                     requester_entry=config.attest_requester_entry)
        self.feature_bits: dict[tuple[str, int], bool] = {
            (w, v): config.interrupt_mode == "alternate"
            for w in self.workloads for v in range(config.vcpus)}
        self.transport = FakeTransport(self.service, self.memory, trace)
        self.client = ProtocolClient(self.transport, self.memory, self.layout, self.workloads)

    def execute(self, op: Operation) -> OperationResult:
        name = op.describe()
        if isinstance(op, ValidatePages):
            runs = [PageRun(s, ps.bytes, n) for s, ps, n in op.range.chunks()]
            r = self.client.pvalidate(op.layer, 0, runs, validate=True)
            return OperationResult.success(name, calls=r.calls) if r.code == 0 else \
                OperationResult.not_supported(name, f"code {r.code:#x}")
        if isinstance(op, RescindPages):
            runs = [PageRun(s, ps.bytes, n) for s, ps, n in op.range.chunks()]
            self.client.pvalidate(op.layer, 0, runs, validate=False)
            return OperationResult.success(name)
        if isinstance(op, SetAccess):
            route = self.graph.route(f"set-access:{op.target}", op.layer)
            self.platform.set_access(op.target, op.range.start, op.range.size, 1, op.access)
            return OperationResult.success(name, via=route.provider)
        if isinstance(op, CreateVcpu):
            i = self.workloads.index(op.target)
            out = self.client.create_vcpu(op.target, 0, self.layout.context(i, op.vcpu),
                                          self.layout.caa(i, op.vcpu), op.vcpu)
            return OperationResult.success(name) if out.ok else \
                OperationResult.not_supported(name, out.name)
        if isinstance(op, Attest):
            a = self.client.attest(op.layer, 0, op.report_data)
            return OperationResult.success(name, report=a.report.hex(), manifest=a.manifest.hex())
        if isinstance(op, ConvertPages):
            return OperationResult.not_supported(name, "the fake host shares nothing")
        return OperationResult.not_supported(name, "not modelled by the fake backend")

    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        end = self.config.memory if end is None else end
        return [MemoryRun(start=s, end=e, private=p.private, validated=p.validated,
                          access={w: Access(p.access[i]).short()
                                  for i, w in enumerate(self.workloads) if p.access[i]})
                for s, e, p in self.pages.runs(start, end)]

    def access(self, layer: str, gpa: int, access: Access) -> AccessOutcome:
        p = self.pages.get(gpa)
        ok = p.validated and bool(p.access[self.workloads.index(layer)] & access)
        return AccessOutcome(ok=ok, fault=None if ok else "FAKE.FAULT",
                             handled_by=None if ok else "l1")

    def vcpus(self) -> list[VcpuView]:
        return [VcpuView(layer=l, vcpu=v, state="running", context_gpa=g)
                for (l, v), g in sorted(self.running.items())]


class FakeBackend(Backend):
    name: ClassVar[str] = "fake"
    vendor: ClassVar[str] = "fake"
    title: ClassVar[str] = "Fake partitioned architecture (tests only)"
    distribution: ClassVar[str] = "cocopart"

    def layers(self, config: PartitionConfig) -> list[Layer]:
        out = [Layer(name="firmware", role=LayerRole.FIRMWARE, vendor_name="FW"),
               Layer(name="host", role=LayerRole.HOST, vendor_name="HV"),
               Layer(name="l1", role=LayerRole.PRIVILEGED, vendor_name="PL0", level=0)]
        out += [Layer(name=w, role=LayerRole.WORKLOAD, vendor_name=f"PL{i + 1}", level=i + 1)
                for i, w in enumerate(config.workloads)]
        return out

    def graph(self, config: PartitionConfig) -> LayerGraph:
        g = LayerGraph()
        caps = {"firmware": ["attest-hardware"], "host": ["convert"],
                "l1": ["validate", "rescind", "set-access:*", "create-vcpu", "attest-service"]}
        for layer in self.layers(config):
            extra = []
            if layer.name == "l2.1":  # the fake l2.1 may control l2.2 directly
                extra = ["set-access:l2.2"]
            g.add_layer(layer, caps.get(layer.name, []) + extra)
        g.add_edge("l1", "firmware", EdgeKind.CALL, "FAKE.FW_CALL", 1000)
        g.add_edge("l1", "host", EdgeKind.WORLD_SWITCH, "FAKE.EXIT", 500)
        for w in config.workloads:
            g.add_edge(w, "l1", EdgeKind.WORLD_SWITCH, "FAKE.SWITCH", 2000)
            g.add_edge(w, "host", EdgeKind.CALL, "FAKE.HYPERCALL", 3000)
            g.add_edge("l1", w, EdgeKind.MEMORY_CONTROL, "FAKE.GRANT")
        if "l2.2" in config.workloads:  # the fake l2.1 controls l2.2 (like SNP VMPL1/VMPL2)
            g.add_edge("l2.1", "l2.2", EdgeKind.MEMORY_CONTROL, "FAKE.GRANT")
        for w in config.workloads:
            g.add_edge(w, "l1", EdgeKind.TRUST, "validates its memory")
            g.add_edge(w, "firmware", EdgeKind.TRUST, "signs its evidence")
        g.add_edge("l1", "firmware", EdgeKind.TRUST, "root of trust")
        return g

    def capabilities(self, config: PartitionConfig) -> dict[str, CapabilityAnswer]:
        return {"validate": CapabilityAnswer(supported=True, mechanism="FAKE.VALIDATE"),
                "convert": CapabilityAnswer(supported=False, reason="the fake host shares nothing")}

    def cost_table(self) -> CostTable:
        return CostTable(primitives={"FAKE.VALIDATE": Cost(ns=100, source="made up")},
                         switches={"FAKE.SWITCH": Cost(ns=2000, source="made up")})

    def direct_primitives(self, config: PartitionConfig, layer: str) -> list[str]:
        return []

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable
                       ) -> Machine:
        return FakeMachine(self, config, trace, self.graph(config), costs)


__all__ = ["PAGE_2M", "FakeBackend"]
