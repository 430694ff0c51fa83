"""The vendor-neutral interrupt API on both backends through Partition: operations and their
validation, the delivery record, priority order and EOI, capability answers, the per-mode
traces (primitives and world switches per delivery), and the batch API."""

from __future__ import annotations

from typing import Any

import pytest

from cocopart.errors import InputError
from cocopart.interrupts import REASON_COALESCED, DeliveryStatus
from cocopart.ops import (
    OPERATION_TYPES,
    ConfigureInterrupts,
    CreateVcpu,
    EndOfInterrupt,
    InjectInterrupt,
    Status,
    parse_operation,
)
from cocopart.partition import Partition

BACKENDS = ("sev-snp", "tdx")
SUPPORTED = [
    (b, m)
    for b in BACKENDS
    for m in ("direct", "restricted", "alternate", "secure-avic")
    if (b, m) != ("tdx", "direct")
]


def guest(backend: str, mode: str = "restricted", vcpus: int = 2, **kw: Any) -> Partition:
    p = Partition({"memory": "64MiB", "vcpus": vcpus, "interrupt_mode": mode, **kw}, backend)
    for w in [layer.name for layer in p.layers if layer.name.startswith("l2.")]:
        for v in range(1, vcpus):
            assert p.run(CreateVcpu(layer=w, target=w, vcpu=v)).ok
    return p


def host(vcpu: int, vector: int, target: str = "l2.1") -> InjectInterrupt:
    return InjectInterrupt(layer="host", target=target, vcpu=vcpu, vector=vector)


def delivered(r: Any) -> list[int]:
    return [d["vector"] for d in r.data["deliveries"]]


def test_vectors_are_validated() -> None:
    # bad input is an InputError (a CocopartError), never pydantic's ValidationError (issue 16)
    for bad in (-1, 256, 15, 0):
        with pytest.raises(InputError):
            InjectInterrupt(vcpu=0, vector=bad)
    assert InjectInterrupt(vcpu=0, vector=16).vector == 16
    with pytest.raises(InputError):
        EndOfInterrupt(vcpu=512)


def test_eoi_is_an_operation_of_the_union() -> None:
    op = parse_operation({"op": "eoi", "vcpu": 1, "target": "l2.2", "layer": "l2.2"})
    assert isinstance(op, EndOfInterrupt) and op.capability.value == "eoi"
    assert EndOfInterrupt in OPERATION_TYPES


@pytest.mark.parametrize("backend", BACKENDS)
def test_capability_answers(backend: str) -> None:
    caps = guest(backend).capabilities()
    for key in ("inject-interrupt", "eoi", "configure-interrupts"):
        assert caps[key].supported and caps[key].mechanism
    for mode in (
        "host-direct",
        "privileged-doorbell",
        "privileged-emulated",
        "hardware-virtualized",
    ):
        ans = caps[f"interrupt-mode:{mode}"]
        assert (ans.supported and ans.mechanism) or (not ans.supported and ans.reason)
    assert caps["interrupt-mode:host-direct"].supported == (backend == "sev-snp")


@pytest.mark.parametrize(("backend", "mode"), SUPPORTED)
def test_delivery_record_priority_order_and_eoi(backend: str, mode: str) -> None:
    p = guest(backend, mode)
    r = p.run(host(1, 0x40))
    d = r.data["delivery"]
    assert d["status"] == "delivered" and (d["layer"], d["vcpu"], d["vector"]) == ("l2.1", 1, 0x40)
    assert d["mechanism"] and d["id"]
    r = p.run(host(1, 0x30))  # lower class than the one in service: pending
    assert r.data["delivery"]["status"] == "pending" and delivered(r) == []
    r = p.run(host(1, 0x30))  # already pending: coalesced
    assert r.data["delivery"]["status"] == "dropped"
    assert r.data["delivery"]["reason"] == REASON_COALESCED
    assert delivered(p.run(host(1, 0x55))) == [0x55]  # higher class nests
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.data["eoi"]["vector"] == 0x55 and delivered(r) == []  # 0x40 still blocks 0x30
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.data["eoi"]["vector"] == 0x40 and delivered(r) == [0x30]
    assert p.run(EndOfInterrupt(vcpu=1)).data["eoi"]["vector"] == 0x30
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.data["eoi"]["vector"] is None  # nothing in service: ignored
    ledger = p.machine.interrupts.ledger  # type: ignore[attr-defined]
    assert [x.vector for x in ledger.log] == [0x40, 0x55, 0x30] and not ledger.pending


@pytest.mark.parametrize("backend", BACKENDS)
def test_who_may_raise_configure_and_eoi(backend: str) -> None:
    p = guest(backend, workload_layers=2)
    assert (
        p.run(InjectInterrupt(layer="l2.2", target="l2.1", vcpu=0, vector=0x40)).status
        is Status.NOT_SUPPORTED
    )  # IPIs stay inside a layer
    assert (
        p.run(InjectInterrupt(layer="l1", target="l2.1", vcpu=0, vector=0x40)).status
        is Status.NOT_SUPPORTED
    )
    assert (
        p.run(InjectInterrupt(layer="host", target="vtpm", vcpu=0, vector=0x40)).status
        is Status.NOT_SUPPORTED
    )
    assert (
        p.run(ConfigureInterrupts(layer="host", mode="restricted")).status is Status.NOT_SUPPORTED
    )
    assert p.run(EndOfInterrupt(layer="l2.2", target="l2.1", vcpu=0)).status is Status.NOT_SUPPORTED
    r = p.run(InjectInterrupt(layer="host", target="l1", vcpu=1, vector=0x60))
    assert r.data["delivery"]["status"] == "delivered" and r.data["delivery"]["layer"] == "l1"


#: World switches of one host interrupt delivered to a running workload vCPU, and of its
#: EOI, per backend and mode (the cost table in docs/interrupts.md).
SWITCHES = {
    ("sev-snp", "direct"): (2, 2),
    ("sev-snp", "restricted"): (2, 0),
    ("sev-snp", "alternate"): (3, 0),
    ("sev-snp", "secure-avic"): (2, 0),
    ("tdx", "restricted"): (2, 2),
    ("tdx", "alternate"): (2, 0),
    ("tdx", "secure-avic"): (2, 0),
}


@pytest.mark.parametrize(("backend", "mode"), SUPPORTED)
def test_trace_shows_the_switches_of_each_delivery(backend: str, mode: str) -> None:
    p = guest(backend, mode)
    r = p.run(host(0, 0x40))
    e = p.run(EndOfInterrupt(vcpu=0))
    assert (r.world_switches, e.world_switches) == SWITCHES[(backend, mode)]
    assert r.primitives > 0 and r.estimated_ns > 0
    assert p.costs.unknown(p.trace) == set()


@pytest.mark.parametrize(("backend", "mode"), SUPPORTED)
def test_inject_many_equals_one_by_one(backend: str, mode: str) -> None:
    items = [("l2.1", v % 2, 0x20 + (v * 7) % 200) for v in range(60)]
    batch, single = guest(backend, mode), guest(backend, mode)
    out = batch.inject_many(items)
    for layer, vcpu, vector in items:
        assert single.run(host(vcpu, vector, layer)).data["delivery"]["status"] == "delivered"
        single.run(EndOfInterrupt(layer=layer, target=layer, vcpu=vcpu))
    assert out.injected == out.delivered == 60 and out.repeated_cycles > 50
    for a, b in (
        (batch.trace.primitives, single.trace.primitives),
        (batch.trace.switches, single.trace.switches),
    ):
        assert a == b
    mb, ms = batch.machine.interrupts, single.machine.interrupts  # type: ignore[attr-defined]
    assert {k: (v.irr, v.isr) for k, v in mb.apics.items()} == {
        k: (v.irr, v.isr) for k, v in ms.apics.items()
    }
    assert mb.ledger.delivered_count == ms.ledger.delivered_count == 60


def test_inject_many_counts_refusals_without_running_them() -> None:
    p = guest("tdx", "direct")
    out = p.inject_many([("l2.1", 0, 0x40)] * 1000)
    assert out.dropped == 1000 and out.faithful_cycles == 1 and out.delivered == 0


def test_delivery_status_values() -> None:
    assert [s.value for s in DeliveryStatus] == ["delivered", "pending", "dropped"]


def test_interrupt_modes_have_neutral_names_and_accept_the_old_ones() -> None:
    """Issue 12: the vocabulary is vendor-neutral; AMD's feature names stay accepted."""
    from cocopart.model import InterruptMode, PartitionConfig

    assert [m.value for m in InterruptMode] == [
        "host-direct",
        "privileged-doorbell",
        "privileged-emulated",
        "hardware-virtualized",
    ]
    for old, new in (
        ("direct", "host-direct"),
        ("restricted", "privileged-doorbell"),
        ("alternate", "privileged-emulated"),
        ("secure-avic", "hardware-virtualized"),
    ):
        assert PartitionConfig(interrupt_mode=old).interrupt_mode.value == new
        assert ConfigureInterrupts(layer="l1", mode=old).mode.value == new
    with pytest.raises(InputError):
        PartitionConfig(interrupt_mode="teleport")
