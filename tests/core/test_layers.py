"""Routing and TCB on the tests-only fake backend's layer graph."""

from __future__ import annotations

import json

import pytest

from cocopart.errors import NotSupportedError
from cocopart.layers import EdgeKind, LayerGraph
from cocopart.model import Layer, LayerRole
from cocopart.partition import Partition


def test_route_goes_to_nearest_holder(fake: Partition) -> None:
    g = fake.graph
    r = g.route("validate", "l2.1")
    assert (r.provider, r.path, r.cost_ns) == ("l1", ["l2.1", "l1"], 2000)
    assert r.edges[0].mechanism == "FAKE.SWITCH" and not r.direct
    # attest-hardware: the cheapest path is through l1 (2000 + 1000) not the host (3000 + ...)
    r = g.route("attest-hardware", "l2.2")
    assert r.path == ["l2.2", "l1", "firmware"] and r.cost_ns == 3000
    assert "FAKE.FW_CALL" in r.describe()


def test_route_direct_when_the_layer_holds_it(fake: Partition) -> None:
    r = fake.graph.route("set-access:l2.2", "l2.1")
    assert r.direct and r.cost_ns == 0 and r.describe() == "l2.1 (directly)"
    # the reverse direction goes through the privileged layer (wildcard capability)
    assert fake.graph.route("set-access:l2.1", "l2.2").provider == "l1"


def test_route_unreachable_capability_is_not_supported(fake: Partition) -> None:
    with pytest.raises(NotSupportedError, match="no layer reachable"):
        fake.graph.route("teleport", "l2.1")
    with pytest.raises(KeyError, match="no layer 'l9'"):
        fake.graph.route("validate", "l9")


def test_memory_control_and_trust_edges_do_not_route() -> None:
    g = LayerGraph()
    for name, role in (("l1", LayerRole.PRIVILEGED), ("l2.1", LayerRole.WORKLOAD)):
        g.add_layer(
            Layer(name=name, role=role, vendor_name=name.upper()),
            ["validate"] if name == "l1" else [],
        )
    g.add_edge("l2.1", "l1", EdgeKind.TRUST, "trusts")
    g.add_edge("l2.1", "l1", EdgeKind.MEMORY_CONTROL, "controls")
    with pytest.raises(NotSupportedError):
        g.route("validate", "l2.1")
    g.add_edge("l2.1", "l1", EdgeKind.CALL, "call", 5)
    assert g.route("validate", "l2.1").edges[0].mechanism == "call"
    with pytest.raises(ValueError):
        g.add_layer(Layer(name="l1", role=LayerRole.PRIVILEGED, vendor_name="again"))


def test_tcb_follows_trust_edges(fake: Partition) -> None:
    assert fake.graph.tcb("l2.1") == ["firmware", "l1"]
    assert fake.graph.tcb("l1") == ["firmware"]
    assert fake.graph.tcb("host") == []
    assert "host" not in fake.graph.tcb("l2.2")


def test_exports(fake: Partition) -> None:
    data = json.loads(fake.graph.to_json_str())
    assert {n["layer"]["name"] for n in data["nodes"]} >= {"l1", "l2.1", "l2.2", "host"}
    assert any(e["kind"] == "trust" for e in data["edges"])
    dot = fake.graph.to_dot("fake")
    assert dot.startswith('digraph "fake"') and '"l2.1" -> "l1"' in dot and "dotted" in dot
    assert fake.graph.holders("validate") == ["l1"]
