"""The contract every backend keeps, as a pytest suite a backend's own tests inherit.

    from cocopart.testing import BackendContract

    class TestMyBackendContract(BackendContract):
        backend = "my-backend"            # an installed backend's name, or a Backend instance

Each test builds small guests (:attr:`BackendContract.configs`) and checks, through the public
API only: every operation of every kind from every guest layer returns a typed result and
raises nothing but ``CocopartError``; every capability is answered, and the answers agree
with the routes of the layer graph; ``plan`` gives exactly the events the run records; a
successful operation's trace agrees with its route; ``memory_view`` covers guest RAM with
merged runs; ``fork`` is independent; a refused operation changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any, ClassVar

from cocopart.backend import Backend
from cocopart.errors import NotSupportedError
from cocopart.executor import state_of
from cocopart.model import L1, PartitionConfig
from cocopart.ops import (
    Attest,
    Capability,
    ConfigureInterrupts,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    EndOfInterrupt,
    ExtendMeasurement,
    InjectInterrupt,
    Operation,
    OperationResult,
    RescindPages,
    SetAccess,
    Status,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.registry import load_backend

MiB = 1 << 20


def sample_operations(config: PartitionConfig) -> Iterator[Operation]:
    """One operation of every kind from every guest layer, in an order that exercises each
    (validate before access changes, share then unshare, a vCPU created then deleted)."""
    layers = (L1, *config.workloads)
    for i, layer in enumerate(layers):
        base = i * 4 * MiB
        own = {"start": base, "size": 2 * MiB}
        peer = config.workloads[-1]
        yield ValidatePages(layer=layer, range=own)
        yield SetAccess(layer=layer, target=peer, range=own, access="r")
        yield ConvertPages(layer=layer, range={"start": base + 2 * MiB, "size": MiB}, to="shared")
        yield ConvertPages(layer=layer, range={"start": base + 2 * MiB, "size": MiB}, to="private")
        yield RescindPages(layer=layer, range={"start": base + MiB, "size": MiB})
        target = layer if layer != L1 else config.workloads[0]
        yield CreateVcpu(layer=layer, target=target, vcpu=1)
        yield DeleteVcpu(layer=layer, target=target, vcpu=1)
        yield Attest(layer=layer, source="hardware", report_data=bytes(64))
        yield Attest(layer=layer, source="service", report_data=bytes(range(64)))
        yield ExtendMeasurement(layer=layer, index=2, digest=bytes(48))
        yield InjectInterrupt(layer="host", target=config.workloads[0], vcpu=0, vector=0x30)
        yield EndOfInterrupt(layer=config.workloads[0], target=config.workloads[0], vcpu=0)
        yield ConfigureInterrupts(layer=L1, mode=config.interrupt_mode)


class BackendContract:
    """Inherit it in a class named ``Test...`` and set :attr:`backend`."""

    #: The backend under test: an installed backend's name or a Backend instance.
    backend: ClassVar[str | Backend]
    #: Guests the contract is checked on (small: the suite runs in seconds).
    configs: ClassVar[list[dict[str, Any]]] = [
        {"memory": "32MiB", "vcpus": 2, "workload_layers": 2},
        {"memory": "32MiB", "vcpus": 2, "workload_layers": 3, "strategy": "optimal"},
    ]

    # -- helpers ---------------------------------------------------------------------------
    def make_backend(self) -> Backend:
        b = self.backend
        return load_backend(b) if isinstance(b, str) else b

    def guests(self) -> Iterator[Partition]:
        for cfg in self.configs:
            yield Partition(cfg, self.make_backend())

    # -- the contract ----------------------------------------------------------------------
    def test_every_capability_is_answered_and_agrees_with_the_graph(self) -> None:
        b = self.make_backend()
        for cfg in self.configs:
            config = PartitionConfig.model_validate(cfg)
            matrix, graph = b.capabilities(config), b.graph(config)
            for cap in Capability:
                answer = matrix.get(cap.value)
                assert answer is not None, f"{b.name} does not answer '{cap.value}'"
                assert answer.mechanism if answer.supported else answer.reason, (
                    f"{b.name}: '{cap.value}' needs a mechanism or a reason: {answer}"
                )
                names = (
                    [f"{cap.value}:{w}" for w in config.workloads]
                    if cap is Capability.SET_ACCESS
                    else [cap.value]
                )
                routed = any(
                    _routes(graph, n, source) for n in names for source in config.workloads
                )
                assert answer.supported == routed, (
                    f"{b.name}: capability '{cap.value}' says {answer.supported}, the layer "
                    f"graph {'routes' if routed else 'does not route'} it"
                )

    def test_every_operation_returns_a_typed_result_and_its_plan(self) -> None:
        for p in self.guests():
            for op in sample_operations(p.config):
                planned = p.plan(op)
                mark = p.trace.mark()
                r = p.run(op)
                assert isinstance(r, OperationResult) and isinstance(r.status, Status)
                assert r.status is not Status.OK or "route_mismatch" not in r.data, r.data
                if r.status is Status.NOT_SUPPORTED:
                    assert r.reason, f"{op.describe()}: not supported without a reason"
                if r.status is Status.ERROR:
                    assert r.error is not None and r.error.message, op.describe()
                ran = [
                    (e.kind, e.issuer, e.mnemonic, e.target, e.result, e.count)
                    for e in p.trace.since(mark).events
                ]
                plan = [
                    (e.kind, e.issuer, e.mnemonic, e.target, e.result, e.count)
                    for e in planned.events
                ]
                assert plan == ran, f"{op.describe()}: plan and run differ"

    def test_memory_view_covers_ram_with_merged_runs(self) -> None:
        for p in self.guests():
            p.run(ValidatePages(layer=p.config.workloads[0], range={"start": 0, "size": MiB}))
            view = p.memory_view()
            assert view[0].start == 0 and view[-1].end == p.config.memory
            for a, b in pairwise(view):
                assert a.end == b.start, "memory_view has a gap or an overlap"
                assert (state_of(a), a.owner, a.assigned) != (state_of(b), b.owner, b.assigned), (
                    f"adjacent runs at {b.start:#x} are equal: not merged"
                )

    def test_fork_is_independent(self) -> None:
        for p in self.guests():
            before = p.memory_view()
            other = p.machine.fork()
            op = ValidatePages(layer=p.config.workloads[0], range={"start": 0, "size": MiB})
            other.execute(op)
            assert p.memory_view() == before, "executing on a fork changed the original"
            assert p.trace.total_primitives == 0

    def test_a_refused_operation_changes_nothing(self) -> None:
        b = self.make_backend()
        cfg = {**self.configs[0], "memory_map": {"l2.1": [{"start": 0, "size": "4MiB"}]}}
        p = Partition(cfg, b)
        before = p.memory_view()
        mark = p.trace.mark()
        r = p.run(ValidatePages(layer=p.config.workloads[-1], range={"start": 0, "size": MiB}))
        assert r.status is Status.ERROR and r.error is not None, r
        assert r.error.vendor == "cocopart-authority"
        assert p.memory_view() == before and not p.trace.since(mark).events


def _routes(graph: Any, capability: str, source: str) -> bool:
    try:
        graph.route(capability, source)
    except NotSupportedError:
        return False
    return True


__all__ = ["BackendContract", "sample_operations"]
