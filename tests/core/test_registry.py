"""Plug-in loading through stevedore, including a plug-in that fails to import."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocopart.errors import BackendLoadError, BackendNotFound
from cocopart.registry import BACKEND_GROUP, installed, load_all_backends, load_backend


@pytest.fixture
def extra_plugins(tmp_path: Path) -> Iterator[Path]:
    """A distribution on sys.path registering a broken and a fake backend."""
    dist = tmp_path / "cocopart_testplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cocopart-testplugins\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{BACKEND_GROUP}]\nbroken = cocopart_no_such_module:Backend\n"
        "notabackend = math:pi\nfakeplug = fake_backend:FakeBackend\n"
    )
    sys.path.insert(0, str(tmp_path))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def test_installed_lists_both_backends() -> None:
    assert {"sev-snp", "tdx"} <= set(installed())


def test_unknown_backend_lists_installed() -> None:
    with pytest.raises(BackendNotFound) as err:
        load_backend("arm-cca")
    assert "sev-snp" in str(err.value) and "tdx" in str(err.value)
    assert err.value.installed == installed()


def test_plugin_that_fails_to_import_is_reported(extra_plugins: Path) -> None:
    assert "broken" in installed()
    with pytest.raises(BackendLoadError) as err:
        load_backend("broken")
    assert "cocopart_no_such_module" in str(err.value)
    assert isinstance(err.value.cause, ModuleNotFoundError)


def test_plugin_that_is_not_a_backend_is_reported(extra_plugins: Path) -> None:
    with pytest.raises(BackendLoadError, match="does not produce a Backend"):
        load_backend("notabackend")


def test_fake_plugin_loads_and_nothing_is_dropped(extra_plugins: Path) -> None:
    assert load_backend("fakeplug").name == "fake"
    statuses = {s.name: s for s in load_all_backends()}
    assert not statuses["broken"].ok and statuses["broken"].error is not None
    assert statuses["fakeplug"].ok
    assert set(statuses) == set(installed())


def test_core_import_loads_no_backend() -> None:
    import subprocess

    code = (
        "import sys, cocopart, cocopart.partition, cocopart.layers; "
        "print(any(m.startswith(('cocopart_sev_snp', 'cocopart_tdx')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
