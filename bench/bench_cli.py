#!/usr/bin/env python3
"""Start-up time of the ``cocopart`` command against a bare two-command Typer app (issue 17).

    .venv/bin/python bench/bench_cli.py [--rounds N] [--markdown]

Runs, side by side in one process and interleaved round by round (so load on the machine
hits every command alike): ``python bare.py --help`` (a Typer app with two commands and
nothing else, written to a temporary directory), ``cocopart --help``, ``cocopart backends``
and, for information, ``python bare.py table`` (the bare app running a command that prints a
rich table the size of the capability matrix: what any Typer command that prints a table
costs, since running a command makes Typer import pydantic for parameter coercion),
``cocopart verify --help`` and ``cocopart scenario check`` on the default scenario. Prints
the median and best wall time of each and its ratio to the bare app's ``--help`` (median
over median, best over best). Goal: ``--help`` and ``backends`` <= 1.3x. Asserts nothing:
machines are noisy; docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL = 1.3
BARE_APP = '''\
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def table(json_output: bool = False) -> None:
    """Print a 25-row table, as `cocopart backends` prints its capability matrix."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="capabilities")
    for col in ("capability", "a", "b"):
        t.add_column(col)
    for i in range(25):
        t.add_row(f"capability-{i}", "[green]yes[/green] " + "mechanism " * 6,
                  "[red]no[/red] " + "reason " * 6)
    Console(width=100).print(t)


if __name__ == "__main__":
    app()
'''


def cocopart_command() -> list[str]:
    """The installed console script next to this interpreter (as a user runs it)."""
    script = Path(sys.executable).with_name("cocopart")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cocopart_cli.main"]


def run_once(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.decode()}")
    return dt


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    env = {**os.environ, "COLUMNS": "100", "COCOPART_DEBUG": ""}
    cocopart = cocopart_command()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_APP)
        cases: dict[str, tuple[list[str], bool]] = {  # label -> (command, has a goal)
            "bare Typer app --help": ([sys.executable, str(bare), "--help"], False),
            "bare Typer app printing a 25-row table": ([sys.executable, str(bare), "table"], False),
            "cocopart --help": ([*cocopart, "--help"], True),
            "cocopart backends": ([*cocopart, "backends"], True),
            "cocopart verify --help": ([*cocopart, "verify", "--help"], False),
            "cocopart scenario check examples/default.toml": (
                [*cocopart, "scenario", "check", "examples/default.toml"],
                False,
            ),
        }
        for cmd, _ in cases.values():  # warm the file cache and .pyc files
            run_once(cmd, env)
        times: dict[str, list[float]] = {label: [] for label in cases}
        labels = list(cases)
        for r in range(args.rounds):
            order = labels[r % len(labels) :] + labels[: r % len(labels)]  # rotate the order
            for label in order:
                times[label].append(run_once(cases[label][0], env))
    base, base_best = statistics.median(times[labels[0]]), min(times[labels[0]])
    met = True
    rows = []
    for label in labels:
        med, best = statistics.median(times[label]), min(times[label])
        ratio, best_ratio = med / base, best / base_best
        goal = cases[label][1]
        verdict = ""
        if goal:  # judged on the medians; the best times show the machine's quiet moments
            ok = ratio <= GOAL
            met &= ok
            verdict = f"goal <= {GOAL}x: {'met' if ok else 'NOT met'}"
        rows.append((label, med, best, ratio, best_ratio, verdict))
    print(
        f"{args.rounds} interleaved rounds; ratio = median / median of the bare Typer app's "
        f"--help (best / best in brackets)"
    )
    if args.markdown:
        print("\n| command | median | best | ratio (best) | goal |\n|---|---|---|---|---|")
        for label, med, best, ratio, best_ratio, verdict in rows:
            print(
                f"| `{label}` | {med * 1e3:.0f} ms | {best * 1e3:.0f} ms | {ratio:.2f}x "
                f"({best_ratio:.2f}x) | {verdict.removeprefix(f'goal <= {GOAL}x: ') or '—'} |"
            )
    else:
        for label, med, best, ratio, best_ratio, verdict in rows:
            print(
                f"{label:48} {med * 1e3:6.0f} ms ({best * 1e3:4.0f} ms)  {ratio:5.2f}x "
                f"({best_ratio:4.2f}x)  {verdict}"
            )
    print(f"all goals {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
