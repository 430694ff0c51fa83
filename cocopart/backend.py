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
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from pydantic import BaseModel, Field

from cocopart.authority import Authority, Ownership
from cocopart.errors import NotSupportedError
from cocopart.memory import GuestMemory, ProtocolLayout
from cocopart.model import Access, Layer, PartitionConfig
from cocopart.ops import (
    ConfigureInterrupts,
    EndOfInterrupt,
    InjectInterrupt,
    Operation,
    OperationResult,
)
from cocopart.protocol.call import CallOutcome, Registers
from cocopart.protocol.calling_area import CALL_PENDING
from cocopart.protocol.ids import ResultCode
from cocopart.trace import CostTable, Event, Trace

if TYPE_CHECKING:
    from cocopart.client import ProtocolClient
    from cocopart.layers import LayerGraph
    from cocopart.service.dispatcher import ServiceDispatcher
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


class PageOpResult(NamedTuple):
    """Outcome of a page primitive over a run: pages done, then a protocol result code."""

    done: int
    code: int


class HardwareEvidence(BaseModel):
    """A report produced by the hardware for (or on behalf of) a layer."""

    raw: bytes
    certificates: list[bytes] = Field(default_factory=list)
    cert_table: bytes = Field(default=b"", description="Certificates as the vendor's table "
                              "layout for the guest's certificate buffer (SNP GUID table).")
    format: str


class PrivilegedPlatform(ABC):
    """Vendor primitives the privileged layer (SVSM at VMPL0 / TDX L1) serves with.

    Page primitives take a run of ``count`` pages of ``page_bytes`` (4K or 2M) from ``gpa``
    and return how many completed before the first failure plus the protocol result code
    (``ResultCode.SUCCESS`` or e.g. ``PVALIDATE_FAIL_SIZEMISMATCH``) — runs, never pages, so a
    1 TiB request stays cheap.
    """

    vendor: ClassVar[str]

    @abstractmethod
    def is_guest_range(self, gpa: int, size: int) -> bool:
        """True if ``[gpa, gpa + size)`` is guest memory (RAM or the protocol region)."""

    @abstractmethod
    def layer_access(self, layer: str, start: int, end: int) -> Access:
        """The access ``layer`` itself holds on every page of ``[start, end)`` (the
        intersection), read from the page tables without side effects: what the layer could
        do there without the privileged layer. Used to refuse confused-deputy buffers."""

    @abstractmethod
    def validate_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                       ignore_unchanged: bool) -> PageOpResult:
        """Make the pages private-and-usable and grant ``layer`` full access."""

    @abstractmethod
    def rescind_pages(self, layer: str, gpa: int, page_bytes: int, count: int, *,
                      ignore_unchanged: bool) -> PageOpResult:
        """Revoke every workload layer's access and un-validate the pages."""

    @abstractmethod
    def set_access(self, target: str, gpa: int, page_bytes: int, count: int,
                   access: Access) -> PageOpResult:
        """Set what workload layer ``target`` may do with the pages."""

    @abstractmethod
    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        """Turn the context page into a runnable vCPU of ``layer``; return a result code."""

    @abstractmethod
    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        """Stop the vCPU whose context page is ``context_gpa``; return a result code."""

    @abstractmethod
    def apic_ids(self) -> set[int]:
        """APIC IDs of the guest's CPUs."""

    # Optional primitives: the defaults answer "not supported" (the protocol's
    # UNSUPPORTED_CALL), so a platform without them still serves everything else.
    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        """A hardware report with ``report_data`` produced by the privileged layer, or a code.
        Default: not supported (this platform has no report the privileged layer can get)."""
        return ResultCode.UNSUPPORTED_CALL

    def extend_measurement(self, register: int, digest: bytes) -> int:
        """Extend a runtime measurement register; return a result code. Default: not
        supported (no runtime measurement registers)."""
        return ResultCode.UNSUPPORTED_CALL

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """Deliver ``vector`` to a workload vCPU; return a result code. Default: not
        supported (the privileged layer does not deliver interrupts)."""
        return ResultCode.UNSUPPORTED_CALL

    def apic_emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        """The privileged layer started or stopped emulating a vCPU's APIC (SNP: the
        AlternateInjection SEV feature in that vCPU's VMSA). Default: nothing to change."""


class Transport(ABC):
    """The L2 -> L1 world switch carrying one protocol call.

    :meth:`call` runs the common sequence (sev-snp.md §1.3): the caller sets call_pending in
    its calling area, the vendor mechanism switches to the privileged layer (:meth:`enter`),
    which recognises the request, clears call_pending and dispatches it; the mechanism
    switches back (:meth:`leave`); the caller exchanges call_pending with 0 — still 1 means
    nobody serviced the call — and retries INCOMPLETE and BUSY.
    """

    mechanism: ClassVar[str]
    #: Retries of INCOMPLETE / BUSY before the caller gives up (Linux loops on -EAGAIN).
    MAX_RETRIES: ClassVar[int] = 64

    def __init__(self, dispatcher: ServiceDispatcher, memory: GuestMemory, trace: Trace) -> None:
        self.dispatcher = dispatcher
        self.memory = memory
        self.trace = trace

    #: The mechanism of the switch back (default: :attr:`mechanism`).
    return_mechanism: ClassVar[str | None] = None

    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        """Switch from ``layer`` to the privileged layer; True if it sees a protocol request.
        Default: one world switch by :attr:`mechanism`, and the request is seen."""
        self.trace.switch(layer, "l1", self.mechanism)
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        """Switch back from the privileged layer to ``layer``. Default: one world switch by
        :attr:`return_mechanism`."""
        self.trace.switch("l1", layer, self.return_mechanism or self.mechanism)

    def call(self, layer: str, vcpu: int, regs: Registers) -> CallOutcome:
        caa = self.dispatcher.state.caa(layer, vcpu)
        notes: list[str] = []
        for attempt in range(self.MAX_RETRIES + 1):
            self.memory.write(caa + CALL_PENDING, b"\x01")
            request = Registers(regs.rax, regs.rcx, regs.rdx, regs.r8)
            # the privileged layer recognises a request only when call_pending is set
            if self.enter(layer, vcpu, request) and self.memory.read(caa + CALL_PENDING, 1)[0]:
                self.memory.write(caa + CALL_PENDING, b"\x00")
                self.dispatcher.dispatch(layer, vcpu, request)
            self.leave(layer, vcpu, request)
            pending = self.memory.read(caa + CALL_PENDING, 1)[0]
            self.memory.write(caa + CALL_PENDING, b"\x00")
            if pending:
                notes.append("call_pending still set after the switch: the call was not serviced")
                return CallOutcome(ResultCode.INVALID_REQUEST, request, attempt, notes)
            if request.rax in (ResultCode.INCOMPLETE, ResultCode.BUSY):
                notes.append(f"attempt {attempt}: {ResultCode(request.rax).name}, retrying")
                regs = Registers(regs.rax, request.rcx, request.rdx, request.r8)
                continue
            return CallOutcome(request.rax, request, attempt, notes)
        return CallOutcome(ResultCode.BUSY, regs, self.MAX_RETRIES, notes)


class MemoryRun(BaseModel):
    """Neutral view of a run of guest memory with equal state."""

    start: int
    end: int
    private: bool
    validated: bool = Field(description="Validated (SNP) / accepted (TDX) for private use.")
    access: dict[str, str] = Field(
        default_factory=dict, description="Workload layer -> access string ('rwus' letters).")
    context: bool = Field(default=False, description="Holds a vCPU context (VMSA).")
    owner: str = Field(default="l1", description="Who owns the pages (docs/authority.md).")
    assigned: bool = Field(default=False, description="Assigned to the owner for good (memory "
                           "map, protocol pages, l1's own); else a claimed or pool page.")


def merged(runs: Iterable[MemoryRun]) -> list[MemoryRun]:
    """Adjacent runs with equal neutral state joined into one (what ``memory_view``
    returns: never two equal neighbours)."""
    out: list[MemoryRun] = []
    for run in runs:
        last = out[-1] if out else None
        if last is not None and last.end == run.start and (
                last.private, last.validated, last.access, last.context) == (
                run.private, run.validated, run.access, run.context):
            last.end = run.end
        else:
            out.append(run)
    return out


class AccessOutcome(BaseModel):
    """What happens when a layer touches a page."""

    ok: bool
    fault: str | None = Field(default=None, description="e.g. '#VC 0x404', '#NPF', 'L2->L1 "
                              "EPT violation'.")
    handled_by: str | None = Field(default=None, description="Layer that sees the fault.")


class VcpuView(BaseModel):
    layer: str
    vcpu: int
    state: str  # "running" | "stopped"
    context_gpa: int | None = None
    apic_id: int | None = None


class Machine(ABC):
    """One executable model of a partitioned guest on one backend."""

    def __init__(self, backend: Backend, config: PartitionConfig, trace: Trace,
                 graph: LayerGraph, costs: CostTable) -> None:
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
        self.authority = Authority.from_edges(self.ownership, graph.control_edges(),
                                              config.workloads)

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
        if isinstance(op, (InjectInterrupt, EndOfInterrupt, ConfigureInterrupts)):
            engine = self.interrupts
            if engine is None:
                return OperationResult.not_supported(op.describe(), "this backend models no "
                                                     "interrupt delivery")
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
        return [VcpuView(layer=r.layer, vcpu=r.vcpu, state="running", context_gpa=gpa,
                         apic_id=r.apic_id)
                for gpa, r in sorted(contexts.items(), key=lambda kv: (kv[1].layer,
                                                                     kv[1].vcpu))]

    def serve(self, platform: PrivilegedPlatform,
              transport: Callable[[ServiceDispatcher], Transport],
              hooks: Callable[[], WorkloadHooks], *, level_of: Callable[[str], int],
              apic_emulation: bool = False) -> None:
        """Wire the privileged layer and the requesting side: the protocol service over
        ``platform`` (:func:`cocopart.service.build.build_service`, with this guest's
        authority), the transport, the protocol client and :attr:`workload_side`."""
        from cocopart.client import ProtocolClient
        from cocopart.service.build import build_service
        from cocopart.workload import WorkloadSide

        cfg = self.config
        self.platform = platform
        self.service = build_service(platform, self.memory, self.layout, cfg.workloads,
                                     self.trace, services=cfg.services, seed=cfg.seed,
                                     level_of=level_of, apic_emulation=apic_emulation,
                                     authority=self.authority)
        self.transport = transport(self.service)
        self.client = ProtocolClient(self.transport, self.memory, self.layout, cfg.workloads)
        self.workload_side = WorkloadSide(hooks(), self.client, cfg, self.layout, self.graph,
                                          self.ownership, self.service)

    def shared_on_fork(self) -> list[Any]:
        """Objects a fork shares instead of copying (immutable or key material)."""
        return [self.backend, self.graph, self.costs]

    def fork(self) -> Machine:
        """An independent copy with an empty trace."""
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
        return CostTable(primitives={}, switches={})

    def direct_primitives(self, config: PartitionConfig, layer: str) -> list[str]:
        """What a layer does itself, without another layer: by default the capabilities the
        layer graph gives the layer (a backend may name its instructions instead)."""
        node = self.graph(config).node(layer)
        return [c.removesuffix("@self") for c in node.capabilities]

    #: The machine class :meth:`create_machine` builds by default.
    machine: ClassVar[type[Machine]]

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable
                       ) -> Machine:
        """A fresh machine model, launched: the privileged layer runs, workloads exist.
        Default: ``machine(self, config, trace, self.graph(config), costs)``."""
        return self.machine(self, config, trace, self.graph(config), costs)
