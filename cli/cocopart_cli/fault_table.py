"""The host fault comparison (:class:`cocopart.host_faults.FaultComparison`) as a rich table:
one row per scenario, backend and policy, with the consequences side by side."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from cocopart.host_faults import FaultComparison, FaultOutcome, comparison_rows

#: Style of the "host" cell.
HOST_STYLE = {"panics": "bold red", "survives": "green"}


def _styled(o: FaultOutcome, row: list[str]) -> list[str]:
    cells = [escape(c) for c in row]
    host = row[4]
    cells[4] = f"[{HOST_STYLE[host]}]{host}[/]"
    if o.guests_lost:
        cells[5] = f"[red]{cells[5]}[/]"
    return cells


def fault_table(cmp: FaultComparison, title: str = "Host touches guest-private memory") -> Table:
    """Every outcome of ``cmp`` as a row."""
    headers, rows = comparison_rows(cmp)
    t = Table(title=escape(title), title_justify="left", show_lines=True)
    for h in headers:
        t.add_column(h)
    for o, row in zip(cmp.outcomes, rows, strict=True):
        t.add_row(*_styled(o, row))
    return t
