"""The checks that gate what cocopart claims, as nox sessions (docs/development.md: why nox).

    python3 tools/dev.py test            # what CI runs (.ci/run): every gate session below
    .venv/bin/python -m nox -l           # list the sessions
    .venv/bin/python -m nox -s types     # run one (or several: -s lint docs)

The gate sessions run in the environment nox runs in — the ``.venv`` tools/dev.py prepares
(all four distributions, editable, and the dev tools pinned by constraints.txt) — so no
session installs anything. ``lock`` is the exception: it resolves the dev environment afresh
in its own virtualenv and rewrites constraints.txt.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
nox.options.default_venv_backend = "none"
#: The gate, in the order CI runs it (tools/dev.py adds "format" when FORMAT_CHECK is on).
nox.options.sessions = ["lint", "types", "imports", "docs", "tests"]

#: The packages of the four distributions (mypy --strict checks all of them).
PACKAGES = [
    "cocopart",
    "backends/sev_snp/cocopart_sev_snp",
    "backends/tdx/cocopart_tdx",
    "cli/cocopart_cli",
]
#: Everything ruff checks (and, once the tree is formatted, formats).
SOURCES = ["cocopart", "backends", "cli", "tests", "bench", "docs", "tools", "noxfile.py"]
#: The distributions, editable, with the dev extra on the core (constraints.txt pins them).
DISTRIBUTIONS = [".[dev]", "backends/sev_snp", "backends/tdx", "cli"]
LOCK = ROOT / "constraints.txt"
LOCK_HEADER = """\
# The lock: exact versions of every third-party package of the dev environment (runtime
# dependencies, test oracles such as dcap-qvl, cvm-attest and dk-tee-attestation, linters,
# the docs site). tools/dev.py installs with `pip install -c constraints.txt`, so every
# machine and CI test against the same versions.
# Regenerate after changing a dependency in a pyproject.toml (docs/development.md):
#     .venv/bin/python -m nox -s lock
"""


def _tool(session: nox.Session, module: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run ``python -m module args`` with the interpreter nox runs on (the dev .venv)."""
    session.run(sys.executable, "-m", module, *args, external=True, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the sources, tests, benchmarks, docs generators and tools."""
    _tool(session, "ruff", "check", *SOURCES)


@nox.session(name="format")
def format_check(session: nox.Session) -> None:
    """ruff format --check (off in CI until the tree is formatted: tools/dev.py FORMAT_CHECK)."""
    _tool(session, "ruff", "format", "--check", *SOURCES)


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on every package of the four distributions."""
    _tool(session, "mypy", "--strict", *PACKAGES)


@nox.session
def imports(session: nox.Session) -> None:
    """The import contracts of .importlinter (core names no vendor, backends independent)."""
    session.run(str(Path(sys.executable).with_name("lint-imports")), external=True)


@nox.session
def docs(session: nox.Session) -> None:
    """The generated pages are current, and the site builds with mkdocs --strict."""
    for generator in sorted((ROOT / "docs").glob("gen_*.py")):
        if generator.name != "gen_common.py":
            session.run(sys.executable, str(generator), "--check", external=True)
    with tempfile.TemporaryDirectory() as site:
        # not --quiet: it hides the warnings --strict turns into a failure
        _tool(
            session, "mkdocs", "build", "--strict", "-d", site, env={"NO_MKDOCS_2_WARNING": "1"}
        )  # the theme's notice about its successor


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (arguments after ``--`` go to pytest)."""
    _tool(session, "pytest", *session.posargs)


@nox.session(venv_backend="venv", reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Resolve the dev environment afresh and write constraints.txt (not part of the gate)."""
    session.install(*[arg for d in DISTRIBUTIONS for arg in ("-e", d)])
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    lines = sorted(
        (ln for ln in frozen.splitlines() if ln and not ln.startswith("#")), key=str.lower
    )
    bad = [ln for ln in lines if "==" not in ln]
    if bad:
        session.error(f"not pinnable by version: {bad}")
    LOCK.write_text(LOCK_HEADER + "\n".join(lines) + "\n")
    session.log(f"wrote {LOCK} ({len(lines)} packages)")
