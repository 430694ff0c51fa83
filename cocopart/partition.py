"""``Partition``: what users embed. A configuration, a backend, its layer graph, a machine
model and the trace of everything executed.

Thread safety: a Partition serialises operations with one re-entrant lock; any number of
threads may call :meth:`run`, :meth:`plan` and the read methods concurrently, and each
operation executes atomically with respect to the others (the model has one global order,
like the RMP/SEPT updates it models).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cocopart.backend import Backend, CapabilityAnswer, MemoryRun, VcpuView
from cocopart.errors import (
    CocopartError,
    ConfigError,
    InputError,
    InternalError,
    NotSupportedError,
)
from cocopart.executor import authorize, check_bounds, route_mismatch, settle
from cocopart.layers import LayerGraph, Route
from cocopart.model import Layer, PartitionConfig
from cocopart.ops import OPERATION_TYPES, Operation, OperationResult, parse_operation
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


def config_from(
    data: PartitionConfig | dict[str, Any], source: str | None = None
) -> PartitionConfig:
    """Validate a configuration; errors name the field."""
    if isinstance(data, PartitionConfig):
        return data
    try:
        return PartitionConfig.model_validate(data)
    except InputError as err:
        if source is None:
            raise
        raise InputError(err.message, field=err.field, source=source, errors=err.errors) from None


def operation_from(op: Any) -> Operation:
    """An operation from an Operation or a dict; anything else is a ConfigError naming the
    field that is wrong."""
    if isinstance(op, OPERATION_TYPES):
        return op
    if not isinstance(op, dict):
        raise ConfigError(
            f"an operation must be one of the cocopart.ops operations or a dict "
            f"with an 'op' key, not {type(op).__name__}",
            field="op",
        )
    try:
        return parse_operation(op)
    except InputError as err:
        if err.field:
            raise
        raise InputError(err.message, field="op", errors=err.errors) from None


#: Results kept in ``Partition.history`` by default (older ones are counted, not kept).
HISTORY_LIMIT = 10_000


class Partition:
    """A partitioned confidential guest on one backend: ``backend`` is an installed
    backend's name (``cocopart.registry.installed()``) or a :class:`Backend` instance.

    ``history_limit``: how many recent results :attr:`history` keeps; :attr:`totals` counts
    every result by status. Only :class:`~cocopart.errors.CocopartError` subclasses escape
    the constructor, :meth:`run` and :meth:`plan`.
    """

    def __init__(
        self,
        config: PartitionConfig | dict[str, Any],
        backend: str | Backend,
        *,
        costs: CostTable | Path | None = None,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        self.config = config_from(config)
        self.backend = load_backend(backend) if isinstance(backend, str) else backend
        try:
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
        except CocopartError:
            raise
        except ValidationError as err:
            first = err.errors()[0]
            raise ConfigError(first["msg"], field=".".join(str(p) for p in first["loc"])) from err
        except Exception as err:
            raise InternalError(f"creating a guest on {self.backend.name}", err) from err
        self._lock = threading.RLock()
        #: What a successful operation whose trace contradicts its route does: "report" it
        #: in ``data["route_mismatch"]``, or "raise" InternalError (the test suite's setting;
        #: the environment variable COCOPART_ROUTE_CHECK sets the default).
        self.route_check = os.environ.get("COCOPART_ROUTE_CHECK", "report")
        self.history: deque[OperationResult] = deque(maxlen=max(1, history_limit))
        #: Every result ever returned, counted by status.
        self.totals: Counter[str] = Counter()

    # -- running ---------------------------------------------------------------------------
    def route(self, op: Operation) -> Route | None:
        try:
            return self.graph.route(op.route_capability, op.layer)
        except (NotSupportedError, KeyError):
            return None

    def run(self, op: Operation | dict[str, Any]) -> OperationResult:
        """Execute one operation; the result carries its own primitive and switch counts.

        Before anything runs the operation is checked against the guest (ranges inside guest
        RAM, a forced page size that tiles the range) and against the authority rules
        (:mod:`cocopart.authority`): a refused operation returns ``error`` (or
        ``not-supported``) and changes nothing. After it runs, a partial or failed result's
        progress is the exact done prefix and ``changed`` lists any other state change.
        """
        operation = operation_from(op)
        with self._lock:
            if operation.layer not in self.graph:
                raise ConfigError(
                    f"no layer '{operation.layer}' in this guest (layers: "
                    f"{', '.join(l.name for l in self.graph.layers)})",
                    field="layer",
                )
            check_bounds(operation, self.config)
            before = self._view_of(operation)
            refused = authorize(operation, self.machine, before)
            route = self.route(operation)  # resolved before anything runs
            mark = self.trace.mark()
            if refused is not None:
                result = refused
            else:
                try:
                    result = self.machine.execute(operation)
                except CocopartError:
                    raise
                except Exception as err:
                    raise InternalError(f"running {operation.describe()}", err) from err
                result = settle(operation, result, before, self._view_of(operation), self.machine)
            delta = self.trace.since(mark)
            data = {**result.data, "route": route.describe() if route else None}
            if result.ok:
                mismatch = route_mismatch(
                    route,
                    {(k.source, k.dest) for k in delta.switches},
                    bool(delta.total_primitives or delta.total_switches),
                )
                if mismatch is not None:
                    if self.route_check == "raise":
                        raise InternalError(
                            f"checking {operation.describe()} against its route",
                            AssertionError(mismatch),
                        )
                    data["route_mismatch"] = mismatch
            result = result.model_copy(
                update={
                    "primitives": delta.total_primitives,
                    "world_switches": delta.total_switches,
                    "estimated_ns": self.costs.estimate(delta),
                    "data": data,
                }
            )
            self.history.append(result)
            self.totals[result.status.value] += 1
            return result

    def _view_of(self, op: Operation) -> list[MemoryRun] | None:
        rng = getattr(op, "range", None)
        if rng is None:
            return None
        return self.machine.memory_view(rng.start, rng.end)

    def run_all(self, ops: Iterable[Operation | dict[str, Any]]) -> list[OperationResult]:
        return [self.run(op) for op in ops]

    def inject_many(
        self, items: Iterable[tuple[str, int, int]], *, requester: str = "host"
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
        operation = operation_from(op)
        with self._lock:
            events: list[Event] = []  # a refused operation would run nothing
            try:
                check_bounds(operation, self.config)
                if authorize(operation, self.machine) is None:
                    events = self.machine.plan(operation)
            except CocopartError:
                raise
            except Exception as err:
                raise InternalError(f"planning {operation.describe()}", err) from err
        probe = Trace()
        for e in events:
            if e.kind == "primitive":
                probe.record(e.issuer, e.mnemonic, e.target, e.result, e.count)
            else:
                probe.switch(e.issuer, e.target, e.mnemonic, e.count)
        return Plan(
            operation=operation.describe(),
            route=self.route(operation),
            events=events,
            primitives=probe.total_primitives,
            world_switches=probe.total_switches,
            estimated_ns=self.costs.estimate(probe),
        )

    # -- reading ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return self.graph.layers

    def capabilities(self) -> dict[str, CapabilityAnswer]:
        return self.backend.capabilities(self.config)

    def memory_view(self, start: int = 0, end: int | None = None) -> list[MemoryRun]:
        """Runs of equal neutral state over ``[start, end)`` (default: guest RAM), each with
        its owner (:mod:`cocopart.authority`)."""
        from cocopart.executor import with_owners

        total = self.machine.layout.total
        stop = self.config.memory if end is None else end
        if not 0 <= start <= stop <= total:
            raise ConfigError(
                f"[{start:#x}, {stop:#x}) is not a range of this guest's "
                f"physical space [0, {total:#x})",
                field="range",
            )
        with self._lock:
            runs = self.machine.memory_view(start, end)
            return with_owners(runs, self.machine.ownership)

    def vcpus(self) -> list[VcpuView]:
        with self._lock:
            return self.machine.vcpus()

    def estimated_ns(self) -> float:
        return self.costs.estimate(self.trace)
