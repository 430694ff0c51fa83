"""The output models of every command: what ``--json`` prints and ``cocopart schema``
publishes. Field descriptions double as documentation for agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cocopart.attest.detect import PlatformInfo
from cocopart.attest.evidence import Claims, Evidence
from cocopart.attest.plugin import Decoded
from cocopart.backend import CapabilityAnswer, MemoryRun, VcpuView
from cocopart.host_faults import FaultComparison
from cocopart.layers import Edge, LayerNode
from cocopart.model import Layer, PartitionConfig
from cocopart.partition import Plan
from cocopart.scaleout.batch import BatchSummary
from cocopart.scaleout.engine import EngineInfo
from cocopart.scaleout.tables import BatchFiles, SweepFiles
from cocopart.scenario import Scenario, ScenarioRun
from cocopart_cli.backends_report import BackendsReport
from cocopart_cli.errors import ErrorReport
from cocopart_cli.verify_report import VerifyReport


class GraphModel(BaseModel):
    """A layer graph as data (cocopart.layers.LayerGraph.to_json)."""

    nodes: list[LayerNode]
    edges: list[Edge]


class OverviewBackend(BaseModel):
    name: str
    loaded: bool
    title: str = ""
    error: str | None = None
    layers: list[Layer] = Field(default_factory=list)
    graph: GraphModel | None = None


class Overview(BaseModel):
    """`cocopart` without arguments: installed backends and the default guest's layers."""

    default_guest: PartitionConfig
    backends: list[OverviewBackend]
    hint: str


class EvidenceSummary(BaseModel):
    """Evidence one layer obtained, and its claims when they could be read."""

    layer: str
    step: str
    vendor: str
    format: str
    size: int
    simulated_root: bool = Field(
        default=False,
        description="The last certificate is a simulated root (trust it "
        "explicitly with `verify --trust-root`).",
    )
    claims: Claims | None = None
    evidence: Evidence | None = Field(default=None, description="The evidence itself.")


class PinAdvice(BaseModel):
    """What to pin in a verifier's policy for this guest."""

    launch_measurement: str | None = Field(
        default=None, description="Hex launch measurement the backend reported, if any."
    )
    measurements: dict[str, str] = Field(
        default_factory=dict, description="Measurement claims of the evidence (hex)."
    )
    advice: str
    policy_toml: str = Field(description="A policy file pinning them (cocopart verify).")


class LayerSummary(BaseModel):
    name: str
    role: str
    vendor_name: str
    memory: str | None = None
    vcpus_running: int = 0


class SetupReport(BaseModel):
    """`cocopart setup`: the bring-up of one guest on one backend."""

    guest_file: str
    backend: str
    run: ScenarioRun
    layers: list[LayerSummary]
    memory: list[MemoryRun]
    vcpus: list[VcpuView]
    evidence: list[EvidenceSummary]
    pin: PinAdvice
    ok: bool


class CapabilityDifference(BaseModel):
    """A capability the compared backends answer differently."""

    capability: str
    answers: dict[str, CapabilityAnswer]


class CompareReport(BaseModel):
    """`cocopart compare`: one scenario on several backends."""

    scenario: str
    description: str = ""
    strategy: str
    backends: list[str]
    runs: list[ScenarioRun]
    capability_differences: list[CapabilityDifference]
    ok: bool = Field(description="No step returned error or partial on any backend.")


class RouteInfo(BaseModel):
    """How one operation kind travels from one workload layer."""

    capability: str
    from_layer: str
    supported: bool
    provider: str | None = None
    path: list[str] = Field(default_factory=list)
    mechanisms: list[str] = Field(default_factory=list)
    cost_ns: float = 0.0
    reason: str | None = None


class MemoryControlInfo(BaseModel):
    """Who one layer may restrict, from the graph's memory-control edges (docs/authority.md)."""

    layer: str
    controls: list[str] = Field(
        default_factory=list,
        description="Layers whose memory access this layer may restrict "
        "(memory-control edges, transitively; cocopart.authority.Authority.controlled_by).",
    )
    controlled_by: list[str] = Field(
        default_factory=list, description="Layers that may restrict this layer's access."
    )
    peers: list[str] = Field(
        default_factory=list,
        description="Workload layers neither side controls: this layer "
        "may change their access only on pages it owns (PEER_ACCESS_NEEDS_OWNERSHIP), "
        "through the privileged layer.",
    )
    mechanisms: list[str] = Field(
        default_factory=list,
        description="Mechanisms of this layer's own memory-control "
        "edges (RMPADJUST, TDG.MEM.PAGE.ATTR.WR, ...).",
    )


class OwnershipRun(BaseModel):
    """A run of guest-physical pages with one owner when the guest starts."""

    start: int
    end: int
    owner: str = Field(description="l1 or a workload layer.")
    assigned: bool = Field(
        description="Assigned for good (memory map, protocol pages); "
        "false for l1's pool, whose pages the first workload to validate "
        "them owns."
    )
    kind: Literal["memory-map", "pool", "protocol-pages", "privileged"] = Field(
        description="memory-map: guest RAM the memory map assigns; pool: l1's pool; "
        "protocol-pages: a workload's calling areas, vCPU contexts and scratch pages; "
        "privileged: the rest of the region above guest RAM."
    )


class LayersReport(BaseModel):
    """`cocopart layers`: the graph, routes and TCBs of one guest on one backend."""

    backend: str
    layers: list[Layer]
    graph: GraphModel
    routes: list[RouteInfo]
    tcb: dict[str, list[str]]
    memory_control: list[MemoryControlInfo] = Field(
        default_factory=list,
        description="Per layer (l1 and each workload layer): whose "
        "memory access it may restrict (docs/authority.md).",
    )
    ownership: list[OwnershipRun] = Field(
        default_factory=list,
        description="Owner of every page when the guest starts, from "
        "the memory map ([guest] memory_map, else each [[layers]] memory).",
    )


class ExplainSide(BaseModel):
    """One backend's plan for the explained operation."""

    backend: str
    operation: str
    prerequisites: list[str] = Field(description="Operations run first to set the stage.")
    prerequisites_ok: bool = True
    plan: Plan | None = None
    error: str | None = None
    diagram: str = Field(description="The text sequence diagram.")


class ExplainReport(BaseModel):
    """`cocopart explain`: the primitive sequence of one operation on each backend."""

    operation: str
    sides: list[ExplainSide]


class AttestReport(BaseModel):
    """`cocopart attest`: evidence obtained on a real CVM or from a simulated guest."""

    source: Literal["configfs-tsm", "simulated"]
    backend: str | None = None
    layer: str | None = None
    provider: str | None = None
    report_data: str
    evidence: Evidence
    out: str | None = None
    trust_root_file: str | None = Field(
        default=None, description="Where the simulated root was written (PEM)."
    )
    trust_root_pem: str | None = None
    raw_out: str | None = Field(
        default=None, description="Where the raw report/quote bytes were written (--raw-out)."
    )


class ShowReport(BaseModel):
    """`cocopart show`: evidence, certificates or a certificate table decoded, not verified."""

    source: str = Field(description="The file shown ('-' for stdin).")
    decoded: Decoded


class ScenarioFileReport(BaseModel):
    """`cocopart scenario new` / `scenario check`."""

    path: str
    written: bool
    scenario: Scenario | None = None


class SweepBackendSummary(BaseModel):
    """One backend's points in a sweep."""

    backend: str
    points: int
    ok: int = Field(description="Points whose every step was ok.")
    not_supported: int = Field(description="Points with a step not supported.")
    failed: int = Field(
        description="Points with a step in error or partial, or that could not be set up."
    )
    median_modelled_ns: float | None = Field(description="Median over the ok points.")
    median_world_switches: float | None


class SweepReport(BaseModel):
    """`cocopart sweep`: the sweep's summary, the tables and plot written, what ran it."""

    name: str
    source: str | None
    scenario: str
    axes: list[str]
    backends: list[str]
    points: int
    rows: int
    status_counts: dict[str, int] = Field(description="Rows (point x step) per status.")
    per_backend: list[SweepBackendSummary]
    files: SweepFiles
    plot: str | None = None
    engine: EngineInfo
    ok: bool = Field(description="No step returned error or partial.")


class VerifyBatchReport(BaseModel):
    """`cocopart verify-batch`: counts by verdict and failed check, the tables written."""

    now: datetime = Field(description="Every file was verified as of this instant.")
    summary: BatchSummary
    files: BatchFiles
    summary_file: str
    engine: EngineInfo
    ok: bool = Field(description="Every file was accepted.")


class SchemaIndex(BaseModel):
    """`cocopart schema`: the published output models."""

    models: dict[str, str] = Field(description="Name -> one-line description.")


#: Every output model, by the name `cocopart schema NAME` takes.
OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "overview": Overview,
    "backends": BackendsReport,
    "setup": SetupReport,
    "compare": CompareReport,
    "layers": LayersReport,
    "explain": ExplainReport,
    "attest": AttestReport,
    "verify": VerifyReport,
    "show": ShowReport,
    "detect": PlatformInfo,
    "faults": FaultComparison,
    "scenario": ScenarioFileReport,
    "schema": SchemaIndex,
    "sweep": SweepReport,
    "verify-batch": VerifyBatchReport,
    "error": ErrorReport,
    "scenario-file": Scenario,
    "scenario-run": ScenarioRun,
}


def schema_of(name: str) -> dict[str, Any]:
    return OUTPUT_MODELS[name].model_json_schema()
