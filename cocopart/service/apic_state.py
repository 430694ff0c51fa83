"""What the privileged layer remembers about APIC emulation (protocol 3): the VM-wide
registration count and the emulated APICs (seed 001; the rules are in
:mod:`cocopart.service.apic`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cocopart.apic import LocalApic


@dataclass
class ApicEmulation:
    """VM-wide registration count and the emulated APICs of the vCPUs that still use it."""

    count: int = 0
    apics: dict[tuple[str, int], LocalApic] = field(default_factory=dict)
    disabled_for_good: bool = False

    def enabled(self, layer: str, vcpu: int) -> bool:
        return (layer, vcpu) in self.apics

    def start(self, layers: tuple[str, ...], vcpus: int) -> None:
        """Boot with alternate injection: firmware counts as the first registration."""
        self.count = 1
        for layer in layers:
            for v in range(vcpus):
                self.apics[(layer, v)] = LocalApic(apic_id=v)
