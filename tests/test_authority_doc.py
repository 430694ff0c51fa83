"""docs/authority.md's worked example runs as written and prints what the page shows, on
both backends (the page says the output is identical)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "authority.md"


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_authority_worked_example_runs_as_written(backend: str) -> None:
    text = PAGE.read_text()
    code = re.search(r"## Worked example.*?```python\n(.*?)```", text, re.DOTALL)
    shown = re.search(r"Output \(identical.*?```text\n(.*?)```", text, re.DOTALL)
    assert code and shown
    source = code.group(1).replace(
        'Partition(config, "sev-snp")', f'Partition(config, "{backend}")'
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(PAGE), "exec"), {})  # noqa: S102 - our own documentation
    assert out.getvalue() == shown.group(1)
