"""docs/attestation.md, sections "Built-in AMD certificates" and "Policy": every shell command
runs as written from the repository (the shared vectors next to it) and is accepted."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("## Built-in AMD certificates", "## Policy")


def commands() -> list[str]:
    text = (REPO / "docs" / "attestation.md").read_text()
    out = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        body = text[start:end if end >= 0 else len(text)]
        for block in re.findall(r"```sh\n(.*?)```", body, re.DOTALL):
            out += [line for line in block.splitlines() if line.startswith("cocopart ")]
    return out


def test_the_sections_show_commands() -> None:
    assert len(commands()) >= 2


@pytest.mark.parametrize("command", commands())
def test_doc_command_runs_as_written(vectors: Path, command: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from cocopart_cli.main import app

    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, shlex.split(command)[1:])
    assert res.exit_code == 0, res.output
    assert "verified" in res.stdout
