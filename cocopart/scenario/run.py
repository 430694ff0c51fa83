"""Running a scenario on one backend: per-step results and totals (pydantic, JSON)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from cocopart.backend import Backend
from cocopart.errors import CocopartError, ConfigError
from cocopart.model import (
    PAGE_2M,
    GpaRange,
    PartitionConfig,
    Strategy,
)
from cocopart.ops import (
    ArchError,
    Attest,
    ConfigureInterrupts,
    ConvertPages,
    CreateVcpu,
    InjectInterrupt,
    Operation,
    OperationResult,
    Status,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.registry import load_backend
from cocopart.scenario.model import (
    AttestEachLayer,
    BringUp,
    Interrupts,
    OperationStep,
    Scenario,
    ShareRound,
)
from cocopart.trace import CostTable, load_cost_overrides

# --------------------------------------------------------------------------------------------
# Results


class OperationOutcome(BaseModel):
    """One operation a step issued and what it did."""

    model_config = ConfigDict(ser_json_bytes="hex")

    op: str = Field(description="Operation kind, e.g. 'validate'.")
    layer: str = Field(description="The requesting layer.")
    operation: str = Field(description="The operation with its arguments.")
    status: Status
    reason: str | None = None
    error: ArchError | None = None
    primitives: int = 0
    world_switches: int = 0
    estimated_ns: float = 0.0
    route: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, op: Operation, result: OperationResult, keep_data: bool) -> OperationOutcome:
        data = result.model_dump(mode="json")["data"]
        route = data.pop("route", None)
        return cls(
            op=op.op,
            layer=op.layer,
            operation=result.operation,
            status=result.status,
            reason=result.reason,
            error=result.error,
            primitives=result.primitives,
            world_switches=result.world_switches,
            estimated_ns=result.estimated_ns,
            route=route if isinstance(route, str) else None,
            data=data if keep_data else {},
        )


_SEVERITY = {Status.OK: 0, Status.NOT_SUPPORTED: 1, Status.PARTIAL: 2, Status.ERROR: 3}


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe status (error > partial > not-supported > ok)."""
    return max(statuses, key=lambda s: _SEVERITY[s], default=Status.OK)


class StepResult(BaseModel):
    """What one scenario step did on one backend."""

    index: int
    name: str
    kind: Literal["operation", "macro"]
    operations: list[OperationOutcome]
    primitives: int
    world_switches: int
    estimated_ns: float
    status: Status
    reason: str | None = None


class RunTotals(BaseModel):
    steps: int
    operations: int
    primitives: int
    world_switches: int
    estimated_ns: float
    status: Status
    failed_steps: list[str] = Field(
        default_factory=list, description="Steps whose status is error or partial."
    )
    unsupported_steps: list[str] = Field(default_factory=list)


class ScenarioRun(BaseModel):
    """A scenario executed on one backend."""

    scenario: str
    backend: str
    backend_title: str = ""
    backend_version: str = ""
    vendor: str = ""
    strategy: Strategy
    config: PartitionConfig
    steps: list[StepResult]
    totals: RunTotals

    @property
    def failed(self) -> bool:
        return self.totals.status in (Status.ERROR, Status.PARTIAL)


# --------------------------------------------------------------------------------------------
# Running

ProgressFn = Callable[[int, int, str], None]


def _report_data(layer: str, given: str | None) -> bytes:
    if given is not None:
        return bytes.fromhex(given)
    return hashlib.sha512(f"cocopart:{layer}".encode()).digest()


class Runner:
    """Runs a scenario on one backend. ``partition`` stays available for inspection.

    ``progress(done, total, label)`` is called after each operation (``total`` is the number
    of operations the scenario is expected to issue).
    """

    def __init__(
        self,
        scenario: Scenario,
        backend: str | Backend,
        *,
        strategy: Strategy | None = None,
        costs: CostTable | Path | None = None,
        keep_data: bool = True,
    ) -> None:
        self.scenario = scenario
        self.backend = load_backend(backend) if isinstance(backend, str) else backend
        self.config = scenario.config_for(self.backend.name, strategy)
        if isinstance(costs, Path):
            table = load_cost_overrides(self.backend.cost_table(), costs)
        else:
            table = costs if costs is not None else self.backend.cost_table()
        try:
            self.partition = Partition(self.config, self.backend, costs=scenario.cost_table(table))
        except ConfigError as err:
            raise scenario.relocate(err, self.backend.name) from None
        self.keep_data = keep_data
        self.specs = {s.name: s for s in scenario.layer_specs()}

    # -- expansion -------------------------------------------------------------------------
    def expected_operations(self) -> int:
        """How many operations the scenario will issue (for progress bars)."""
        n = 0
        for step in self.scenario.steps:
            if isinstance(step, OperationStep):
                n += 1
            elif isinstance(step, BringUp):
                for name in step.layers or list(self.specs):
                    spec = self.specs[name]
                    n += 1 + len(spec.shared) + ((spec.vcpus or 0) if step.create_vcpus else 0)
            elif isinstance(step, ShareRound):
                n += 3 if step.revalidate else 2
            elif isinstance(step, AttestEachLayer):
                n += len(step.layers or self.config.workloads) * (2 if step.source == "both" else 1)
            else:
                n += 1 + len(step.vectors) * len(step.targets or self.config.workloads)
        return n

    def _expand(self, step: Any) -> Iterator[Operation]:
        p = self.partition
        if isinstance(step, OperationStep):
            yield step.operation
        elif isinstance(step, BringUp):
            names = step.layers or list(self.specs)
            for name in names:
                spec = self.specs[name]
                assert spec.memory is not None
                yield ValidatePages(range=spec.memory, layer=name)
                for r in spec.shared:
                    yield ConvertPages(range=r, to="shared", layer=name)
            if step.create_vcpus:
                for name in names:
                    running = {
                        v.vcpu for v in p.vcpus() if v.layer == name and v.state == "running"
                    }
                    for v in range(self.specs[name].vcpus or 0):
                        if v not in running:
                            yield CreateVcpu(vcpu=v, target=name, layer=name)
        elif isinstance(step, ShareRound):
            rng = step.range
            if rng is None:
                mem = self.specs[step.layer].memory if step.layer in self.specs else None
                rng = GpaRange.of(mem.start if mem else 0, PAGE_2M)
            yield ConvertPages(range=rng, to="shared", layer=step.layer)
            yield ConvertPages(range=rng, to="private", layer=step.layer)
            if step.revalidate:
                view = p.memory_view(rng.start, rng.end)
                if not all(r.private and r.validated for r in view):
                    yield ValidatePages(range=rng, layer=step.layer)
        elif isinstance(step, AttestEachLayer):
            sources = ["hardware", "service"] if step.source == "both" else [step.source]
            for layer in step.layers or list(self.config.workloads):
                for src in sources:
                    yield Attest(
                        layer=layer,
                        source=src,
                        report_data=_report_data(layer, step.report_data),
                        service=step.service,
                    )
        elif isinstance(step, Interrupts):
            mode = step.mode or self.config.interrupt_mode
            yield ConfigureInterrupts(mode=mode, layer=step.configure_from)
            for target in step.targets or list(self.config.workloads):
                for vector in step.vectors:
                    yield InjectInterrupt(
                        vcpu=step.vcpu, target=target, vector=vector, layer=step.requester
                    )

    @staticmethod
    def step_name(step: Any) -> str:
        if step.name:
            return str(step.name)
        if isinstance(step, OperationStep):
            return str(step.operation.op)
        return str(step.macro)

    # -- running ---------------------------------------------------------------------------
    def run_step(
        self, index: int, step: Any, progress: Callable[[str], None] | None = None
    ) -> StepResult:
        outcomes: list[OperationOutcome] = []
        for op in self._expand(step):
            try:
                result = self.partition.run(op)
            except CocopartError as err:  # misuse the model refused: a result, not a crash
                result = OperationResult(
                    operation=op.describe(), status=Status.ERROR, reason=str(err)
                )
            outcomes.append(OperationOutcome.of(op, result, self.keep_data))
            if progress is not None:
                progress(op.describe())
        status = worst([o.status for o in outcomes])
        reason = next(
            (
                f"{o.operation}: {o.reason or o.status.value}"
                for o in outcomes
                if o.status is status and status is not Status.OK
            ),
            None,
        )
        return StepResult(
            index=index,
            name=self.step_name(step),
            kind="operation" if isinstance(step, OperationStep) else "macro",
            operations=outcomes,
            primitives=sum(o.primitives for o in outcomes),
            world_switches=sum(o.world_switches for o in outcomes),
            estimated_ns=sum(o.estimated_ns for o in outcomes),
            status=status,
            reason=reason,
        )

    def run(self, progress: ProgressFn | None = None) -> ScenarioRun:
        total = self.expected_operations()
        done = 0

        def tick(label: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, max(total, done), label)

        steps = [self.run_step(i, s, tick) for i, s in enumerate(self.scenario.steps)]
        status = worst([s.status for s in steps])
        totals = RunTotals(
            steps=len(steps),
            operations=sum(len(s.operations) for s in steps),
            primitives=sum(s.primitives for s in steps),
            world_switches=sum(s.world_switches for s in steps),
            estimated_ns=sum(s.estimated_ns for s in steps),
            status=status,
            failed_steps=[s.name for s in steps if s.status in (Status.ERROR, Status.PARTIAL)],
            unsupported_steps=[s.name for s in steps if s.status is Status.NOT_SUPPORTED],
        )
        b = self.backend
        return ScenarioRun(
            scenario=self.scenario.name,
            backend=b.name,
            backend_title=b.title,
            backend_version=b.version,
            vendor=b.vendor,
            strategy=self.config.strategy,
            config=self.config,
            steps=steps,
            totals=totals,
        )


def run_scenario(
    scenario: Scenario,
    backend: str | Backend,
    *,
    strategy: Strategy | None = None,
    progress: ProgressFn | None = None,
    keep_data: bool = True,
) -> ScenarioRun:
    """Run ``scenario`` on ``backend`` and return the per-step results."""
    return Runner(scenario, backend, strategy=strategy, keep_data=keep_data).run(progress)
