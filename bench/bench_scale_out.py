#!/usr/bin/env python3
"""Scale-out on Dask (issue 18): a 2,000-point sweep and a 10^4-file verify batch, serially
and on a 2-worker LocalCluster, and the engine's per-task overhead. Prints figures and
asserts nothing (the machine is shared: the load average is printed with every figure).

    .venv/bin/python bench/bench_scale_out.py                 # everything (a few minutes)
    .venv/bin/python bench/bench_scale_out.py --quick         # 200 points, 1,000 files
    .venv/bin/python bench/bench_scale_out.py --only sweep    # or: batch, overhead

Goal: each workload at >= 1.7x the serial rate with 2 workers. The rates compare the time
from submission to the last result (``EngineInfo.elapsed_s``) in this process and on a
cluster that is already running and whose workers have imported cocopart (as a long-lived
cluster would), in interleaved rounds (``--rounds``) so that a change of the machine's load
affects both alike; both must return the same rows. The CPU used each way is printed too
(on a loaded machine the wall-clock ratio is the share of the cores the workers got), and
the end-to-end time of the whole workload with a new LocalCluster, as the commands run it.

Sweep: examples/sweep-base.toml (bring-up, a share round, attestation from each layer,
interrupts) over backend x memory x vCPUs x strategy x attestation source x interrupt mode.
Batch: Evidence JSON files written to a temporary folder at run time — real SNP reports with
their VCEK chains and real TDX quotes with their collateral from the shared vectors,
plus simulated evidence of both backends — cycled to the requested count and verified with
the reader `cocopart verify-batch` uses, as of now (the real TDX collateral of 2025 is then
stale and fails its freshness checks: every check still runs).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore
from cocopart.scaleout import Cluster, loads_sweep, run_sweep, verify_batch
from cocopart.scaleout.engine import run_chunked, start_local_cluster
from cocopart.scaleout.sweep_file import SweepPoint

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))
GOAL = 1.7

#: The base scenario: bring-up, a share round, attestation from each layer, interrupts.
BASE = REPO / "examples" / "sweep-base.toml"

#: 2 x 5 x 25 x 2 x 2 x 2 = 2,000 points (--quick: 2 x 5 x 5 x 2 x 1 x 2 = 200).
SWEEP = """\
scenario = "sweep-base.toml"
[axes]
backend = ["sev-snp", "tdx"]
"guest.memory" = {{ start = "1GiB", stop = "5GiB", step = "1GiB" }}
"guest.vcpus" = {{ start = 1, stop = {vcpus}, step = 1 }}
"guest.strategy" = ["optimal", "linux"]
"steps.2.source" = {sources}
"guest.interrupt_mode" = ["restricted", "alternate"]
"""

_REAL_SNP = {
    "virtee-milan-v2.report.bin": ["virtee-milan-v2.vcek.der", "virtee-milan.cert_chain.pem"],
    "routex-genoa-v3.report.bin": ["routex-genoa-v3.vcek-chain.pem"],
    "routex-milan-v3.report.bin": ["routex-milan-v3.vcek-chain.pem"],
    "routex-turin-v5.report.bin": ["routex-turin.vcek-chain.pem"],
    "teekit-gcp-milan-v5.report.bin": [
        "teekit-gcp-milan-v5.vcek.pem",
        "amd-roots/ask_ark_milan.pem",
    ],
}
_REAL_TDX = {
    "teekit-edgeless-v4.quote.bin": "2025-09-00806f050000.json",
    "teekit-gcp-v4.quote.bin": "2025-09-00806f050000.json",
}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cores"


class Workers:
    """A running LocalCluster whose workers have imported cocopart, and their CPU clock."""

    def __init__(self, address: str, client: Any) -> None:
        self.address = address
        self.client = client

    def cpu_s(self) -> float:
        """CPU seconds the workers have used so far, together."""
        return float(sum(self.client.run(time.process_time).values()))


@contextmanager
def local_cluster(workers: int) -> Iterator[Workers]:
    from distributed import Client

    with start_local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(_warm_up)  # workers import cocopart before the clock starts
        yield Workers(cluster.scheduler_address, client)


def _warm_up() -> None:
    import cocopart_cli.batch_reader  # noqa: F401 - what the batch's reader imports

    from cocopart.scaleout.sweep import _backend

    for name in ("sev-snp", "tdx"):
        _backend(name)


def warm_everywhere(cluster: Workers, warm: Callable[[], object]) -> None:
    """Run ``warm`` in this process and on every worker, so that both sides start with the
    same warm caches (imports, backends, the verifier's chains and collateral)."""
    warm()
    cluster.client.run(warm)


def _warm_sweep(text: str) -> None:
    run_sweep(loads_sweep(text, base_dir=BASE.parent), Cluster(serial=True))


def _warm_batch(
    files: list[str],
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    reader: Callable[[str], Evidence],
) -> None:
    verify_batch(files, policy, trust=trust, now=now, reader=reader, cluster=Cluster(serial=True))


class Timed:
    """Wall time of runs and the CPU time they took (this process, or the workers and this
    process — client and scheduler — for a cluster)."""

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.client_cpu_s = 0.0


def side_by_side(
    items: list[T], rounds: int, run: Callable[[list[T], Cluster], Any], cluster: Workers
) -> tuple[Timed, Timed]:
    """Run ``items`` serially and on ``cluster`` in ``rounds`` interleaved rounds (every
    ``rounds``-th item; serial first in even rounds, the cluster first in odd ones), so that
    a change of the machine's load affects both alike. Checks both give the same rows."""
    serial, dist = Timed(), Timed()
    for r in range(rounds):
        subset = items[r::rounds]
        rows: list[Any] = []
        order = [True, False] if r % 2 == 0 else [False, True]
        for in_process in order:
            cpu, workers_cpu = time.process_time(), 0.0 if in_process else cluster.cpu_s()
            result = run(
                subset, Cluster(serial=True) if in_process else Cluster(scheduler=cluster.address)
            )
            spent = time.process_time() - cpu
            timed = serial if in_process else dist
            timed.wall_s += result.engine.elapsed_s
            if in_process:
                timed.cpu_s += spent
            else:
                timed.cpu_s += cluster.cpu_s() - workers_cpu
                timed.client_cpu_s += spent
            rows.append(result.rows)
        assert rows[0] == rows[1], "serial and distributed rows differ"
    return serial, dist


def report(
    what: str, n: int, unit: str, serial: Timed, dist: Timed, end_to_end_s: float, workers: int
) -> None:
    """The wall-clock ratio (the goal), and the CPU each way: on a machine other jobs load,
    the CPU ratio says what the engine costs, whatever share of the cores the runs got."""
    ratio = serial.wall_s / dist.wall_s
    print(
        f"{what}: {n:,} {unit}: serial {serial.wall_s:.2f} s ({n / serial.wall_s:,.0f}/s); "
        f"{workers} workers {dist.wall_s:.2f} s ({n / dist.wall_s:,.0f}/s) = {ratio:.2f}x "
        f"serial [goal >= {GOAL}x: {'met' if ratio >= GOAL else 'NOT met'}]; CPU: serial "
        f"{serial.cpu_s:.2f} s, workers {dist.cpu_s:.2f} s together "
        f"({serial.cpu_s / dist.cpu_s:.0%} efficient) + client and scheduler "
        f"{dist.client_cpu_s:.2f} s; end to end with a new LocalCluster {end_to_end_s:.2f} s "
        f"({serial.wall_s / end_to_end_s:.2f}x serial); {load()}",
        flush=True,
    )


def bench_sweep(quick: bool, workers: int, rounds: int) -> None:
    text = SWEEP.format(
        vcpus=5 if quick else 25, sources='["service"]' if quick else '["service", "hardware"]'
    )
    sweep = loads_sweep(text, "bench-sweep.toml", base_dir=BASE.parent, name="bench")
    warm = text.replace('stop = "5GiB"', 'stop = "1GiB"').replace("stop = 25", "stop = 1")

    def run(points: list[SweepPoint], cluster: Cluster) -> Any:
        return run_sweep(sweep.model_copy(update={"points": points}), cluster)

    with local_cluster(workers) as cluster:
        warm_everywhere(
            cluster, functools.partial(_warm_sweep, warm.replace("stop = 5,", "stop = 1,"))
        )
        serial, dist = side_by_side(sweep.points, rounds, run, cluster)
    start = time.perf_counter()
    run_sweep(sweep, Cluster(workers=workers))
    report("sweep", len(sweep.points), "points", serial, dist, time.perf_counter() - start, workers)


def _simulated() -> tuple[list[Evidence], TrustStore]:
    """Service and hardware evidence from both backends' workload layers, and their roots."""
    from cocopart_cli.common import evidence_from
    from cocopart_cli.evidence_tools import simulated_root

    from cocopart.scenario import Runner, loads_scenario

    trust = TrustStore()
    out: list[Evidence] = []
    for backend, source in (("sev-snp", "both"), ("tdx", "service")):
        steps = "".join(
            f'[[steps]]\nmacro = "attest-each-layer"\nsource = "{source}"\n'
            f'report_data = "{i:02x}"\n'
            for i in range(3)
        )
        guest = BASE.read_text().split("[[steps]]")[0]
        scenario = loads_scenario(f'{guest}[[steps]]\nmacro = "bring-up"\n{steps}')
        run = Runner(scenario, backend).run()
        for step in run.steps:
            for outcome in step.operations:
                ev = evidence_from(outcome.data.get("evidence"))
                if ev is not None:
                    out.append(ev)
        root = simulated_root(out[-1])
        assert root is not None
        trust = trust.with_root(out[-1].vendor, root)
    return out, trust


def _real() -> list[Evidence]:
    from cocopart_tdx.collateral import collateral_from_dcap_qvl_json

    out = [
        Evidence(
            vendor="sev-snp",
            format="snp-report",
            raw=(VECTORS / "snp" / report).read_bytes(),
            certificates=[(VECTORS / "snp" / c).read_bytes() for c in certs],
        )
        for report, certs in _REAL_SNP.items()
    ]
    for quote, collateral in _REAL_TDX.items():
        coll = collateral_from_dcap_qvl_json(
            (VECTORS / "tdx" / "dcap-qvl-collateral" / collateral).read_bytes()
        )
        out.append(
            Evidence(
                vendor="tdx",
                format="tdx-quote",
                raw=(VECTORS / "tdx" / "quotes" / quote).read_bytes(),
                collateral=coll,
            )
        )
    return out


def build_archive(folder: Path, files: int) -> tuple[list[str], TrustStore, str]:
    simulated, trust = _simulated()
    real = _real() if (VECTORS / "manifest.json").is_file() else []
    kinds = [ev.model_dump_json() for ev in real + simulated]
    paths = []
    for i in range(files):
        sub = folder / "archive" / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"ev-{i:05d}.json"
        p.write_text(kinds[i % len(kinds)])
        paths.append(str(p))
    what = f"{len(real)} real + {len(simulated)} simulated distinct pieces of evidence"
    return paths, trust, what


def bench_batch(folder: Path, quick: bool, workers: int, rounds: int) -> None:
    from cocopart_cli.batch_reader import read_evidence

    files, trust, what = build_archive(folder, 1_000 if quick else 10_000)
    policy = Policy(allowed_layers=["l1", "l2.1", "l2.2"])
    reader = functools.partial(read_evidence, vendor=None, fmt=None)
    now = datetime.now(UTC)  # every run verifies as of one instant

    def run(subset: list[str], cluster: Cluster) -> Any:
        return verify_batch(subset, policy, trust=trust, now=now, reader=reader, cluster=cluster)

    with local_cluster(workers) as cluster:
        warm_everywhere(
            cluster, functools.partial(_warm_batch, files[:50], policy, trust, now, reader)
        )
        serial, dist = side_by_side(files, rounds, run, cluster)
    start = time.perf_counter()
    verdicts = run(files, Cluster(workers=workers)).summary.by_verdict
    print(f"batch: {what}; verdicts {verdicts}")
    report("verify batch", len(files), "files", serial, dist, time.perf_counter() - start, workers)


def _nothing(context: None, items: Sequence[int]) -> list[int]:
    return list(items)


def bench_overhead(workers: int, tasks: int = 2_000) -> None:
    """The engine's cost: ``tasks`` empty items as one task each, and as the automatic
    chunks a run uses (best of 3: the fixed cost of a run on a running cluster)."""
    items = list(range(tasks))
    serial = run_chunked(_nothing, None, items, Cluster(serial=True, chunk_size=1))[1]
    with local_cluster(workers) as cluster:
        auto = min(
            (
                run_chunked(_nothing, None, items, Cluster(scheduler=cluster.address))[1]
                for _ in range(3)
            ),
            key=lambda info: info.elapsed_s,
        )
        one = run_chunked(_nothing, None, items, Cluster(scheduler=cluster.address, chunk_size=1))[
            1
        ]
    print(
        f"engine overhead on {workers} workers: {one.elapsed_s / tasks * 1e3:.2f} ms per task "
        f"({tasks:,} empty tasks; serial {serial.elapsed_s / tasks * 1e6:.1f} us); a run of "
        f"{tasks:,} empty items in automatic chunks ({auto.tasks} tasks) "
        f"{auto.elapsed_s * 1e3:.0f} ms; {load()}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 points and 1,000 files")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="interleaved serial/cluster rounds (each a share of the items)",
    )
    ap.add_argument("--only", choices=["sweep", "batch", "overhead"], action="append")
    args = ap.parse_args(argv)
    chosen = args.only or ["overhead", "sweep", "batch"]
    print(f"cocopart scale-out benchmark; {load()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="cocopart-bench-"))
    try:
        if "overhead" in chosen:
            bench_overhead(args.workers)
        if "sweep" in chosen:
            bench_sweep(args.quick, args.workers, args.rounds)
        if "batch" in chosen:
            bench_batch(folder, args.quick, args.workers, args.rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
