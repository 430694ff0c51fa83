"""`cocopart setup` and the input-error paths shared by every file-reading command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import SMALL, assert_schema, invoke
from fake_backend import FakeMachine
from typer.testing import CliRunner

from cocopart.ops import ArchError, Operation, OperationResult, RescindPages


def test_setup_runs_bring_up_and_summarises(
    runner: CliRunner, fakes: list[str], small: Path, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    policy = tmp_path / "policy.toml"
    res = invoke(runner, "setup", small, "--out", out, "--policy-out", policy)
    assert res.exit_code == 0, res.output
    text = res.stdout
    for part in ("bring-up", "Layers", "Guest memory state", "To pin in a policy", "ok"):
        assert part in text
    data = assert_schema(runner, "setup", out.read_text())
    assert data["backend"] == "fake" and data["ok"] is True
    vcpus = data["vcpus"]
    assert {(v["layer"], v["vcpu"]) for v in vcpus} == {
        ("l2.1", 0),
        ("l2.1", 1),
        ("l2.2", 0),
        ("l2.2", 1),
    }
    assert all(r["validated"] for r in data["memory"])
    assert "allowed_layers" in policy.read_text()


def test_setup_json_and_backend_option(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "setup", small, "--backend", "fake-b", "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "setup", res.stdout)
    assert data["backend"] == "fake-b"


def test_setup_default_steps_when_file_has_none(
    runner: CliRunner, fakes: list[str], tmp_path: Path
) -> None:
    guest = tmp_path / "g.toml"
    guest.write_text('[guest]\nmemory = "16MiB"\nvcpus = 1\n')
    res = invoke(runner, "setup", guest, "--backend", "fake", "--json")
    assert res.exit_code == 0, res.output
    steps = [s["name"] for s in json.loads(res.stdout)["run"]["steps"]]
    assert steps == ["bring-up", "attest-each-layer"]


def test_setup_operation_error_exits_1(
    runner: CliRunner, fakes: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FakeMachine.execute

    def failing(self: FakeMachine, op: Operation) -> OperationResult:
        if isinstance(op, RescindPages):
            return OperationResult.failure(
                op.describe(),
                ArchError(vendor="fake", mnemonic="FAKE_FAIL", code=6, message="size mismatch"),
            )
        return original(self, op)

    monkeypatch.setattr(FakeMachine, "execute", failing)
    guest = tmp_path / "g.toml"
    guest.write_text(SMALL + '\n[[steps]]\nop = "rescind"\nrange = { start = 0, size = "2MiB" }\n')
    res = invoke(runner, "setup", guest)
    assert res.exit_code == 1, res.output
    assert "size mismatch" in res.stdout


def test_bad_toml_syntax_names_file_and_line(
    runner: CliRunner, fakes: list[str], tmp_path: Path
) -> None:
    guest = tmp_path / "bad.toml"
    guest.write_text('[guest]\nmemory = "64MiB"\nvcpus = = 2\n')
    res = invoke(runner, "setup", guest)
    assert res.exit_code == 2
    assert f"{guest}:3" in res.output and "TOML syntax error" in res.output
    assert "Traceback" not in res.output


def test_bad_field_names_field_and_line(
    runner: CliRunner, fakes: list[str], tmp_path: Path
) -> None:
    guest = tmp_path / "bad.toml"
    guest.write_text(
        SMALL.replace('size = "32MiB" }\n\n[[layers]]', 'size = "3KiB" }\n\n[[layers]]')
    )
    line = guest.read_text().splitlines().index('memory = { start = 0, size = "3KiB" }') + 1
    res = invoke(runner, "setup", guest, "--json")
    assert res.exit_code == 2
    assert f"{guest}:{line}" in res.output and "layers.0.memory" in res.output
    assert "not a multiple of 4 KiB" in res.output
    data = assert_schema(runner, "error", res.stdout)
    err = data["error"]
    assert err["line"] == line and err["field"] == "layers.0.memory"


def test_unknown_field_in_step(runner: CliRunner, fakes: list[str], tmp_path: Path) -> None:
    guest = tmp_path / "bad.toml"
    guest.write_text(SMALL + '\n[[steps]]\nmacro = "interrupts"\nvectorz = [32]\n')
    res = invoke(runner, "setup", guest)
    assert res.exit_code == 2
    line = SMALL.count("\n") + 4
    assert f":{line}" in res.output and "steps.3.vectorz" in res.output


def test_unknown_backend_lists_installed(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "setup", small, "--backend", "nope")
    assert res.exit_code == 2
    assert "nope" in res.output and "fake, fake-b" in res.output


def test_broken_backend_is_a_clear_error(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "setup", small, "--backend", "broken")
    assert res.exit_code == 2
    assert "failed to load" in res.output and "Traceback" not in res.output


def test_missing_file(runner: CliRunner, fakes: list[str], tmp_path: Path) -> None:
    res = invoke(runner, "setup", tmp_path / "absent.toml")
    assert res.exit_code == 2
    assert "absent.toml" in res.output and "no such file" in res.output


def test_setup_real_backend(runner: CliRunner, real_backends: list[str], tmp_path: Path) -> None:
    guest = Path(__file__).resolve().parents[2] / "examples" / "guest.toml"
    res = invoke(runner, "setup", guest, "--backend", real_backends[0], "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "setup", res.stdout)
    assert data["evidence"], "the guest file attests from each layer"
