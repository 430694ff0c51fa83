"""`cocopart layers`."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import EXAMPLES, assert_schema, invoke
from typer.testing import CliRunner


def test_layers_text(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Routes" in out and "FAKE.SWITCH" in out and "TCB" in out
    assert "not supported" in out  # e.g. inject-interrupt has no holder on the fake


def test_layers_json_routes_and_tcb(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small, "--format", "json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "layers", res.stdout)
    routes = {(r["from_layer"], r["capability"]): r for r in data["routes"]}
    assert routes[("l2.1", "validate")]["path"] == ["l2.1", "l1"]
    assert routes[("l2.1", "set-access:l2.2")]["path"] == ["l2.1"]  # fake: direct
    assert data["tcb"]["l2.1"] == ["firmware", "l1"]


def test_layers_dot_and_png(runner: CliRunner, fakes: list[str], small: Path, tmp_path: Path
                            ) -> None:
    res = invoke(runner, "layers", small, "-f", "dot")
    assert res.exit_code == 0 and res.stdout.startswith('digraph "fake layers"')
    png = tmp_path / "g.png"
    res = invoke(runner, "layers", small, "-f", "png", "--out", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layers_unknown_backend(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "layers", small, "--backend", "sev-snpp")
    assert res.exit_code == 2 and "installed:" in res.output


def test_layers_real(runner: CliRunner, real_backends: list[str]) -> None:
    for name in real_backends:
        res = invoke(runner, "layers", EXAMPLES / "guest.toml", "-b", name, "--json")
        assert res.exit_code == 0, res.output
        data = assert_schema(runner, "layers", res.stdout)
        assert any(r["supported"] for r in data["routes"])
