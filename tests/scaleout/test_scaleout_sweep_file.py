"""Sweep files: axes as dotted scenario paths, ranges, and every point validated (with the
sweep file's line and the axis named) before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from scaleout_helpers import BASE, write_sweep

from cocopart.errors import ConfigError
from cocopart.model import GIB
from cocopart.scaleout import Cluster, build_sweep, load_sweep, run_sweep
from cocopart.scaleout.axes import AxisError, axis_values, check_path
from cocopart.scenario import loads_scenario


def test_ranges_arithmetic_geometric_sizes_and_floats() -> None:
    assert axis_values({"start": 1, "stop": 16, "step": 5}) == [1, 6, 11, 16]
    assert axis_values({"start": 1, "stop": 15, "step": 5}) == [1, 6, 11]
    assert axis_values({"start": "1GiB", "stop": "8GiB", "factor": 2}) == [
        GIB,
        2 * GIB,
        4 * GIB,
        8 * GIB,
    ]
    assert axis_values({"start": 0.1, "stop": 0.3, "step": 0.1}) == [0.1, 0.2, 0.3]
    assert axis_values(["a", {"x": 1}]) == ["a", {"x": 1}]
    for bad, words in (
        ({"start": 1, "stop": 4}, "exactly one of step"),
        ({"start": 4, "stop": 1, "step": 1}, "below start"),
        ({"start": 1, "stop": 4, "factor": 1}, "greater than 1"),
        ({"start": 1, "stop": 10**9, "step": 1}, "at most"),
        ({"start": "1XB", "stop": 4, "step": 1}, "not a size"),
        ([], "at least one value"),
        (7, "list of values"),
    ):
        with pytest.raises(AxisError, match=words):
            axis_values(bad)


def test_axis_paths_are_checked_against_the_scenario_model() -> None:
    for good in (
        "backend",
        "guest.memory",
        "guest.interrupt_mode",
        "backend_options.tdx.host_mapping",
        "costs.primitives.PVALIDATE",
        "layers.0.vcpus",
        "steps.2.source",
    ):
        check_path(good.split("."))
    with pytest.raises(AxisError, match="'memroy' is not a field of guest .*memory, vcpus"):
        check_path(["guest", "memroy"])
    with pytest.raises(AxisError, match="index it with a number"):
        check_path(["layers", "first"])
    with pytest.raises(AxisError, match="single value"):
        check_path(["guest", "vcpus", "x"])


def test_points_are_the_product_in_file_order_with_the_backend_last(sweep_file: Path) -> None:
    sweep = load_sweep(sweep_file)
    assert [a.path for a in sweep.axes] == [
        "guest.memory",
        "guest.vcpus",
        "steps.2.source",
        "backend",
    ]
    assert [a.line for a in sweep.axes[:3]] == [5, 6, 7]
    assert len(sweep.points) == 16 and sweep.backends == ["sev-snp", "tdx"]
    first, second, last = sweep.points[0], sweep.points[1], sweep.points[-1]
    assert (first.backend, second.backend) == ("sev-snp", "tdx")
    assert first.params == {"guest.memory": GIB, "guest.vcpus": 1, "steps.2.source": "service"}
    assert last.params == {"guest.memory": 2 * GIB, "guest.vcpus": 2, "steps.2.source": "hardware"}
    assert [p.index for p in sweep.points] == list(range(16))


def test_zip_mode_pairs_the_values(tmp_path: Path, both_backends: list[str]) -> None:
    path = write_sweep(
        tmp_path,
        'scenario = "base.toml"\nmode = "zip"\n[axes]\n'
        'backend = ["tdx"]\n"guest.memory" = ["1GiB", "2GiB"]\n'
        '"guest.vcpus" = [1, 2]\n',
    )
    sweep = load_sweep(path)
    assert [p.params for p in sweep.points] == [
        {"guest.memory": "1GiB", "guest.vcpus": 1},
        {"guest.memory": "2GiB", "guest.vcpus": 2},
    ]
    path.write_text(
        'scenario = "base.toml"\nmode = "zip"\n[axes]\n'
        '"guest.memory" = ["1GiB", "2GiB"]\n"guest.vcpus" = [1]\n'
    )
    with pytest.raises(ConfigError, match="zip takes axes of equal length"):
        load_sweep(path)


def _error(tmp_path: Path, axes: str, base: str = BASE) -> ConfigError:
    path = write_sweep(tmp_path, f'scenario = "base.toml"\n\n[axes]\n{axes}', base)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert info.value.source == str(path)
    return info.value


def test_bad_axis_value_names_the_sweep_file_line_and_axis(
    tmp_path: Path, both_backends: list[str]
) -> None:
    err = _error(tmp_path, 'backend = ["tdx"]\n"guest.memory" = ["1GiB"]\n"guest.vcpus" = [1, 0]\n')
    assert (err.line, err.field) == (6, "axes.guest.vcpus")
    assert "point 1" in err.message and "guest.vcpus=0" in err.message
    assert "greater than or equal to 1" in err.message


def test_unknown_axis_field_is_refused(tmp_path: Path, both_backends: list[str]) -> None:
    err = _error(tmp_path, '\n"guest.memroy" = ["1GiB"]\n')
    assert (err.line, err.field) == (5, "axes.guest.memroy")
    assert "not a field of guest" in err.message


def test_a_backends_refusal_is_blamed_on_its_axis(tmp_path: Path, both_backends: list[str]) -> None:
    err = _error(tmp_path, 'backend = ["tdx"]\n"backend_options.tdx.host_mapping" = ["4K", "8K"]\n')
    assert (err.line, err.field) == (5, "axes.backend_options.tdx.host_mapping")
    assert "host_mapping must be one of 4K, 2M, not '8K'" in err.message


def test_unknown_backend_lists_the_installed_ones(tmp_path: Path, both_backends: list[str]) -> None:
    err = _error(tmp_path, 'backend = ["tdx", "arm-cca"]\n')
    assert (err.line, err.field) == (4, "axes.backend")
    assert "no backend named 'arm-cca'" in err.message and "sev-snp, tdx" in err.message


def test_a_combination_the_base_scenario_refuses_names_its_field(
    tmp_path: Path, both_backends: list[str]
) -> None:
    base = BASE + '\n[[layers]]\nname = "l2.1"\nmemory = { start = 0, size = "1GiB" }\n'
    err = _error(tmp_path, '"guest.memory" = ["2GiB", "512MiB"]\n', base)
    assert (err.field, err.line) == ("axes", 3)  # no axis sets layers.0.memory: [axes]
    assert "point 2" in err.message and "guest.memory='512MiB'" in err.message
    assert "field 'layers.0.memory'" in err.message and "ends beyond guest memory" in err.message
    err = _error(tmp_path, '"layers.3.vcpus" = [1]\n', base)
    assert "1 element(s) in the base scenario" in err.message


def test_sweep_file_fields_are_checked(tmp_path: Path, both_backends: list[str]) -> None:
    path = write_sweep(tmp_path, 'scenario = "base.toml"\nmodes = "zip"\n')
    with pytest.raises(ConfigError, match="unknown sweep field") as info:
        load_sweep(path)
    assert info.value.line == 2
    path.write_text('scenario = "missing.toml"\n')
    with pytest.raises(ConfigError, match="cannot read the base scenario"):
        load_sweep(path)
    path.write_text('[axes]\nbackend = ["tdx"]\n')
    with pytest.raises(ConfigError, match="name the base scenario"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_sweep(tmp_path / "nope.toml")


def test_build_sweep_from_python_runs_serially(both_backends: list[str]) -> None:
    """Agents build sweeps without files; rows come back typed, one per point x step."""
    scenario = loads_scenario(BASE)
    sweep = build_sweep(scenario, {"backend": ["sev-snp"], "guest.vcpus": [1, 2]})
    assert [p.params for p in sweep.points] == [{"guest.vcpus": 1}, {"guest.vcpus": 2}]
    result = run_sweep(sweep, Cluster(serial=True))
    assert result.points == 2 and len(result.rows) == 8
    assert {r.step for r in result.rows} == {
        "bring-up",
        "share-round",
        "attest-each-layer",
        "interrupts",
    }
    assert [r.vcpus for r in result.rows] == [1] * 4 + [2] * 4
    with pytest.raises(ConfigError, match="not a field"):
        build_sweep(scenario, {"guest.cpus": [1]})


def test_the_example_sweep_is_valid(both_backends: list[str]) -> None:
    from scaleout_helpers import REPO

    sweep = load_sweep(REPO / "examples" / "sweep.toml")
    assert sweep.name == "growth" and len(sweep.points) == 2 * 4 * 3 * 2 * 2
    assert sweep.axes[1].values == [GIB, 4 * GIB, 16 * GIB, 64 * GIB]


def test_a_cost_table_row_is_an_axis(tmp_path: Path, both_backends: list[str]) -> None:
    """Names holding a dot are quoted (TOML style); both spellings are one axis, and the
    cost reaches the model."""
    for axes in (
        "'costs.primitives.\"PVALIDATE.2M\"' = [1000, 4000]\n",
        '[axes.costs.primitives]\n"PVALIDATE.2M" = [1000, 4000]\n',
    ):
        text = 'scenario = "base.toml"\n' + ("[axes]\n" if "[axes" not in axes else "") + axes
        path = write_sweep(tmp_path, text.replace("[axes]\n[axes.", "[axes."))
        sweep = load_sweep(path)
        assert sweep.axes[0].path == 'costs.primitives."PVALIDATE.2M"'
        assert sweep.axes[0].parts == ["costs", "primitives", "PVALIDATE.2M"]
        assert sweep.axes[0].line == 3
    snp = [p for p in sweep.points if p.backend == "sev-snp"]
    result = run_sweep(sweep.model_copy(update={"points": snp}), Cluster(serial=True))
    cheap, dear = (sum(r.modelled_ns for r in result.rows if r.point == p.index) for p in snp)
    assert dear > cheap


def test_a_mistake_in_the_base_scenario_names_the_base_file(
    tmp_path: Path, both_backends: list[str]
) -> None:
    base = BASE.replace("vcpus = 2", "vcpus = 2\ncpus = 4")
    path = write_sweep(tmp_path, 'scenario = "base.toml"\n[axes]\nbackend = ["tdx"]\n', base)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert info.value.source == str(tmp_path / "base.toml")
    assert (info.value.line, info.value.field) == (6, "guest.cpus")
