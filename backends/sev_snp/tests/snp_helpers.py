"""Small helpers shared by the SEV-SNP backend tests (guests built through the public API)."""

from __future__ import annotations

from typing import Any

from cocopart_sev_snp.machine import SnpMachine

from cocopart.model import GIB, MIB, GpaRange
from cocopart.ops import ValidatePages
from cocopart.partition import Partition


def guest(memory: int = 64 * MIB, vcpus: int = 2, **kw: Any) -> Partition:
    """A fresh sev-snp partition (nothing validated yet)."""
    return Partition({"memory": memory, "vcpus": vcpus, **kw}, "sev-snp")


def machine(p: Partition) -> SnpMachine:
    m = p.machine
    assert isinstance(m, SnpMachine)
    return m


def validated(memory: int = 64 * MIB, vcpus: int = 2, layer: str = "l2.1", **kw: Any) -> Partition:
    """A partition whose whole RAM ``layer`` has validated."""
    p = guest(memory, vcpus, **kw)
    r = p.run(ValidatePages(layer=layer, range=GpaRange.of(0, memory)))
    assert r.ok, r
    return p


def rng(start: int, size: int) -> GpaRange:
    return GpaRange.of(start, size)


__all__ = ["GIB", "MIB", "guest", "machine", "rng", "validated"]
