"""`cocopart explain`."""

from __future__ import annotations

import pytest
from cli_helpers import assert_schema, invoke
from cocopart_cli.commands.explain import OpName
from typer.testing import CliRunner

OPS = [o.value for o in OpName]


@pytest.mark.parametrize("op", OPS)
def test_explain_every_operation(runner: CliRunner, fakes: list[str], op: str) -> None:
    res = invoke(runner, "explain", op, "-b", "fake", "-b", "fake-b", "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "explain", res.stdout)
    assert [s["backend"] for s in data["sides"]] == ["fake", "fake-b"]


def test_explain_validate_diagram(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner, "explain", "validate", "-b", "fake", "--size", "4MiB", "--layer", "l2.2")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "l2.2" in out and "l1" in out
    assert "FAKE.SWITCH" in out and "FAKE.VALIDATE" in out and "×2" in out
    assert "-->" in out or "<--" in out


def test_explain_share_runs_prerequisite(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner, "explain", "share", "-b", "fake", "--json")
    data = assert_schema(runner, "explain", res.stdout)
    side = data["sides"][0]
    assert side["prerequisites"] and side["prerequisites"][0].startswith("validate")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--layer", "l2.3"], "no such layer"),
        (["--size", "3KiB"], "--start/--size"),
        (["--size", "1TiB"], "--start/--size"),
        (["-b", "nope"], "installed:"),
    ],
)
def test_explain_bad_arguments(
    runner: CliRunner, fakes: list[str], args: list[str], needle: str
) -> None:
    res = invoke(runner, "explain", "validate", *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_explain_unknown_operation(runner: CliRunner) -> None:
    assert invoke(runner, "explain", "teleport").exit_code == 2


def test_explain_real_side_by_side(runner: CliRunner, both_backends: list[str]) -> None:
    for op in OPS:
        res = invoke(runner, "explain", op, "--json")
        assert res.exit_code == 0, (op, res.output)
        data = assert_schema(runner, "explain", res.stdout)
        assert [s["backend"] for s in data["sides"]] == both_backends
    text = invoke(runner, "explain", "validate", "--size", "1GiB")
    assert text.exit_code == 0 and "sev-snp" in text.stdout and "tdx" in text.stdout


def test_explain_eoi_shows_each_backend(runner: CliRunner, real_backends: list[str]) -> None:
    res = invoke(runner, "explain", "eoi")
    assert res.exit_code == 0, res.output
    assert "eoi(vcpu=0, target=l2.1)" in res.stdout
    for backend in real_backends:
        assert f"{backend}:" in res.stdout
