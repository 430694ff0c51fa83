"""docs/tutorials/embed-agent.md: the verify walk-through (guest side, then a relying party
that trusts the simulated root from Python) runs as written and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "embed-agent.md"


def test_embed_agent_verify_snippets_run_as_written() -> None:
    section = PAGE.read_text().split("## Verify", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    scope: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), scope)  # noqa: S102 - our own docs
    assert out.getvalue() == "True l1\n"  # the SVSM's own evidence (issue 13 point 4)
    assert "It prints `True l1`" in section
