"""Shared helpers of the TDX tests: guests through the public API, and the model's parts."""

from __future__ import annotations

from typing import Any

from cocopart_tdx.machine import TdxMachine
from cocopart_tdx.sept import Sept
from cocopart_tdx.tdcall import TdxModule

from cocopart.model import GIB, MIB, PAGE_2M, PAGE_4K, GpaRange
from cocopart.partition import Partition

__all__ = ["GIB", "MIB", "PAGE_2M", "PAGE_4K", "guest", "machine", "module", "rng", "sept"]


def guest(
    memory: int | str = 64 * MIB,
    vcpus: int = 2,
    layers: int = 1,
    strategy: str = "optimal",
    services: list[str] | None = None,
    **options: Any,
) -> Partition:
    """A partitioned TD through the public API (``options`` = backend_options)."""
    cfg: dict[str, Any] = {
        "memory": memory,
        "vcpus": vcpus,
        "workload_layers": layers,
        "strategy": strategy,
        "backend_options": options,
    }
    if services is not None:
        cfg["services"] = services
    return Partition(cfg, "tdx")


def rng(start: int, size: int) -> GpaRange:
    return GpaRange.of(start, size)


def machine(p: Partition) -> TdxMachine:
    m = p.machine
    assert isinstance(m, TdxMachine)
    return m


def module(p: Partition) -> TdxModule:
    return machine(p).module


def sept(p: Partition) -> Sept:
    return machine(p).module.sept
