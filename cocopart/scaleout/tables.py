"""Result tables: Parquet (pyarrow) and CSV for sweeps, Parquet and JSONL for batches.

The columns have fixed types (a sweep's parameter columns get the type all their values
share: bool, int64, float64, else string with tables and lists as JSON), and nothing in a
table depends on when or where it was made, so the same results give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cocopart.errors import ClusterError, ConfigError

if TYPE_CHECKING:  # the runners import the scenario and attestation packages
    from cocopart.scaleout.batch import BatchResult
    from cocopart.scaleout.sweep import SweepResult

#: Fixed columns of a sweep table after the point index and the parameters.
SWEEP_COLUMNS = (
    "backend",
    "vendor",
    "memory_bytes",
    "vcpus",
    "workload_layers",
    "strategy",
    "interrupt_mode",
    "step_index",
    "step",
    "step_kind",
    "status",
    "operations",
    "primitives",
    "world_switches",
    "modelled_ns",
    "reason",
)


class SweepFiles(BaseModel):
    parquet: str
    csv: str


class BatchFiles(BaseModel):
    parquet: str
    jsonl: str


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise ClusterError(
            "writing tables needs pyarrow: pip install 'cocopart[scale-out]'"
        ) from None
    return pyarrow


def _param_type(values: Sequence[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


def _param_cell(value: Any, kind: str) -> Any:
    if kind == "float64":
        return float(value)
    if kind != "string" or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sweep_table(result: SweepResult) -> Any:
    """The sweep's rows as a ``pyarrow.Table``: point, one column per axis, the rest."""
    pa = _pyarrow()
    rows = result.rows
    columns: dict[str, Any] = {"point": pa.array([r.point for r in rows], pa.int64())}
    for axis in result.axes:
        values = [r.params.get(axis) for r in rows]
        kind = _param_type([v for v in values if v is not None])
        arrow_type = {
            "bool": pa.bool_(),
            "int64": pa.int64(),
            "float64": pa.float64(),
            "string": pa.string(),
        }[kind]
        columns[axis] = pa.array(
            [None if v is None else _param_cell(v, kind) for v in values], arrow_type
        )
    types = {
        "memory_bytes": pa.int64(),
        "vcpus": pa.int64(),
        "workload_layers": pa.int64(),
        "step_index": pa.int64(),
        "operations": pa.int64(),
        "primitives": pa.int64(),
        "world_switches": pa.int64(),
        "modelled_ns": pa.float64(),
    }
    for name in SWEEP_COLUMNS:
        values = [_plain(getattr(r, name)) for r in rows]
        columns.setdefault(name, pa.array(values, types.get(name, pa.string())))
    return pa.table(columns)


def batch_table(result: BatchResult) -> Any:
    """The batch's rows as a ``pyarrow.Table`` (failed checks a list, measurements and TCB
    maps)."""
    from cocopart.scaleout.batch import BatchRow

    pa = _pyarrow()
    rows = result.rows
    types = {
        "failed_checks": pa.list_(pa.string()),
        "checks": pa.int64(),
        "measurements": pa.map_(pa.string(), pa.string()),
        "tcb": pa.map_(pa.string(), pa.int64()),
        "via_privileged_layer": pa.bool_(),
        "debug": pa.bool_(),
        "simulated": pa.bool_(),
    }
    columns = {}
    for name in BatchRow.model_fields:
        values = [getattr(r, name) for r in rows]
        if name in ("measurements", "tcb"):
            values = [list(v.items()) for v in values]
        columns[name] = pa.array(values, types.get(name, pa.string()))
    return pa.table(columns)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # enums as their text


def _target(out_dir: str | Path, name: str) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the output folder: {err.strerror}", source=str(out)
        ) from None
    return out / name


def _write(path: Path, write: Any) -> str:
    try:
        write(str(path))
    except OSError as err:
        raise ConfigError(f"cannot write: {err.strerror or err}", source=str(path)) from None
    return str(path)


def write_parquet(table: Any, path: Path) -> str:
    pq = _pyarrow().parquet
    return _write(path, lambda p: pq.write_table(table, p, compression="zstd"))


def write_csv(table: Any, path: Path) -> str:
    csv = _pyarrow().csv
    return _write(path, lambda p: csv.write_csv(table, p))


def write_jsonl(rows: Iterable[BaseModel], path: Path) -> str:
    def write(p: str) -> None:
        with open(p, "w", encoding="utf-8") as fh:
            fh.writelines(row.model_dump_json() + "\n" for row in rows)

    return _write(path, write)


def write_sweep_tables(result: SweepResult, out_dir: str | Path, stem: str = "sweep") -> SweepFiles:
    """``<stem>.parquet`` and ``<stem>.csv`` in ``out_dir`` (created when missing)."""
    table = sweep_table(result)
    return SweepFiles(
        parquet=write_parquet(table, _target(out_dir, f"{stem}.parquet")),
        csv=write_csv(table, _target(out_dir, f"{stem}.csv")),
    )


def write_batch_tables(
    result: BatchResult, out_dir: str | Path, stem: str = "verify"
) -> BatchFiles:
    """``<stem>.parquet`` and ``<stem>.jsonl`` in ``out_dir`` (created when missing)."""
    return BatchFiles(
        parquet=write_parquet(batch_table(result), _target(out_dir, f"{stem}.parquet")),
        jsonl=write_jsonl(result.rows, _target(out_dir, f"{stem}.jsonl")),
    )
