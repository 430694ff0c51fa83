"""Where scale-out work runs: in this process, on a LocalCluster, or on a Dask cluster.

Work is a list of items and one function ``fn(context, items) -> results`` (one result per
item, in order). The engine cuts the items into chunks, runs each chunk as one Dask task
(the context is scattered once to every worker, so per-worker caches are keyed by it),
and returns every result in item order — the same list whatever ran it, which is what makes
serial and distributed tables byte-identical.

Chunks are strided (chunk ``k`` holds items ``k, k+m, k+2m, ...``): neighbouring items of a
sweep differ along its fastest axis, so strided chunks cost about the same and the workers
finish together.

Dask is imported only when a cluster is used (``import cocopart.scaleout`` stays cheap).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cocopart.errors import ClusterError, ConfigError, InternalError

C = TypeVar("C")
T = TypeVar("T")
R = TypeVar("R")

#: ``progress(done, total)``: items finished so far, out of ``total``.
Progress = Callable[[int, int], None]

#: Tasks per worker slot when the chunk size is automatic: enough for the workers to finish
#: together, few enough that the engine's per-task overhead (about a millisecond) is noise.
TASKS_PER_SLOT = 8


class Cluster(BaseModel):
    """How to run scale-out work. The default starts a ``distributed.LocalCluster`` with one
    single-threaded worker process per core of this machine and shuts it down afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler, e.g. "
        "'tcp://10.0.0.5:8786': connect to it instead of starting a local cluster.",
    )
    workers: int | None = Field(
        default=None,
        description="Worker processes of the local cluster; default: this machine's cores.",
    )
    serial: bool = Field(
        default=False,
        description="Run every chunk in this process, in order (debugging, tests): no Dask at all.",
    )
    chunk_size: int | None = Field(
        default=None,
        description=f"Items per task; default: about {TASKS_PER_SLOT} tasks per worker.",
    )
    retries: int = Field(default=1, description="Times a task is retried when its worker dies.")
    connect_timeout: float = Field(
        default=10.0, description="Seconds to wait for a remote scheduler."
    )

    def checked(self) -> Cluster:
        """This configuration, or a :class:`ConfigError` naming the conflicting options."""
        if self.serial and self.scheduler:
            raise ConfigError(
                "serial runs in this process; it cannot use a scheduler too", field="scheduler"
            )
        if self.serial and self.workers is not None:
            raise ConfigError(
                "serial runs in this process; it has no workers to size", field="workers"
            )
        if self.scheduler and self.workers is not None:
            raise ConfigError(
                "workers sizes a local cluster; a remote scheduler's cluster is "
                "sized where it runs",
                field="workers",
            )
        for name in ("workers", "chunk_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"must be at least 1, not {value}", field=name)
        if self.retries < 0:
            raise ConfigError(f"must not be negative, not {self.retries}", field="retries")
        return self


class EngineInfo(BaseModel):
    """What ran the work: for the summary, never in the (deterministic) tables."""

    mode: Literal["serial", "local", "remote"]
    scheduler: str | None = Field(
        default=None, description="Scheduler address (remote, or the local cluster's)."
    )
    dashboard: str | None = Field(default=None, description="Dask dashboard, when one runs.")
    workers: int = Field(description="Worker slots (threads over all workers; 1 serially).")
    tasks: int
    chunk_size: int
    elapsed_s: float = Field(
        description="Wall time from submission to the last result, "
        "without starting or stopping a local cluster."
    )


def local_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def chunk_count(items: int, slots: int, chunk_size: int | None) -> int:
    """Number of tasks for ``items`` items on ``slots`` worker slots."""
    if items == 0:
        return 0
    if chunk_size is not None:
        return -(-items // chunk_size)
    return min(items, max(1, slots) * TASKS_PER_SLOT)


class _Chunk(Generic[T]):
    """Items of one task, opaque to Dask (it does not walk them looking for tasks)."""

    __slots__ = ("items",)

    def __init__(self, items: list[T]) -> None:
        self.items = items


def _run_chunk(fn: Callable[[C, Sequence[T]], list[R]], context: C, chunk: _Chunk[T]) -> list[R]:
    out = fn(context, chunk.items)
    if len(out) != len(chunk.items):  # plain exceptions only: they travel back from workers
        raise RuntimeError(f"{len(out)} results for {len(chunk.items)} items")
    return out


def run_chunked(
    fn: Callable[[C, Sequence[T]], list[R]],
    context: C,
    items: Sequence[T],
    cluster: Cluster | None = None,
    *,
    progress: Progress | None = None,
    label: str = "cocopart",
) -> tuple[list[R], EngineInfo]:
    """Run ``fn(context, chunk)`` over ``items`` on ``cluster``; every result in item order.

    ``fn`` must be a module-level function (workers import it by name) and must not raise
    for one bad item: it returns a result describing the failure instead. Raises
    :class:`ClusterError` when the cluster cannot run the work.
    """
    cluster = (cluster or Cluster()).checked()
    if cluster.serial:
        return _run_serial(fn, context, list(items), cluster, progress)
    with _client(cluster) as (client, mode):
        return _run_dask(client, mode, fn, context, list(items), cluster, progress, label)


def _strided(items: list[T], m: int) -> list[list[T]]:
    return [items[k::m] for k in range(m)]


def _interleave(parts: list[list[R]], total: int) -> list[R]:
    out: list[Any] = [None] * total
    m = len(parts)
    for k, part in enumerate(parts):
        out[k::m] = part
    return out


def _run_serial(
    fn: Callable[[C, Sequence[T]], list[R]],
    context: C,
    items: list[T],
    cluster: Cluster,
    progress: Progress | None,
) -> tuple[list[R], EngineInfo]:
    m = chunk_count(len(items), 1, cluster.chunk_size)
    start = time.perf_counter()
    parts: list[list[R]] = []
    done = 0
    for chunk in _strided(items, m):
        try:
            parts.append(_run_chunk(fn, context, _Chunk(chunk)))
        except Exception as err:
            raise InternalError("running a chunk of scale-out work", err) from err
        done += len(chunk)
        if progress is not None:
            progress(done, len(items))
    info = EngineInfo(
        mode="serial",
        workers=1,
        tasks=m,
        chunk_size=_largest(len(items), m),
        elapsed_s=time.perf_counter() - start,
    )
    return _interleave(parts, len(items)), info


def _largest(items: int, tasks: int) -> int:
    return -(-items // tasks) if tasks else 0


@contextmanager
def _client(cluster: Cluster) -> Iterator[tuple[Any, Literal["local", "remote"]]]:
    try:
        dask: Any = importlib.import_module("distributed")  # untyped: used through Any
    except ImportError as err:
        raise ClusterError(
            f"the scale-out packages are not installed ({err.name} is "
            "missing): pip install 'cocopart[scale-out]'"
        ) from None
    if cluster.scheduler:
        try:
            client = dask.Client(cluster.scheduler, timeout=cluster.connect_timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {cluster.scheduler}: "
                f"{type(err).__name__}: {err}"
            ) from None
        with client:
            yield client, "remote"
        return
    try:
        local = start_local_cluster(cluster.workers)
    except (OSError, RuntimeError) as err:
        raise ClusterError(f"cannot start a local Dask cluster: {err}") from None
    with local, dask.Client(local) as client:
        yield client, "local"


#: Dask settings of the local cluster's workers. Their statistical profiler samples every
#: thread's stack every 10 ms: for pure-Python tasks that is CPU and a GIL hand-off each
#: time, for a dashboard panel a command does not show; the memory monitor every 100 ms is
#: more than a short-lived cluster needs. (Set the same on a remote cluster's workers with
#: DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False; docs/scale-out.md.)
WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
}


def start_local_cluster(workers: int | None = None) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes
    (default: one per core), its HTTP server (the dashboard, with bokeh) on a free port,
    its workers configured with :data:`WORKER_CONFIG`. The caller closes it."""
    dask: Any = importlib.import_module("dask")
    distributed: Any = importlib.import_module("distributed")
    with dask.config.set(WORKER_CONFIG):  # the nannies hand this config to the workers
        return distributed.LocalCluster(
            n_workers=workers or local_cores(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )


def _run_dask(
    client: Any,
    mode: Literal["local", "remote"],
    fn: Callable[[C, Sequence[T]], list[R]],
    context: C,
    items: list[T],
    cluster: Cluster,
    progress: Progress | None,
    label: str,
) -> tuple[list[R], EngineInfo]:
    as_completed: Any = importlib.import_module("distributed").as_completed
    slots = sum(client.nthreads().values()) or 1
    m = chunk_count(len(items), slots, cluster.chunk_size)
    start = time.perf_counter()
    chunks = _strided(items, m)
    run = uuid.uuid4().hex[:8]
    shared = client.scatter(context, broadcast=True, hash=False) if m else None
    futures = [
        client.submit(
            _run_chunk,
            fn,
            shared,
            _Chunk(chunk),
            key=f"{label}-{run}-{k}",
            retries=cluster.retries,
            pure=False,
        )
        for k, chunk in enumerate(chunks)
    ]
    index = {f.key: k for k, f in enumerate(futures)}
    parts: list[list[R]] = [[] for _ in range(m)]
    done = 0
    try:
        for future, result in as_completed(futures, with_results=True):  # fetched as done
            k = index[future.key]
            parts[k] = result
            done += len(chunks[k])
            if progress is not None:
                progress(done, len(items))
    except Exception as err:
        for f in futures:
            f.cancel()
        from distributed.scheduler import KilledWorker

        if isinstance(err, (KilledWorker, OSError, TimeoutError)):
            raise ClusterError(
                f"the cluster could not finish the work: {type(err).__name__}: {err}"
            ) from err
        raise InternalError("running a chunk of scale-out work on the cluster", err) from err
    info = EngineInfo(
        mode=mode,
        scheduler=client.scheduler.address,
        dashboard=client.dashboard_link
        if mode == "remote" or importlib.util.find_spec("bokeh") is not None
        else None,
        workers=slots,
        tasks=m,
        chunk_size=_largest(len(items), m),
        elapsed_s=time.perf_counter() - start,
    )
    return _interleave(parts, len(items)), info
