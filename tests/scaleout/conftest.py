"""Fixtures of the scale-out tests: sweep files, an evidence archive, and one real 2-worker
Dask LocalCluster (processes) shared by the module that needs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scaleout_helpers import REPO, build_archive, write_sweep

from cocopart.registry import load_all_backends

VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def both_backends() -> list[str]:
    names = sorted(s.name for s in load_all_backends() if s.ok)
    if names != ["sev-snp", "tdx"]:
        pytest.skip(f"needs the sev-snp and tdx backends (loaded: {names})")
    return names


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sweep_file(tmp_path: Path, both_backends: list[str]) -> Path:
    return write_sweep(tmp_path / "sweep")


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory, both_backends: list[str]) -> dict[str, Path]:
    """Simulated evidence of both backends, the real SNP report when the vectors are there,
    and two unusable files (see scaleout_helpers.build_archive)."""
    vectors = VECTORS if (VECTORS / "manifest.json").is_file() else None
    return build_archive(
        tmp_path_factory.mktemp("batch"), CliRunner(), REPO / "examples" / "guest.toml", vectors
    )
