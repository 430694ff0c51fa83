"""One truth for what a backend can do (issue 12): the capability matrix a backend declares
(`cocopart backends`) and the routes its layer graph gives the workload layers
(`cocopart layers`) agree on every operation, for both backends and several configurations."""

from __future__ import annotations

from typing import Any

import pytest

from cocopart.errors import NotSupportedError
from cocopart.model import PartitionConfig
from cocopart.ops import Capability
from cocopart.registry import load_backend

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("sev-snp", {}),
    ("sev-snp", {"services": []}),
    ("sev-snp", {"workload_layers": 3, "backend_options": {"workload_vmpls": [3, 1, 2]}}),
    ("tdx", {}),
    ("tdx", {"services": []}),
    ("tdx", {"backend_options": {"module": "2.0"}}),
    ("tdx", {"workload_layers": 3, "backend_options": {"enable_tdvmcall": True}}),
]


def routed(graph: Any, capability: str, sources: tuple[str, ...]) -> bool:
    for source in sources:
        try:
            graph.route(capability, source)
            return True
        except NotSupportedError:
            continue
    return False


@pytest.mark.parametrize(
    ("backend", "extra"), CONFIGS, ids=[f"{b}-{i}" for i, (b, _e) in enumerate(CONFIGS)]
)
def test_capability_matrix_and_graph_routes_agree(backend: str, extra: dict[str, Any]) -> None:
    config = PartitionConfig.model_validate({"memory": "64MiB", "workload_layers": 2, **extra})
    b = load_backend(backend)
    matrix, graph = b.capabilities(config), b.graph(config)
    for cap in Capability:
        names = (
            [f"{cap.value}:{w}" for w in config.workloads]
            if cap is Capability.SET_ACCESS
            else [cap.value]
        )
        in_graph = any(routed(graph, n, config.workloads) for n in names)
        answer = matrix[cap.value]
        assert answer.supported == in_graph, (backend, extra, cap.value, answer)
