"""Scenario files: one TOML file describes a partitioned guest and what to do with it.

A scenario (also used as a *guest file* by ``cocopart setup``) has these parts::

    name = "default"                 # optional; defaults to the file name
    description = "..."              # optional

    [guest]                          # PartitionConfig fields (cocopart.model)
    memory = "64GiB"
    vcpus = 16
    workload_layers = 2

    [backend_options.sev-snp]        # handed to that backend only, as
    workload_vmpls = [1, 2]          # PartitionConfig.backend_options
    [backend_options.tdx]
    host_mapping = "2M"

    [costs.primitives]               # optional cost overrides (cocopart.trace layout)
    PVALIDATE = 150

    [[layers]]                       # how the workload layers use guest RAM
    name = "l2.1"
    memory = { start = 0, size = "32GiB" }
    vcpus = 16
    shared = [{ start = "31GiB", size = "1GiB" }]

    [[steps]]                        # an ordered list: macros ...
    macro = "bring-up"
    [[steps]]                        # ... or single operations (cocopart.ops)
    op = "set-access"
    range = { start = 0, size = "2MiB" }
    target = "l2.2"
    access = "r"

Macros: ``bring-up`` validates every workload layer's RAM from that layer, shares what the
file marks shared and creates each layer's vCPUs; ``share-round`` converts a range to shared
and back (re-validating it when the backend left it unvalidated); ``attest-each-layer`` asks
for evidence from every workload layer; ``interrupts`` configures the interrupt mode and
injects a few vectors.

Loading never raises anything but :class:`cocopart.errors.ConfigError`, which names the file,
the line and the dotted field (``steps.2.range.size``). tomllib reports no positions for
values, so the line is found by scanning the text for the offending key or table.

:class:`Runner` executes a scenario on one backend and returns a :class:`ScenarioRun`: per
step the operations it issued, primitives, world switches, estimated time, status and
reason, plus totals — all pydantic, JSON-serialisable, with a schema.

The package: ``model`` (the file model), ``cocopart.toml_text`` (key positions in TOML text),
``load`` (TOML -> Scenario), ``example`` (the default scenario), ``run`` (the runner).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocopart.scenario.example import EXAMPLE_SCENARIO, default_guest, default_scenario
    from cocopart.scenario.load import (
        load_scenario,
        loads_scenario,
        read_toml_text,
        scenario_from_data,
    )
    from cocopart.scenario.model import (
        AttestEachLayer,
        BringUp,
        Interrupts,
        LayerSpec,
        OperationStep,
        Scenario,
        ShareRound,
    )
    from cocopart.scenario.run import (
        OperationOutcome,
        Runner,
        RunTotals,
        ScenarioRun,
        StepResult,
        run_scenario,
        worst,
    )
    from cocopart.toml_text import config_error, key_lines, line_of, parse_toml

#: Public name -> the module that defines it; each module loads on first use (loading a file
#: does not import the runner, and the runner not the loader).
_EXPORTS = {
    "EXAMPLE_SCENARIO": "example",
    "default_scenario": "example",
    "default_guest": "example",
    "config_error": "cocopart.toml_text",
    "load_scenario": "load",
    "loads_scenario": "load",
    "read_toml_text": "load",
    "scenario_from_data": "load",
    "parse_toml": "cocopart.toml_text",
    "AttestEachLayer": "model",
    "BringUp": "model",
    "Interrupts": "model",
    "LayerSpec": "model",
    "OperationStep": "model",
    "Scenario": "model",
    "ShareRound": "model",
    "OperationOutcome": "run",
    "Runner": "run",
    "RunTotals": "run",
    "ScenarioRun": "run",
    "StepResult": "run",
    "run_scenario": "run",
    "worst": "run",
    "key_lines": "cocopart.toml_text",
    "line_of": "cocopart.toml_text",
}

__all__ = [
    "EXAMPLE_SCENARIO",
    "AttestEachLayer",
    "BringUp",
    "Interrupts",
    "LayerSpec",
    "OperationOutcome",
    "OperationStep",
    "RunTotals",
    "Runner",
    "Scenario",
    "ScenarioRun",
    "ShareRound",
    "StepResult",
    "config_error",
    "default_guest",
    "default_scenario",
    "key_lines",
    "line_of",
    "load_scenario",
    "loads_scenario",
    "parse_toml",
    "read_toml_text",
    "run_scenario",
    "scenario_from_data",
    "worst",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cocopart.scenario' has no attribute '{name}'")
    path = module if "." in module else f"cocopart.scenario.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
