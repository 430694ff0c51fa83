"""A third backend against ``cocopart.spi`` only, in under 150 lines: Arm CCA planes (plane 0
validates for planes 1-3 with RSI_IPA_STATE_SET + RSI_MEM_SET_PERM_VALUE; no interrupts).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from cocopart import spi


class Page(NamedTuple):
    ram: bool = False  # RIPAS RAM (private and usable); else EMPTY / shared
    perms: tuple[int, ...] = (0, 0, 0)  # overlay of planes 1-3


class PlanesPlatform(spi.PrivilegedPlatform):
    def __init__(self, m: PlanesMachine) -> None:
        self.m = m

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return 0 <= gpa and gpa + size <= self.m.layout.total

    def layer_access(self, layer: str, start: int, end: int) -> spi.Access:
        i, held = self.m.workloads.index(layer), spi.Access.RWX
        for _s, _e, v in self.m.pages.runs(start, end):
            held &= spi.Access(v.perms[i]) if v.ram else held
        return held

    def overlay(self, start: int, end: int, plane: str, perms: int) -> None:
        i = self.m.workloads.index(plane)
        self.m.pages.update(
            start,
            end,
            lambda p: Page(
                True, tuple(perms if j == i else (x if p.ram else 0) for j, x in enumerate(p.perms))
            ),
        )
        self.m.trace.record("l1", "RSI_MEM_SET_PERM_VALUE", plane)

    def validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> spi.PageOpResult:
        end = gpa + page_bytes * count
        if not ignore_unchanged and any(v.ram for _s, _e, v in self.m.pages.runs(gpa, end)):
            return spi.PageOpResult(0, spi.ResultCode.PVALIDATE_FAIL_NO_CHANGE)
        self.m.trace.record("l1", "RSI_IPA_STATE_SET", "RAM", count=count)
        self.overlay(gpa, end, layer, int(spi.Access.RWX))
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def rescind_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> spi.PageOpResult:
        self.m.pages.set(gpa, gpa + page_bytes * count, Page())
        self.m.trace.record("l1", "RSI_IPA_STATE_SET", "EMPTY", count=count)
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def set_access(
        self, target: str, gpa: int, page_bytes: int, count: int, access: spi.Access
    ) -> spi.PageOpResult:
        self.overlay(gpa, gpa + page_bytes * count, target, int(access))
        return spi.PageOpResult(count, spi.ResultCode.SUCCESS)

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        return spi.ResultCode.SUCCESS  # the plane's REC starts at its next RSI_PLANE_ENTER

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        return spi.ResultCode.SUCCESS

    def apic_ids(self) -> set[int]:
        return set(range(self.m.config.vcpus))


class PlaneExit(spi.Transport):
    mechanism: ClassVar[str] = "PLANE_EXIT"
    return_mechanism: ClassVar[str] = "RSI_PLANE_ENTER"


class PlanesHooks(spi.WorkloadHooks):
    def __init__(self, m: PlanesMachine) -> None:
        self.m = m

    def host_convert(
        self, layer: str, runs: list[spi.PageRun], private: bool
    ) -> spi.ArchError | None:
        self.m.trace.record(layer, "RSI_IPA_STATE_SET", "RAM" if private else "EMPTY")
        self.m.trace.switch(layer, "host", "REC_EXIT")
        self.m.pages.set(runs[0].gpa, runs[-1].gpa + runs[-1].size, Page())
        self.m.trace.switch("host", layer, "REC_ENTER")
        return None

    def direct_pages(
        self,
        rng: spi.GpaRange,
        forced: spi.PageSize | None,
        *,
        validate: bool,
        ignore_unchanged: bool,
    ) -> spi.DirectResult:
        self.m.pages.set(rng.start, rng.end, Page(validate))
        self.m.trace.record("l1", "RSI_IPA_STATE_SET", "RAM" if validate else "EMPTY")
        return spi.DirectResult(rng.size)

    def set_access(
        self, layer: str, target: str, rng: spi.GpaRange, access: spi.Access, *, direct: bool
    ) -> spi.DirectResult:
        if layer != spi.L1:
            raise spi.NotSupportedError("set-access", "only plane 0 sets permission overlays")
        self.m.platform.set_access(target, rng.start, rng.size, 1, access)
        return spi.DirectResult(rng.size)


class PlanesMachine(spi.Machine):
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
        for i in range(len(self.workloads)):  # protocol pages: the plane's, read/write
            self.pages.set(
                *self.layout.layer_region(i),
                Page(True, tuple(int(spi.Access.RW) * (j == i) for j in range(3))),
            )
        self.serve(
            PlanesPlatform(self),
            lambda svc: PlaneExit(svc, self.memory, trace),
            lambda: PlanesHooks(self),
            level_of=lambda w: self.workloads.index(w) + 1,
        )

    def memory_view(self, start: int = 0, end: int | None = None) -> list[spi.MemoryRun]:
        def state(p: Page) -> spi.RunState:
            acc = tuple((w, spi.Access(p.perms[i]).short()) for i, w in enumerate(self.workloads))
            return (p.ram, p.ram, tuple(a for a in acc if a[1] != "----"), False)

        return spi.build_view(self.pages.runs(start, end or self.config.memory), state)


class PlanesBackend(spi.Backend):
    name: ClassVar[str] = "planes"
    vendor: ClassVar[str] = "arm"
    title: ClassVar[str] = "Arm CCA planes (sketch)"
    distribution: ClassVar[str] = "cocopart"
    machine: ClassVar[type[spi.Machine]] = PlanesMachine
    CAN = ("validate", "rescind", "convert", "set-access", "create-vcpu", "delete-vcpu")

    def layers(self, config: spi.PartitionConfig) -> list[spi.Layer]:
        return [
            spi.Layer(name="host", role=spi.LayerRole.HOST, vendor_name="host"),
            spi.Layer(name="l1", role=spi.LayerRole.PRIVILEGED, vendor_name="plane 0"),
        ] + [
            spi.Layer(
                name=w, role=spi.LayerRole.WORKLOAD, vendor_name=f"plane {i + 1}", level=i + 1
            )
            for i, w in enumerate(config.workloads)
        ]

    def graph(self, config: spi.PartitionConfig) -> spi.LayerGraph:
        g = spi.LayerGraph()
        caps = {"host": ["convert"], "l1": [*self.CAN[:2], "set-access:*", *self.CAN[4:]]}
        for layer in self.layers(config):
            g.add_layer(layer, caps.get(layer.name, []))
        for w in config.workloads:
            g.add_edge(w, "l1", spi.EdgeKind.WORLD_SWITCH, "PLANE_EXIT", 1500)
            g.add_edge(w, "host", spi.EdgeKind.WORLD_SWITCH, "REC_EXIT", 3000)
            g.add_edge("l1", w, spi.EdgeKind.MEMORY_CONTROL, "RSI_MEM_SET_PERM_VALUE")
            g.add_edge(w, "l1", spi.EdgeKind.TRUST, "plane 0 manages its memory")
        return g

    def capabilities(self, config: spi.PartitionConfig) -> dict[str, spi.CapabilityAnswer]:
        return {
            c.value: spi.CapabilityAnswer(supported=True, mechanism="plane 0's RSI calls")
            if c.value in self.CAN
            else spi.CapabilityAnswer(supported=False, reason="not in this sketch")
            for c in spi.Capability
        }
