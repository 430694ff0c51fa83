"""Sweep files: a base scenario, the axes to vary, and every point checked before any runs.

    name = "memory-by-backend"          # optional; default: the file name
    scenario = "base.toml"              # the base scenario, relative to this file
    mode = "product"                    # every combination (default), or "zip": i-th values

    [axes]                              # dotted paths into the scenario (cocopart.scaleout.axes)
    backend = ["sev-snp", "tdx"]        # default: the scenario's backend, else every installed
    "guest.memory" = { start = "1GiB", stop = "64GiB", factor = 2 }
    "guest.vcpus" = { start = 1, stop = 16, step = 5 }
    "guest.interrupt_mode" = ["restricted", "alternate"]
    "backend_options.tdx.host_mapping" = ["4K", "2M"]

Every point is validated as a scenario, and each backend checks its configuration, before
anything is submitted: a bad value is a :class:`ConfigError` naming the sweep file, the line
of the axis and the point's values (the CLI exits 2).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cocopart.errors import BackendLoadError, BackendNotFound, ConfigError
from cocopart.registry import installed, load_backend
from cocopart.scaleout.axes import (
    Axis,
    AxisError,
    axis_values,
    check_path,
    is_range,
    join_path,
    set_path,
    split_path,
)
from cocopart.scenario import Scenario, line_of, parse_toml, read_toml_text, scenario_from_data

Mode = Literal["product", "zip"]
_SWEEP_KEYS = ("name", "description", "scenario", "mode", "axes")
#: Most points a sweep may have (10^6 rows of results still fit a machine's memory).
MAX_POINTS = 1_000_000


class SweepPoint(BaseModel):
    """One scenario run: the axes' values and the backend."""

    index: int
    backend: str
    params: dict[str, Any] = Field(
        description="Axis path -> value (the backend axis is in ``backend``)."
    )


class Sweep(BaseModel):
    """A validated sweep: the base scenario's data, the axes and every point."""

    name: str
    description: str = ""
    source: str | None = Field(default=None, description="The sweep file.")
    scenario_source: str = Field(description="The base scenario file.")
    mode: Mode = "product"
    axes: list[Axis] = Field(description="The axes in file order (the backend axis included).")
    base: dict[str, Any] = Field(description="The base scenario's data, as parsed.")
    points: list[SweepPoint]

    @property
    def param_axes(self) -> list[Axis]:
        """The axes other than the backend (they become the table's parameter columns)."""
        return [a for a in self.axes if a.path != "backend"]

    @property
    def backends(self) -> list[str]:
        return list(dict.fromkeys(p.backend for p in self.points))


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (and its base scenario). Raises :class:`ConfigError`
    only, naming the file, line and field."""
    p = Path(path)
    return loads_sweep(read_toml_text(p), str(p), base_dir=p.parent, name=p.stem)


def loads_sweep(
    text: str, source: str = "<sweep>", *, base_dir: str | Path = ".", name: str | None = None
) -> Sweep:
    """Validate a sweep from TOML text; ``scenario`` is read relative to ``base_dir``."""
    data = parse_toml(text, source)

    def fail(msg: str, *path: str | int) -> ConfigError:
        return ConfigError(
            msg,
            field=".".join(str(p) for p in path) or None,
            source=source,
            line=line_of(text, path),
        )

    for key in data:
        if key not in _SWEEP_KEYS:
            raise fail(f"unknown sweep field (fields: {', '.join(_SWEEP_KEYS)})", key)
    scenario_file = data.get("scenario")
    if not isinstance(scenario_file, str):
        raise fail('name the base scenario file: scenario = "base.toml"', "scenario")
    mode = data.get("mode", "product")
    if mode not in ("product", "zip"):
        raise fail(f"mode is 'product' (every combination) or 'zip', not {mode!r}", "mode")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise fail("must be a string", key)
    raw_axes = data.get("axes", {})
    if not isinstance(raw_axes, dict):
        raise fail("[axes] is a table of dotted scenario paths", "axes")
    axes: list[Axis] = []
    for keys, raw in _flatten(raw_axes, ()):
        try:  # a key right under [axes] is a dotted path; keys of nested tables are names
            path = join_path([*split_path(keys[0]), *keys[1:]])
            axes.append(
                Axis(path=path, values=axis_values(raw), line=line_of(text, ("axes", *keys)))
            )
        except AxisError as err:
            raise fail(str(err), "axes", *keys) from None
    base_path = Path(base_dir) / scenario_file
    base_source = str(base_path)
    try:
        base_text = read_toml_text(base_path)
    except ConfigError as err:
        raise fail(
            f"cannot read the base scenario {base_source}: {err.message}", "scenario"
        ) from None
    base = parse_toml(base_text, base_source)
    base.setdefault("name", base_path.stem)
    return _build(
        name=str(data.get("name", name or "sweep")),
        description=str(data.get("description", "")),
        source=source,
        axes=axes,
        mode=mode,
        base=base,
        base_text=base_text,
        base_source=base_source,
        axes_line=line_of(text, ("axes",)),
    )


def build_sweep(
    scenario: Scenario,
    axes: Mapping[str, Any],
    *,
    mode: Mode = "product",
    name: str = "sweep",
    description: str = "",
) -> Sweep:
    """A sweep from Python: ``axes`` maps dotted scenario paths to a list of values or a
    range table (``{"start": 1, "stop": 16, "step": 1}``). Raises :class:`ConfigError`."""
    built: list[Axis] = []
    for path, raw in axes.items():
        try:
            built.append(Axis(path=join_path(split_path(path)), values=axis_values(raw)))
        except AxisError as err:
            raise ConfigError(str(err), field=f"axes.{path}") from None
    base = scenario.model_dump(mode="json")
    return _build(
        name=name,
        description=description,
        source=None,
        axes=built,
        mode=mode,
        base=base,
        base_text="",
        base_source=scenario.name,
        axes_line=None,
    )


def _flatten(table: dict[str, Any], keys: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, raw axis) for every axis of an ``[axes]`` table; a nested table that is
    not a range is a dotted path written as TOML tables."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) and not is_range(value):
            out += _flatten(value, (*keys, key))
        else:
            out.append(((*keys, key), value))
    return out


def _build(
    *,
    name: str,
    description: str,
    source: str | None,
    axes: list[Axis],
    mode: Mode,
    base: dict[str, Any],
    base_text: str,
    base_source: str,
    axes_line: int | None,
) -> Sweep:
    def fail(msg: str, axis: Axis | None) -> ConfigError:
        if axis is None:
            return ConfigError(msg, field="axes", source=source, line=axes_line)
        return ConfigError(msg, field=f"axes.{axis.path}", source=source, line=axis.line)

    seen: set[str] = set()
    for axis in axes:
        if axis.path in seen:
            raise fail("this axis is given twice", axis)
        seen.add(axis.path)
        try:
            check_path(axis.parts)
        except AxisError as err:
            raise fail(str(err), axis) from None
    axes = _with_backend_axis(axes, base, fail)
    if mode == "zip" and len({len(a.values) for a in axes if a.path != "backend"}) > 1:
        sizes = ", ".join(f"{a.path}: {len(a.values)}" for a in axes)
        raise fail(f"zip takes axes of equal length ({sizes})", None)
    points = _points(axes, mode, fail)
    _validate(points, axes, base, base_text, base_source, fail)
    return Sweep(
        name=name,
        description=description,
        source=source,
        scenario_source=base_source,
        mode=mode,
        axes=axes,
        base=base,
        points=points,
    )


def _with_backend_axis(axes: list[Axis], base: dict[str, Any], fail: Any) -> list[Axis]:
    """Check the backend axis; without one the base scenario's backend, else every
    installed backend, is an implicit last axis."""
    available = installed()
    backend_axis = next((a for a in axes if a.path == "backend"), None)
    if backend_axis is None:
        names = [base["backend"]] if isinstance(base.get("backend"), str) else available
        backend_axis = Axis(path="backend", values=names)
        axes = [*axes, backend_axis]
    for value in backend_axis.values:
        if value not in available:
            raise fail(
                f"no backend named {value!r} is installed (installed: "
                f"{', '.join(available) or 'none'})",
                backend_axis,
            )
    if not backend_axis.values:
        raise fail(
            "no backend is installed: install cocopart-sev-snp or cocopart-tdx", backend_axis
        )
    return axes


def _points(axes: list[Axis], mode: Mode, fail: Any) -> list[SweepPoint]:
    backend_at = next(i for i, a in enumerate(axes) if a.path == "backend")
    if mode == "zip":
        params_axes = [a for a in axes if a.path != "backend"]
        rows = [
            tuple(a.values[i] for a in params_axes)
            for i in range(len(params_axes[0].values) if params_axes else 1)
        ]
        combos = [
            (*row[:backend_at], b, *row[backend_at:])
            for row in rows
            for b in axes[backend_at].values
        ]
    else:
        total = 1
        for a in axes:
            total *= len(a.values)
        if total > MAX_POINTS:
            raise fail(f"the sweep has {total:,} points; at most {MAX_POINTS:,}", None)
        combos = list(itertools.product(*(a.values for a in axes)))
    out = []
    for i, combo in enumerate(combos):
        params = {a.path: v for a, v in zip(axes, combo, strict=True) if a.path != "backend"}
        out.append(SweepPoint(index=i, backend=str(combo[backend_at]), params=params))
    return out


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _validate(
    points: list[SweepPoint],
    axes: list[Axis],
    base: dict[str, Any],
    base_text: str,
    base_source: str,
    fail: Any,
) -> None:
    """Validate each distinct scenario once, then each backend's check of its configuration:
    the first failure is blamed on the axis whose path contains the failing field."""
    scenarios: dict[str, Scenario] = {}
    backends: dict[str, Any] = {}
    for point in points:
        key = _key(point.params)
        try:
            scenario = scenarios.get(key)
            if scenario is None:
                data = _point_data(base, point)
                scenario = scenarios[key] = scenario_from_data(data, base_text, base_source)
            backend = backends.get(point.backend)
            if backend is None:
                backend = backends[point.backend] = load_backend(point.backend)
            try:
                backend.check_config(scenario.config_for(point.backend))
            except ConfigError as err:
                raise scenario.relocate(err, point.backend) from None
        except (AxisError, BackendNotFound, BackendLoadError) as err:
            raise fail(f"point {point.index} ({describe(point)}): {err}", None) from None
        except ConfigError as err:
            axis = _blame(err.field, axes)
            if axis is None:  # no axis sets the field: is the base scenario itself wrong?
                try:
                    scenario_from_data(copy.deepcopy(base), base_text, base_source)
                except ConfigError as own:
                    raise own from None
            where = (
                "" if axis is not None else f"{err.source or base_source}, field '{err.field}': "
            )
            raise fail(
                f"point {point.index} ({describe(point)}): {where}{err.message}", axis
            ) from None


def _point_data(base: dict[str, Any], point: SweepPoint) -> dict[str, Any]:
    data = copy.deepcopy(base)
    data["backend"] = point.backend
    for path, value in point.params.items():
        set_path(data, split_path(path), copy.deepcopy(value))
    return data


def point_scenario(base: dict[str, Any], point: SweepPoint) -> Scenario:
    """The point's scenario (already validated when the sweep was built)."""
    return Scenario.model_validate(_point_data(base, point))


def _blame(field: str | None, axes: list[Axis]) -> Axis | None:
    if not field:
        return None
    for axis in axes:
        if (
            field == axis.field
            or field.startswith(axis.field + ".")
            or axis.field.startswith(field + ".")
        ):
            return axis
    return None


def describe(point: SweepPoint) -> str:
    """``backend=tdx, guest.memory='4GiB'``: a point's values for messages."""
    return ", ".join([f"backend={point.backend}"] + [f"{k}={v!r}" for k, v in point.params.items()])
