"""Both commands on a real 2-worker Dask LocalCluster (processes) against --serial: the
tables are byte-identical; the library runs on an existing scheduler; each worker keeps one
verifier for the batch."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scaleout_helpers import invoke
from typer.testing import CliRunner

from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore
from cocopart.scaleout import (
    Cluster,
    expand_sources,
    load_sweep,
    run_sweep,
    verify_batch,
    write_batch_tables,
    write_sweep_tables,
)
from cocopart.scaleout.engine import start_local_cluster

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a 2-worker LocalCluster of processes, one thread each, as the
    commands start it."""
    with start_local_cluster(2) as cluster:  # what the commands start
        yield cluster.scheduler_address


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_sweep_is_byte_identical_on_a_cluster_and_serially(
    scheduler: str, sweep_file: Path, tmp_path: Path
) -> None:
    sweep = load_sweep(sweep_file)
    serial = run_sweep(sweep, Cluster(serial=True))
    remote = run_sweep(sweep, Cluster(scheduler=scheduler, chunk_size=3))
    assert remote.engine.mode == "remote" and remote.engine.workers == 2
    assert remote.engine.tasks == 6  # 16 points in chunks of 3
    assert remote.rows == serial.rows
    write_sweep_tables(serial, tmp_path / "serial")
    write_sweep_tables(remote, tmp_path / "remote")
    _same_files(tmp_path / "serial", tmp_path / "remote", ["sweep.parquet", "sweep.csv"])


def _worker_verifiers() -> int:
    from cocopart.scaleout import batch

    return len(batch._VERIFIERS)


def test_batch_is_identical_on_a_cluster_with_one_verifier_per_worker(
    scheduler: str, archive: dict[str, Path], tmp_path: Path
) -> None:
    from cocopart_cli.batch_reader import read_evidence
    from distributed import Client

    trust = TrustStore()
    for vendor in ("sev-snp", "tdx"):
        trust = trust.with_root(vendor, archive[vendor].read_bytes())
    files = expand_sources([str(archive["archive"])])
    kwargs: dict[str, Any] = {
        "trust": trust,
        "now": NOW,
        "reader": functools.partial(read_evidence, vendor=None, fmt=None),
    }
    policy = Policy(allowed_layers=["l1", "l2.1"])
    serial = verify_batch(files, policy, cluster=Cluster(serial=True), **kwargs)
    remote = verify_batch(
        files, policy, cluster=Cluster(scheduler=scheduler, chunk_size=2), **kwargs
    )
    assert remote.rows == serial.rows and remote.summary == serial.summary
    assert remote.summary.by_verdict["error"] == 2
    with Client(scheduler) as client:
        per_worker = client.run(_worker_verifiers)
    assert sorted(per_worker.values()) == [1, 1]  # built once, kept for every task
    write_batch_tables(serial, tmp_path / "serial")
    write_batch_tables(remote, tmp_path / "remote")
    _same_files(tmp_path / "serial", tmp_path / "remote", ["verify.parquet", "verify.jsonl"])


def test_cli_sweep_on_two_local_workers_equals_serial(
    sweep_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    for mode in (["--serial"], ["--workers", "2"]):
        res = invoke(runner, "sweep", sweep_file, *mode, "--out", tmp_path / mode[0], "--no-plot")
        assert res.exit_code == 0, res.output
    assert "on a local Dask cluster (2 worker processes)" in res.output
    _same_files(tmp_path / "--serial", tmp_path / "--workers", ["sweep.parquet", "sweep.csv"])


def test_cli_verify_batch_on_two_local_workers_equals_serial(
    archive: dict[str, Path], tmp_path: Path, runner: CliRunner
) -> None:
    manifest = tmp_path / "manifest.txt"  # URLs read by the workers through fsspec
    manifest.write_text(
        "".join(f"file://{p}\n" for p in sorted((archive["archive"] / "tdx").iterdir()))
    )
    args = [
        archive["archive"],
        "--manifest",
        manifest,
        "--trust-root",
        archive["sev-snp"],
        "--trust-root",
        archive["tdx"],
        "--now",
        NOW.isoformat(),
    ]
    for mode in (["--serial"], ["--workers", "2"]):
        res = invoke(runner, "verify-batch", *args, *mode, "--out", tmp_path / mode[0])
        assert res.exit_code == 1, res.output  # the two broken files
    assert "on a local Dask cluster (2 worker processes)" in res.output
    _same_files(
        tmp_path / "--serial",
        tmp_path / "--workers",
        ["verify.parquet", "verify.jsonl", "summary.json"],
    )
    rows = (tmp_path / "--workers" / "verify.jsonl").read_text().splitlines()
    # service evidence speaks for l1, which the default policy accepts (issue 13)
    assert sum('"file":"file://' in r and '"verdict":"accepted"' in r for r in rows) == 3
