"""Seed 001's firmware/OS hand-off of Alternate Injection on the sev-snp backend, through the
real SVSM calls (SVSM_APIC_CONFIGURE over VMGEXIT(SNP_RUN_VMPL) from each vCPU), checking
the AlternateInjection SEV feature (bit 4) in the VMSA of every vCPU.

Seed 001 (J. Lange, 2024-06-03): firmware registers at boot (count 1); the OS may register
(0b10); firmware deregisters (0b01) at ExitBootServices on the BSP; every AP must refresh
(0b00) to align its VMSA with the VM-wide state; once the count reaches 0 Alternate
Injection is disabled for good and cannot be registered again.
"""

from __future__ import annotations

import pytest
from cocopart_sev_snp.vmsa import SevFeatures
from snp_helpers import guest, machine

from cocopart.ops import ConfigureInterrupts, CreateVcpu, InjectInterrupt, Status
from cocopart.partition import Partition
from cocopart.protocol.ids import ApicCall, ProtocolId, ResultCode
from cocopart.service.apic import CONFIGURE_DEREGISTER, CONFIGURE_REFRESH, CONFIGURE_REGISTER

VCPUS = 4
AI = int(SevFeatures.ALTERNATE_INJECTION)


@pytest.fixture
def os_booted() -> Partition:
    """Alternate Injection from boot; the OS (l2.1) has brought up every AP."""
    p = guest(vcpus=VCPUS, interrupt_mode="alternate")
    for ap in range(1, VCPUS):
        assert p.run(CreateVcpu(vcpu=ap)).ok
    return p


def configure(p: Partition, vcpu: int, action: int) -> int:
    out = machine(p).client.call("l2.1", vcpu, ProtocolId.APIC, ApicCall.CONFIGURE, action)
    return out.code


def ai_bits(p: Partition) -> list[bool]:
    """The AlternateInjection bit of every vCPU's VMSA, read from guest memory."""
    feats = machine(p).interrupts.vmsa_features()
    assert len(feats) == VCPUS
    return [bool(feats[("l2.1", v)] & AI) for v in range(VCPUS)]


def test_os_registered_keeps_injection_then_os_deregistration_disables_it(
    os_booted: Partition,
) -> None:
    p = os_booted
    emu = machine(p).service.apic
    assert emu.count == 1 and ai_bits(p) == [True] * VCPUS  # firmware registered at boot
    assert configure(p, 0, CONFIGURE_REGISTER) == ResultCode.SUCCESS  # the OS registers
    assert configure(p, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS  # firmware at EBS
    for ap in range(1, VCPUS):
        assert configure(p, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 1 and ai_bits(p) == [True] * VCPUS  # still enabled everywhere
    assert configure(p, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS  # the OS deregisters
    assert ai_bits(p) == [False] + [True] * (VCPUS - 1)
    for ap in range(1, VCPUS):
        assert configure(p, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 0 and emu.disabled_for_good and ai_bits(p) == [False] * VCPUS
    # a new register fails: the protocol is no longer offered to any vCPU
    assert configure(p, 0, CONFIGURE_REGISTER) == ResultCode.UNSUPPORTED_PROTOCOL
    assert machine(p).interrupts.mode.value == "host-direct"


def test_os_never_registers_each_ap_refresh_clears_its_bit(os_booted: Partition) -> None:
    p = os_booted
    assert configure(p, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS  # firmware at EBS
    assert ai_bits(p) == [False] + [True] * (VCPUS - 1)
    assert configure(p, 1, CONFIGURE_REGISTER) == ResultCode.APIC_CANNOT_REGISTER
    for ap in range(1, VCPUS):
        assert configure(p, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
        assert ai_bits(p)[ap] is False and ai_bits(p)[ap + 1 :] == [True] * (VCPUS - ap - 1)
    assert ai_bits(p) == [False] * VCPUS


def test_refresh_when_nothing_changed_is_harmless(os_booted: Partition) -> None:
    p = os_booted
    mark = p.trace.mark()
    for v in range(VCPUS):
        assert configure(p, v, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert ai_bits(p) == [True] * VCPUS and machine(p).service.apic.count == 1
    touched = [k for k in p.trace.since(mark).primitives if k.mnemonic == "VMSA.SEV_FEATURES"]
    assert touched == []  # no VMSA was touched


def test_each_stop_hands_the_apic_to_the_host(os_booted: Partition) -> None:
    """A vCPU whose emulation stops tells the host (VMGEXIT 0x8000_001C) and gets the host's
    injection from then on; new vCPUs after the count hit 0 start without the bit."""
    p = os_booted
    assert p.run(InjectInterrupt(layer="host", vcpu=2, vector=0x40)).ok  # in service at AP 2
    assert configure(p, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    assert p.trace.count("VMGEXIT", target="DISABLE_ALTERNATE_INJECTION") == 1
    r = p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x41))
    assert r.data["delivery"]["mechanism"].startswith("host event injection")
    r = p.run(InjectInterrupt(layer="host", vcpu=2, vector=0x52))  # still emulated by the SVSM
    assert r.data["delivery"]["mechanism"].startswith("SVSM alternate")
    assert configure(p, 2, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    host_apic = machine(p).interrupts.apics[("l2.1", 2)]
    assert host_apic.isr == (1 << 0x40) | (1 << 0x52)  # the ISR went to the host


def test_neutral_mode_change_runs_the_same_hand_off(os_booted: Partition) -> None:
    p = os_booted
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="restricted"))
    assert r.ok and ai_bits(p) == [False] * VCPUS
    assert p.trace.count("HANDLE", target="APIC.CONFIGURE") == VCPUS  # 1 deregister + 3 refresh
    r = p.run(ConfigureInterrupts(layer="l2.1", mode="alternate"))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.code == ResultCode.UNSUPPORTED_PROTOCOL
