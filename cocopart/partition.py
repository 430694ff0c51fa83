"""``Partition``: what users embed. A configuration, a backend, its layer graph, a machine
model and the trace of everything executed.

Thread safety: a Partition serialises operations with one re-entrant lock; any number of
threads may call :meth:`run`, :meth:`plan` and the read methods concurrently, and each
operation executes atomically with respect to the others (the model has one global order,
like the RMP/SEPT updates it models).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cocopart.backend import Backend, CapabilityAnswer, MemoryRun, VcpuView
from cocopart.errors import ConfigError, NotSupportedError
from cocopart.layers import LayerGraph, Route
from cocopart.model import Layer, PartitionConfig
from cocopart.ops import Operation, OperationResult, parse_operation
from cocopart.registry import load_backend
from cocopart.trace import CostTable, Event, Trace, load_cost_overrides

if TYPE_CHECKING:
    from cocopart.interrupts import StreamResult


class Plan(BaseModel):
    """The primitives an operation would execute, in order, with totals."""

    operation: str
    route: Route | None
    events: list[Event]
    primitives: int
    world_switches: int
    estimated_ns: float


def config_from(data: PartitionConfig | dict[str, Any], source: str | None = None
                ) -> PartitionConfig:
    """Validate a configuration; errors name the field."""
    if isinstance(data, PartitionConfig):
        return data
    try:
        return PartitionConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(first["msg"], field=field, source=source) from err


class Partition:
    """A partitioned confidential guest on one backend: ``backend`` is an installed
    backend's name (``cocopart.registry.installed()``) or a :class:`Backend` instance."""

    def __init__(self, config: PartitionConfig | dict[str, Any],
                 backend: str | Backend, *, costs: CostTable | Path | None = None
                 ) -> None:
        self.config = config_from(config)
        self.backend = load_backend(backend) if isinstance(backend, str) else backend
        self.backend.check_config(self.config)
        table = self.backend.cost_table()
        if isinstance(costs, Path):
            table = load_cost_overrides(table, costs)
        elif isinstance(costs, CostTable):
            table = costs
        self.costs = table
        self.graph: LayerGraph = self.backend.graph(self.config)
        self.trace = Trace()
        self.machine = self.backend.create_machine(self.config, self.trace, self.costs)
        self._lock = threading.RLock()
        self.history: list[OperationResult] = []

    # -- running ---------------------------------------------------------------------------
    def route(self, op: Operation) -> Route | None:
        try:
            return self.graph.route(op.route_capability, op.layer)
        except (NotSupportedError, KeyError):
            return None

    def run(self, op: Operation | dict[str, Any]) -> OperationResult:
        """Execute one operation; the result carries its own primitive and switch counts."""
        operation = parse_operation(op) if isinstance(op, dict) else op
        with self._lock:
            if operation.layer not in self.graph:
                raise ConfigError(f"no layer '{operation.layer}' in this guest (layers: "
                                  f"{', '.join(l.name for l in self.graph.layers)})",
                                  field="layer")
            mark = self.trace.mark()
            result = self.machine.execute(operation)
            delta = self.trace.since(mark)
            route = self.route(operation)
            result = result.model_copy(update={
                "primitives": delta.total_primitives,
                "world_switches": delta.total_switches,
                "estimated_ns": self.costs.estimate(delta),
                "data": {**result.data, "route": route.describe() if route else None},
            })
            self.history.append(result)
            return result

    def run_all(self, ops: Iterable[Operation | dict[str, Any]]) -> list[OperationResult]:
        return [self.run(op) for op in ops]

    def inject_many(self, items: Iterable[tuple[str, int, int]], *, requester: str = "host"
                    ) -> StreamResult:
        """Inject every ``(target layer, vCPU, vector)`` from ``requester`` and complete each
        with the target's EOI, as a batch: every interrupt goes through the model's delivery
        semantics and is counted in the trace, but each state shape's primitive sequence is
        executed once and then repeated (:func:`cocopart.interrupts.run_stream`)."""
        from cocopart.interrupts import run_stream

        with self._lock:
            if requester not in self.graph:
                raise ConfigError(f"no layer '{requester}' in this guest", field="layer")
            return run_stream(self.machine, items, requester=requester, costs=self.costs)

    def plan(self, op: Operation | dict[str, Any]) -> Plan:
        """What ``op`` would execute now, without changing the guest."""
        operation = parse_operation(op) if isinstance(op, dict) else op
        with self._lock:
            events = self.machine.plan(operation)
        probe = Trace()
        for e in events:
            if e.kind == "primitive":
                probe.record(e.issuer, e.mnemonic, e.target, e.result, e.count)
            else:
                probe.switch(e.issuer, e.target, e.mnemonic, e.count)
        return Plan(operation=operation.describe(), route=self.route(operation), events=events,
                    primitives=probe.total_primitives, world_switches=probe.total_switches,
                    estimated_ns=self.costs.estimate(probe))

    # -- reading ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return self.graph.layers

    def capabilities(self) -> dict[str, CapabilityAnswer]:
        return self.backend.capabilities(self.config)

    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        with self._lock:
            return self.machine.memory_view(start, end)

    def vcpus(self) -> list[VcpuView]:
        with self._lock:
            return self.machine.vcpus()

    def estimated_ns(self) -> float:
        return self.costs.estimate(self.trace)
