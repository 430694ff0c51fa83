"""Running a sweep: every point is one scenario run on one backend, executed as Dask tasks.

The result has one row per point x step (a point whose partition could not even be created
has one row, step ``(setup)``, with the reason). Rows depend only on the sweep, never on
what ran them, so the same sweep gives the same table serially and on any cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from cocopart.backend import Backend
from cocopart.errors import CocopartError
from cocopart.ops import Status
from cocopart.registry import load_backend
from cocopart.scaleout.engine import Cluster, EngineInfo, Progress, run_chunked
from cocopart.scaleout.sweep_file import Sweep, SweepPoint, point_scenario
from cocopart.scenario import Runner, Scenario, worst

#: ``step_index`` of the row of a point that failed before its first step.
SETUP_STEP = -1


class SweepRow(BaseModel):
    """One step of one point (a table row)."""

    point: int = Field(description="Index of the point in the sweep.")
    params: dict[str, Any] = Field(description="Axis path -> value of this point.")
    backend: str
    vendor: str = ""
    memory_bytes: int = Field(description="Guest memory of the point's scenario.")
    vcpus: int
    workload_layers: int
    strategy: str
    interrupt_mode: str
    step_index: int = Field(
        description=f"0-based step; {SETUP_STEP} when the partition could not be created."
    )
    step: str
    step_kind: str = Field(description="'operation', 'macro' or 'setup'.")
    status: Status
    operations: int = 0
    primitives: int = 0
    world_switches: int = 0
    modelled_ns: float = Field(default=0.0, description="Modelled time of the step (ns).")
    reason: str | None = Field(
        default=None, description="Why the step was not ok: not-supported reasons, errors."
    )


class PointTotal(BaseModel):
    """One point summed over its steps."""

    point: int
    backend: str
    params: dict[str, Any]
    status: Status = Field(description="The worst status of its steps (a failed setup is error).")
    primitives: int
    world_switches: int
    modelled_ns: float
    reason: str | None = Field(default=None, description="The first step's reason that is not ok.")


class SweepResult(BaseModel):
    """A finished sweep: every row, in point order, and what ran it."""

    name: str
    description: str = ""
    source: str | None = None
    scenario: str = Field(description="The base scenario file.")
    axes: list[str] = Field(description="Parameter axes (dotted paths), in order.")
    backends: list[str]
    points: int
    rows: list[SweepRow]
    engine: EngineInfo

    def status_counts(self) -> dict[str, int]:
        """Rows per status."""
        counts = Counter(r.status.value for r in self.rows)
        return {s.value: counts[s.value] for s in Status if counts[s.value]}

    def point_totals(self) -> list[PointTotal]:
        """Per point, in point order: its steps summed, its worst status."""
        out: list[PointTotal] = []
        for row in self.rows:
            if not out or out[-1].point != row.point:
                out.append(
                    PointTotal(
                        point=row.point,
                        backend=row.backend,
                        params=row.params,
                        status=Status.OK,
                        primitives=0,
                        world_switches=0,
                        modelled_ns=0.0,
                    )
                )
            total = out[-1]
            total.primitives += row.primitives
            total.world_switches += row.world_switches
            total.modelled_ns += row.modelled_ns
            total.status = worst([total.status, row.status])
            if total.reason is None and row.reason:
                total.reason = f"{row.step}: {row.reason}"
        return out

    @property
    def failed(self) -> bool:
        """Some step returned error or partial (or a point could not be set up)."""
        return any(r.status in (Status.ERROR, Status.PARTIAL) for r in self.rows)


class _SweepContext(BaseModel):
    """What every task needs besides its points: the base scenario's data."""

    base: dict[str, Any]


_BACKENDS: dict[str, Backend] = {}


def _backend(name: str) -> Backend:
    """This worker's instance of a backend (loaded once per process)."""
    if name not in _BACKENDS:
        _BACKENDS[name] = load_backend(name)
    return _BACKENDS[name]


def _setup_row(
    point: SweepPoint, scenario: Scenario | None, status: Status, reason: str
) -> SweepRow:
    guest = scenario.guest if scenario is not None else None
    return SweepRow(
        point=point.index,
        params=point.params,
        backend=point.backend,
        memory_bytes=guest.memory if guest else 0,
        vcpus=guest.vcpus if guest else 0,
        workload_layers=guest.workload_layers if guest else 0,
        strategy=guest.strategy.value if guest else "",
        interrupt_mode=guest.interrupt_mode.value if guest else "",
        step_index=SETUP_STEP,
        step="(setup)",
        step_kind="setup",
        status=status,
        reason=reason,
    )


def run_point(base: dict[str, Any], point: SweepPoint) -> list[SweepRow]:
    """Run one point; every failure becomes a row, never an exception."""
    scenario: Scenario | None = None
    try:
        scenario = point_scenario(base, point)
        runner = Runner(scenario, _backend(point.backend), keep_data=False)
        run = runner.run()
    except CocopartError as err:
        return [_setup_row(point, scenario, Status.ERROR, str(err))]
    except Exception as err:  # noqa: BLE001 - one broken point must not end the sweep
        return [
            _setup_row(
                point, scenario, Status.ERROR, f"internal error: {type(err).__name__}: {err}"
            )
        ]
    cfg = run.config
    common = {
        "point": point.index,
        "params": point.params,
        "backend": run.backend,
        "vendor": run.vendor,
        "memory_bytes": cfg.memory,
        "vcpus": cfg.vcpus,
        "workload_layers": cfg.workload_layers,
        "strategy": cfg.strategy.value,
        "interrupt_mode": cfg.interrupt_mode.value,
    }
    return [
        SweepRow(
            **common,
            step_index=s.index,
            step=s.name,
            step_kind=s.kind,
            status=s.status,
            operations=len(s.operations),
            primitives=s.primitives,
            world_switches=s.world_switches,
            modelled_ns=s.estimated_ns,
            reason=s.reason,
        )
        for s in run.steps
    ]


def _run_points(context: _SweepContext, points: Sequence[SweepPoint]) -> list[list[SweepRow]]:
    return [run_point(context.base, p) for p in points]


def run_sweep(
    sweep: Sweep, cluster: Cluster | None = None, *, progress: Progress | None = None
) -> SweepResult:
    """Run every point of ``sweep`` on ``cluster`` (default: a local cluster sized to this
    machine; ``Cluster(serial=True)`` runs in this process). Raises only
    :class:`cocopart.errors.CocopartError` (:class:`~cocopart.errors.ClusterError` when the
    cluster cannot run the work); a point that fails is a row."""
    per_point, engine = run_chunked(
        _run_points,
        _SweepContext(base=sweep.base),
        sweep.points,
        cluster,
        progress=progress,
        label=f"sweep-{sweep.name}",
    )
    return SweepResult(
        name=sweep.name,
        description=sweep.description,
        source=sweep.source,
        scenario=sweep.scenario_source,
        axes=[a.path for a in sweep.param_axes],
        backends=sweep.backends,
        points=len(sweep.points),
        rows=[row for rows in per_point for row in rows],
        engine=engine,
    )
