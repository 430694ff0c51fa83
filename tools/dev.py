#!/usr/bin/env python3
"""Set up and run cocopart on a fresh machine that has only Python 3.11+ and pip.

    python3 tools/dev.py demo     # venv + install all four distributions + the default comparison
    python3 tools/dev.py test     # venv + install (with test extras) + ruff, mypy --strict,
                                  # import contracts and the whole test suite

Both create ``.venv`` next to this repository when it is missing and (re)install the core,
both backends and the CLI into it in editable mode. Extra arguments after ``demo`` go to the
``cocopart`` command, after ``test`` to pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("COCOPART_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
DISTRIBUTIONS = [".", "backends/sev_snp", "backends/tdx", "cli"]
DEFAULT_SCENARIO = "examples/default.toml"
PACKAGES = ["cocopart", "backends/sev_snp/cocopart_sev_snp", "backends/tdx/cocopart_tdx",
            "cli/cocopart_cli"]
#: What ``test`` without arguments runs before pytest (as CI does).
LINT = [["ruff", "check", "cocopart", "backends", "cli", "tests", "bench"],
        ["mypy", "--strict", *PACKAGES]]


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_venv(dev: bool) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"cocopart needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    args: list[str | Path] = [BIN / "python", "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check"]
    for d in DISTRIBUTIONS:
        args += ["-e", d + ("[dev]" if dev and d == "." else "")]
    run(*args)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_venv(dev=what == "test")
    if what == "demo":
        cmd = rest or ["compare", DEFAULT_SCENARIO]
        return subprocess.run([str(BIN / "cocopart"), *cmd], cwd=ROOT).returncode
    if not rest:  # the whole gate: lint, types, import contracts (.importlinter) first
        for cmd in LINT:
            print("+", " ".join(cmd), flush=True)
            if subprocess.run([str(BIN / "python"), "-m", *cmd], cwd=ROOT).returncode:
                return 1
        print("+ lint-imports", flush=True)
        if subprocess.run([str(BIN / "lint-imports")], cwd=ROOT).returncode:
            return 1
    code = subprocess.run([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT).returncode
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
