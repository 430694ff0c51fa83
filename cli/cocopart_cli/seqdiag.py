"""Text sequence diagrams of a plan: one lane per layer, arrows for world switches,
primitives as notes with their counts."""

from __future__ import annotations

from cocopart.trace import Event

LANE_WIDTH = 18
#: Rows drawn at most; the rest is summarised in one line.
MAX_ROWS = 120

_ORDER = ("l2.1", "l2.2", "l2.3", "l1", "host", "firmware")


def lanes_for(events: list[Event], layers: list[str]) -> list[str]:
    """The layers the events touch, workloads first, then l1, services, host, firmware."""
    used: set[str] = set()
    for e in events:
        used.add(e.issuer)
        if e.kind == "switch" or e.target in layers:
            used.add(e.target)
    used.discard("")

    def rank(name: str) -> tuple[int, str]:
        if name in _ORDER:
            idx = _ORDER.index(name)
            return (idx if idx < 4 else idx + 1, name)
        return (4, name)  # services sit between l1 and the host

    return sorted(used, key=rank)


def _count(n: int) -> str:
    return f" ×{n:,}" if n != 1 else ""


def render(events: list[Event], layers: list[str], *, max_rows: int = MAX_ROWS) -> str:
    """The diagram as text (no trailing spaces)."""
    lanes = lanes_for(events, layers)
    if not lanes:
        return "(no primitives: nothing to execute)"
    w = LANE_WIDTH
    center = {name: i * w + w // 2 for i, name in enumerate(lanes)}
    width = len(lanes) * w

    def blank() -> list[str]:
        row = [" "] * width
        for c in center.values():
            row[c] = "|"
        return row

    def put(row: list[str], at: int, text: str) -> list[str]:
        if at + len(text) > len(row):
            row += [" "] * (at + len(text) - len(row))
        row[at : at + len(text)] = list(text)
        return row

    lines: list[str] = []
    header = [" "] * width
    for name, c in center.items():
        put(header, max(c - len(name) // 2, 0), name)
    lines.append("".join(header).rstrip())
    lines.append("".join(blank()).rstrip())
    shown = events[:max_rows]
    for e in shown:
        if e.kind == "switch" and e.issuer in center and e.target in center:
            a, b = center[e.issuer], center[e.target]
            lo, hi = min(a, b), max(a, b)
            label = f" {e.mnemonic}{_count(e.count)} "
            row = blank()
            span = hi - lo - 1
            if len(label) <= span - 2:
                start = lo + 1 + (span - len(label)) // 2
                put(row, start, label)
                lines.append("".join(row).rstrip())
                row = blank()
            arrow = ("-" * (span - 1) + ">") if b > a else ("<" + "-" * (span - 1))
            put(row, lo + 1, arrow)
            if len(label) > span - 2:
                put(row, hi + 2, label.strip())
            lines.append("".join(row).rstrip())
        else:
            row = blank()
            target = f" → {e.target}" if e.target else ""
            result = f" [{e.result}]" if e.result and e.result != "ok" else ""
            note = f"[{e.mnemonic}{_count(e.count)}{target}{result}]"
            c = center.get(e.issuer, 0)
            put(row, c, note)
            lines.append("".join(row).rstrip())
    if len(events) > len(shown):
        lines.append(f"… {len(events) - len(shown)} more events")
    lines.append("".join(blank()).rstrip())
    return "\n".join(lines)
