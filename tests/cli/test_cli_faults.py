"""`cocopart faults`: the seed-003 host fault scenarios side by side."""

from __future__ import annotations

from cli_helpers import assert_schema, invoke
from typer.testing import CliRunner


def test_faults_table_compares_policies_and_backends(
    runner: CliRunner, real_backends: list[str]
) -> None:
    res = invoke(runner, "faults", "--scenario", "forgotten-share")
    assert res.exit_code == 0, res.output
    for word in ("sigbus", "panic", "convert", "forgotten-share", *real_backends):
        assert word in res.stdout


def test_faults_json_matches_schema(runner: CliRunner, real_backends: list[str]) -> None:
    res = invoke(runner, "faults", "--scenario", "kexec", "--backend", "sev-snp", "--json")
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "faults", res.stdout)
    policies = {o["policy"] for o in data["outcomes"]}
    assert {"sigbus", "panic", "convert"} <= policies


def test_faults_unknown_scenario_and_backend_are_usage_errors(runner: CliRunner) -> None:
    assert invoke(runner, "faults", "--scenario", "meteor").exit_code == 2
    res = invoke(runner, "faults", "--backend", "arm-cca")
    assert res.exit_code == 2 and "sev-snp" in res.output
