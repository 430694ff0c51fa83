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

from cocopart.lazy_exports import lazy_exports

#: Public name -> the module that defines it (imported on first use, as ``cocopart`` does).
_EXPORTS = {
    "Axis": "cocopart.scaleout.axes",
    "BatchResult": "cocopart.scaleout.batch",
    "BatchRow": "cocopart.scaleout.batch",
    "BatchSummary": "cocopart.scaleout.batch",
    "EvidenceReader": "cocopart.scaleout.batch",
    "read_evidence_json": "cocopart.scaleout.batch",
    "verify_batch": "cocopart.scaleout.batch",
    "Cluster": "cocopart.scaleout.engine",
    "EngineInfo": "cocopart.scaleout.engine",
    "DEFAULT_PATTERNS": "cocopart.scaleout.sources",
    "expand_sources": "cocopart.scaleout.sources",
    "PointTotal": "cocopart.scaleout.sweep",
    "SweepResult": "cocopart.scaleout.sweep",
    "SweepRow": "cocopart.scaleout.sweep",
    "run_sweep": "cocopart.scaleout.sweep",
    "Sweep": "cocopart.scaleout.sweep_file",
    "SweepPoint": "cocopart.scaleout.sweep_file",
    "build_sweep": "cocopart.scaleout.sweep_file",
    "load_sweep": "cocopart.scaleout.sweep_file",
    "loads_sweep": "cocopart.scaleout.sweep_file",
    "BatchFiles": "cocopart.scaleout.tables",
    "SweepFiles": "cocopart.scaleout.tables",
    "batch_table": "cocopart.scaleout.tables",
    "sweep_table": "cocopart.scaleout.tables",
    "write_batch_tables": "cocopart.scaleout.tables",
    "write_sweep_tables": "cocopart.scaleout.tables",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - built from the export table


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
