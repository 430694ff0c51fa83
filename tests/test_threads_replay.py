"""Eight threads on one Partition, replayed serially, give the same states and results.

Partition serialises operations with one lock, so a concurrent run is *some* serial order:
the order in which results were appended to ``history``. Replaying exactly that order on a
fresh guest must give equal results (status, error, progress, changes, costs) and an equal
final memory view with owners — on both backends, with three workload layers competing for
the same pool pages (so the order matters).
"""

from __future__ import annotations

import sys
import threading

import pytest

from cocopart import Partition
from cocopart.model import PAGE_4K, GpaRange
from cocopart.ops import (
    ConvertPages,
    Operation,
    RescindPages,
    SetAccess,
    ValidatePages,
)

CONFIG = {"memory": "16MiB", "vcpus": 2, "workload_layers": 3}
LAYERS = ("l2.1", "l2.2", "l2.3", "l1")


def thread_ops(t: int) -> list[Operation]:
    """Thread ``t``'s operations: its own slice plus a slice every thread fights over."""
    layer = LAYERS[t % len(LAYERS)]
    own = GpaRange.of(t * (1 << 20), 1 << 20)
    contested = GpaRange.of(12 << 20, (t % 3 + 1) * 64 * PAGE_4K)
    target = LAYERS[(t + 1) % 3]
    return [
        ValidatePages(layer=layer, range=own),
        ValidatePages(layer=layer, range=contested),
        SetAccess(
            layer=layer, range=GpaRange.of(own.start, 16 * PAGE_4K), target=target, access="r"
        ),
        ConvertPages(layer=layer, range=GpaRange.of(own.start, 2 * PAGE_4K), to="shared"),
        RescindPages(layer=layer, range=GpaRange.of(own.start + 64 * PAGE_4K, 8 * PAGE_4K)),
        ConvertPages(layer=layer, range=GpaRange.of(own.start, 2 * PAGE_4K), to="private"),
    ]


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_eight_threads_replayed_serially_give_the_same_states_and_results(backend: str) -> None:
    p = Partition(CONFIG, backend)
    by_name = {op.describe(): op for t in range(8) for op in thread_ops(t)}
    assert len(by_name) == 8 * 6  # every operation is told apart by its description
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for op in thread_ops(t):
                p.run(op)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that operations interleave
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    order = [r.operation for r in p.history]
    assert len(order) == 48
    refused = [r for r in p.history if r.error and r.error.vendor == "cocopart-authority"]
    assert refused  # the contested pages went to whoever came first: the order matters
    winners = {
        r.operation.split(" from ")[1]
        for r in p.history
        if r.operation.startswith("validate(range=[0xc00000") and r.ok
    } - {"l1"}
    assert len(winners) <= 1  # one workload claims the contested pages (l1 may act anyway)

    serial = Partition(CONFIG, backend)
    for got, name in zip(p.history, order, strict=True):
        again = serial.run(by_name[name])
        assert again.model_dump(exclude={"estimated_ns"}) == got.model_dump(
            exclude={"estimated_ns"}
        ), name
    assert serial.memory_view(0, 16 << 20) == p.memory_view(0, 16 << 20)
    assert serial.trace.summary() == p.trace.summary()
