"""docs/attestation.md runs as written: every `$ cocopart ...` line of its console blocks
exits with the code the page states (0 unless a `# exit N` comment says otherwise), in a
folder holding the files the page names (the shared real vectors, linked, never copied),
and its Python block runs there too."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "attestation.md"

#: The file names the page uses -> the shared vector each one is.
FILES = {
    "report.bin": "snp/teekit-gcp-milan-v5.report.bin",
    "vcek.pem": "snp/teekit-gcp-milan-v5.vcek.pem",
    "ask_ark.pem": "snp/amd-roots/ask_ark_milan.pem",
    "azure-snp-hcl.bin": "snp/trustee-azure-milan-v2.hcl-report.bin",
    "azure-vcek-chain.pem": "snp/trustee-azure-milan.vcek-chain.pem",
    "gcp-evidence.json": "tdx/quotes/teekit-gcp-v4.json",
    "collateral.json": "tdx/dcap-qvl-collateral/2025-09-00806f050000.json",
    "azure-tdx-hcl.bin": "tdx/tdreport/trustee-azure.hcl-report.bin",
    "azure-td-quote.dat": "tdx/quotes/trustee-azure-v4.quote.bin",
}


def commands(text: str) -> list[tuple[str, int]]:
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                code = re.search(r"#\s*exit (\d+)", line)
                out.append((line[2:], int(code.group(1)) if code else 0))
    return out


@pytest.fixture
def workdir(tmp_path: Path, vectors: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, rel in FILES.items():
        (tmp_path / name).symlink_to(vectors / rel)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for body in re.findall(r"```toml\n# file: (\S+)\n(.*?)```", PAGE.read_text(), re.DOTALL):
        (tmp_path / body[0]).write_text(body[1])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_command_of_the_attestation_page_runs_as_written(workdir: Path) -> None:
    from cocopart_cli.main import app

    cmds = commands(PAGE.read_text())
    assert len(cmds) >= 20 and {code for _, code in cmds} == {0, 1, 2, 4}
    runner = CliRunner()
    for line, want in cmds:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "cocopart", line
        res = runner.invoke(app, argv[1:])
        assert res.exit_code == want, f"{line}\n{res.output}"
        assert "Traceback" not in res.output, line


def test_the_python_block_of_the_attestation_page_runs(workdir: Path) -> None:
    code = re.search(r"## From Python\n.*?```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(PAGE), "exec"), {})  # noqa: S102 - our own docs
    assert out.getvalue().splitlines()[-1] == "True []"
