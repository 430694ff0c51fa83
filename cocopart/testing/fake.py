"""A fake backend for testing the core and tools without any vendor package: an idealised
architecture with one primitive per neutral action (FAKE.VALIDATE, FAKE.GRANT, ...) and a
transport of one world switch each way. It is written against :mod:`cocopart.spi` like any
backend and keeps the contract (:class:`cocopart.testing.BackendContract`).

Memory state per run: (private, validated, access of l2.1, l2.2, l2.3).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from cocopart import spi
from cocopart.views import RunState, build_view

PAGE_2M = spi.PAGE_2M


class Page(NamedTuple):
    private: bool = False
    validated: bool = False
    access: tuple[int, int, int] = (0, 0, 0)


def _with(access: tuple[int, int, int], i: int, value: int) -> tuple[int, int, int]:
    acc = list(access)
    acc[i] = value
    return (acc[0], acc[1], acc[2])


class FakePlatform(spi.PrivilegedPlatform):
    vendor: ClassVar[str] = "fake"

    def __init__(self, machine: FakeMachine) -> None:
        self.m = machine

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return 0 <= gpa and gpa + size <= self.m.layout.total

    def _idx(self, layer: str) -> int:
        return self.m.workloads.index(layer)

    def layer_access(self, layer: str, start: int, end: int) -> spi.Access:
        if layer == spi.L1:
            return spi.Access.RWX
        held = spi.Access.RWX
        for _s, _e, v in self.m.pages.runs(start, end):
            held &= spi.Access(v.access[self._idx(layer)]) if v.private else spi.Access.RWX
        return held

    def validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> spi.PageOpResult:
        end = gpa + page_bytes * count
        v = self.m.pages.uniform(gpa, end)
        if v is not None and v.validated and not ignore_unchanged:
            return spi.PageOpResult(0, spi.ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        acc = (
            (0, 0, 0)
            if layer == spi.L1
            else _with((0, 0, 0), self._idx(layer), int(spi.Access.RWX))
        )
        self.m.pages.set(gpa, end, Page(True, True, acc))
        self.m.trace.record("l1", "FAKE.VALIDATE", f"{page_bytes >> 10}K", count=count)
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def rescind_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> spi.PageOpResult:
        self.m.pages.set(gpa, gpa + page_bytes * count, Page(True, False))
        self.m.trace.record("l1", "FAKE.RESCIND", count=count)
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def set_access(
        self, target: str, gpa: int, page_bytes: int, count: int, access: spi.Access
    ) -> spi.PageOpResult:
        i = self._idx(target)
        self.m.pages.update(
            gpa,
            gpa + page_bytes * count,
            lambda p: p._replace(access=_with(p.access, i, int(access))),
        )
        self.m.trace.record("l1", "FAKE.GRANT", target, count=count)
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        self.m.running[(layer, apic_id)] = context_gpa
        self.m.trace.record("l1", "FAKE.START_VCPU", layer)
        return spi.ResultCode.SUCCESS

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        for k, v in list(self.m.running.items()):
            if v == context_gpa:
                del self.m.running[k]
        return spi.ResultCode.SUCCESS

    def apic_ids(self) -> set[int]:
        return set(range(self.m.config.vcpus))

    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> spi.HardwareEvidence | int:
        self.m.trace.record("l1", "FAKE.REPORT", on_behalf_of)
        return spi.HardwareEvidence(raw=b"FAKE" + report_data, format="fake-report")

    def extend_measurement(self, register: int, digest: bytes) -> int:
        return spi.ResultCode.SUCCESS

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        return spi.ResultCode.SUCCESS

    def apic_emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        self.m.feature_bits[(layer, vcpu)] = enabled


class FakeTransport(spi.Transport):
    mechanism: ClassVar[str] = "FAKE.SWITCH"


class FakeHooks(spi.WorkloadHooks):
    """The fake's answers to the core's requesting side."""

    def __init__(self, machine: FakeMachine) -> None:
        self.m = machine

    def host_convert(
        self, layer: str, runs: list[spi.PageRun], private: bool
    ) -> spi.ArchError | None:
        raise spi.NotSupportedError("convert", "the fake host shares nothing")

    def direct_pages(
        self,
        rng: spi.GpaRange,
        forced: spi.PageSize | None,
        *,
        validate: bool,
        ignore_unchanged: bool,
    ) -> spi.DirectResult:
        op = self.m.platform.validate_pages if validate else self.m.platform.rescind_pages
        _done, code = op(spi.L1, rng.start, rng.size, 1, ignore_unchanged=ignore_unchanged)
        if code:
            return spi.DirectResult(
                0,
                spi.ArchError(
                    vendor="fake", mnemonic="FAKE.VALIDATE", code=code, message="no change"
                ),
            )
        return spi.DirectResult(rng.size)

    def set_access(
        self, layer: str, target: str, rng: spi.GpaRange, access: spi.Access, *, direct: bool
    ) -> spi.DirectResult:
        if not direct:  # asked of l1 over the fake switch, as the graph routes it
            self.m.trace.switch(layer, spi.L1, FakeTransport.mechanism)
        self.m.platform.set_access(target, rng.start, rng.size, 1, access)
        if not direct:
            self.m.trace.switch(spi.L1, layer, FakeTransport.mechanism)
        return spi.DirectResult(rng.size, data={"via": layer if direct else spi.L1})

    def hardware_attestation(
        self, layer: str, report_data: bytes
    ) -> spi.HardwareAttestation | spi.ArchError:
        """Through l1 to the firmware, as the graph routes it."""
        trace = self.m.trace
        if layer != spi.L1:
            trace.switch(layer, spi.L1, FakeTransport.mechanism)
        ev = self.m.platform.hardware_report(report_data, layer)
        if layer != spi.L1:
            trace.switch(spi.L1, layer, FakeTransport.mechanism)
        assert not isinstance(ev, int)
        return spi.HardwareAttestation(self.evidence(ev.raw, b"", None, None))

    def evidence(
        self, raw: bytes, cert_table: bytes, nonce: bytes | None, manifest: bytes | None
    ) -> spi.Evidence:
        return spi.Evidence(
            vendor="fake", format="fake-report", raw=raw, nonce=nonce, manifest=manifest
        )


class FakeMachine(spi.Machine):
    def __init__(
        self,
        backend: spi.Backend,
        config: spi.PartitionConfig,
        trace: spi.Trace,
        graph: spi.LayerGraph,
        costs: spi.CostTable,
    ) -> None:
        super().__init__(backend, config, trace, graph, costs)
        self.workloads = config.workloads
        self.pages: spi.RangeMap[Page] = spi.RangeMap(self.layout.total, Page())
        for i in range(len(self.workloads)):  # protocol pages ready at launch
            s, e = self.layout.layer_region(i)
            self.pages.set(s, e, Page(True, True, _with((0, 0, 0), i, int(spi.Access.RW))))
        self.running: dict[tuple[str, int], int] = {}
        alternate = config.interrupt_mode == spi.InterruptMode.ALTERNATE
        self.feature_bits: dict[tuple[str, int], bool] = {
            (w, v): alternate for w in self.workloads for v in range(config.vcpus)
        }
        self.serve(
            FakePlatform(self),
            lambda svc: FakeTransport(svc, self.memory, trace),
            lambda: FakeHooks(self),
            level_of=lambda w: self.workloads.index(w) + 1,
            apic_emulation=alternate,
        )

    def memory_view(self, start: int = 0, end: int | None = None) -> list[spi.MemoryRun]:
        names = self.workloads

        def state(p: Page) -> RunState:
            return (
                p.private,
                p.validated,
                tuple(
                    (w, spi.Access(p.access[i]).short()) for i, w in enumerate(names) if p.access[i]
                ),
                False,
            )

        return build_view(self.pages.runs(start, self.config.memory if end is None else end), state)

    def vcpus(self) -> list[spi.VcpuView]:
        return [
            spi.VcpuView(layer=layer, vcpu=v, state="running", context_gpa=g)
            for (layer, v), g in sorted(self.running.items())
        ]


class FakeBackend(spi.Backend):
    name: ClassVar[str] = "fake"
    vendor: ClassVar[str] = "fake"
    title: ClassVar[str] = "Fake partitioned architecture (tests only)"
    distribution: ClassVar[str] = "cocopart"
    machine: ClassVar[type[spi.Machine]] = FakeMachine
    #: What the fake's privileged layer serves (everything else is not modelled).
    SERVED = (
        "validate",
        "rescind",
        "set-access",
        "create-vcpu",
        "delete-vcpu",
        "attest-hardware",
        "attest-service",
    )

    def layers(self, config: spi.PartitionConfig) -> list[spi.Layer]:
        out = [
            spi.Layer(name="firmware", role=spi.LayerRole.FIRMWARE, vendor_name="FW"),
            spi.Layer(name="host", role=spi.LayerRole.HOST, vendor_name="HV"),
            spi.Layer(name="l1", role=spi.LayerRole.PRIVILEGED, vendor_name="PL0", level=0),
        ]
        out += [
            spi.Layer(name=w, role=spi.LayerRole.WORKLOAD, vendor_name=f"PL{i + 1}", level=i + 1)
            for i, w in enumerate(config.workloads)
        ]
        return out

    def graph(self, config: spi.PartitionConfig) -> spi.LayerGraph:
        g = spi.LayerGraph()
        caps = {
            "firmware": ["attest-hardware"],
            "l1": [
                "validate",
                "rescind",
                "set-access:*",
                "create-vcpu",
                "delete-vcpu",
                "attest-service",
            ],
        }
        for layer in self.layers(config):
            extra = ["set-access:l2.2"] if layer.name == "l2.1" else []  # l2.1 controls l2.2
            g.add_layer(layer, caps.get(layer.name, []) + extra)
        g.add_edge("l1", "firmware", spi.EdgeKind.CALL, "FAKE.FW_CALL", 1000)
        g.add_edge("l1", "host", spi.EdgeKind.WORLD_SWITCH, "FAKE.EXIT", 500)
        for w in config.workloads:
            g.add_edge(w, "l1", spi.EdgeKind.WORLD_SWITCH, "FAKE.SWITCH", 2000)
            g.add_edge(w, "host", spi.EdgeKind.CALL, "FAKE.HYPERCALL", 3000)
            g.add_edge("l1", w, spi.EdgeKind.MEMORY_CONTROL, "FAKE.GRANT")
        if "l2.2" in config.workloads:  # the fake l2.1 controls l2.2 (like SNP VMPL1/VMPL2)
            g.add_edge("l2.1", "l2.2", spi.EdgeKind.MEMORY_CONTROL, "FAKE.GRANT")
        for w in config.workloads:
            g.add_edge(w, "l1", spi.EdgeKind.TRUST, "validates its memory")
            g.add_edge(w, "firmware", spi.EdgeKind.TRUST, "signs its evidence")
        g.add_edge("l1", "firmware", spi.EdgeKind.TRUST, "root of trust")
        return g

    def capabilities(self, config: spi.PartitionConfig) -> dict[str, spi.CapabilityAnswer]:
        reasons = {"convert": "the fake host shares nothing"}
        return {
            c.value: spi.CapabilityAnswer(supported=True, mechanism=f"FAKE.{c.name}")
            if c.value in self.SERVED
            else spi.CapabilityAnswer(
                supported=False, reason=reasons.get(c.value, "not modelled by the fake backend")
            )
            for c in spi.Capability
        }

    def cost_table(self) -> spi.CostTable:
        return spi.CostTable(
            primitives={"FAKE.VALIDATE": spi.Cost(ns=100, source="made up")},
            switches={"FAKE.SWITCH": spi.Cost(ns=2000, source="made up")},
        )

    def direct_primitives(self, config: spi.PartitionConfig, layer: str) -> list[str]:
        return []


__all__ = [
    "PAGE_2M",
    "FakeBackend",
    "FakeHooks",
    "FakeMachine",
    "FakePlatform",
    "FakeTransport",
    "Page",
]
