"""Issue 14 point 9: interrupts into an L2 use TDX's own mechanisms — the L2 VMCS VM-entry
interruption-information field or virtual-interrupt delivery; no posted-interrupt processing
and no IPI virtualization for an L2; a post to L1 forces the running L2 out only if it is
deliverable (MOD 1.5 td_l2_interrupt.c ``handle_l2_posted_interrupt``)."""

from __future__ import annotations

from cocopart_tdx import interrupts as ti
from cocopart_tdx import metadata as md
from cocopart_tdx.status import TdxStatus
from cocopart_tdx.vp_enter import ENTER_GUEST_STATE_SIZE, EnterGuestState

from cocopart.ops import CreateVcpu, EndOfInterrupt, InjectInterrupt
from cocopart.partition import Partition

from .tdx_helpers import machine, module

EXIT = ("l2.1", "l1", "L2->L1 exit")


def td(mode: str) -> Partition:
    p = Partition(
        {"memory": "64MiB", "vcpus": 2, "workload_layers": 1, "interrupt_mode": mode}, "tdx"
    )
    assert p.run(CreateVcpu(vcpu=1)).ok
    return p


def test_rule_l2_icr_write_exits_as_wrmsr() -> None:
    """MOD td_l2_vmcs_fields_lookup.c: the L2 tertiary controls' L1 write mask is 0xE, so
    IPI virtualization (bit 4) is never on for an L2; its ICR write (WRMSR 0x830) exits to L1
    as WRMSR (32) — with virtual-interrupt delivery (secure-avic) too, not APIC_WRITE (56)."""
    p = td("secure-avic")
    mod = module(p)
    tert = md.l2_vmcs_field(1, 0x2034)
    assert mod.vp_wr(0, 0, tert, 1 << 4, 1 << 4).status == TdxStatus.METADATA_FIELD_VALUE_NOT_VALID
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="l2.1", target="l2.1", vcpu=1, vector=0x45))
    assert r.ok
    d = p.trace.since(mark)
    exits = {k.target for k in d.primitives if k.mnemonic == "L2.EXIT"}
    assert "WRMSR(ICR)" in exits and not any("APIC_WRITE" in t for t in exits)
    rec = machine(p).platform.l2_vcpus[(1, 0)]
    state = EnterGuestState.decode(p.machine.memory.read(rec.context_gpa, ENTER_GUEST_STATE_SIZE))
    assert state.gprs["rcx"] == ti.X2APIC_ICR_MSR
    assert ti.RULE_L2_ICR_WRITE_EXITS_AS_WRMSR


def test_rule_posted_exit_only_if_deliverable_low_vector_leaves_the_l2_running() -> None:
    """The module raises L1's RVI only for posted vectors >= 31: a post of 0x18 leaves the
    running L2 where it is (the module resumes it); the vector waits in L1's vIRR and L1
    takes it with the next deliverable interrupt."""
    p = td("restricted")
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x18))
    assert r.data["delivery"]["status"] == "pending"
    d = p.trace.since(mark)
    assert d.switches.get(EXIT, 0) == 0
    assert p.trace.count("L2.POSTED_INTERRUPT", issuer="firmware", result="L2 resumed") == 1
    assert module(p).running_vm(1) == 1
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x40))
    assert r.data["delivery"]["status"] == "delivered"
    r = p.run(EndOfInterrupt(vcpu=1))
    assert [x["vector"] for x in r.data["deliveries"]] == [0x18]
    assert ti.l2_posted_interrupt_exits(0, 0x18, 0) == (0, False)
    assert ti.l2_posted_interrupt_exits(0, 31, 0) == (31, True)
    assert ti.RULE_POSTED_EXIT_ONLY_IF_DELIVERABLE


def test_rule_posted_exit_only_if_deliverable_against_l1_ppr() -> None:
    """RVI[7:4] > PPR[7:4]: with L1's TPR at 0x80 a post of 0x40 does not force the L2 out;
    one of 0x90 does, and L1's handler then takes both from its vIRR."""
    p = td("restricted")
    m = machine(p)
    m.interrupts.apic("l1", 1).tpr = 0x80
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x40))
    assert r.data["delivery"]["status"] == "pending"
    assert p.trace.since(mark).switches.get(EXIT, 0) == 0
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x90))
    assert r.data["delivery"]["status"] == "delivered"
    assert p.trace.since(mark).switches[EXIT] == 1
    r = p.run(EndOfInterrupt(vcpu=1))
    assert [x["vector"] for x in r.data["deliveries"]] == [0x40]


def test_rule_interrupt_capabilities_name_tdx_mechanisms() -> None:
    """Capability answers name the two TDX mechanisms and say that alternate is a software
    protocol no TDX stack implements."""
    caps = td("restricted").capabilities()
    assert "VM-entry interruption-information" in (
        caps["interrupt-mode:privileged-doorbell"].mechanism or ""
    )
    assert "virtual-interrupt delivery" in (
        caps["interrupt-mode:hardware-virtualized"].mechanism or ""
    )
    alt = caps["interrupt-mode:privileged-emulated"].mechanism or ""
    assert "software protocol" in alt and "no TDX stack" in alt
    inj = caps["inject-interrupt"].mechanism or ""
    assert "no posted-interrupt processing" in inj and "WRMSR (32)" in inj
