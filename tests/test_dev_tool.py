"""tools/dev.py, the bootstrap of the README's two commands: it reinstalls only when what it
installed from changed, the gate it runs is the noxfile's, and the format check is wired."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tools/dev.py pointed at a scratch checkout and venv."""
    module = _load(REPO / "tools" / "dev.py", "dev_tool")
    root = tmp_path / "repo"
    for d in module.DISTRIBUTIONS:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "pyproject.toml").write_text(f"[project]\nname = '{d}'\n")
    (root / "constraints.txt").write_text("pydantic==2.0\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    monkeypatch.setattr(module, "ROOT", root)
    monkeypatch.setattr(module, "LOCK", root / "constraints.txt")
    monkeypatch.setattr(module, "BIN", venv / "bin")
    monkeypatch.setattr(module, "STAMP", venv / "cocopart-install.json")
    return module


def _install(dev: ModuleType, with_dev: bool) -> None:
    dev.STAMP.write_text(json.dumps(dev.wanted_state(with_dev)))


def test_nothing_changed_means_no_reinstall(dev: ModuleType) -> None:
    assert not dev.up_to_date(dev=True), "no record of an install yet"
    _install(dev, with_dev=True)
    assert dev.up_to_date(dev=True) and dev.up_to_date(dev=False)


def test_a_changed_pyproject_or_lock_means_reinstall(dev: ModuleType) -> None:
    _install(dev, with_dev=True)
    (dev.ROOT / "cli" / "pyproject.toml").write_text("[project]\nname = 'cli'\nversion = '2'\n")
    assert not dev.up_to_date(dev=True)
    _install(dev, with_dev=True)
    dev.LOCK.write_text("pydantic==2.1\n")
    assert not dev.up_to_date(dev=False)


def test_test_after_demo_installs_the_dev_tools(dev: ModuleType) -> None:
    _install(dev, with_dev=False)
    assert dev.up_to_date(dev=False)
    assert not dev.up_to_date(dev=True)


def test_a_venv_without_python_is_reinstalled(dev: ModuleType) -> None:
    _install(dev, with_dev=True)
    (dev.BIN / "python").unlink()
    assert not dev.up_to_date(dev=True)


def test_the_gate_is_the_noxfiles_and_the_format_check_is_wired() -> None:
    pytest.importorskip("nox")
    module = _load(REPO / "tools" / "dev.py", "dev_tool_gate")
    sys.path.insert(0, str(REPO))
    try:
        noxfile = _load(REPO / "noxfile.py", "noxfile_under_test")
    finally:
        sys.path.remove(str(REPO))
    import nox

    assert nox.options.sessions == module.GATE
    registered = set(nox.registry.get())
    assert {*module.GATE, "format", "lock"} <= registered
    assert isinstance(module.FORMAT_CHECK, list) and set(module.FORMAT_CHECK) <= {"format"}
    assert noxfile.PACKAGES == [p for p in noxfile.PACKAGES if (REPO / p).is_dir()]


def test_pins_cover_the_test_oracles() -> None:
    pins = {
        line.split("==")[0].lower()
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for oracle in (
        "dcap-qvl",
        "cvm-attest",
        "dk-tee-attestation",
        "sev-snp-measure",
        "pydantic",
        "typer",
        "ruff",
        "mypy",
        "mkdocs-material",
    ):
        assert oracle in pins, f"constraints.txt does not pin {oracle}"


def test_the_gate_ends_with_the_test_count(capfd: pytest.CaptureFixture[str]) -> None:
    """CI reads the closing line: pytest's summary, restated after nox's session report."""
    module = _load(REPO / "tools" / "dev.py", "dev_tool_summary")
    fake = (
        "print('1 error, 3 failed, 10 passed, 1 skipped in 1.25s (0:00:01)');"
        "print('nox > * tests: failed'); raise SystemExit(1)"
    )
    assert module.run_gate([sys.executable, "-c", fake]) == 1
    last = capfd.readouterr().out.strip().splitlines()[-1]
    assert last == "tests: 10 passed, 4 failed, 1 skipped"
