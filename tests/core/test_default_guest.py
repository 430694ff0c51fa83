"""``default_guest`` (what `cocopart backends` answers its capability matrix for) is the
default scenario's configuration without loading the scenario."""

from __future__ import annotations

import pytest

from cocopart.registry import load_all_backends
from cocopart.scenario import default_guest, default_scenario


@pytest.mark.parametrize("backend", ["sev-snp", "tdx", "not-installed"])
def test_default_guest_is_the_default_scenarios_config(backend: str) -> None:
    full = default_scenario().config_for(backend)
    assert default_guest(backend) == full.model_copy(update={"memory_map": {}})


def test_the_capability_matrix_does_not_depend_on_the_memory_map() -> None:
    for status in load_all_backends():
        if not status.ok:
            continue
        backend = status.plugin
        full = default_scenario().config_for(backend.name)
        assert full.memory_map, "the default scenario assigns each layer its RAM"
        assert backend.capabilities(default_guest(backend.name)) == backend.capabilities(full)
