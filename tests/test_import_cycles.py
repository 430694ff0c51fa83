"""No import cycles inside a package (issue 12): every import counts — at module level,
under TYPE_CHECKING and inside functions — so parts depend on narrow collaborators, not on
each other in a loop. (import-linter's contracts in .importlinter guard the boundaries
between packages; this guards each package's inside.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import rustworkx as rx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"cocopart": ROOT / "cocopart", "cocopart_cli": ROOT / "cli" / "cocopart_cli"}


def module_graph(package: Path) -> tuple[rx.PyDiGraph, dict[str, int]]:
    files = {}
    for f in package.rglob("*.py"):
        parts = f.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = f
    g = rx.PyDiGraph()
    idx = {m: g.add_node(m) for m in files}
    for mod, f in files.items():
        pkg = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in idx and t != mod:
                    g.add_edge(idx[mod], idx[t], None)
    return g, idx


def cycles(package: Path) -> list[list[str]]:
    g, _ = module_graph(package)
    return [
        sorted(g[i] for i in comp) for comp in rx.strongly_connected_components(g) if len(comp) > 1
    ]


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_no_import_cycles_inside_the_package(name: str) -> None:
    assert cycles(PACKAGES[name]) == []


def test_the_check_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "loop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from loop import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loop.a import X\n"
    )
    assert cycles(pkg) == [["loop.a", "loop.b"]]
