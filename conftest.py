"""Shared fixtures for every test directory (tests/ and each backend's tests/). Real
vectors are read from ../shared/vectors (never copied here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
#: In the tests a backend whose trace contradicts its own route is an error, not a note.
os.environ.setdefault("COCOPART_ROUTE_CHECK", "raise")
VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))
sys.path.insert(0, str(REPO / "tests"))  # fake_backend, cca_plugin, planes_backend


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The shared real-evidence vectors; skips with the reason when they are absent."""
    if not (VECTORS / "manifest.json").is_file():
        pytest.skip(
            f"real attestation vectors not found at {VECTORS} "
            "(set COCOPART_VECTORS to the shared/vectors folder)"
        )
    return VECTORS


@pytest.fixture
def cca_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests-only third platform (tests/cca_plugin.py) installed through real entry
    points for the duration of a test; yields its name."""
    from cca_plugin import install

    path = str(install(tmp_path_factory.mktemp("cca-dist")))
    sys.path.insert(0, path)
    try:
        yield "cca"
    finally:
        sys.path.remove(path)
        from stevedore.extension import ExtensionManager

        ExtensionManager.ENTRY_POINT_CACHE.clear()
