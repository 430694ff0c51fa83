"""The privilege-layer graph: who can do what, how requests travel, whom each layer trusts.

Nodes are layers (firmware, host, the privileged layer, workload layers, services), each with
the capabilities it holds (``"validate"``, ``"attest-hardware"``, ``"set-access:l2.2"``; a
``"set-access:*"`` holds it for every target). Edges are typed:

* ``call`` and ``world-switch``: how a request travels (an SVSM call, a GHCB request, an L2
  TDCALL exit), with the mechanism's name and estimated cost in ns. Routing uses only these.
A capability with the suffix ``@self`` is held for the layer's own requests only (it is never
the provider of a route from another layer).

* ``memory-control``: the source controls the destination's memory access (RMPADJUST,
  TDG.MEM.PAGE.ATTR.WR). Drawn, not routed.
* ``trust``: the source must trust the destination (it is in the source's TCB).

``route(capability, from_layer)`` is the cheapest call path from the requesting layer to a
layer holding the capability; planning uses it. ``tcb(layer)`` is the transitive closure of
trust edges.
"""

from __future__ import annotations

import json
from enum import Enum
from itertools import pairwise
from typing import Any

import rustworkx as rx
from pydantic import BaseModel, Field

from cocopart.errors import NotSupportedError
from cocopart.model import Layer


class EdgeKind(str, Enum):
    CALL = "call"
    WORLD_SWITCH = "world-switch"
    MEMORY_CONTROL = "memory-control"
    TRUST = "trust"


ROUTING_KINDS = frozenset({EdgeKind.CALL, EdgeKind.WORLD_SWITCH})


class LayerNode(BaseModel):
    layer: Layer
    capabilities: list[str] = Field(default_factory=list)

    def holds(self, capability: str) -> bool:
        """True if the layer carries ``capability`` out for any requester that reaches it."""
        if capability in self.capabilities:
            return True
        base = capability.split(":")[0]
        return f"{base}:*" in self.capabilities

    def holds_for_itself(self, capability: str) -> bool:
        """True if the layer may do ``capability`` for its own requests: held, or held with
        the ``@self`` suffix (e.g. TDX L1's ``attest-hardware@self``: only L1 may call
        TDG.MR.REPORT, so it is no provider for its L2s)."""
        base = capability.split(":")[0]
        return (
            self.holds(capability)
            or f"{capability}@self" in self.capabilities
            or f"{base}:*@self" in self.capabilities
        )


class Edge(BaseModel):
    source: str
    dest: str
    kind: EdgeKind
    mechanism: str
    cost_ns: float = 0.0


class Route(BaseModel):
    """A path from the requesting layer to the layer that carries the operation out."""

    capability: str
    source: str
    provider: str
    path: list[str]
    edges: list[Edge]
    cost_ns: float

    @property
    def direct(self) -> bool:
        return self.source == self.provider

    def describe(self) -> str:
        if self.direct:
            return f"{self.source} (directly)"
        hops = [self.path[0]]
        for e in self.edges:
            hops.append(f"--{e.mechanism}--> {e.dest}")
        return " ".join(hops)


class LayerGraph:
    """A directed graph of layers over rustworkx ``PyDiGraph``."""

    def __init__(self) -> None:
        self._g: rx.PyDiGraph = rx.PyDiGraph()
        self._index: dict[str, int] = {}
        #: Resolved routes (or the refusal) by (capability, source); cleared on any change.
        self._routes: dict[tuple[str, str], Route | NotSupportedError] = {}

    # -- building --------------------------------------------------------------------------
    def add_layer(self, layer: Layer, capabilities: list[str] | None = None) -> None:
        if layer.name in self._index:
            raise ValueError(f"layer {layer.name} is already in the graph")
        node = LayerNode(layer=layer, capabilities=sorted(capabilities or []))
        self._index[layer.name] = self._g.add_node(node)
        self._routes.clear()

    def add_edge(
        self, source: str, dest: str, kind: EdgeKind, mechanism: str, cost_ns: float = 0.0
    ) -> None:
        self._g.add_edge(
            self._idx(source),
            self._idx(dest),
            Edge(source=source, dest=dest, kind=kind, mechanism=mechanism, cost_ns=cost_ns),
        )
        self._routes.clear()

    def _idx(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"no layer '{name}' in the graph (layers: {', '.join(self._index)})"
            ) from None

    # -- reading ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return [self._g[i].layer for i in self._index.values()]

    def node(self, name: str) -> LayerNode:
        return self._g[self._idx(name)]  # type: ignore[no-any-return]

    def layer(self, name: str) -> Layer:
        return self.node(name).layer

    def edges(self, kind: EdgeKind | None = None) -> list[Edge]:
        return [e for e in self._g.edges() if kind is None or e.kind == kind]

    def control_edges(self) -> list[tuple[str, str]]:
        """``(controller, controlled)`` for every memory-control edge."""
        return [(e.source, e.dest) for e in self.edges(EdgeKind.MEMORY_CONTROL)]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def route(self, capability: str, source: str) -> Route:
        """Cheapest call path from ``source`` to a layer holding ``capability``.

        Raises :class:`NotSupportedError` when no reachable layer holds it. Routes are
        resolved once per graph and remembered (the graph does not change after it is built).
        """
        key = (capability, source)
        known = self._routes.get(key)
        if known is None:
            try:
                known = self._resolve(capability, source)
            except NotSupportedError as err:
                known = err
            self._routes[key] = known
        if isinstance(known, NotSupportedError):
            raise NotSupportedError(known.what, known.reason)
        return known

    def _resolve(self, capability: str, source: str) -> Route:
        src = self._idx(source)
        if self._g[src].holds_for_itself(capability):
            return Route(
                capability=capability,
                source=source,
                provider=source,
                path=[source],
                edges=[],
                cost_ns=0.0,
            )

        def weight(e: Edge) -> float:
            # non-routing edges are made unusable; a tiny epsilon prefers fewer hops on ties
            return e.cost_ns + 1e-6 if e.kind in ROUTING_KINDS else float("inf")

        paths = rx.dijkstra_shortest_paths(self._g, src, weight_fn=weight)
        lengths = rx.dijkstra_shortest_path_lengths(self._g, src, edge_cost_fn=weight)
        best: tuple[float, int] | None = None
        for target, length in lengths.items():
            if (
                length != float("inf")
                and self._g[target].holds(capability)
                and (best is None or length < best[0])
            ):
                best = (length, target)
        if best is None:
            raise NotSupportedError(
                f"'{capability}' from {source}",
                f"no layer reachable from {source} holds the capability",
            )
        nodes = list(paths[best[1]])
        edges = [self._cheapest_edge(a, b) for a, b in pairwise(nodes)]
        names = [self._g[i].layer.name for i in nodes]
        return Route(
            capability=capability,
            source=source,
            provider=names[-1],
            path=names,
            edges=edges,
            cost_ns=sum(e.cost_ns for e in edges),
        )

    def _cheapest_edge(self, a: int, b: int) -> Edge:
        cands = [e for e in self._g.get_all_edge_data(a, b) if e.kind in ROUTING_KINDS]
        best: Edge = min(cands, key=lambda e: e.cost_ns)
        return best

    def tcb(self, layer: str) -> list[str]:
        """Layers ``layer`` must trust: everything reachable along trust edges."""
        trust = rx.PyDiGraph()
        trust.add_nodes_from(list(range(len(self._g))))
        mapping = {i: n for n, i in enumerate(self._g.node_indices())}
        for a, b, e in self._g.weighted_edge_list():
            if e.kind == EdgeKind.TRUST:
                trust.add_edge(mapping[a], mapping[b], None)
        reach = rx.descendants(trust, mapping[self._idx(layer)])
        inverse = {v: k for k, v in mapping.items()}
        return sorted(self._g[inverse[i]].layer.name for i in reach)

    def holders(self, capability: str) -> list[str]:
        return [self._g[i].layer.name for i in self._index.values() if self._g[i].holds(capability)]

    # -- export ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [self._g[i].model_dump(mode="json") for i in self._index.values()],
            "edges": [e.model_dump(mode="json") for e in self._g.edges()],
        }

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def to_dot(self, title: str = "layers") -> str:
        styles = {
            EdgeKind.CALL: "solid",
            EdgeKind.WORLD_SWITCH: "bold",
            EdgeKind.MEMORY_CONTROL: "dashed",
            EdgeKind.TRUST: "dotted",
        }
        lines = [f'digraph "{title}" {{', "  rankdir=TB;", "  node [shape=box, style=rounded];"]
        for i in self._index.values():
            n: LayerNode = self._g[i]
            label = f"{n.layer.name}\\n{n.layer.vendor_name}"
            lines.append(f'  "{n.layer.name}" [label="{label}"];')
        for e in self._g.edges():
            cost = f" ({e.cost_ns / 1000:.1f} us)" if e.cost_ns else ""
            lines.append(
                f'  "{e.source}" -> "{e.dest}" [label="{e.mechanism}{cost}", '
                f"style={styles[e.kind]}];"
            )
        lines.append("}")
        return "\n".join(lines)
