"""Interrupt delivery on the model: 10^6 host interrupts per backend and mode, and the cost
of one delivery per mode.

Usage: ``python bench/bench_interrupts.py [--count 1000000] [--backend sev-snp|tdx|both]
[--markdown] [--check]``

1. Per-mode cost table: on a fresh guest (2 vCPUs, one workload layer, the mode from boot),
   a device interrupt from the host to the running workload vCPU, then the handler's EOI —
   the primitives and world switches each costs and the estimated ns from the backend's cost
   table (the second such cycle: the steady state, after a lazy EOI where the mode has one).
2. Throughput: ``Partition.inject_many`` of ``--count`` interrupts (vectors cycling over
   0x20-0xE7, each completed by its EOI) in every mode the backend supports; every interrupt
   goes through the model's delivery semantics and is counted in the trace (the primitive
   sequence of each state shape runs once, then repeats). Goal: 10^6 in <= 5 s per backend.

With ``--check`` the exit code is 1 unless every run meets the goal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

MODES = ("direct", "restricted", "alternate", "secure-avic")
GOAL_SECONDS = 5.0


def supported(backend: str, mode: str) -> bool:
    return not (backend == "tdx" and mode == "direct")


def cost_row(backend: str, mode: str) -> dict[str, Any]:
    """Primitives and switches of one steady-state delivery and of its EOI."""
    from cocopart.ops import EndOfInterrupt, InjectInterrupt
    from cocopart.partition import Partition

    p = Partition({"memory": "64MiB", "vcpus": 2, "interrupt_mode": mode, "services": []}, backend)
    inject = InjectInterrupt(layer="host", target="l2.1", vcpu=0, vector=0x41)
    eoi = EndOfInterrupt(layer="l2.1", target="l2.1", vcpu=0)
    p.run(inject)
    p.run(eoi)
    r, e = p.run(inject), p.run(eoi)
    plan = p.plan(inject)
    prims: Counter[str] = Counter()
    for ev in plan.events:
        if ev.kind == "primitive":
            prims[f"{ev.issuer}:{ev.mnemonic}"] += ev.count
    switches = [
        f"{ev.issuer}->{ev.target} {ev.mnemonic}" for ev in plan.events if ev.kind == "switch"
    ]
    return {
        "backend": backend,
        "mode": mode,
        "primitives": r.primitives,
        "switches": r.world_switches,
        "ns": r.estimated_ns,
        "eoi_primitives": e.primitives,
        "eoi_switches": e.world_switches,
        "eoi_ns": e.estimated_ns,
        "path": " → ".join(switches),
        "prims": ", ".join(prims),
    }


def throughput(backend: str, mode: str, count: int) -> dict[str, float]:
    from cocopart.partition import Partition

    p = Partition({"memory": "64MiB", "vcpus": 4, "interrupt_mode": mode, "services": []}, backend)
    items = [("l2.1", 0, 0x20 + i % 200) for i in range(count)]
    t = time.perf_counter()
    out = p.inject_many(items)
    dt = time.perf_counter() - t
    return {
        "seconds": dt,
        "delivered": out.delivered,
        "faithful": out.faithful_cycles,
        "primitives": out.primitives,
        "switches": out.world_switches,
        "model_s": out.estimated_ns / 1e9,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sev-snp", "tdx", "both"), default="both")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    backends = ("sev-snp", "tdx") if args.backend == "both" else (args.backend,)

    print("Per-delivery cost (host interrupt to a running workload vCPU, then its EOI):")
    if args.markdown:
        print(
            "| backend | mode | delivery: primitives / switches / est. | EOI: primitives / "
            "switches / est. | world switches of the delivery |"
        )
        print("|---|---|---|---|---|")
    for b in backends:
        for mode in MODES:
            if not supported(b, mode):
                line = (
                    (f"| {b} | {mode} | not supported: the TDX host never injects into an L2 | | |")
                    if args.markdown
                    else f"{b:8} {mode:12} not supported"
                )
                print(line)
                continue
            row = cost_row(b, mode)
            if args.markdown:
                print(
                    f"| {b} | {mode} | {row['primitives']} / {row['switches']} / "
                    f"{float(row['ns']) / 1000:.2f} µs | {row['eoi_primitives']} / "
                    f"{row['eoi_switches']} / {float(row['eoi_ns']) / 1000:.2f} µs | "
                    f"{row['path']} |"
                )
            else:
                print(
                    f"{b:8} {mode:12} delivery {row['primitives']:>2} prims "
                    f"{row['switches']} switches {float(row['ns']):8.0f} ns | EOI "
                    f"{row['eoi_primitives']} prims {row['eoi_switches']} switches "
                    f"{float(row['eoi_ns']):6.0f} ns\n{'':22}{row['path']}\n"
                    f"{'':22}{row['prims']}"
                )

    print(f"\nThroughput: {args.count:,} interrupts injected, delivered and EOI'd:")
    if args.markdown:
        print(
            "| backend | mode | wall time | delivered | primitives | world switches | "
            "modelled guest time |"
        )
        print("|---|---|---|---|---|---|---|")
    ok = True
    for b in backends:
        for mode in MODES:
            if not supported(b, mode):
                continue
            t = throughput(b, mode, args.count)
            ok &= t["seconds"] <= GOAL_SECONDS and t["delivered"] == args.count
            if args.markdown:
                print(
                    f"| {b} | {mode} | {t['seconds']:.2f} s | {int(t['delivered']):,} | "
                    f"{int(t['primitives']):,} | {int(t['switches']):,} | "
                    f"{t['model_s']:.2f} s |"
                )
            else:
                print(
                    f"{b:8} {mode:12} {t['seconds']:5.2f} s  delivered "
                    f"{int(t['delivered']):,}  ({int(t['faithful'])} cycles faithful)  "
                    f"{int(t['primitives']):,} primitives  {int(t['switches']):,} switches  "
                    f"model {t['model_s']:.2f} s"
                )
    print(
        f"\ngoal: {args.count:,} in <= {GOAL_SECONDS} s per backend and mode: "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
