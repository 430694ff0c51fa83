"""What the privileged layer remembers between calls: calling areas and vCPU contexts."""

from __future__ import annotations

from dataclasses import dataclass, field

from cocopart.memory import ProtocolLayout


@dataclass
class VcpuRecord:
    layer: str
    vcpu: int
    apic_id: int
    caa: int


@dataclass
class ServiceState:
    """Per-guest state of the protocol service."""

    layout: ProtocolLayout
    workloads: tuple[str, ...]
    areas: dict[tuple[str, int], int] = field(default_factory=dict)
    contexts: dict[int, VcpuRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, layer in enumerate(self.workloads):
            for v in range(self.layout.vcpus):
                self.areas[(layer, v)] = self.layout.caa(i, v)

    def caa(self, layer: str, vcpu: int) -> int:
        try:
            return self.areas[(layer, vcpu)]
        except KeyError:
            raise ValueError(f"{layer} has no vCPU {vcpu}") from None

    def layer_index(self, layer: str) -> int:
        return self.workloads.index(layer)

    def caa_in_use(self, gpa: int) -> bool:
        return gpa in self.areas.values()

    def caa_owner(self, gpa: int) -> tuple[str, int] | None:
        """The (layer, vCPU) whose calling area is ``gpa``, if any."""
        return next((k for k, v in self.areas.items() if v == gpa), None)

    def calling_area_pages(self) -> set[int]:
        """GPAs of the calling areas of running vCPUs (ones with a live context), plus any
        a vCPU moved with REMAP_CA."""
        live = {(r.layer, r.vcpu) for r in self.contexts.values()}
        return {gpa for key, gpa in self.areas.items() if key in live}

    def context_pages(self) -> set[int]:
        """GPAs of every live vCPU context page (never a buffer, never anyone's CAA)."""
        return set(self.contexts)
