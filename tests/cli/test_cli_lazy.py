"""Lazy command loading: `cocopart --help` imports no command, `cocopart backends` none of the
machine models, and the summaries the root help lists match each command's own help."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cocopart_cli.main import COMMANDS, command_module, load_command

REPO = Path(__file__).resolve().parents[2]

#: Modules that model machines, run scenarios or verify evidence: listing backends needs none.
HEAVY = [
    "cocopart_sev_snp.machine",
    "cocopart_sev_snp.rmp",
    "cocopart_sev_snp.svsm",
    "cocopart_sev_snp.host_faults",
    "cocopart_tdx.machine",
    "cocopart_tdx.tdcall",
    "cocopart_tdx.sept",
    "cocopart_tdx.interrupts",
    "cocopart.partition",
    "cocopart.executor",
    "cocopart.scenario.run",
    "cocopart.service.build",
    "cocopart.attest.verifier",
    "cocopart.attest.configfs",
    "cocopart_cli.models",
    "cocopart.ops",
    "cocopart.trace",
    "cocopart.layers",
    "cocopart.scenario.model",
    "cocopart.authority",
    "rustworkx",
]


def modules_after(*argv: str) -> set[str]:
    """Run ``cocopart ARGV`` in a fresh interpreter; the modules it imported."""
    code = (
        "import io, json, sys, contextlib\n"
        f"sys.argv = ['cocopart', *{list(argv)!r}]\n"
        "from cocopart_cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n        main()\n    except SystemExit as e:\n        code = e.code\n"
        "sys.stderr.write(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    data = json.loads(res.stderr.strip().splitlines()[-1])
    assert data["code"] in (0, None), res.stderr
    return set(data["modules"])


def test_root_help_imports_no_command_and_no_pydantic() -> None:
    mods = modules_after("--help")
    assert not [m for m in mods if m.startswith("cocopart_cli.commands")]
    assert not [m for m in mods if m.startswith(("cocopart.", "cocopart_sev_snp", "cocopart_tdx"))]
    assert "pydantic.main" not in mods


def test_backends_imports_no_machine_model() -> None:
    mods = modules_after("backends")
    assert "cocopart_cli.commands.backends" in mods
    assert {"cocopart_sev_snp.backend", "cocopart_tdx.backend"} <= mods, (
        "the real backends should be installed for this test"
    )
    assert [m for m in HEAVY if m in mods] == []
    others = [
        m
        for m in mods
        if m.startswith("cocopart_cli.commands.") and m != "cocopart_cli.commands.backends"
    ]
    assert others == []


def test_a_command_imports_only_its_own_module() -> None:
    mods = modules_after("schema", "backends")
    commands = {m for m in mods if m.startswith("cocopart_cli.commands.")}
    assert commands == {"cocopart_cli.commands.schema"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_summary_is_the_first_paragraph_of_the_commands_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    first = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert " ".join(first.split()) == COMMANDS[name], (
        f"update COMMANDS[{name!r}] in cli/cocopart_cli/main.py to the command's first paragraph"
    )


def test_every_command_module_exists_and_every_module_is_registered() -> None:
    package = REPO / "cli" / "cocopart_cli" / "commands"
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "overview")}
    assert {command_module(n).rsplit(".", 1)[1] for n in COMMANDS} == modules


def test_unknown_command_suggests_without_importing_commands() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cocopart_cli.main", "backend"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert "backends" in res.stderr
