"""The engine: results in item order whatever the chunking, conflicting options refused,
an unreachable scheduler or a broken task reported as a cocopart error."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cocopart.errors import ClusterError, ConfigError, InternalError
from cocopart.scaleout.engine import Cluster, chunk_count, run_chunked


def _square_plus(offset: int, items: Sequence[int]) -> list[int]:
    return [i * i + offset for i in items]


def _one_short(offset: int, items: Sequence[int]) -> list[int]:
    return list(items)[1:]


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7, 100])
def test_results_come_back_in_item_order(chunk_size: int | None) -> None:
    seen: list[tuple[int, int]] = []
    items = list(range(23))
    out, info = run_chunked(
        _square_plus,
        5,
        items,
        Cluster(serial=True, chunk_size=chunk_size),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out == [i * i + 5 for i in items]
    assert info.mode == "serial" and info.tasks == chunk_count(23, 1, chunk_size)
    assert seen[-1] == (23, 23) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_no_items_no_tasks() -> None:
    out, info = run_chunked(_square_plus, 0, [], Cluster(serial=True))
    assert out == [] and info.tasks == 0


def test_conflicting_options_are_refused() -> None:
    for cluster, field in (
        (Cluster(serial=True, scheduler="tcp://h:8786"), "scheduler"),
        (Cluster(serial=True, workers=2), "workers"),
        (Cluster(scheduler="tcp://h:8786", workers=2), "workers"),
        (Cluster(workers=0), "workers"),
        (Cluster(chunk_size=0), "chunk_size"),
    ):
        with pytest.raises(ConfigError) as info:
            cluster.checked()
        assert info.value.field == field


def test_unreachable_scheduler_is_a_cluster_error() -> None:
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_chunked(
            _square_plus, 0, [1, 2], Cluster(scheduler="tcp://127.0.0.1:9", connect_timeout=0.5)
        )


def test_a_task_that_breaks_its_contract_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="1 results for 2 items"):
        run_chunked(_one_short, 0, [1, 2], Cluster(serial=True, chunk_size=2))
