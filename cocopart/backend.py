"""The plug-in contract every backend implements.

A backend (entry-point group ``cocopart.backends``) describes one vendor's partitioning
architecture and builds :class:`Machine` instances: executable models of that hardware and
firmware. The vendor-neutral pieces it plugs into:

* :class:`PrivilegedPlatform` — the privileged layer's primitives in neutral terms (validate
  a page for a layer, rescind it, set a layer's access, build/start/stop a vCPU context, get a
  hardware report, post an interrupt, extend a measurement). The protocol handlers in
  :mod:`cocopart.service` are written once against it.
* :class:`Transport` — the L2 -> L1 world switch that carries a protocol call (SNP: calling
  area + VMGEXIT(SNP_RUN_VMPL); TDX: the L2's TDCALL exiting to L1 and TDG.VP.ENTER back). The
  call_pending handshake and the INCOMPLETE/BUSY retry loop are here, once.
* :class:`Machine` — executes operations, exposes state in neutral terms
  (:meth:`Machine.memory_view`, :meth:`Machine.access`), and plans an operation by running
  it on a fork (so a plan can never drift from what execution does).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, Field

from cocopart.errors import NotSupportedError
from cocopart.model import Access, Layer, PartitionConfig
from cocopart.platform import HardwareEvidence, PageOpResult, PrivilegedPlatform
from cocopart.transport import Transport
from cocopart.views import AccessOutcome, MemoryRun, VcpuView, merged

if TYPE_CHECKING:  # imported where used: listing backends needs none of the machine models
    from cocopart.client import ProtocolClient
    from cocopart.layers import LayerGraph
    from cocopart.ops import (
        ConfigureInterrupts,
        EndOfInterrupt,
        InjectInterrupt,
        Operation,
        OperationResult,
    )
    from cocopart.service.dispatcher import ServiceDispatcher
    from cocopart.trace import CostTable, Event, Trace
    from cocopart.workload import WorkloadSide
    from cocopart.workload_hooks import WorkloadHooks


class InterruptEngine(Protocol):
    """What a backend's interrupt model answers (cocopart.interrupts.InterruptDelivery)."""

    def inject(self, op: InjectInterrupt) -> OperationResult: ...

    def eoi(self, op: EndOfInterrupt) -> OperationResult: ...

    def configure(self, op: ConfigureInterrupts) -> OperationResult: ...


class CapabilityAnswer(BaseModel):
    """Whether a backend supports something, how, or why not."""

    supported: bool
    mechanism: str = Field(default="", description="The vendor primitives it maps to.")
    reason: str | None = Field(default=None, description="Why not, when unsupported.")


class Machine(ABC):
    """One executable model of a partitioned guest on one backend."""

    def __init__(
        self,
        backend: Backend,
        config: PartitionConfig,
        trace: Trace,
        graph: LayerGraph,
        costs: CostTable,
    ) -> None:
        from cocopart.authority import Authority, Ownership
        from cocopart.memory import GuestMemory, ProtocolLayout

        self.backend = backend
        self.config = config
        self.trace = trace
        self.graph = graph
        self.costs = costs
        self.layout = ProtocolLayout(config.memory, config.workload_layers, config.vcpus)
        self.memory = GuestMemory(self.layout.total)
        #: Who owns each page and who may ask for what (cocopart.authority); the privileged
        #: layer's service (cocopart.service.build) wires it to the platform's page tables.
        self.ownership = Ownership(self.layout, config.workloads, config.memory_map)
        self.authority = Authority.from_edges(
            self.ownership, graph.control_edges(), config.workloads
        )

    #: The requesting side of every non-interrupt operation (built by the backend's machine
    #: with its :class:`~cocopart.workload_hooks.WorkloadHooks`).
    workload_side: WorkloadSide
    platform: PrivilegedPlatform
    service: ServiceDispatcher
    transport: Transport
    client: ProtocolClient
    #: The backend's interrupt engine (inject / eoi / configure); None: interrupts are not
    #: modelled, and the interrupt operations answer not-supported.
    interrupts: InterruptEngine | None = None

    def execute(self, op: Operation) -> OperationResult:
        """Carry ``op`` out on the model, recording every primitive in ``self.trace``:
        interrupt operations go to the interrupt engine; every other operation follows the
        route the layer graph resolves (not routable: ``not-supported``, nothing runs)."""
        from cocopart.ops import (
            ConfigureInterrupts,
            EndOfInterrupt,
            InjectInterrupt,
            OperationResult,
        )

        if isinstance(op, (InjectInterrupt, EndOfInterrupt, ConfigureInterrupts)):
            engine = self.interrupts
            if engine is None:
                return OperationResult.not_supported(
                    op.describe(), "this backend models no interrupt delivery"
                )
            if isinstance(op, InjectInterrupt):
                return engine.inject(op)
            if isinstance(op, EndOfInterrupt):
                return engine.eoi(op)
            return engine.configure(op)
        try:
            route = self.graph.route(op.route_capability, op.layer)
        except NotSupportedError as err:
            return OperationResult.not_supported(op.describe(), self.why_not(op, err.reason))
        return self.workload_side.run(op, route)

    def why_not(self, op: Operation, graph_reason: str) -> str:
        """The reason an operation has no route: the capability matrix's answer when it
        says unsupported, else the graph's."""
        answer = self.backend.capabilities(self.config).get(op.capability.value)
        if answer is not None and not answer.supported and answer.reason:
            return answer.reason
        return f"{op.op} from {op.layer}: {graph_reason}"

    @abstractmethod
    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        """Runs of equal neutral state over ``[start, end)`` (default: guest RAM)."""

    def access(self, layer: str, gpa: int, access: Access) -> AccessOutcome:
        """Simulate ``layer`` touching ``gpa`` with ``access`` (one bit) and report the outcome.
        Default, from :meth:`memory_view`: a validated private page the layer holds
        ``access`` on is fine; anything else faults to the privileged layer."""
        [run] = self.memory_view(gpa, gpa + 1)
        held = Access.parse(run.access.get(layer, "")) if run.validated else Access.NONE
        if held & access == access:
            return AccessOutcome(ok=True)
        return AccessOutcome(ok=False, fault="permission fault", handled_by="l1")

    def vcpus(self) -> list[VcpuView]:
        """Every vCPU of every workload layer. Default: the contexts the privileged layer's
        service holds (each running)."""
        contexts = self.workload_side.dispatcher.state.contexts
        return [
            VcpuView(
                layer=r.layer, vcpu=r.vcpu, state="running", context_gpa=gpa, apic_id=r.apic_id
            )
            for gpa, r in sorted(contexts.items(), key=lambda kv: (kv[1].layer, kv[1].vcpu))
        ]

    def serve(
        self,
        platform: PrivilegedPlatform,
        transport: Callable[[ServiceDispatcher], Transport],
        hooks: Callable[[], WorkloadHooks],
        *,
        level_of: Callable[[str], int],
        apic_emulation: bool = False,
    ) -> None:
        """Wire the privileged layer and the requesting side: the protocol service over
        ``platform`` (:func:`cocopart.service.build.build_service`, with this guest's
        authority), the transport, the protocol client and :attr:`workload_side`."""
        from cocopart.client import ProtocolClient
        from cocopart.service.build import build_service
        from cocopart.workload import WorkloadSide

        cfg = self.config
        self.platform = platform
        self.service = build_service(
            platform,
            self.memory,
            self.layout,
            cfg.workloads,
            self.trace,
            services=cfg.services,
            seed=cfg.seed,
            level_of=level_of,
            apic_emulation=apic_emulation,
            authority=self.authority,
            requester_entry=cfg.attest_requester_entry,
        )
        self.transport = transport(self.service)
        self.client = ProtocolClient(self.transport, self.memory, self.layout, cfg.workloads)
        self.workload_side = WorkloadSide(
            hooks(), self.client, cfg, self.layout, self.graph, self.ownership, self.service
        )

    def shared_on_fork(self) -> list[Any]:
        """Objects a fork shares instead of copying (immutable or key material)."""
        return [self.backend, self.graph, self.costs]

    def fork(self) -> Machine:
        """An independent copy with an empty trace."""
        from cocopart.trace import Trace

        memo: dict[int, Any] = {id(o): o for o in self.shared_on_fork()}
        memo[id(self.trace)] = Trace()
        return copy.deepcopy(self, memo)

    def plan(self, op: Operation) -> list[Event]:
        """The ordered primitives ``op`` would execute now, without changing this machine."""
        other = self.fork()
        other.execute(op)
        return other.trace.events()


class Backend(ABC):
    """A vendor's partitioning architecture."""

    name: ClassVar[str]
    vendor: ClassVar[str]
    title: ClassVar[str]
    distribution: ClassVar[str]

    @property
    def version(self) -> str:
        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return "unknown"

    def check_config(self, config: PartitionConfig) -> None:
        """Raise :class:`cocopart.errors.ConfigError` for options this backend refuses."""

    @abstractmethod
    def layers(self, config: PartitionConfig) -> list[Layer]:
        """Every layer of a guest with this configuration, with the vendor's names."""

    @abstractmethod
    def graph(self, config: PartitionConfig) -> LayerGraph:
        """The layer graph: capabilities per layer, call/switch/memory/trust edges."""

    @abstractmethod
    def capabilities(self, config: PartitionConfig) -> dict[str, CapabilityAnswer]:
        """Capability matrix: each operation kind, interrupt mode and feature."""

    def cost_table(self) -> CostTable:
        """Default costs of this backend's primitives and world switches, with sources.
        Default: none (every primitive and switch costs 0 ns until a cost file says)."""
        from cocopart.trace import CostTable

        return CostTable(primitives={}, switches={})

    def direct_primitives(self, config: PartitionConfig, layer: str) -> list[str]:
        """What a layer does itself, without another layer: by default the capabilities the
        layer graph gives the layer (a backend may name its instructions instead)."""
        node = self.graph(config).node(layer)
        return [c.removesuffix("@self") for c in node.capabilities]

    #: The machine class :meth:`create_machine` builds by default.
    machine: ClassVar[type[Machine]]

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable) -> Machine:
        """A fresh machine model, launched: the privileged layer runs, workloads exist.
        Default: ``machine(self, config, trace, self.graph(config), costs)``."""
        return self.machine(self, config, trace, self.graph(config), costs)


__all__ = [
    "AccessOutcome",
    "Backend",
    "CapabilityAnswer",
    "HardwareEvidence",
    "InterruptEngine",
    "Machine",
    "MemoryRun",
    "PageOpResult",
    "PrivilegedPlatform",
    "Transport",
    "VcpuView",
    "merged",
]
