"""Fixtures for the CLI tests: a Typer CliRunner, the tests-only fake backends patched into
the CLI's backend lookup, small scenario files, and the real backends when they import."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_helpers import FAKES, SMALL
from cocopart_cli import common

from cocopart.backend import Backend
from cocopart.errors import BackendLoadError, BackendNotFound
from cocopart.registry import PluginStatus, load_all_backends


@pytest.fixture(autouse=True)
def _forget_stevedore_entry_points() -> Iterator[None]:
    """stevedore caches each group's entry points for the life of the process; clear it after
    a CLI test so later tests that add plug-ins to sys.path see them."""
    yield
    from stevedore.extension import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make the CLI see exactly: fake, fake-b (working) and broken (fails to import)."""
    names = ["broken", "fake", "fake-b"]

    def load(name: str) -> Backend:
        if name == "broken":
            raise BackendLoadError(name, ModuleNotFoundError("No module named 'broken_backend'"))
        if name not in FAKES:
            raise BackendNotFound(name, names)
        return FAKES[name]()

    def load_all() -> list[PluginStatus]:
        out = []
        for n in names:
            try:
                out.append(PluginStatus(n, load(n)))
            except BackendLoadError as err:
                out.append(PluginStatus(n, error=err))
        return out

    monkeypatch.setattr(common, "installed_backends", lambda: list(names))
    monkeypatch.setattr(common, "load_named", load)
    monkeypatch.setattr(common, "load_all", load_all)
    yield names


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A 64 MiB two-layer scenario the fake backends run completely."""
    p = tmp_path / "small.toml"
    p.write_text(SMALL)
    return p


def _real_backends() -> list[str]:
    return [s.name for s in load_all_backends() if s.ok]


@pytest.fixture(scope="session")
def real_backends() -> list[str]:
    """The installed real backends that import; skips when there are none."""
    names = _real_backends()
    if not names:
        pytest.skip("no real backend imports yet")
    return names


@pytest.fixture(scope="session")
def both_backends() -> list[str]:
    """sev-snp and tdx, both importable; skips otherwise."""
    names = _real_backends()
    if not {"sev-snp", "tdx"} <= set(names):
        pytest.skip(f"needs both real backends (importable: {names or 'none'})")
    return ["sev-snp", "tdx"]
