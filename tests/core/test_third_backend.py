"""The proof that a new vendor is one small package (issue 12): a sketch of Arm CCA planes,
written against ``cocopart.spi`` only in under 150 lines, keeps the backend contract and
runs beside SEV-SNP and TDX."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planes_backend import PlanesBackend

from cocopart import GpaRange, Partition, ValidatePages
from cocopart.testing import BackendContract

SOURCE = Path(__file__).resolve().parents[1] / "planes_backend.py"


class TestPlanesContract(BackendContract):
    backend = PlanesBackend()


def test_the_third_backend_is_small_and_imports_only_the_spi() -> None:
    text = SOURCE.read_text()
    # lines of code as ruff format lays them out, blank lines not counted
    assert sum(1 for line in text.splitlines() if line.strip()) <= 150
    imported = {
        n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.module
    }
    imported |= {
        a.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in imported if m.startswith("cocopart")} <= {"cocopart"}
    assert "from cocopart import spi" in text


def test_the_core_routes_the_third_backends_validate_through_its_transport() -> None:
    p = Partition({"memory": "32MiB", "workload_layers": 2}, PlanesBackend())
    r = p.run(ValidatePages(layer="l2.1", range=GpaRange(start=0, size="4MiB")))
    assert r.ok and r.data["route"] == "l2.1 --PLANE_EXIT--> l1"
    assert r.world_switches == 2 and r.data["calls"] == 1
    [run] = p.memory_view(0, 4 << 20)
    assert run.validated and run.access == {"l2.1": "rwus"} and run.owner == "l2.1"
