"""`cocopart backends`."""

from __future__ import annotations

from cli_helpers import assert_schema, invoke
from typer.testing import CliRunner


def test_backends_table_shows_matrix_and_broken_in_red(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner, "backends")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "fake-b" in out and "failed to load" in out and "broken_backend" in out
    assert "FAKE.VALIDATE" in out  # a supported cell names its mechanism
    assert "the fake host shares nothing" in out  # an unsupported cell names its reason


def test_backends_json(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner, "backends", "--json")
    assert res.exit_code == 0
    data = assert_schema(runner, "backends", res.stdout)
    rows = {b["name"]: b for b in data["backends"]}
    assert set(rows) == set(fakes)
    assert rows["broken"]["loaded"] is False and "broken_backend" in rows["broken"]["error"]
    assert rows["fake"]["capabilities"]["convert"]["supported"] is False
    assert "validate" in data["capabilities"]


def test_backends_real(runner: CliRunner, real_backends: list[str]) -> None:
    res = invoke(runner, "backends", "--json")
    assert res.exit_code == 0
    data = assert_schema(runner, "backends", res.stdout)
    loaded = {b["name"] for b in data["backends"] if b["loaded"]}
    assert set(real_backends) <= loaded
