"""The route is resolved before an operation runs and the trace is checked against it
(issue 12, ARCHITECTURE.md idea 2: "a backend cannot silently contradict its own graph")."""

from __future__ import annotations

from typing import ClassVar

import pytest
from fake_backend import FakeBackend, FakeMachine, FakeTransport

from cocopart import Partition
from cocopart.backend import Machine
from cocopart.errors import InternalError
from cocopart.model import MIB, GpaRange, PartitionConfig
from cocopart.ops import ValidatePages
from cocopart.protocol.call import Registers
from cocopart.trace import CostTable, Trace


class SilentTransport(FakeTransport):
    """Carries the call but records no world switch: it contradicts the graph's
    ``l2.1 --FAKE.SWITCH--> l1`` route (the toy backend of issue 12 did this)."""

    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        return None


class LiarBackend(FakeBackend):
    name: ClassVar[str] = "liar"

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable) -> Machine:
        m = FakeMachine(self, config, trace, self.graph(config), costs)
        m.transport = SilentTransport(m.service, m.memory, trace)
        m.client.transport = m.transport
        return m


CONFIG = {"memory": 64 * MIB, "vcpus": 2, "workload_layers": 2}
OP = ValidatePages(layer="l2.1", range=GpaRange.of(0, 4 * MIB))


def test_route_is_checked_a_trace_that_contradicts_its_route_is_caught() -> None:
    p = Partition(CONFIG, LiarBackend())
    p.route_check = "report"
    r = p.run(OP)
    assert r.ok and r.world_switches == 0
    assert "FAKE.SWITCH" in r.data["route_mismatch"]
    assert "l2.1 --FAKE.SWITCH--> l1" in r.data["route_mismatch"]
    strict = Partition(CONFIG, LiarBackend())
    strict.route_check = "raise"
    with pytest.raises(InternalError, match="route"):
        strict.run(OP)


def test_route_is_checked_an_honest_backend_passes() -> None:
    p = Partition(CONFIG, FakeBackend())
    p.route_check = "raise"
    r = p.run(OP)
    assert r.ok and r.world_switches == 2 and "route_mismatch" not in r.data
    assert r.data["route"] == "l2.1 --FAKE.SWITCH--> l1"


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_route_is_checked_on_both_real_backends(backend: str) -> None:
    """Every successful operation of a guest's life agrees with its route (the suite runs
    with COCOPART_ROUTE_CHECK=raise, so this also guards every other test)."""
    p = Partition(CONFIG, backend)
    p.route_check = "raise"
    for op in (OP, ValidatePages(layer="l2.2", range=GpaRange.of(32 * MIB, 2 * MIB))):
        r = p.run(op)
        assert r.ok and "route_mismatch" not in r.data
