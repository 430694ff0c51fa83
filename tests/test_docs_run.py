"""The docs run as written: every shell command and every Python block in docs/ and the
README is executed, page by page, in a scratch directory that holds the repository's
``examples/`` (and ``tools/``), with the installed ``cocopart`` on PATH.

What counts as code:

* shell: every line of a ``sh``/``bash``/``console``/``shell`` fence, and every line that
  starts with ``$ `` in any fence (the prompt is dropped; a ``#`` comment is the shell's);
  fences without either (usage lines, diagrams, TOML, JSON) are text;
* Python: every ``python`` fence; the blocks of one page run in order in one namespace, so a
  later block may use an earlier block's names.

An HTML comment right before a fence says how to run it:

* ``<!-- docs-test: cvm -->`` — needs a real confidential VM: skipped elsewhere (the reason
  says so), run when :func:`cocopart.attest.detect.detect` finds SEV-SNP or TDX;
* ``<!-- docs-test: exit=N -->`` — every command of the block must exit N (default 0);
* ``<!-- docs-test: skip REASON -->`` — shown, never run (give the reason).

A command line may end with ``# exit N`` instead, for itself alone. A page whose code needs
files this harness does not have runs in a test of its own (:data:`OWN_TEST`).

``python3 tools/dev.py test`` (the gate itself) is never run from here; ``$EDITOR`` is
``true``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([*(REPO / "docs").rglob("*.md"), REPO / "README.md"])
SHELL_LANGS = {"sh", "bash", "console", "shell"}
FENCE = re.compile(
    r"(?:<!--\s*docs-test:\s*(?P<mark>[^>]*?)\s*-->\s*\n)?"
    r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
NEVER = ("python3 tools/dev.py test",)
#: Pages whose code runs in a test of their own, with the files they name (real vectors).
OWN_TEST = {"docs/attestation.md": "tests/test_attestation_doc.py"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    mark: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @staticmethod
    def exit_of(command: str, default: int) -> int:
        m = re.search(r"#\s*exit (\d+)", command)
        return int(m.group(1)) if m else default

    def commands(self) -> list[str]:
        out = []
        for raw in self.body.splitlines():
            line = raw.strip()
            if line.startswith("$ "):
                out.append(line[2:])
            elif self.lang in SHELL_LANGS and line and not line.startswith("#"):
                out.append(line)
        return out

    @property
    def expected_exit(self) -> int:
        m = re.match(r"exit=(\d+)", self.mark)
        return int(m.group(1)) if m else 0


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(
            page,
            text.count("\n", 0, m.start("lang")) + 1,
            m.group("lang"),
            m.group("body"),
            (m.group("mark") or "").strip(),
        )
        for m in FENCE.finditer(text)
    ]


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang != "python" and b.commands()]


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang == "python"]


def _on_a_cvm() -> bool:
    from cocopart.attest.detect import detect

    return detect().platform in ("sev-snp", "tdx")


def _skip_reason(block: Block) -> str | None:
    own = OWN_TEST.get(str(block.page.relative_to(REPO)))
    if own:
        return f"{block.where}: runs in {own}"
    if block.mark.startswith("skip"):
        return f"{block.where}: {block.mark}"
    if block.mark == "cvm" and not _on_a_cvm():
        return f"{block.where}: needs a real confidential VM (SEV-SNP or TDX guest)"
    return None


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A working directory that looks like the repository to the commands in the docs."""
    for name in ("examples", "tools"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "COLUMNS": "100",
        "EDITOR": "true",
        "COCOPART_DEBUG": "",
    }


def _ids(kind: str) -> list[tuple[Path, str]]:
    pick = shell_blocks if kind == "shell" else python_blocks
    return [(p, str(p.relative_to(REPO))) for p in PAGES if pick(p)]


@pytest.mark.parametrize("page", [p for p, _ in _ids("shell")], ids=[i for _, i in _ids("shell")])
def test_shell_commands_in_the_docs_run_as_written(page: Path, scratch: Path) -> None:
    ran = 0
    for block in shell_blocks(page):
        if _skip_reason(block):
            continue
        for cmd in block.commands():
            if cmd.startswith(NEVER):
                continue
            want = Block.exit_of(cmd, block.expected_exit)
            res = subprocess.run(
                ["bash", "-c", cmd],
                cwd=scratch,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert res.returncode == want, (
                f"{block.where}: `{cmd}` exited {res.returncode}, the page expects {want}\n"
                f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
            )
            ran += 1
    if not ran:
        pytest.skip(
            "; ".join(filter(None, map(_skip_reason, shell_blocks(page))))
            or "only the test command itself"
        )


@pytest.mark.parametrize("page", [p for p, _ in _ids("python")], ids=[i for _, i in _ids("python")])
def test_python_blocks_in_the_docs_run_as_written(
    page: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(scratch)
    namespace: dict[str, object] = {"__name__": f"docs:{page.name}"}
    skipped = []
    for block in python_blocks(page):
        reason = _skip_reason(block)
        if reason:
            skipped.append(reason)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block.body, block.where, "exec"), namespace)  # noqa: S102 - our docs
    if skipped and len(skipped) == len(python_blocks(page)):
        pytest.skip("; ".join(skipped))


def test_the_harness_finds_the_code_it_promises_to_run() -> None:
    """A guard against a parser that silently finds nothing."""
    tutorial = REPO / "docs" / "tutorials" / "setup-guest.md"
    assert any(
        "cocopart setup examples/guest.toml" in c
        for b in shell_blocks(tutorial)
        for c in b.commands()
    )
    assert len(python_blocks(REPO / "docs" / "tutorials" / "embed-agent.md")) >= 4
    marked = [b for p in PAGES for b in blocks(p) if b.mark == "cvm"]
    assert marked, "the real-CVM examples are marked"
    cli = REPO / "docs" / "cli.md"
    assert shell_blocks(cli) == [], "usage lines in the CLI reference are not commands"
    for page, test in OWN_TEST.items():
        assert (REPO / page).is_file() and (REPO / test).is_file(), (page, test)
    assert Block.exit_of("cocopart verify x.json  # exit 4", 0) == 4
