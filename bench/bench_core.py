#!/usr/bin/env python3
"""Core benchmarks (issue 2). Prints figures; asserts nothing (machines are noisy).

    .venv/bin/python bench/bench_core.py

1. Range map: 10^6 random range updates on a 4 TiB address space (goal <= 10 s).
2. Trace: 2^28 4K PVALIDATE primitives recorded as the model does — one record per run of
   512 pages (a 2M entry redone as 4K), with a world switch pair per SVSM call of 510
   entries — (goal <= 1 s and <= 50 MB).
3. ``python -c "import cocopart"`` wall time, best of 5 (goal <= 150 ms).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import tracemalloc

from cocopart.model import TIB
from cocopart.ranges import RangeMap
from cocopart.trace import Trace


def bench_range_map(n: int = 1_000_000) -> None:
    space = 4 * TIB
    rnd = random.Random(42)
    ops = []
    for _ in range(n):
        start = rnd.randrange(0, space >> 12) << 12
        size = 4096 << rnd.randrange(0, 19)  # 4 KiB .. 1 GiB, log-uniform
        ops.append((start, min(start + size, space), rnd.randrange(8)))
    m: RangeMap[int] = RangeMap(space, 0)
    t0 = time.perf_counter()
    for s, e, v in ops:
        m.set(s, e, v)
    dt = time.perf_counter() - t0
    print(
        f"range map: {n:,} random updates on 4 TiB in {dt:.2f} s "
        f"({dt / n * 1e6:.1f} us/update), {m.count():,} runs at the end  [goal <= 10 s]"
    )


def _fill_trace(pages: int, per_record: int) -> Trace:
    t = Trace()
    for i in range(pages // per_record):
        t.record("l1", "PVALIDATE.4K", "", "ok", per_record)
        if i % 510 == 0:  # one SVSM call of 510 entries
            t.switch("l2.1", "l1", "VMGEXIT(SNP_RUN_VMPL)")
            t.switch("l1", "l2.1", "VMGEXIT(SNP_RUN_VMPL)")
    return t


def bench_trace() -> None:
    pages, per_record = 1 << 28, 512
    t0 = time.perf_counter()
    t = _fill_trace(pages, per_record)
    dt = time.perf_counter() - t0
    assert t.count("PVALIDATE.4K") == pages
    tracemalloc.start()  # second run only for memory: tracemalloc slows Python down
    _fill_trace(pages, per_record)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"trace: 2^28 PVALIDATE.4K in {pages // per_record:,} records in {dt:.2f} s, peak "
        f"{peak / 2**20:.2f} MB, {len(t.primitives)} counter(s), {t.log_length:,} log "
        "entries [goal <= 1 s, <= 50 MB]"
    )


def bench_import() -> None:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import cocopart"], check=True)
        best = min(best, time.perf_counter() - t0)
    base = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base = min(base, time.perf_counter() - t0)
    print(
        f"import cocopart: {best * 1000:.0f} ms wall (interpreter alone {base * 1000:.0f} ms)"
        " [goal <= 150 ms]"
    )


if __name__ == "__main__":
    bench_import()
    bench_trace()
    bench_range_map()
