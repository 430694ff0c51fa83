"""`cocopart scenario new|check`, `cocopart schema`, `cocopart detect`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, assert_schema, invoke
from cocopart_cli.models import OUTPUT_MODELS
from typer.testing import CliRunner

from cocopart.scenario import EXAMPLE_SCENARIO, load_scenario


def test_scenario_new_writes_and_refuses_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "s.toml"
    res = invoke(runner, "scenario", "new", target)
    assert res.exit_code == 0, res.output
    assert target.read_text() == EXAMPLE_SCENARIO
    assert load_scenario(target).name == "default"
    again = invoke(runner, "scenario", "new", target)
    assert again.exit_code == 2 and "--force" in again.output
    target.write_text("changed")
    forced = invoke(runner, "scenario", "new", target, "--force", "--json")
    assert forced.exit_code == 0
    assert assert_schema(runner, "scenario", forced.stdout)["written"] is True
    assert target.read_text() == EXAMPLE_SCENARIO


def test_scenario_new_default_path(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "scenario", "new").exit_code == 0
    assert (tmp_path / "scenario.toml").is_file()


def test_scenario_check(runner: CliRunner, tmp_path: Path) -> None:
    for name in ("default.toml", "guest.toml"):
        res = invoke(runner, "scenario", "check", EXAMPLES / name)
        assert res.exit_code == 0, res.output
        assert "is valid" in res.stdout
    res = invoke(runner, "scenario", "check", EXAMPLES / "default.toml", "--json")
    data = assert_schema(runner, "scenario", res.stdout)
    assert data["scenario"]["guest"]["vcpus"] == 16
    bad = tmp_path / "bad.toml"
    bad.write_text("[guest]\nvcpus = 0\n")
    res = invoke(runner, "scenario", "check", bad)
    assert res.exit_code == 2 and f"{bad}:2" in res.output and "guest.vcpus" in res.output


def test_examples_default_is_the_template() -> None:
    assert (EXAMPLES / "default.toml").read_text() == EXAMPLE_SCENARIO


def test_schema_list_each_and_unknown(runner: CliRunner) -> None:
    res = invoke(runner, "schema")
    assert res.exit_code == 0
    for name in OUTPUT_MODELS:
        assert name in res.stdout
        one = invoke(runner, "schema", name)
        assert one.exit_code == 0 and json.loads(one.stdout)["type"] == "object"
    everything = json.loads(invoke(runner, "schema", "--json").stdout)
    assert set(everything) == set(OUTPUT_MODELS)
    bad = invoke(runner, "schema", "nope")
    assert bad.exit_code == 2 and "compare" in bad.output


def test_detect_on_an_empty_machine(runner: CliRunner, tmp_path: Path) -> None:
    for d in ("sys", "cfg", "dev"):
        (tmp_path / d).mkdir()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse hypervisor\n")
    args = [
        "--sysfs",
        tmp_path / "sys",
        "--configfs",
        tmp_path / "cfg",
        "--cpuinfo",
        cpuinfo,
        "--dev",
        tmp_path / "dev",
    ]
    res = invoke(runner, "detect", *args)
    assert res.exit_code == 0, res.output
    assert "platform" in res.stdout and "none" in res.stdout
    res = invoke(runner, "detect", *args, "--json")
    data = assert_schema(runner, "detect", res.stdout)
    assert data["platform"] == "none" and data["hypervisor"] is True


def test_detect_snp_guest(runner: CliRunner, tmp_path: Path) -> None:
    vmpl = tmp_path / "sys" / "devices" / "system" / "cpu" / "sev"
    vmpl.mkdir(parents=True)
    (vmpl / "vmpl").write_text("2\n")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "sev-guest").write_text("")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu hypervisor sev sev_es sev_snp\n")
    res = invoke(
        runner,
        "detect",
        "--sysfs",
        tmp_path / "sys",
        "--configfs",
        tmp_path / "cfg",
        "--cpuinfo",
        cpuinfo,
        "--dev",
        tmp_path / "dev",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["platform"] == "sev-snp" and data["privilege_level"] == 2
    assert data["svsm_present"] is True
