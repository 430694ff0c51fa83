"""What the docs generators (``gen_cli.py``, ``gen_mapping.py``) share: write the generated
page, or with ``--check`` only compare it with the file on disk."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(out: Path, text: str, argv: list[str], script: str) -> int:
    """Write ``text`` to ``out`` (exit code 0); with ``--check`` in ``argv`` write nothing
    and return 1 if ``out`` is missing or differs (``script`` is named in the message)."""
    if "--check" in argv:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date: run python docs/{script}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0
