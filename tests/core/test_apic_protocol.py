"""The APIC protocol and Alternate Injection registration, as seed 001 describes it, on the
tests-only fake backend (the SNP backend runs the same handlers over its VMSAs)."""

from __future__ import annotations

import pytest
from fake_backend import FakeBackend

from cocopart.apic import EOI, IRR0, ISR0, PPR, SELF_IPI, TPR, LocalApic
from cocopart.partition import Partition
from cocopart.protocol.ids import ApicCall, ProtocolId, ResultCode
from cocopart.service.apic import CONFIGURE_DEREGISTER, CONFIGURE_REFRESH, CONFIGURE_REGISTER

VCPUS = 4


@pytest.fixture
def guest() -> Partition:
    return Partition(
        {"memory": "64MiB", "vcpus": VCPUS, "interrupt_mode": "alternate"}, FakeBackend()
    )


def apic_call(p: Partition, vcpu: int, call: int, rcx: int = 0, rdx: int = 0) -> tuple[int, int]:
    out = p.machine.client.call("l2.1", vcpu, ProtocolId.APIC, call, rcx, rdx)
    return out.code, out.regs.rdx


def configure(p: Partition, vcpu: int, action: int) -> int:
    return apic_call(p, vcpu, ApicCall.CONFIGURE, action)[0]


def bits(p: Partition) -> list[bool]:
    return [p.machine.feature_bits[("l2.1", v)] for v in range(VCPUS)]


def test_seed_handoff_os_registered_keeps_injection_enabled(guest: Partition) -> None:
    emu = guest.machine.service.apic
    assert emu.count == 1  # firmware registered at boot
    assert configure(guest, 0, CONFIGURE_REGISTER) == ResultCode.SUCCESS  # the OS registers
    assert configure(guest, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS  # EBS on the BSP
    for ap in range(1, VCPUS):
        assert configure(guest, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 1 and bits(guest) == [True] * VCPUS
    # then the OS deregisters on the BSP, and every AP refreshes: disabled everywhere
    assert configure(guest, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    for ap in range(1, VCPUS):
        assert configure(guest, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 0 and emu.disabled_for_good and bits(guest) == [False] * VCPUS
    # a new register fails: the protocol is gone for the vCPU, and disabled for good anyway
    assert configure(guest, 0, CONFIGURE_REGISTER) == ResultCode.UNSUPPORTED_PROTOCOL


def test_seed_handoff_os_never_registers(guest: Partition) -> None:
    assert configure(guest, 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS  # firmware at EBS
    assert bits(guest) == [False] + [True] * (VCPUS - 1)
    # before its refresh an AP still has emulation, but registering again is refused
    assert configure(guest, 1, CONFIGURE_REGISTER) == ResultCode.APIC_CANNOT_REGISTER
    for ap in range(1, VCPUS):
        assert configure(guest, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
        assert not guest.machine.feature_bits[("l2.1", ap)]
    assert bits(guest) == [False] * VCPUS


def test_refresh_is_harmless_when_nothing_changed(guest: Partition) -> None:
    for ap in range(VCPUS):
        assert configure(guest, ap, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert bits(guest) == [True] * VCPUS and guest.machine.service.apic.count == 1


def test_deregister_at_zero_is_benign_and_bad_actions_refused(guest: Partition) -> None:
    assert configure(guest, 1, 0b11) == ResultCode.INVALID_PARAMETER
    assert configure(guest, 1, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    assert guest.machine.service.apic.count == 0 and not guest.machine.feature_bits[("l2.1", 1)]
    # vCPU 2 still emulates (it has not refreshed): deregistering at 0 is a benign no-op
    assert configure(guest, 2, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    assert guest.machine.service.apic.count == 0 and guest.machine.feature_bits[("l2.1", 2)]


def test_protocol_not_offered_without_emulation() -> None:
    p = Partition({"memory": "64MiB", "vcpus": 2}, FakeBackend())
    assert configure(p, 0, CONFIGURE_REGISTER) == ResultCode.UNSUPPORTED_PROTOCOL
    assert p.machine.client.query_protocol("l2.1", 0, ProtocolId.APIC) is None


def test_register_access_rules(guest: Partition) -> None:
    assert apic_call(guest, 0, ApicCall.QUERY_FEATURES)[0] == ResultCode.SUCCESS
    assert apic_call(guest, 0, ApicCall.WRITE_REGISTER, TPR, 0x20)[0] == ResultCode.SUCCESS
    assert apic_call(guest, 0, ApicCall.READ_REGISTER, TPR) == (ResultCode.SUCCESS, 0x20)
    assert apic_call(guest, 0, ApicCall.READ_REGISTER, EOI)[0] == ResultCode.INVALID_PARAMETER
    assert apic_call(guest, 0, ApicCall.WRITE_REGISTER, PPR, 1)[0] == ResultCode.INVALID_PARAMETER
    assert apic_call(guest, 0, ApicCall.READ_REGISTER, 0x899)[0] == ResultCode.INVALID_ADDRESS
    assert apic_call(guest, 0, ApicCall.WRITE_REGISTER, SELF_IPI, 0x41)[0] == ResultCode.SUCCESS
    assert apic_call(guest, 0, ApicCall.READ_REGISTER, IRR0 + 2)[1] == 1 << 1  # vector 0x41


def test_configure_vector(guest: Partition) -> None:
    assert (
        apic_call(guest, 0, ApicCall.CONFIGURE_VECTOR, 1 << 10)[0] == ResultCode.INVALID_PARAMETER
    )
    assert apic_call(guest, 0, ApicCall.CONFIGURE_VECTOR, 0x50)[0] == ResultCode.SUCCESS
    apic = guest.machine.service.apic.apics[("l2.1", 0)]
    assert not apic.accept(0x50) and apic.accept(0x51)
    assert apic_call(guest, 0, ApicCall.CONFIGURE_VECTOR, 0x50 | 1 << 8)[0] == ResultCode.SUCCESS
    assert apic.accept(0x50)


def test_local_apic_priority_and_eoi() -> None:
    a = LocalApic(apic_id=3)
    assert not a.accept(14) and not a.accept(256)
    for v in (0x31, 0x80, 0x45):
        assert a.accept(v)
    assert a.deliver() == 0x80
    assert a.deliverable() is None  # 0x45 and 0x31 are below the in-service class
    assert a.eoi() == 0x80
    assert [a.deliver(), a.deliver()] == [0x45, None]
    assert a.eoi() == 0x45 and a.deliver() == 0x31 and a.read(ISR0 + 1) == 1 << 17
    a.write(TPR, 0x40)
    a.eoi()
    a.accept(0x35)
    assert a.deliverable() is None and a.read(PPR) == 0x40
