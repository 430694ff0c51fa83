"""Rendering scenario runs and comparisons: rich tables, Markdown and HTML."""

from __future__ import annotations

import html

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cocopart.backend import CapabilityAnswer
from cocopart.scenario import ScenarioRun, StepResult
from cocopart_cli.models import CompareReport
from cocopart_cli.output import STATUS_STYLE, fmt_count, fmt_ns


def _status(step: StepResult | None, markup: bool = True) -> str:
    if step is None:
        return "—"
    text = step.status.value
    if markup:
        return f"[{STATUS_STYLE[text]}]{text}[/{STATUS_STYLE[text]}]"
    return text


def _step_names(report: CompareReport) -> list[str]:
    longest = max(report.runs, key=lambda r: len(r.steps))
    return [s.name for s in longest.steps]


def _step(run: ScenarioRun, i: int) -> StepResult | None:
    return run.steps[i] if i < len(run.steps) else None


def run_table(run: ScenarioRun, title: str | None = None) -> Table:
    """Per-step table of one run."""
    t = Table(title=escape(title or f"{run.scenario} on {run.backend}"), title_justify="left")
    for col, just in (
        ("#", "right"),
        ("step", "left"),
        ("ops", "right"),
        ("primitives", "right"),
        ("switches", "right"),
        ("est. time", "right"),
        ("result", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in run.steps:
        t.add_row(
            str(s.index + 1),
            escape(s.name),
            str(len(s.operations)),
            fmt_count(s.primitives),
            fmt_count(s.world_switches),
            fmt_ns(s.estimated_ns),
            _status(s),
        )
    tot = run.totals
    t.add_row(
        "",
        "[bold]total[/bold]",
        str(tot.operations),
        fmt_count(tot.primitives),
        fmt_count(tot.world_switches),
        fmt_ns(tot.estimated_ns),
        f"[{STATUS_STYLE[tot.status.value]}]{tot.status.value}[/]",
        end_section=True,
    )
    return t


def compare_table(report: CompareReport) -> Table:
    """Steps as rows, for each backend its primitives, switches, time and result."""
    t = Table(
        title=escape(f"{report.scenario} — strategy {report.strategy}"),
        title_justify="left",
        show_lines=False,
    )
    t.add_column("#", justify="right")
    t.add_column("step")
    for run in report.runs:
        t.add_column(f"{run.backend}\nprimitives", justify="right")
        t.add_column(f"{run.backend}\nswitches", justify="right")
        t.add_column(f"{run.backend}\nest. time", justify="right")
        t.add_column(f"{run.backend}\nresult")
    for i, name in enumerate(_step_names(report)):
        row = [str(i + 1), escape(name)]
        for run in report.runs:
            s = _step(run, i)
            row += (
                [
                    fmt_count(s.primitives),
                    fmt_count(s.world_switches),
                    fmt_ns(s.estimated_ns),
                    _status(s),
                ]
                if s
                else ["—"] * 4
            )
        t.add_row(*row)
    total = ["", "[bold]total[/bold]"]
    for run in report.runs:
        tot = run.totals
        total += [
            fmt_count(tot.primitives),
            fmt_count(tot.world_switches),
            fmt_ns(tot.estimated_ns),
            f"[{STATUS_STYLE[tot.status.value]}]{tot.status.value}[/]",
        ]
    t.add_section()
    t.add_row(*total)
    return t


def _answer(a: CapabilityAnswer | None) -> str:
    if a is None:
        return "—"
    if a.supported:
        return "supported" + (f": {a.mechanism}" if a.mechanism else "")
    return "not supported" + (f": {a.reason}" if a.reason else "")


def differences_table(report: CompareReport) -> Table:
    t = Table(title="Where the capabilities differ", title_justify="left", show_lines=True)
    t.add_column("capability", style="bold")
    for name in report.backends:
        t.add_column(name, overflow="fold")
    for d in report.capability_differences:
        cells = []
        for name in report.backends:
            a = d.answers.get(name)
            style = "green" if a is not None and a.supported else "red"
            cells.append(f"[{style}]{escape(_answer(a))}[/{style}]")
        t.add_row(escape(d.capability), *cells)
    return t


def reasons(report: CompareReport) -> list[str]:
    """One line per step that did not end ok, with its reason."""
    lines = []
    for run in report.runs:
        for s in run.steps:
            if s.status.value != "ok":
                lines.append(
                    f"{run.backend} · step {s.index + 1} {s.name}: {s.status.value} — "
                    f"{s.reason or ''}"
                )
    return lines


def print_compare(report: CompareReport, out: Console) -> None:
    if report.description:
        out.print(f"[dim]{escape(report.description)}[/dim]")
    out.print(compare_table(report))
    notes = reasons(report)
    if notes:
        out.print("[bold]Steps that did not end ok:[/bold]")
        for line in notes:
            out.print("  " + line, markup=False)
    if report.capability_differences:
        out.print(differences_table(report))
    elif len(report.runs) > 1:
        out.print("[dim]The backends answer every capability alike.[/dim]")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def compare_markdown(report: CompareReport) -> str:
    """The comparison as GitHub-flavoured Markdown."""
    head = ["#", "step"]
    for run in report.runs:
        head += [
            f"{run.backend} primitives",
            f"{run.backend} switches",
            f"{run.backend} est. time",
            f"{run.backend} result",
        ]
    lines = [f"## {report.scenario} — strategy {report.strategy}", ""]
    if report.description:
        lines += [_md_escape(report.description), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, name in enumerate(_step_names(report)):
        row = [str(i + 1), _md_escape(name)]
        for run in report.runs:
            s = _step(run, i)
            row += (
                [
                    fmt_count(s.primitives),
                    fmt_count(s.world_switches),
                    fmt_ns(s.estimated_ns),
                    _status(s, markup=False),
                ]
                if s
                else ["—"] * 4
            )
        lines.append("| " + " | ".join(row) + " |")
    total = ["", "**total**"]
    for run in report.runs:
        tot = run.totals
        total += [
            fmt_count(tot.primitives),
            fmt_count(tot.world_switches),
            fmt_ns(tot.estimated_ns),
            tot.status.value,
        ]
    lines.append("| " + " | ".join(total) + " |")
    notes = reasons(report)
    if notes:
        lines += ["", "Steps that did not end ok:", ""] + [f"- {_md_escape(n)}" for n in notes]
    if report.capability_differences:
        lines += [
            "",
            "### Where the capabilities differ",
            "",
            "| capability | " + " | ".join(report.backends) + " |",
            "|---|" + "|".join("---" for _ in report.backends) + "|",
        ]
        for d in report.capability_differences:
            lines.append(
                f"| {d.capability} | "
                + " | ".join(_md_escape(_answer(d.answers.get(n))) for n in report.backends)
                + " |"
            )
    return "\n".join(lines) + "\n"


def compare_html(report: CompareReport) -> str:
    """The comparison as a standalone HTML page."""
    e = html.escape
    head = "".join(
        f"<th>{e(run.backend)} {e(c)}</th>"
        for run in report.runs
        for c in ("primitives", "switches", "est. time", "result")
    )
    rows = []
    for i, name in enumerate(_step_names(report)):
        cells = f"<td>{i + 1}</td><td>{e(name)}</td>"
        for run in report.runs:
            s = _step(run, i)
            if s is None:
                cells += "<td>—</td>" * 4
                continue
            cells += (
                f"<td>{fmt_count(s.primitives)}</td><td>{fmt_count(s.world_switches)}</td>"
                f"<td>{e(fmt_ns(s.estimated_ns))}</td>"
                f'<td class="{s.status.value}" title="{e(s.reason or "")}">'
                f"{s.status.value}</td>"
            )
        rows.append(f"<tr>{cells}</tr>")
    total = "<td></td><td><b>total</b></td>" + "".join(
        f"<td>{fmt_count(r.totals.primitives)}</td><td>{fmt_count(r.totals.world_switches)}</td>"
        f"<td>{e(fmt_ns(r.totals.estimated_ns))}</td><td>{r.totals.status.value}</td>"
        for r in report.runs
    )
    diff = ""
    if report.capability_differences:
        dh = "".join(f"<th>{e(n)}</th>" for n in report.backends)
        drows = "".join(
            f"<tr><td>{e(d.capability)}</td>"
            + "".join(f"<td>{e(_answer(d.answers.get(n)))}</td>" for n in report.backends)
            + "</tr>"
            for d in report.capability_differences
        )
        diff = (
            f"<h2>Where the capabilities differ</h2><table><tr><th>capability</th>{dh}</tr>"
            f"{drows}</table>"
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>cocopart compare {e(report.scenario)}</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:nth-child(2){text-align:left}.ok{color:green}.error,.partial{color:red}"
        ".not-supported{color:#b80}</style></head><body>"
        f"<h1>{e(report.scenario)} — strategy {e(report.strategy)}</h1>"
        f"<p>{e(report.description)}</p>"
        f"<table><tr><th>#</th><th>step</th>{head}</tr>{''.join(rows)}<tr>{total}</tr></table>"
        f"{diff}</body></html>\n"
    )
