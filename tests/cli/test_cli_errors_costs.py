"""Cost overrides: a user mistake is exit 2 naming the file and field, never an internal error
(issue 17: a negative cost or a binary --costs file exited 3)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import EXAMPLES, invoke
from typer.testing import CliRunner


def test_negative_cost_in_costs_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    costs = tmp_path / "neg.toml"
    costs.write_text("[primitives]\nPVALIDATE = -5\n")
    res = invoke(runner, "compare", EXAMPLES / "guest.toml", "--costs", costs)
    assert res.exit_code == 2, res.output
    assert "primitives.PVALIDATE" in res.output and ">= 0" in res.output
    costs.write_text('[switches]\n"L2->L1 exit" = { ns = -1 }\n')
    res = invoke(runner, "compare", EXAMPLES / "guest.toml", "--costs", costs)
    assert res.exit_code == 2 and "internal error" not in res.output, res.output


def test_binary_costs_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    costs = tmp_path / "bin.toml"
    costs.write_bytes(bytes(range(256)))
    res = invoke(runner, "compare", EXAMPLES / "guest.toml", "--costs", costs)
    assert res.exit_code == 2 and "not a TOML text file" in res.output, res.output


def test_negative_cost_in_a_scenario_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    scenario = tmp_path / "g.toml"
    scenario.write_text(
        (EXAMPLES / "guest.toml").read_text() + "\n[costs.primitives]\nPVALIDATE = -5\n"
    )
    res = invoke(runner, "compare", scenario)
    assert res.exit_code == 2 and "PVALIDATE" in res.output, res.output
