"""L1 injecting into L2 VMs on TDX (tdx.md §5, §2.3, §2.4): through the VM-entry interruption
information field (TDG.VP.WR 0x4016) or the L2 virtual APIC; host interrupts only ever posted
to L1; TDX_PENDING_INTERRUPT when L1 has its own interrupt pending at TDG.VP.ENTER; and the
mode rules of cocopart_tdx.interrupts."""

from __future__ import annotations

import pytest
from cocopart_tdx import interrupts as ti
from cocopart_tdx import metadata as md
from cocopart_tdx.tdcall import VM_ENTRY_INTR_INFO
from cocopart_tdx.vp_enter import ENTER_GUEST_STATE_SIZE, EnterGuestState

from cocopart.model import InterruptMode
from cocopart.ops import ConfigureInterrupts, CreateVcpu, EndOfInterrupt, InjectInterrupt, Status
from cocopart.partition import Partition

from .tdx_helpers import machine, module


def td(mode: str, layers: int = 1, vcpus: int = 2) -> Partition:
    p = Partition(
        {"memory": "64MiB", "vcpus": vcpus, "workload_layers": layers, "interrupt_mode": mode},
        "tdx",
    )
    for w in machine(p).workloads:
        for v in range(1, vcpus):
            assert p.run(CreateVcpu(layer=w, target=w, vcpu=v)).ok
    return p


def test_vm_entry_interruption_info_field_ids_per_vm() -> None:
    assert md.l2_vmcs_field(1, VM_ENTRY_INTR_INFO) == 0x2420000200004016  # tdx.md §2.2
    assert md.l2_vmcs_field(2, VM_ENTRY_INTR_INFO) >> 48 == 0x2C20
    assert md.l2_vmcs_field(3, VM_ENTRY_INTR_INFO) >> 48 == 0x3420


@pytest.mark.parametrize("mode", ["restricted", "alternate"])
def test_l1_injects_through_the_vm_entry_field(mode: str) -> None:
    p = td(mode, layers=2)
    mod = module(p)
    r = p.run(InjectInterrupt(layer="host", target="l2.2", vcpu=1, vector=0x41))
    assert r.data["delivery"]["status"] == "delivered"
    assert p.trace.count("TDG.VP.WR", target="L2 VM 2") >= 1
    field = md.l2_vmcs_field(2, VM_ENTRY_INTR_INFO)
    value = mod.vp_md(1).values[field]
    assert value == 0x41  # written as 0x8000_0041; the entry injected it, clearing bit 31
    assert mod.running_vm(1) == 2


def test_host_interrupts_reach_l1_only() -> None:
    p = td("restricted")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x41))
    host_prims = {k for k in p.trace.primitives if k.issuer == "host"}
    assert {(k.mnemonic, k.target) for k in host_prims} == {("PI.POST", "l1"), ("PI.NOTIFY", "l1")}
    assert not any(k.source == "host" and k.dest.startswith("l2") for k in p.trace.switches)
    assert p.trace.count("L2.EXIT", issuer="l2.1", target="PENDING_INTERRUPT") == 1


def test_direct_is_not_supported_with_the_reason() -> None:
    p = td("restricted")
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="direct"))
    assert r.status is Status.NOT_SUPPORTED and r.reason == ti.RULE_NO_DIRECT
    p = td("direct")
    r = p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x41))
    assert r.status is Status.NOT_SUPPORTED and "never injects into an L2" in (r.reason or "")
    assert p.run(InjectInterrupt(layer="host", target="l1", vcpu=0, vector=0x41)).ok
    caps = p.capabilities()
    assert not caps["interrupt-mode:host-direct"].supported
    assert all(
        caps[f"interrupt-mode:{InterruptMode(m).value}"].supported
        for m in ("restricted", "alternate", "secure-avic")
    )


def test_secure_avic_uses_the_virtual_apic_page_and_rvi() -> None:
    p = td("secure-avic")
    m = machine(p)
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x61))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x35))  # below the one in service
    field = md.l2_vmcs_field(1, VM_ENTRY_INTR_INFO)
    assert module(p).vp_md(1).values.get(field, 0) == 0  # no event injection: the vAPIC
    assert m.interrupts.vapic_irr("l2.1", 1) == 1 << 0x35
    rec = m.platform.l2_vcpus[(1, 1)]
    state = EnterGuestState.decode(m.memory.read(rec.context_gpa, ENTER_GUEST_STATE_SIZE))
    assert state.interrupt_status == (0x61 << 8) | 0x35  # SVI 0x61, RVI 0x35
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.world_switches == 0 and [d["vector"] for d in r.data["deliveries"]] == [0x35]


def test_vp_enter_answers_pending_interrupt_and_l1_handles_its_own_first() -> None:
    p = td("restricted")
    m = machine(p)
    m.interrupts.during_entry += [("l1", 1, 0x50), ("l2.1", 1, 0x90)]
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x40))
    enters = [
        (e.target, e.result)
        for e in p.trace.since(mark).events
        if e.kind == "primitive" and e.mnemonic == "TDG.VP.ENTER"
    ]
    assert enters == [("L2 VM 1", "PENDING_INTERRUPT"), ("L2 VM 1", "ok")]
    assert m.interrupts.pending_interrupt_answers == 1
    log = [(d.layer, d.vector) for d in m.interrupts.ledger.log]
    assert log == [("l1", 0x50), ("l2.1", 0x90)]  # L1's own first, then the higher L2 one
    assert r.data["delivery"]["status"] == "pending"  # 0x40 waits below 0x90
    wr = [
        v
        for k, v in module(p).vp_md(1).values.items()
        if k == md.l2_vmcs_field(1, VM_ENTRY_INTR_INFO)
    ]
    assert wr == [0x90]
    r = p.run(EndOfInterrupt(vcpu=1))
    assert [d["vector"] for d in r.data["deliveries"]] == [0x40]


def test_l1_takes_its_own_interrupt_and_returns_to_the_l2() -> None:
    p = td("restricted")
    r = p.run(InjectInterrupt(layer="host", target="l1", vcpu=1, vector=0x50))
    assert r.data["delivery"]["status"] == "delivered" and r.world_switches == 2
    assert module(p).running_vm(1) == 1
    assert p.run(EndOfInterrupt(layer="l1", target="l1", vcpu=1)).data["eoi"]["vector"] is None


def test_restricted_eoi_is_a_wrmsr_exit_to_l1() -> None:
    p = td("restricted")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x41))
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.world_switches == 2 and p.trace.count("L2.EXIT", target="WRMSR(EOI)") == 1


def test_alternate_eoi_is_lazy_or_an_apic_protocol_call() -> None:
    p = td("alternate")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x41))
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.data["eoi"]["lazy"] and r.world_switches == 0
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x41))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x61))
    r = p.run(EndOfInterrupt(vcpu=1))
    assert not r.data["eoi"]["lazy"] and p.trace.count("HANDLE", target="APIC.WRITE_REGISTER")


def test_ipi_to_another_vcpu_goes_through_the_host() -> None:
    p = td("restricted")
    r = p.run(InjectInterrupt(layer="l2.1", vcpu=1, vector=0x70))
    assert r.data["delivery"]["status"] == "delivered"
    assert p.trace.count("#VE", target="MSR.ICR") == 1
    assert p.trace.switch_count("TD exit") == 1


def test_rule_alternate_not_reentered_and_l1_keeps_the_state() -> None:
    p = td("alternate")
    m = machine(p)
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x61))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x41))  # pending
    assert p.run(ConfigureInterrupts(layer="l2.1", mode="restricted")).ok
    assert m.service.apic.count == 0 and not m.service.apic.apics
    r = p.run(EndOfInterrupt(vcpu=1))
    assert [d["vector"] for d in r.data["deliveries"]] == [0x41]
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="alternate"))
    assert r.status is Status.ERROR and "re-entered" in (r.reason or "")


def test_rule_l1_moves_state_between_restricted_and_secure_avic() -> None:
    p = td("restricted")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x61))
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="secure-avic"))
    assert r.ok and p.trace.count("VAPIC.SYNC") == 2
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.world_switches == 0 and r.data["eoi"]["vector"] == 0x61
    assert p.run(ConfigureInterrupts(layer="l1", mode="restricted")).ok
