"""`cocopart` itself: the overview, help texts, exit-code mapping, --debug."""

from __future__ import annotations

import pytest
from cli_helpers import assert_schema, invoke
from cocopart_cli import common
from cocopart_cli.main import app
from typer.testing import CliRunner

COMMANDS = [
    "backends",
    "setup",
    "compare",
    "layers",
    "explain",
    "attest",
    "verify",
    "detect",
    "schema",
]


def test_overview_lists_backends_and_hint(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner)
    assert res.exit_code == 0, res.output
    assert "fake" in res.stdout and "fake-b" in res.stdout
    assert "broken" in res.stdout and "failed to load" in res.stdout
    assert "l2.1" in res.stdout and "l1" in res.stdout
    assert "cocopart compare examples/default.toml" in res.stdout


def test_overview_json(runner: CliRunner, fakes: list[str]) -> None:
    res = invoke(runner, "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "overview", res.stdout)
    by_name = {b["name"]: b for b in data["backends"]}
    assert by_name["broken"]["loaded"] is False and by_name["fake"]["loaded"] is True


def test_help_documents_exit_codes(runner: CliRunner) -> None:
    res = invoke(runner, "--help")
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    for code in ("0 success", "1 verification failed", "2 usage or input error"):
        assert code in text
    for cmd in COMMANDS + ["scenario"]:
        assert cmd in res.stdout


@pytest.mark.parametrize(
    "cmd", [[c] for c in COMMANDS] + [["scenario", "new"], ["scenario", "check"]]
)
def test_every_command_has_help_with_example_and_json(runner: CliRunner, cmd: list[str]) -> None:
    res = invoke(runner, *cmd, "--help")
    assert res.exit_code == 0, res.output
    assert "Example:" in res.stdout
    assert "--json" in res.stdout


def test_unknown_command_and_option_are_usage_errors(runner: CliRunner) -> None:
    assert invoke(runner, "frobnicate").exit_code == 2
    assert invoke(runner, "backends", "--nope").exit_code == 2


def test_internal_error_exit_3_without_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> list[object]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(common, "load_all", boom)
    res = runner.invoke(app, ["backends"])
    assert res.exit_code == 3
    assert "internal error" in res.output and "kaboom" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["backends", "--json"])
    assert res.exit_code == 3
    data = assert_schema(runner, "error", res.stdout)
    assert data["error"]["exit_code"] == 3


def test_main_entry_point_maps_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cocopart_cli import main as main_module

    monkeypatch.setattr("sys.argv", ["cocopart", "setup", "/nonexistent/guest.toml"])
    with pytest.raises(SystemExit) as exc:
        main_module.main()
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err
