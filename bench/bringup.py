"""What the bring-up benchmarks (``bench_snp_bringup.py``, ``bench_tdx_bringup.py``) share:
one timed bring-up (create, validate all RAM, create the APs, attest), the best of several
rounds with the peak RSS, the fresh interpreter each measurement runs in, and the targets.

Imported by those scripts as ``bringup`` (run as ``python bench/<script>.py``, ``bench/`` is
on ``sys.path``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

GIB, TIB = 1 << 30, 1 << 40
#: The sizes each script measures, in order.
SIZES = (("1 GiB", GIB), ("1 TiB", TIB))
#: Targets: 1 TiB / 256 vCPUs in <= 2 s and <= 300 MB peak RSS, and <= 3x the 1 GiB time.
MAX_SECONDS, MAX_RSS_MB, MAX_RATIO = 2.0, 300.0, 3.0


def _require(ok: bool, what: str, exit_on_failure: bool) -> None:
    if exit_on_failure:
        if not ok:
            raise SystemExit(f"{what} failed")
    else:
        assert ok


def bring_up(
    config: dict[str, Any], backend: str, report_data: bytes, *, exit_on_failure: bool = False
) -> tuple[dict[str, float], Any]:
    """Bring a guest up once: seconds per phase (create, validate, vcpus, attest), total,
    the trace's size and the modelled guest time; and the partition. A failed operation is
    an AssertionError, or with ``exit_on_failure`` a SystemExit naming it."""
    from cocopart.model import GpaRange
    from cocopart.ops import Attest, CreateVcpu, ValidatePages
    from cocopart.partition import Partition

    memory, vcpus = config["memory"], config["vcpus"]
    marks = [time.perf_counter()]
    p = Partition(config, backend)
    marks.append(time.perf_counter())
    _require(p.run(ValidatePages(range=GpaRange.of(0, memory))).ok, "validate", exit_on_failure)
    marks.append(time.perf_counter())
    for v in range(1, vcpus):
        _require(p.run(CreateVcpu(vcpu=v)).ok, f"CreateVcpu({v})", exit_on_failure)
    marks.append(time.perf_counter())
    _require(p.run(Attest(report_data=report_data)).ok, "attestation", exit_on_failure)
    marks.append(time.perf_counter())
    phases = ("create", "validate", "vcpus", "attest")
    out = {name: marks[i + 1] - marks[i] for i, name in enumerate(phases)}
    out["total"] = marks[-1] - marks[0]
    out["primitives"] = float(p.trace.total_primitives)
    out["switches"] = float(p.trace.total_switches)
    return out, p


def best_of(rounds: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The fastest of ``rounds`` runs (by total), with this interpreter's peak RSS in MB."""
    import resource

    best: dict[str, float] | None = None
    for _ in range(rounds):
        r = run()
        if best is None or r["total"] < best["total"]:
            best = r
    assert best is not None
    best["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return best


def run_child(script: str, args: list[str]) -> dict[str, float]:
    """Run ``script`` with ``args`` in a fresh interpreter (so its peak RSS is its own) and
    return the JSON object on its last output line."""
    done = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def target_checks(
    big: dict[str, float], small: dict[str, float], time_text: str
) -> dict[str, bool]:
    """The targets for the 1 TiB run ``big`` against the 1 GiB run ``small``; ``time_text``
    names the time target (formatted with ``seconds``)."""
    ratio = big["total"] / small["total"]
    return {
        time_text.format(seconds=MAX_SECONDS): big["total"] <= MAX_SECONDS,
        f"1 TiB peak RSS <= {MAX_RSS_MB:.0f} MB": big["rss_mb"] <= MAX_RSS_MB,
        f"1 TiB <= {MAX_RATIO}x 1 GiB (is {ratio:.2f}x)": ratio <= MAX_RATIO,
    }
