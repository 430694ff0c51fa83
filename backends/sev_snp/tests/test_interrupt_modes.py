"""The four interrupt modes on SEV-SNP: the SEV_FEATURES bits of every VMSA, what the host may
inject in each, the SVSM's part, EOIs, IPIs, and which mode changes are legal (one test per
rule of cocopart_sev_snp.interrupt_modes / .interrupts)."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import interrupt_modes as im
from cocopart_sev_snp.interrupts import RULE_HANDOFF_LOSES_LOW_VECTORS, event_inj
from cocopart_sev_snp.vmsa import SevFeatures
from snp_helpers import guest, machine

from cocopart.ops import ConfigureInterrupts, CreateVcpu, EndOfInterrupt, InjectInterrupt, Status
from cocopart.partition import Partition

RI, AI, SAVIC = (
    int(SevFeatures.RESTRICTED_INJECTION),
    int(SevFeatures.ALTERNATE_INJECTION),
    int(SevFeatures.SECURE_AVIC),
)
BIT = {"direct": 0, "restricted": RI, "alternate": AI, "secure-avic": SAVIC}


def booted(mode: str, vcpus: int = 3, layers: int = 1) -> Partition:
    p = guest(vcpus=vcpus, interrupt_mode=mode, workload_layers=layers)
    for w in machine(p).workloads:
        for v in range(1, vcpus):
            assert p.run(CreateVcpu(layer=w, target=w, vcpu=v)).ok
    return p


def injection_bits(p: Partition) -> set[int]:
    return {f & (RI | AI | SAVIC) for f in machine(p).interrupts.vmsa_features().values()}


@pytest.mark.parametrize("mode", list(BIT))
def test_sev_features_of_every_vmsa_reflect_the_boot_mode(mode: str) -> None:
    p = booted(mode, layers=2)
    feats = machine(p).interrupts.vmsa_features()
    assert len(feats) == 6  # 2 layers x 3 vCPUs
    assert injection_bits(p) == {BIT[mode]}
    assert {f & 1 for f in feats.values()} == {1}  # SNPActive
    assert (im.MODE_BIT[im.RESTRICTED], im.MODE_BIT[im.ALTERNATE], im.MODE_BIT[im.SECURE_AVIC]) == (
        1 << 3,
        1 << 4,
        1 << 16,
    )


def test_event_inj_layout() -> None:
    assert event_inj(0x40) == 0x8000_0040


def test_direct_the_host_injects_the_vector_itself() -> None:
    p = booted("direct")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x33))
    assert p.trace.count("EVENTINJ", issuer="host", target="VMPL2", result="ok") == 1
    assert p.trace.count("EVENTINJ", result="#HV") == 0
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.world_switches == 2 and p.trace.count("#VC", target="MSR.EOI") == 1
    assert p.trace.count("VMGEXIT", target="MSR") == 1


def test_restricted_the_host_can_only_signal_hv_through_the_vmpl_doorbell() -> None:
    p = booted("restricted")
    m = machine(p)
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x33))
    assert r.data["delivery"]["status"] == "delivered"
    assert p.trace.count("EVENTINJ", issuer="host", result="ok") == 0  # never a plain vector
    assert p.trace.count("EVENTINJ", issuer="host", target="VMPL2", result="#HV") == 1
    db = m.interrupts.doorbells[("l2.1", 1)]
    assert db.vector == 0 and not db.no_further_signal  # the #HV handler took it
    assert db.no_eoi_required == 1  # nothing else pending: a lazy EOI is allowed
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.data["eoi"]["lazy"] and r.world_switches == 0


def test_restricted_explicit_eoi_when_another_interrupt_waits() -> None:
    p = booted("restricted")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x33))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x61))  # nested: no lazy EOI now
    r = p.run(EndOfInterrupt(vcpu=1))
    assert not r.data["eoi"]["lazy"] and r.data["eoi"]["vector"] == 0x61
    assert r.world_switches == 2


def test_alternate_the_svsm_holds_the_apic_and_injects() -> None:
    p = booted("alternate")
    m = machine(p)
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x33))
    assert m.interrupts.apics[("l2.1", 1)] is m.service.apic.apics[("l2.1", 1)]  # core state
    assert m.interrupts.apics[("l2.1", 1)].isr == 1 << 0x33
    assert p.trace.count("VMSA.EVENT_INJ", issuer="l1", target="VMPL2") == 1
    assert p.trace.count("EVENTINJ", issuer="host", target="VMPL2") == 0


def test_secure_avic_eoi_needs_no_exit_and_delivers_the_next() -> None:
    p = booted("secure-avic")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x53))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x33))
    r = p.run(EndOfInterrupt(vcpu=1))
    assert r.world_switches == 0 and [d["vector"] for d in r.data["deliveries"]] == [0x33]


@pytest.mark.parametrize("mode", list(BIT))
def test_ipis_reach_the_other_vcpu_of_the_layer(mode: str) -> None:
    p = booted(mode)
    r = p.run(InjectInterrupt(layer="l2.1", vcpu=2, vector=0x70))
    assert r.data["delivery"]["status"] == "delivered" and r.data["delivery"]["vcpu"] == 2
    r = p.run(InjectInterrupt(layer="l2.1", vcpu=0, vector=0x71))  # self-IPI
    assert r.data["delivery"]["status"] == "delivered"


def test_alternate_ipi_goes_through_the_svsm_and_hv_ipi() -> None:
    p = booted("alternate")
    p.run(InjectInterrupt(layer="l2.1", vcpu=2, vector=0x70))
    assert p.trace.count("HANDLE", target="APIC.WRITE_REGISTER") == 1
    assert p.trace.count("VMGEXIT", issuer="l1", target="HV_IPI") == 1


def test_the_svsm_takes_its_own_interrupts_through_its_doorbell_in_every_mode() -> None:
    for mode in BIT:
        p = booted(mode)
        r = p.run(InjectInterrupt(layer="host", target="l1", vcpu=1, vector=0x55))
        assert r.data["delivery"]["status"] == "delivered", mode
        assert p.trace.count("EVENTINJ", target="VMPL0", result="#HV") == 1
        assert machine(p).interrupts.current(1) == "l2.1"  # back in the workload
        eoi = p.run(EndOfInterrupt(layer="l1", target="l1", vcpu=1))
        assert eoi.data["eoi"]["vector"] is None  # its handler completed it


def test_rule_host_modes_switch_freely() -> None:
    p = booted("direct")
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="restricted"))
    assert r.ok and injection_bits(p) == {RI}
    assert p.trace.count("VMGEXIT", issuer="l1", target="CONFIGURE_INJECTION") == 3
    assert p.trace.count("VMGEXIT", issuer="l2.1", target="HV_DOORBELL_PAGE") == 3
    assert set(machine(p).interrupts.host_modes.values()) == {1}
    assert p.run(ConfigureInterrupts(layer="l1", mode="direct")).ok
    assert injection_bits(p) == {0}


def test_rule_alternate_not_reentered_and_left_at_count_zero() -> None:
    p = booted("alternate")
    m = machine(p)
    assert m.client.call("l2.1", 0, 3, 1, 0b10).ok  # the OS registers too: count 2
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="restricted"))
    assert r.status is Status.ERROR and "count 1" in (r.reason or "")
    assert m.interrupts.mode.value == "privileged-emulated" and injection_bits(p) == {AI}
    assert p.run(ConfigureInterrupts(layer="l2.1", mode="restricted")).ok
    assert injection_bits(p) == {RI}
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="alternate"))
    assert r.status is Status.ERROR and "re-entered" in (r.reason or "")


def test_rule_tcb_apic_only_from_boot() -> None:
    p = booted("restricted")
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="secure-avic"))
    assert r.status is Status.NOT_SUPPORTED and im.RULE_TCB_APIC_ONLY_FROM_BOOT in (r.reason or "")
    p = booted("secure-avic")
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x40))
    assert p.run(ConfigureInterrupts(layer="l2.1", mode="restricted")).ok
    assert p.trace.count("VMGEXIT", target="SECURE_AVIC") == 3  # each vCPU unregisters
    assert injection_bits(p) == {RI}
    r = p.run(EndOfInterrupt(vcpu=1))  # the in-service vector went to the host with its ISR
    assert r.data["eoi"]["vector"] == 0x40


def test_rule_guest_chooses_the_mode() -> None:
    r = booted("restricted").run(ConfigureInterrupts(layer="host", mode="direct"))
    assert r.status is Status.NOT_SUPPORTED


def test_required_hv_features() -> None:
    p = booted("direct")
    machine(p).host.options.hv_features &= ~int(g.HvFeature.RESTRICTED_INJECTION)
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="restricted"))
    assert r.status is Status.NOT_SUPPORTED and "bit 2" in (r.reason or "")


def test_rule_handoff_loses_low_vectors() -> None:
    p = booted("alternate")
    m = machine(p)
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x80))
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x18))  # pending below 0x80
    p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x45))  # pending too
    assert p.run(ConfigureInterrupts(layer="l2.1", mode="restricted")).ok
    assert [(d.vector, d.reason) for d in m.interrupts.ledger.lost] == [
        (0x18, RULE_HANDOFF_LOSES_LOW_VECTORS)
    ]
    r = p.run(EndOfInterrupt(vcpu=1))  # the host now holds 0x80 in service and 0x45 pending
    assert r.data["eoi"]["vector"] == 0x80
    assert [d["vector"] for d in r.data["deliveries"]] == [0x45]


def test_rule_no_vcpu_no_interrupt() -> None:
    p = guest(vcpus=2, interrupt_mode="restricted")
    r = p.run(InjectInterrupt(layer="host", vcpu=1, vector=0x40))  # vCPU 1 never created
    assert r.data["delivery"]["status"] == "dropped"
