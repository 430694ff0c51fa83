"""What the privileged layer remembers between calls: calling areas and vCPU contexts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from cocopart.memory import ProtocolLayout

K = TypeVar("K")
V = TypeVar("V")


class Tracked(dict[K, V]):
    """A dict that counts its mutations (``generation``), so that what is derived from it
    can be cached until it changes — the authority checks run on every protocol call."""

    generation = 0

    def _bump(self) -> None:
        self.generation += 1

    def __setitem__(self, key: K, value: V) -> None:
        self._bump()
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        self._bump()
        super().__delitem__(key)

    def pop(self, key: K, *default: Any) -> Any:
        self._bump()
        return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        self._bump()
        return super().popitem()

    def clear(self) -> None:
        self._bump()
        super().clear()

    def update(self, *args: Any, **kw: Any) -> None:
        self._bump()
        super().update(*args, **kw)

    def setdefault(self, key: K, default: Any = None) -> Any:
        self._bump()
        return super().setdefault(key, default)


@dataclass
class VcpuRecord:
    layer: str
    vcpu: int
    apic_id: int
    caa: int


class Derived(NamedTuple):
    contexts: tuple[int, ...]
    calling_areas: tuple[int, ...]
    holders: dict[int, tuple[str, int]]


@dataclass
class ServiceState:
    """Per-guest state of the protocol service."""

    layout: ProtocolLayout
    workloads: tuple[str, ...]
    areas: Tracked[tuple[str, int], int] = field(default_factory=Tracked)
    contexts: Tracked[int, VcpuRecord] = field(default_factory=Tracked)

    def __post_init__(self) -> None:
        self.areas, self.contexts = Tracked(self.areas), Tracked(self.contexts)
        for i, layer in enumerate(self.workloads):
            for v in range(self.layout.vcpus):
                self.areas[(layer, v)] = self.layout.caa(i, v)
        self._cache: tuple[int, int, Derived] = (-1, -1, Derived((), (), {}))

    def _derived(self) -> Derived:
        """Sorted live contexts and calling areas in use, and every calling area's
        (layer, vCPU); recomputed only after ``areas`` or ``contexts`` changed."""
        key = (self.areas.generation, self.contexts.generation)
        if self._cache[:2] != key:
            live = {(r.layer, r.vcpu) for r in self.contexts.values()}
            in_use = tuple(sorted({gpa for k, gpa in self.areas.items() if k in live}))
            holders: dict[int, tuple[str, int]] = {}
            for k, gpa in self.areas.items():
                holders.setdefault(gpa, k)
            self._cache = (*key, Derived(tuple(sorted(self.contexts)), in_use, holders))
        return self._cache[2]

    def caa(self, layer: str, vcpu: int) -> int:
        try:
            return self.areas[(layer, vcpu)]
        except KeyError:
            raise ValueError(f"{layer} has no vCPU {vcpu}") from None

    def layer_index(self, layer: str) -> int:
        return self.workloads.index(layer)

    def caa_in_use(self, gpa: int) -> bool:
        return gpa in self._derived().holders

    def caa_owner(self, gpa: int) -> tuple[str, int] | None:
        """The (layer, vCPU) whose calling area is ``gpa``, if any."""
        return self._derived().holders.get(gpa)

    def calling_area_pages(self) -> tuple[int, ...]:
        """GPAs of the calling areas of running vCPUs (ones with a live context), wherever
        REMAP_CA or CREATE_VCPU put them; sorted."""
        return self._derived().calling_areas

    def context_pages(self) -> tuple[int, ...]:
        """GPAs of every live vCPU context page (never a buffer, never anyone's CAA);
        sorted."""
        return self._derived().contexts
