"""Scale-out: design-space sweeps and batch verification of evidence archives on Dask.

Two kinds of work outgrow one process. A **sweep** (:func:`load_sweep` / :func:`build_sweep`,
then :func:`run_sweep`) runs a base scenario at every point of a grid of axes — any scenario
field by its dotted path, the backend included — and returns one row per point x step.
A **batch** (:func:`expand_sources`, then :func:`verify_batch`) verifies every evidence file
of an archive against one policy and returns one row per file with its verdict and key
claims. Both run on a :class:`Cluster`: by default a ``distributed.LocalCluster`` with one
worker process per core, or an existing Dask scheduler (``Cluster(scheduler="tcp://...")``),
or in this process (``Cluster(serial=True)``); the rows are the same whatever ran them.
:func:`write_sweep_tables` and :func:`write_batch_tables` write Parquet and CSV / JSONL.

Dask, distributed and pyarrow (the ``scale-out`` extra) are imported only when used.
"""

from __future__ import annotations

from cocopart.scaleout.axes import Axis
from cocopart.scaleout.batch import (
    BatchResult,
    BatchRow,
    BatchSummary,
    EvidenceReader,
    read_evidence_json,
    verify_batch,
)
from cocopart.scaleout.engine import Cluster, EngineInfo
from cocopart.scaleout.sources import DEFAULT_PATTERNS, expand_sources
from cocopart.scaleout.sweep import SweepResult, SweepRow, run_sweep
from cocopart.scaleout.sweep_file import Sweep, SweepPoint, build_sweep, load_sweep, loads_sweep
from cocopart.scaleout.tables import (
    BatchFiles,
    SweepFiles,
    batch_table,
    sweep_table,
    write_batch_tables,
    write_sweep_tables,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "Axis",
    "BatchFiles",
    "BatchResult",
    "BatchRow",
    "BatchSummary",
    "Cluster",
    "EngineInfo",
    "EvidenceReader",
    "Sweep",
    "SweepFiles",
    "SweepPoint",
    "SweepResult",
    "SweepRow",
    "batch_table",
    "build_sweep",
    "expand_sources",
    "load_sweep",
    "loads_sweep",
    "read_evidence_json",
    "run_sweep",
    "sweep_table",
    "verify_batch",
    "write_batch_tables",
    "write_sweep_tables",
]
