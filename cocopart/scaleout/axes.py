"""Sweep axes: a dotted path into the scenario model and the values it takes.

An axis names any field of :class:`cocopart.scenario.Scenario` by its dotted path —
``backend``, ``guest.memory``, ``guest.interrupt_mode``, ``backend_options.tdx.host_mapping``,
``costs.primitives."PVALIDATE.2M"`` (a name holding a dot is quoted), ``layers.0.vcpus`` —
so a field added to the scenario later (a host profile, say) is an axis without any change
here. Values are a list, or a range
table ``{ start, stop, step }`` (arithmetic) or ``{ start, stop, factor }`` (geometric);
``stop`` is included when a step lands on it, and sizes such as ``"1GiB"`` are allowed.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

from pydantic import BaseModel, Field

from cocopart.model import parse_size
from cocopart.scenario import Scenario
from cocopart.toml_text import _split_dotted

#: Most values one axis may generate (a typo in a range should not eat the machine).
MAX_AXIS_VALUES = 100_000
_RANGE_KEYS = frozenset({"start", "stop", "step", "factor"})
_BARE = re.compile(r"[A-Za-z0-9_-]+")

#: Values of one axis as they appear in tables: lists and tables become JSON text there.
AxisValue = Any


class AxisError(ValueError):
    """An axis is malformed (raised inside this package; loaders turn it into a
    :class:`cocopart.errors.ConfigError` with the sweep file's line)."""


def split_path(path: str) -> list[str]:
    """The names of a dotted path, TOML style: ``costs.primitives."PVALIDATE.2M"``."""
    parts = _split_dotted(path)
    if parts is None:
        raise AxisError(
            f"{path!r} is not a dotted path (quote names that hold a dot: "
            'costs.primitives."PVALIDATE.2M")'
        )
    return parts


def join_path(parts: Sequence[str]) -> str:
    """The dotted path of ``parts``, quoting a name that is not a bare TOML key."""
    return ".".join(p if _BARE.fullmatch(p) else json.dumps(p) for p in parts)


class Axis(BaseModel):
    """One axis of a sweep."""

    path: str = Field(
        description="Dotted path of a scenario field, e.g. 'guest.memory' or "
        "'costs.primitives.\"PVALIDATE.2M\"' (a name holding a dot is quoted)."
    )
    values: list[AxisValue] = Field(description="The values it takes, in order.")
    line: int | None = Field(default=None, description="Line of the axis in its sweep file.")

    @property
    def parts(self) -> list[str]:
        return split_path(self.path)

    @property
    def field(self) -> str:
        """The path as error fields name it (plain dots)."""
        return ".".join(self.parts)


def is_range(value: Any) -> bool:
    """A range table: ``start`` and ``stop`` (scalars), and ``step`` or ``factor``."""
    return (
        isinstance(value, dict)
        and {"start", "stop"} <= set(value) <= _RANGE_KEYS
        and not any(isinstance(v, (dict, list)) for v in value.values())
    )


def _number(value: Any, key: str) -> int | float:
    if isinstance(value, bool):
        raise AxisError(f"range {key} must be a number or a size, not {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        return parse_size(value)
    except ValueError as err:
        raise AxisError(f"range {key}: {err}") from None


def expand_range(spec: dict[str, Any]) -> list[int | float]:
    """The values of a range table (``stop`` included when a step lands on it)."""
    start, stop = _number(spec["start"], "start"), _number(spec["stop"], "stop")
    if ("step" in spec) == ("factor" in spec):
        raise AxisError("a range takes exactly one of step (adds) and factor (multiplies)")
    if stop < start:
        raise AxisError(f"range stop {stop} is below start {start}")
    out: list[int | float] = []
    if "step" in spec:
        step = _number(spec["step"], "step")
        if step <= 0:
            raise AxisError(f"range step must be positive, not {step}")
        exact = all(isinstance(v, int) for v in (start, stop, step))
        count = (
            (int(stop) - int(start)) // int(step)
            if exact
            else math.floor((stop - start) / step + 1e-9)
        ) + 1
        if count > MAX_AXIS_VALUES:
            raise AxisError(f"range has {count:,} values; at most {MAX_AXIS_VALUES:,}")
        out = [
            start + i * step if exact else float(f"{start + i * step:.12g}") for i in range(count)
        ]
    else:
        factor = _number(spec["factor"], "factor")
        if factor <= 1:
            raise AxisError(f"range factor must be greater than 1, not {factor}")
        if start <= 0:
            raise AxisError(f"a geometric range starts above 0, not at {start}")
        exact = isinstance(start, int) and isinstance(factor, int)
        while True:
            v = start * factor ** len(out)
            v = v if exact else float(f"{v:.12g}")
            if v > stop * (1 + 1e-12):
                break
            out.append(v)
            if len(out) > MAX_AXIS_VALUES:
                raise AxisError(f"range has more than {MAX_AXIS_VALUES:,} values")
    return out


def axis_values(raw: Any) -> list[Any]:
    """The values of an axis written as a list or a range table."""
    if isinstance(raw, list):
        if not raw:
            raise AxisError("an axis needs at least one value")
        return list(raw)
    if is_range(raw):
        return expand_range(raw)
    raise AxisError(
        "an axis is a list of values or a range table "
        "{ start, stop, step } / { start, stop, factor }"
    )


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional around a field type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def check_path(parts: Sequence[str], model: type[BaseModel] = Scenario) -> None:
    """Raise :class:`AxisError` unless ``parts`` names a field of ``model`` (walking nested
    models, dict keys and list indices). Below a union of models (a step) any name passes:
    the points' validation checks it."""
    tp: Any = model
    walked: list[str] = []
    for part in parts:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        where = ".".join(walked) or "the scenario"
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = tp.model_fields
            if part not in fields:
                raise AxisError(f"'{part}' is not a field of {where} (fields: {', '.join(fields)})")
            tp = fields[part].annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            if not part.isdigit():
                raise AxisError(f"{where} is a list: index it with a number, not '{part}'")
            tp = typing.get_args(tp)[0]
        elif tp is Any or origin in (Union, types.UnionType):
            return
        else:
            raise AxisError(f"{where} is a single value; it has no field '{part}'")
        walked.append(part)


def set_path(data: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set ``data[parts...] = value``, creating tables on the way; list elements must exist
    in the base scenario."""
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i]) or "the scenario"
        if isinstance(cur, list):
            k = int(part)
            if k >= len(cur):
                raise AxisError(
                    f"{where} has {len(cur)} element(s) in the base scenario; "
                    f"there is no element {k} to vary"
                )
            if last:
                cur[k] = value
            else:
                cur = cur[k]
        elif isinstance(cur, dict):
            if last:
                cur[part] = value
            else:
                if cur.get(part) is None:
                    cur[part] = [] if parts[i + 1].isdigit() else {}
                cur = cur[part]
        else:
            raise AxisError(f"{where} is {cur!r} in the base scenario, not a table")
