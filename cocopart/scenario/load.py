"""Loading scenario files: TOML -> Scenario, every error a ConfigError naming file, line
and dotted field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from cocopart.errors import ConfigError
from cocopart.model import (
    GpaRange,
    format_size,
)
from cocopart.scenario.model import (
    AttestEachLayer,
    BringUp,
    Interrupts,
    OperationStep,
    Scenario,
    ShareRound,
)
from cocopart.toml_text import _dotted, config_error, line_of, parse_toml
from cocopart.trace import CostTable

# --------------------------------------------------------------------------------------------
# Loading


def loads_scenario(text: str, source: str = "<scenario>", *, name: str | None = None) -> Scenario:
    """Parse and validate a scenario from TOML text. Raises :class:`ConfigError` only."""
    data = parse_toml(text, source)
    if name is not None:
        data.setdefault("name", name)
    return scenario_from_data(data, text, source)


def scenario_from_data(data: dict[str, Any], text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario ``data`` parsed from the TOML ``text`` of ``source`` (or derived from
    it, as a sweep point is): the model and the cross-field rules. Raises
    :class:`ConfigError` only, naming the field and its line in ``text``."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise config_error(err, data, text, source) from None
    _check(scenario, data, text, source)
    scenario._source = source
    scenario._text = text
    return scenario


def read_toml_text(path: Path) -> str:
    """The text of a TOML file; a missing or unreadable file is a :class:`ConfigError`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a TOML file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", source=str(path)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file. A missing or unreadable file is a :class:`ConfigError` too."""
    p = Path(path)
    return loads_scenario(read_toml_text(p), str(p), name=p.stem)


def _check(s: Scenario, data: dict[str, Any], text: str, source: str) -> None:
    """Cross-field rules pydantic cannot see: layers exist, ranges fit and do not overlap."""

    def fail(msg: str, *path: str | int) -> None:
        raise ConfigError(msg, field=_dotted(path), source=source, line=line_of(text, path))

    workloads = s.guest.workloads
    known = s.known_layers()
    memory = s.guest.memory
    seen: dict[str, int] = {}
    for i, spec in enumerate(s.layers):
        if spec.name not in workloads:
            fail(
                f"'{spec.name}' is not a workload layer of this guest (it has "
                f"{', '.join(workloads)}; set guest.workload_layers)",
                "layers",
                i,
                "name",
            )
        if spec.name in seen:
            fail(f"layer '{spec.name}' appears twice", "layers", i, "name")
        seen[spec.name] = i
        if spec.memory is not None and spec.memory.end > memory:
            fail(
                f"range {spec.memory} ends beyond guest memory ({format_size(memory)})",
                "layers",
                i,
                "memory",
            )
        for j, r in enumerate(spec.shared):
            inside = spec.memory or GpaRange.of(0, memory)
            if r.start < inside.start or r.end > inside.end:
                fail(
                    f"shared range {r} is not inside the layer's memory {inside}",
                    "layers",
                    i,
                    "shared",
                    j,
                )
    specs = s.layer_specs()
    for a in range(len(specs)):
        for b in range(a + 1, len(specs)):
            ra, rb = specs[a].memory, specs[b].memory
            if ra is not None and rb is not None and ra.overlaps(rb):
                fail(
                    f"memory of {specs[b].name} {rb} overlaps {specs[a].name} {ra}",
                    "layers",
                    seen.get(specs[b].name, 0),
                    "memory",
                )
    for i, step in enumerate(s.steps):
        raw = data["steps"][i]
        if isinstance(step, OperationStep):
            op = step.operation
            for fname in ("layer", "target"):
                value = getattr(op, fname, None)
                if value is not None and value not in known:
                    fail(
                        f"no layer '{value}' in this guest (layers: {', '.join(sorted(known))})",
                        "steps",
                        i,
                        fname if fname in raw else "op",
                    )
            rng = getattr(op, "range", None)
            if isinstance(rng, GpaRange) and rng.end > memory:
                fail(
                    f"range {rng} ends beyond guest memory ({format_size(memory)})",
                    "steps",
                    i,
                    "range",
                )
            continue
        layer_fields: list[tuple[str, list[str]]] = []
        if isinstance(step, ShareRound):
            layer_fields.append(("layer", [step.layer]))
            if step.range is not None and step.range.end > memory:
                fail(
                    f"range {step.range} ends beyond guest memory ({format_size(memory)})",
                    "steps",
                    i,
                    "range",
                )
        elif isinstance(step, (BringUp, AttestEachLayer)):
            layer_fields.append(("layers", list(step.layers or [])))
        elif isinstance(step, Interrupts):
            layer_fields += [
                ("targets", list(step.targets or [])),
                ("requester", [step.requester]),
                ("configure_from", [step.configure_from]),
            ]
        for fname, values in layer_fields:
            allowed = known if fname in ("requester", "configure_from") else set(workloads)
            for v in values:
                if v not in allowed:
                    fail(
                        f"no layer '{v}' here (allowed: {', '.join(sorted(allowed))})",
                        "steps",
                        i,
                        fname,
                    )
    if s.costs:
        try:
            s.cost_table(CostTable())
        except ConfigError as err:
            path = ("costs", *(err.field or "").split("."))
            raise ConfigError(
                err.message,
                field=_dotted([p for p in path if p]),
                source=source,
                line=line_of(text, path),
            ) from None
