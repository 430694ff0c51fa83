"""The docs cannot drift: the vendor mapping, the CLI reference and the file references are
regenerated and compared, the exit codes are documented, and `mkdocs build --strict` passes
(with the API reference generated from the docstrings)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cocopart.registry import load_all_backends

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mapping_table_is_generated_from_the_backends() -> None:
    gen = _load("gen_mapping")
    loaded = {s.name for s in load_all_backends() if s.ok}
    missing = [b for b in gen.BACKENDS if b not in loaded]
    if missing:
        pytest.skip(f"backends not importable: {missing}")
    text = gen.render()
    assert (DOCS / "mapping.md").read_text() == text, (
        "docs/mapping.md is out of date: run python docs/gen_mapping.py"
    )
    for op in ("validate", "share", "set-access", "create-vcpu", "attest", "inject-interrupt"):
        assert f"| `{op}`" in text


def test_cli_reference_is_generated_from_the_commands() -> None:
    gen = _load("gen_cli")
    assert (DOCS / "cli.md").read_text() == gen.render(), (
        "docs/cli.md is out of date: run python docs/gen_cli.py"
    )


def test_file_references_are_generated_from_the_models() -> None:
    gen = _load("gen_files")
    for name in gen.PAGES:
        assert (DOCS / "reference" / name).read_text() == gen.render(name), (
            f"docs/reference/{name} is out of date: run python docs/gen_files.py"
        )


def test_every_file_key_is_described() -> None:
    """A generated reference row without a description would be a hole in the docs: the
    models that load files describe every field."""
    gen = _load("gen_files")
    for name in gen.PAGES:
        rows = [r for r in gen.render(name).splitlines() if r.startswith("| `")]
        empty = [r for r in rows if r.rstrip().endswith("|  |")]
        assert rows and not empty, f"{name}: fields without a description: {empty}"


def test_exit_codes_are_documented() -> None:
    from cocopart_cli.errors import EXIT_CODES

    errors = (DOCS / "errors.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in errors


def test_every_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert str(page.relative_to(DOCS)) in nav, f"{page} is not in mkdocs.yml nav"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    site = tmp_path / "site"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (site / "mapping" / "index.html").is_file()
    api = (site / "api" / "partition" / "index.html").read_text()
    assert "Partition" in api and "run" in api and ":class:" not in api
    shutil.rmtree(site)
