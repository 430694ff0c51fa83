"""`cocopart compare` and its plot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, assert_schema, invoke
from cocopart_cli.models import CompareReport
from cocopart_cli.plots import compare_figure
from typer.testing import CliRunner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_compare_table_on_all_loadable_backends(
    runner: CliRunner, fakes: list[str], small: Path
) -> None:
    res = invoke(runner, "compare", small)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "fake" in out and "fake-b" in out and "bring-up" in out and "total" in out
    assert "skipping" in res.output and "broken" in res.output  # warned, not fatal


@pytest.mark.parametrize("fmt,marker", [("markdown", "| # | step |"), ("html", "<table>")])
def test_compare_text_formats(
    runner: CliRunner, fakes: list[str], small: Path, fmt: str, marker: str
) -> None:
    res = invoke(runner, "compare", small, "-b", "fake", "-b", "fake-b", "--format", fmt)
    assert res.exit_code == 0, res.output
    assert marker in res.stdout and "grant l2.2 read" in res.stdout


def test_compare_json_validates_and_strategy(
    runner: CliRunner, fakes: list[str], small: Path
) -> None:
    res = invoke(
        runner, "compare", small, "-b", "fake", "-b", "fake-b", "--json", "--strategy", "linux"
    )
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "compare", res.stdout)
    assert data["strategy"] == "linux" and data["backends"] == ["fake", "fake-b"]
    runs = data["runs"]
    assert [r["config"]["strategy"] for r in runs] == ["linux", "linux"]
    # same steps, different costs
    assert runs[0]["totals"]["estimated_ns"] < runs[1]["totals"]["estimated_ns"]


def test_compare_writes_out_file(
    runner: CliRunner, fakes: list[str], small: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp.md"
    res = invoke(runner, "compare", small, "-b", "fake", "-f", "markdown", "--out", out)
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("## small")


def test_compare_plot_png_has_both_backends(
    runner: CliRunner, fakes: list[str], small: Path, tmp_path: Path
) -> None:
    png = tmp_path / "plot.png"
    res = invoke(runner, "compare", small, "-b", "fake", "-b", "fake-b", "--plot", png, "--json")
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    from PIL import Image

    with Image.open(png) as img:
        assert img.width > 400 and img.height > 300
    report = CompareReport.model_validate_json(res.stdout)
    fig = compare_figure(report)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2
        labels = ax.get_legend_handles_labels()[1]
        assert any(label.startswith("fake-b") for label in labels)
        assert any(label.startswith("fake ") or label == "fake" for label in labels)
        for line in lines:
            assert len(line.get_xdata()) == len(report.runs[0].steps)


def test_compare_unknown_backend_and_bad_plot_path(
    runner: CliRunner, fakes: list[str], small: Path
) -> None:
    res = invoke(runner, "compare", small, "-b", "nope")
    assert res.exit_code == 2 and "installed: broken, fake, fake-b" in res.output
    res = invoke(runner, "compare", small, "-b", "fake", "--plot", "/nonexistent/dir/p.png")
    assert res.exit_code == 2 and "cannot write" in res.output


def test_compare_bad_format(runner: CliRunner, fakes: list[str], small: Path) -> None:
    assert invoke(runner, "compare", small, "--format", "pdf").exit_code == 2


def test_compare_default_scenario_real_backends(
    runner: CliRunner, both_backends: list[str], tmp_path: Path
) -> None:
    """The README's main command: both backends, the 64 GiB default scenario, quickly."""
    png = tmp_path / "default.png"
    start = time.perf_counter()
    res = invoke(runner, "compare", EXAMPLES / "default.toml", "--json", "--plot", png)
    elapsed = time.perf_counter() - start
    assert res.exit_code == 0, res.output
    data = assert_schema(runner, "compare", res.stdout)
    assert data["backends"] == both_backends
    for run in data["runs"]:
        names = [s["name"] for s in run["steps"]]
        assert names == ["bring-up", "share-round", "attest-each-layer", "interrupts"]
        assert run["totals"]["primitives"] > 0 and run["totals"]["world_switches"] > 0
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert elapsed < 30, f"compare took {elapsed:.1f} s"
    table = invoke(runner, "compare", EXAMPLES / "default.toml")
    assert table.exit_code == 0 and "sev-snp" in table.stdout and "tdx" in table.stdout
    assert json.loads(res.stdout)["ok"] is True
