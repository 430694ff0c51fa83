"""The TDX layer graph, capabilities and routing (ARCHITECTURE.md; tdx.md §2.4, §7.4)."""

from __future__ import annotations

import pytest
from cocopart_tdx.backend import L1_CAPABILITIES, TdxBackend

from cocopart.errors import NotSupportedError
from cocopart.layers import EdgeKind
from cocopart.model import PartitionConfig
from cocopart.ops import Attest, CreateVcpu, ValidatePages

from .tdx_helpers import MIB, guest, rng


def test_layers_and_vendor_names() -> None:
    p = guest(16 * MIB, layers=3)
    names = [(l.name, l.vendor_name, l.level) for l in p.layers]
    assert names[:3] == [
        ("firmware", "TDX module", None),
        ("host", "host VMM", None),
        ("l1", "L1 VMM", 0),
    ]
    assert names[3:6] == [("l2.1", "L2 VM 1", 1), ("l2.2", "L2 VM 2", 2), ("l2.3", "L2 VM 3", 3)]
    assert names[6][0] == "vtpm"


def test_l1_holds_everything_an_l2_needs_and_the_module_nothing() -> None:
    g = guest(16 * MIB).graph  # module 1.5, a vTPM
    assert sorted(g.node("l1").capabilities) == sorted(
        c for c in L1_CAPABILITIES if c != "rescind"
    )  # no TDG.MEM.PAGE.RELEASE on 1.5
    assert g.node("firmware").capabilities == []
    assert g.node("host").capabilities == ["convert", "inject-interrupt"]
    for cap in (
        "validate",
        "attest-service",
        "set-access:l2.1",
        "create-vcpu",
        "extend-measurement",
        "configure-interrupts",
    ):
        route = g.route(cap, "l2.1")
        assert route.provider == "l1" and route.edges[0].mechanism == "TDCALL->L2 exit (77)"
    convert = g.route("convert", "l2.1")
    assert convert.path == ["l2.1", "l1", "host"] and convert.edges[1].mechanism == "TDG.VP.VMCALL"


def test_only_l1_attests_with_the_hardware_an_l2_has_no_route() -> None:
    """attest-hardware@self: only L1 may call TDG.MR.REPORT (tdx.md §7.4), so L1 is no
    provider for its L2s: the graph and the capability matrix agree (issue 12)."""
    g = guest(16 * MIB).graph
    assert g.route("attest-hardware", "l1").direct
    with pytest.raises(NotSupportedError):
        g.route("attest-hardware", "l2.1")
    assert "rescind" in guest(16 * MIB, module="2.0").graph.node("l1").capabilities


def test_enable_tdvmcall_adds_the_direct_l2_to_host_call() -> None:
    plain = guest(16 * MIB).graph
    assert not [e for e in plain.edges(EdgeKind.CALL) if e.source == "l2.1"]
    direct = guest(16 * MIB, enable_tdvmcall=True).graph
    assert direct.route("convert", "l2.1").path == ["l2.1", "host"]


def test_world_switch_memory_control_and_trust_edges() -> None:
    g = guest(16 * MIB, layers=2).graph
    switches = {(e.source, e.dest, e.mechanism) for e in g.edges(EdgeKind.WORLD_SWITCH)}
    assert ("l2.2", "l1", "TDCALL->L2 exit (77)") in switches
    assert ("l1", "l2.2", "TDG.VP.ENTER") in switches
    mem = {(e.source, e.dest, e.mechanism) for e in g.edges(EdgeKind.MEMORY_CONTROL)}
    assert mem == {("l1", "l2.1", "TDG.MEM.PAGE.ATTR.WR"), ("l1", "l2.2", "TDG.MEM.PAGE.ATTR.WR")}
    assert g.tcb("l2.1") == ["firmware", "l1", "vtpm"]
    assert g.tcb("l1") == ["firmware"]
    assert "host" not in g.tcb("l2.2")


def test_routes_reported_with_results() -> None:
    p = guest(16 * MIB)
    assert (
        p.run(ValidatePages(range=rng(0, 2 * MIB))).data["route"]
        == "l2.1 --TDCALL->L2 exit (77)--> l1"
    )
    assert p.run(Attest(report_data=None)).data["route"].endswith("--> l1")


def test_capabilities_answer_with_reasons() -> None:
    caps = TdxBackend().capabilities(PartitionConfig())
    assert caps["validate"].supported and "TDG.MEM.PAGE.ACCEPT" in caps["validate"].mechanism
    for name in ("rescind", "attest-hardware", "interrupt-mode:host-direct", "page-size:1G"):
        assert not caps[name].supported and caps[name].reason
    for name in (
        "inject-interrupt",
        "eoi",
        "configure-interrupts",
        "interrupt-mode:privileged-doorbell",
    ):
        assert caps[name].supported and caps[name].mechanism
    later = TdxBackend().capabilities(PartitionConfig(backend_options={"module": "2.0"}))
    assert later["rescind"].supported and later["page-size:1G"].supported


def test_direct_primitives() -> None:
    b, cfg = TdxBackend(), PartitionConfig()
    assert b.direct_primitives(cfg, "l2.1") == []
    assert b.direct_primitives(
        PartitionConfig(backend_options={"enable_tdvmcall": True}), "l2.1"
    ) == ["TDG.VP.VMCALL"]
    assert "TDG.MEM.PAGE.ACCEPT" in b.direct_primitives(cfg, "l1")
    assert "TDH.MEM.PAGE.AUG" in b.direct_primitives(cfg, "host")


def test_plan_does_not_change_the_guest() -> None:
    p = guest(16 * MIB, vcpus=2, host_mapping="2M")
    plan = p.plan(ValidatePages(range=rng(0, 4 * MIB)))
    assert plan.primitives > 0 and plan.world_switches == 2 + 2 * 2
    assert p.trace.total_primitives == 0
    assert not p.memory_view()[0].validated
    assert p.plan(CreateVcpu(vcpu=1)).primitives > 0 and len(p.vcpus()) == 1


def test_every_mnemonic_in_a_trace_has_a_cost() -> None:
    p = guest(16 * MIB, vcpus=2)
    p.run(ValidatePages(range=rng(0, 4 * MIB)))
    p.run(CreateVcpu(vcpu=1))
    p.run(Attest(report_data=None))
    assert p.costs.unknown(p.trace) == set()
    for row in list(p.costs.primitives.values()) + list(p.costs.switches.values()):
        assert row.source
