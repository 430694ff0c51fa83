"""The scenario file model: guest, layers and steps (validated pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from cocopart.errors import ConfigError
from cocopart.model import (
    FIRMWARE,
    HOST,
    L1,
    PAGE_2M,
    GpaRange,
    InterruptMode,
    LayerName,
    PartitionConfig,
    Strategy,
)
from cocopart.ops import (
    Operation,
)
from cocopart.toml_text import _dotted, line_of
from cocopart.trace import CostTable

# --------------------------------------------------------------------------------------------
# The file model


class LayerSpec(BaseModel):
    """How one workload layer uses the guest: its RAM, its vCPUs, what it shares."""

    model_config = ConfigDict(extra="forbid")

    name: LayerName = Field(description="Workload layer: 'l2.1', 'l2.2' or 'l2.3'.")
    memory: GpaRange | None = Field(
        default=None,
        description="Guest RAM this layer validates at bring-up; default: an "
        "equal 2 MiB-aligned share of guest RAM.",
    )
    vcpus: int | None = Field(
        default=None,
        ge=0,
        le=512,
        description="vCPUs of this layer created at bring-up (0..n-1); default: all guest vCPUs.",
    )
    shared: list[GpaRange] = Field(
        default_factory=list,
        description="Ranges of the layer's memory shared with the host "
        "at bring-up (converted to shared after validation).",
    )


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Label shown in results.")


class BringUp(_Named):
    """Validate each workload layer's RAM from that layer, share what the file marks shared,
    create each layer's vCPUs (skipping those already running after launch)."""

    macro: Literal["bring-up"] = "bring-up"
    layers: list[LayerName] | None = Field(
        default=None, description="Only these layers; default: every [[layers]] entry."
    )
    create_vcpus: bool = Field(default=True, description="Also create each layer's vCPUs.")


class ShareRound(_Named):
    """Convert a range to shared and back to private (re-validating it if needed)."""

    macro: Literal["share-round"] = "share-round"
    layer: LayerName = Field(default="l2.1", description="The layer that converts the range.")
    range: GpaRange | None = Field(
        default=None, description="Default: the first 2 MiB of the layer's memory."
    )
    revalidate: bool = Field(
        default=True,
        description="Validate the range again when converting back left it unvalidated.",
    )


class AttestEachLayer(_Named):
    """Ask for evidence from every workload layer."""

    macro: Literal["attest-each-layer"] = "attest-each-layer"
    source: Literal["hardware", "service", "both"] = Field(
        default="service",
        description="The hardware's report, the privileged layer's attestation service, or both.",
    )
    report_data: str | None = Field(
        default=None, description="Hex, at most 64 bytes; default: SHA-512 of 'cocopart:<layer>'."
    )
    service: str | None = Field(
        default=None,
        description="Attest one service (e.g. 'vtpm'); default: the whole services manifest.",
    )
    layers: list[LayerName] | None = Field(
        default=None, description="Default: every workload layer."
    )

    @field_validator("report_data")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise ValueError("report_data must be a hex string") from None
        if len(raw) > 64:
            raise ValueError(f"report_data is {len(raw)} bytes; at most 64")
        return v


class Interrupts(_Named):
    """Configure the interrupt mode, then inject a few vectors into each workload layer."""

    macro: Literal["interrupts"] = "interrupts"
    mode: InterruptMode | None = Field(default=None, description="Default: the guest's mode.")
    vectors: list[Annotated[int, Field(ge=16, le=255)]] = Field(
        default_factory=lambda: [0x20, 0x30, 0xEC],
        description="Vectors injected into each target, each completed by its EOI.",
    )
    vcpu: int = Field(default=0, ge=0, lt=512, description="The targets' vCPU.")
    targets: list[LayerName] | None = Field(default=None, description="Default: all workloads.")
    requester: LayerName = Field(
        default=HOST,
        description="Layer that raises the interrupts (a device on the host by default).",
    )
    configure_from: LayerName = Field(
        default="l1",
        description="Layer that switches the interrupt mode: l1, or a workload "
        "that controls every other workload layer (docs/authority.md).",
    )


class OperationStep(_Named):
    """One operation of :mod:`cocopart.ops`, written inline: ``op = "validate"`` plus its
    fields."""

    operation: Operation

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, data: Any) -> Any:
        if isinstance(data, dict) and "operation" not in data:
            rest = dict(data)
            name = rest.pop("name", None)
            return {"name": name, "operation": rest}
        return data


def _step_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "macro" if "macro" in v else "op"
    return "macro" if not isinstance(v, OperationStep) else "op"


MacroStep = Annotated[
    BringUp | ShareRound | AttestEachLayer | Interrupts, Field(discriminator="macro")
]
Step = Annotated[
    Annotated[OperationStep, Tag("op")] | Annotated[MacroStep, Tag("macro")],
    Discriminator(_step_tag),
]


class Scenario(BaseModel):
    """A guest and an ordered list of steps to run on it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="scenario", description="Shown in results; default: the file name.")
    description: str = Field(default="", description="One line about the scenario.")
    backend: str | None = Field(
        default=None, description="Backend `cocopart setup` uses when --backend is not given."
    )
    guest: PartitionConfig = Field(
        default_factory=PartitionConfig, description="The guest: a PartitionConfig."
    )
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per backend name, options handed to that backend as "
        "PartitionConfig.backend_options.",
    )
    costs: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Cost overrides: [costs.primitives] / [costs.switches], "
        "each name = ns or {ns = ..., source = ...}.",
    )
    layers: list[LayerSpec] = Field(
        default_factory=list, description="How each workload layer uses the guest ([[layers]])."
    )
    steps: list[Step] = Field(
        default_factory=list,
        description="What to run, in order ([[steps]]): macros and single operations.",
    )

    _source: str | None = PrivateAttr(default=None)
    _text: str | None = PrivateAttr(default=None)

    # -- derived ---------------------------------------------------------------------------
    def layer_specs(self) -> list[LayerSpec]:
        """One spec per workload layer, with memory and vCPUs filled in."""
        given = {s.name: s for s in self.layers}
        names = list(given) if given else list(self.guest.workloads)
        ram = self.guest.memory
        share = max(ram // len(names) // PAGE_2M * PAGE_2M, PAGE_2M)
        out = []
        for i, name in enumerate(names):
            spec = given.get(name) or LayerSpec(name=name)
            memory = spec.memory
            if memory is None:
                start = i * share
                size = ram - start if i == len(names) - 1 else share
                memory = GpaRange.of(start, size)
            vcpus = self.guest.vcpus if spec.vcpus is None else spec.vcpus
            out.append(spec.model_copy(update={"memory": memory, "vcpus": vcpus}))
        return out

    def config_for(self, backend: str, strategy: Strategy | None = None) -> PartitionConfig:
        """The guest configuration as backend ``backend`` receives it."""
        options = {**self.guest.backend_options, **self.backend_options.get(backend, {})}
        update: dict[str, Any] = {"backend_options": options}
        if strategy is not None:
            update["strategy"] = strategy
        if not self.guest.memory_map:
            update["memory_map"] = self.derived_memory_map()
        return self.guest.model_copy(update=update)

    def derived_memory_map(self) -> dict[str, list[GpaRange]]:
        """Each layer's ``memory`` assigned to it (docs/authority.md), when the layers' ranges
        lie inside guest RAM and do not overlap; otherwise none (every page starts in l1's
        pool and belongs to the layer that validates it first). ``[guest] memory_map``, when
        given, replaces this."""
        specs = [s for s in self.layer_specs() if s.memory is not None]
        ranges = [s.memory for s in specs if s.memory is not None]
        if any(r.end > self.guest.memory for r in ranges) or any(
            a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :]
        ):
            return {}
        return {s.name: [s.memory] for s in specs if s.memory is not None}

    def cost_table(self, base: CostTable) -> CostTable:
        """``base`` with this scenario's overrides applied."""
        return base.merged(self.costs, source=f"{self.name} [costs]") if self.costs else base

    def relocate(self, err: ConfigError, backend: str) -> ConfigError:
        """Point a backend's :class:`ConfigError` about the configuration (field ``memory``,
        ``backend_options.X``) at this file: its path, line and dotted field."""
        if err.source is not None or self._source is None:
            return err
        parts: list[str | int] = list((err.field or "").split(".")) if err.field else []
        if parts and parts[0] == "backend_options":
            in_guest = len(parts) > 1 and parts[1] in self.guest.backend_options
            path: list[str | int] = (
                ["guest", *parts] if in_guest else ["backend_options", backend, *parts[1:]]
            )
        elif parts:
            path = ["guest", *parts]
        else:
            path = ["guest"]
        line = line_of(self._text, path) if self._text is not None else None
        return ConfigError(
            f"{err.message} (backend {backend})",
            field=_dotted(path),
            source=self._source,
            line=line,
        )

    def known_layers(self) -> set[str]:
        return {FIRMWARE, HOST, L1, *self.guest.workloads, *self.guest.services}
