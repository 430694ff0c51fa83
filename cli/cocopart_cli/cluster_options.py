"""Options shared by the scale-out commands (`sweep`, `verify-batch`): where the work runs,
and a progress bar fed by the engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cocopart.errors import ConfigError
from cocopart.scaleout.engine import Cluster, EngineInfo
from cocopart_cli.errors import CliError
from cocopart_cli.output import ProgressBar

SCHEDULER_ENV = ["COCOPART_SCHEDULER", "DASK_SCHEDULER_ADDRESS"]

Scheduler = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        envvar=SCHEDULER_ENV,
        show_envvar=True,
        help="Connect to a running Dask scheduler (tcp://host:8786) instead of starting a local "
        "cluster (docs/scale-out.md).",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        metavar="N", help="Worker processes of the local cluster; default: this machine's cores."
    ),
]
Serial = Annotated[
    bool,
    typer.Option("--serial", help="Run in this process, without Dask (debugging; same tables)."),
]
ChunkSize = Annotated[
    int | None,
    typer.Option(metavar="N", help="Items per Dask task; default: about 8 tasks per worker."),
]

_OPTION = {
    "scheduler": "--scheduler",
    "workers": "--workers",
    "chunk_size": "--chunk-size",
    "retries": "--retries",
}


def cluster_from(
    scheduler: str | None, workers: int | None, serial: bool, chunk_size: int | None
) -> Cluster:
    """The engine configuration the options ask for; conflicting options are a usage error
    naming them."""
    try:
        return Cluster(
            scheduler=scheduler or None, workers=workers, serial=serial, chunk_size=chunk_size
        ).checked()
    except ConfigError as err:
        option = _OPTION.get(err.field or "", err.field or "")
        with_serial = " with --serial" if serial and option != "--chunk-size" else ""
        raise CliError(f"{option}{with_serial}: {err.message}") from None


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback for the engine, drawn on stderr when it is a terminal."""
    with ProgressBar(label) as bar:
        yield lambda done, total: bar.update(done, total, f"{done:,}/{total:,}")


def describe_engine(engine: EngineInfo) -> str:
    """One line: what ran the work and how fast."""
    where = {
        "serial": "serially in this process",
        "local": f"on a local Dask cluster ({engine.workers} worker processes)",
        "remote": f"on the Dask cluster at {engine.scheduler} ({engine.workers} worker threads)",
    }[engine.mode]
    return (
        f"ran {where}: {engine.tasks:,} tasks of up to {engine.chunk_size:,} items in "
        f"{engine.elapsed_s:.2f} s"
    )
