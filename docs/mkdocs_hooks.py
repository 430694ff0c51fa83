"""mkdocs hooks for this site (mkdocs.yml ``hooks``).

The docstrings the API pages render are written with Sphinx roles (``:class:`Backend```,
``:meth:`~cocopart.partition.Partition.run```); Markdown has no roles, so the rendered
``:class:<code>X</code>`` becomes plain code, keeping only the last component after ``~``
as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):"
    r"<code>(~?)([^<]*)</code>"
)


def _code(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return ROLE.sub(_code, html)
