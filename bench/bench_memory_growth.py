"""Memory growth per operation on a long-running partition (issue 11): RSS bytes per op.

Usage: ``python bench/bench_memory_growth.py [--ops 100000] [--warmup 2000]
[--backend sev-snp|tdx|both] [--check]``

For each backend, in a fresh interpreter: create
``Partition({"memory": "4GiB", "vcpus": 2, "workload_layers": 2}, backend=...)``, validate
one 4 KiB page from ``l2.1``, run ``--warmup`` conversions of it (alternately to shared and to
private), ``gc.collect()`` and read the current RSS (``/proc/self/statm``), run ``--ops`` more
conversions, ``gc.collect()`` and read the RSS again. Prints the wall time of the measured
conversions, the RSS growth per operation and whether it meets the goal (<= 512 B/op), what
the partition holds at the end (``history`` results, trace log entries kept / discarded), and
the growth still held after ``Partition.history`` is cleared (an estimate of how much of the
growth the history accounts for: freed memory only shows in RSS where whole arenas empty).

With ``--check`` the exit code is 1 unless every backend meets the goal.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

BACKENDS = ("sev-snp", "tdx")
CONFIG = {"memory": "4GiB", "vcpus": 2, "workload_layers": 2}
#: Goal: RSS growth per operation over 10^5 operations.
GOAL_BYTES_PER_OP = 512


def current_rss() -> int:
    """Resident set size now, in bytes (``/proc/self/statm``; peak RSS where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settled_rss() -> int:
    gc.collect()
    return current_rss()


def child(backend: str, ops: int, warmup: int) -> dict[str, float]:
    """Run in a fresh interpreter: the measurement for one backend."""
    from cocopart import ConvertPages, GpaRange, Partition, ValidatePages

    p = Partition(CONFIG, backend=backend)
    page = GpaRange(start=0x1000_0000, size=4096)
    if not p.run(ValidatePages(layer="l2.1", range=page)).ok:
        raise SystemExit(f"{backend}: validating {page} from l2.1 failed")
    convert = (
        ConvertPages(layer="l2.1", range=page, to="shared"),
        ConvertPages(layer="l2.1", range=page, to="private"),
    )

    def run(n: int) -> None:
        for i in range(n):
            r = p.run(convert[i & 1])
            if not r.ok:
                raise SystemExit(f"{backend}: conversion {i} failed: {r}")

    run(warmup)
    if warmup % 2:  # start the measured run with the page private, like the warm-up
        run(1)
    before = settled_rss()
    t0 = time.perf_counter()
    run(ops)
    wall = time.perf_counter() - t0
    after = settled_rss()
    history = len(p.history)
    log_kept, log_dropped = p.trace.log_length, p.trace.dropped_events
    p.history.clear()
    without_history = settled_rss()
    return {
        "ops": ops,
        "wall_s": wall,
        "rss_before": before,
        "rss_after": after,
        "rss_without_history": without_history,
        "history": history,
        "log_kept": log_kept,
        "log_dropped": log_dropped,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def run_child(backend: str, ops: int, warmup: int) -> dict[str, float]:
    """:func:`child` in a fresh interpreter (its RSS is its own); its stderr shown on failure."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", backend, "--ops", str(ops), "--warmup", str(warmup)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{backend}: the measuring interpreter failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100_000, help="measured conversions")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the goal holds")
    ap.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ops < 1:
        ap.error("--ops must be >= 1")
    if args.child:
        print(json.dumps(child(args.child, args.ops, args.warmup)))
        return 0
    ok = True
    for backend in BACKENDS if args.backend == "both" else (args.backend,):
        r = run_child(backend, args.ops, args.warmup)
        n = r["ops"]
        growth = r["rss_after"] - r["rss_before"]
        per_op = growth / n
        held = (r["rss_without_history"] - r["rss_before"]) / n
        meets = per_op <= GOAL_BYTES_PER_OP
        ok &= meets
        print(
            f"{backend}: {n:,.0f} conversions after {args.warmup:,} warm-up in "
            f"{r['wall_s']:.2f} s wall ({r['wall_s'] / n * 1e6:.0f} us/op); RSS "
            f"{r['rss_before'] / 2**20:.1f} -> {r['rss_after'] / 2**20:.1f} MiB: "
            f"{per_op:,.0f} B/op  [{'PASS' if meets else 'FAIL'}: goal <= "
            f"{GOAL_BYTES_PER_OP} B/op]"
        )
        print(
            f"    held at the end: {r['history']:,.0f} history results, "
            f"{r['log_kept']:,.0f} trace log entries kept ({r['log_dropped']:,.0f} "
            f"discarded); after clearing the history: {held:,.0f} B/op still held; "
            f"peak RSS {r['peak_rss'] / 2**20:.1f} MiB"
        )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
