"""Shared fixtures. Real vectors are read from ../shared/vectors (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: In the tests a backend whose trace contradicts its own route is an error, not a note.
os.environ.setdefault("COCOPART_ROUTE_CHECK", "raise")
VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The shared real-evidence vectors; skips with the reason when they are absent."""
    if not (VECTORS / "manifest.json").is_file():
        pytest.skip(f"real attestation vectors not found at {VECTORS} "
                    "(set COCOPART_VECTORS to the shared/vectors folder)")
    return VECTORS
