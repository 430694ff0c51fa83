#!/usr/bin/env python3
"""Set up and run cocopart on a fresh machine that has only Python 3.11+ and pip.

    python3 tools/dev.py demo            # .venv + the default comparison (SEV-SNP vs TDX)
    python3 tools/dev.py demo ARGS       # ... ARGS replace the command: demo backends
    python3 tools/dev.py test            # .venv with the dev tools + every CI gate (nox):
                                         # ruff, mypy --strict, import contracts, docs, tests
    python3 tools/dev.py test ARGS       # ... pytest ARGS only (e.g. tests/cli -x -q)
    python3 tools/dev.py nox ARGS        # any nox session: nox -s docs, nox -l

The first run creates ``.venv`` next to this repository and installs the core, both backends
and the CLI into it in editable mode (``test``: with the dev extra), every third-party
package at the version constraints.txt pins; it prints each package as pip collects it.
Later runs install again only when a pyproject.toml or constraints.txt changed (or ``test``
needs the dev extra a ``demo`` install lacks): ``.venv/cocopart-install.json`` records what
was installed. CI (.ci/run) runs ``test`` from a fresh clone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("COCOPART_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / "cocopart-install.json"
LOG = VENV / "cocopart-install.log"
DISTRIBUTIONS = [".", "backends/sev_snp", "backends/tdx", "cli"]
LOCK = ROOT / "constraints.txt"
DEFAULT_SCENARIO = "examples/default.toml"
#: The nox sessions `test` runs, in order (noxfile.py defines them): what CI gates on.
GATE = ["lint", "types", "imports", "docs", "tests"]
#: `ruff format --check` (nox session "format"). Off until the tree has been formatted once
#: with `.venv/bin/ruff format cocopart backends cli tests bench docs tools noxfile.py`;
#: then set FORMAT_CHECK = ["format"] and CI checks the formatting after lint.
FORMAT_CHECK: list[str] = ["format"]
#: pip output lines worth showing while it works (the rest goes to the log).
PIP_PROGRESS = (
    "Collecting ",
    "Obtaining ",
    "Building ",
    "Installing collected",
    "Successfully installed",
    "ERROR",
    "error:",
)


def say(text: str) -> None:
    print(f"[dev.py] {text}", flush=True)


def wanted_state(dev: bool) -> dict[str, object]:
    """What an install from the current checkout would be: hashes of its inputs."""
    digest = hashlib.sha256()
    for path in [*(ROOT / d / "pyproject.toml" for d in DISTRIBUTIONS), LOCK]:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"-")
    return {"inputs": digest.hexdigest(), "dev": dev, "python": sys.version.split()[0]}


def installed_state() -> dict[str, object] | None:
    try:
        data = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def up_to_date(dev: bool) -> bool:
    have, want = installed_state(), wanted_state(dev)
    if have is None or not (BIN / "python").exists():
        return False
    return (
        have.get("inputs") == want["inputs"]
        and have.get("python") == want["python"]
        and (bool(have.get("dev")) or not dev)
    )


def pip_install(args: list[str]) -> None:
    """Run pip, showing its progress lines and keeping the whole output in the log."""
    cmd = [
        str(BIN / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        *args,
    ]
    say("+ " + " ".join(cmd[1:]))
    with LOG.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.startswith(PIP_PROGRESS):
                print("    " + line.rstrip()[:160], flush=True)
        code = proc.wait()
    if code:
        tail = LOG.read_text().splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
        sys.exit(f"[dev.py] pip failed (exit {code}); the whole output is in {LOG}")


def ensure_venv(dev: bool) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs on any python3
        sys.exit(f"cocopart needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if up_to_date(dev):
        say(f"{VENV} is up to date (delete {STAMP.name} there to force a reinstall)")
        return
    first = not (BIN / "python").exists()
    if first:
        say(
            f"first run: creating {VENV} and installing cocopart, both backends and the CLI"
            + (" with the dev tools (tests, linters, docs site)" if dev else "")
            + " — a few minutes"
        )
        venv.EnvBuilder(with_pip=True).create(VENV)
    else:
        why = f"a pyproject.toml or {LOCK.name} changed" + (
            ", or the dev tools are missing" if dev else ""
        )
        say(f"{why}: updating {VENV}")
    STAMP.unlink(missing_ok=True)
    args: list[str] = ["-c", str(LOCK)] if LOCK.exists() else []
    for d in DISTRIBUTIONS:
        args += ["-e", d + ("[dev]" if dev and d == "." else "")]
    pip_install(args)
    STAMP.write_text(json.dumps(wanted_state(dev), indent=2) + "\n")
    say(f"installed; pip's full output: {LOG}")


def run(cmd: list[str]) -> int:
    say("+ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


#: pytest's summary line, e.g. "3 failed, 1537 passed, 1 skipped in 196.32s (0:03:16)".
PYTEST_SUMMARY = re.compile(
    r"^=*\s*(\d+ (passed|failed|skipped|errors?|deselected)\b.*) in "
    r"[\d.]+s"
)


def run_gate(cmd: list[str]) -> int:
    """Run the nox gate, echoing it, and end with the test count as the closing line (nox's
    session summary would otherwise come after pytest's)."""
    say("+ " + " ".join(cmd))
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    summary = None
    for line in proc.stdout:
        print(line, end="", flush=True)
        m = PYTEST_SUMMARY.match(line.strip())
        if m:
            summary = m.group(1)
    code = proc.wait()
    if summary is not None:
        counts = {k: 0 for k in ("passed", "failed", "skipped")}
        for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", summary):
            counts["failed" if kind == "error" else kind] += int(n)
        print(
            f"tests: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped",
            flush=True,
        )
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "nox"):
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_venv(dev=what != "demo")
    python = str(BIN / "python")
    if what == "demo":
        return run([str(BIN / "cocopart"), *(rest or ["compare", DEFAULT_SCENARIO])])
    if what == "nox":
        return run([python, "-m", "nox", *rest])
    if rest:
        return run([python, "-m", "pytest", *rest])
    sessions = [*GATE[:1], *FORMAT_CHECK, *GATE[1:]]
    return run_gate([python, "-m", "nox", "-s", *sessions])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
