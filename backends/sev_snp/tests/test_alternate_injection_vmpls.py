"""Issue 13 point 9: Alternate Injection with several workload VMPLs. The registration count
is VM-wide (seed 001, J. Lange 2024-05-23: "The registration status of Alternate Injection
applies to the entire guest"), so only a layer that controls every other workload layer
registers or deregisters (RULE_REGISTRATION_NEEDS_CONTROL, cocopart/service/apic.py, built on
RULE_GUEST_WIDE_NEEDS_CONTROL); a lower VMPL can no longer disable it for a higher one.
Refresh stays open to every layer."""

from __future__ import annotations

import pytest
from cocopart_sev_snp.vmsa import SevFeatures
from snp_helpers import guest, machine

from cocopart.authority import RULE_GUEST_WIDE_NEEDS_CONTROL
from cocopart.ops import CreateVcpu
from cocopart.partition import Partition
from cocopart.protocol.ids import ApicCall, ProtocolId, ResultCode
from cocopart.service.apic import CONFIGURE_DEREGISTER, CONFIGURE_REFRESH, CONFIGURE_REGISTER

AI = int(SevFeatures.ALTERNATE_INJECTION)


def _configure(p: Partition, layer: str, vcpu: int, action: int) -> int:
    return int(p.machine.client.call(layer, vcpu, ProtocolId.APIC, ApicCall.CONFIGURE, action).code)


def _bits(p: Partition) -> dict[tuple[str, int], bool]:
    return {k: bool(v & AI) for k, v in machine(p).interrupts.vmsa_features().items()}


@pytest.fixture
def two_vmpls() -> Partition:
    """l2.1 at VMPL1 controls l2.2 at VMPL2; both booted with Alternate Injection, 2 vCPUs
    each."""
    p = guest(vcpus=2, workload_layers=2, interrupt_mode="alternate")
    for layer in ("l2.1", "l2.2"):
        assert p.run(CreateVcpu(layer=layer, target=layer, vcpu=1)).ok
    return p


def test_rule_registration_needs_control_a_lower_vmpl_cannot_deregister(
    two_vmpls: Partition,
) -> None:
    p = two_vmpls
    emu = machine(p).service.apic
    before = _bits(p)
    assert all(before.values()) and emu.count == 1
    assert _configure(p, "l2.2", 0, CONFIGURE_DEREGISTER) == ResultCode.INVALID_REQUEST
    assert _configure(p, "l2.2", 0, CONFIGURE_REGISTER) == ResultCode.APIC_CANNOT_REGISTER
    refusal = machine(p).service.last_refusal
    assert refusal is not None and refusal.rule == RULE_GUEST_WIDE_NEEDS_CONTROL
    for v in (0, 1):
        assert _configure(p, "l2.2", v, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 1 and not emu.disabled_for_good and _bits(p) == before
    assert machine(p).interrupts.mode.value == "privileged-emulated"


def test_rule_registration_needs_control_the_controlling_vmpl_runs_the_handoff(
    two_vmpls: Partition,
) -> None:
    """The seed's hand-off from VMPL1 (the layer that controls the other): register, then
    firmware's and the OS's deregistration; every vCPU refreshes; disabled for good."""
    p = two_vmpls
    emu = machine(p).service.apic
    assert _configure(p, "l2.1", 0, CONFIGURE_REGISTER) == ResultCode.SUCCESS
    assert _configure(p, "l2.1", 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    assert emu.count == 1 and all(_bits(p).values())
    assert _configure(p, "l2.1", 0, CONFIGURE_DEREGISTER) == ResultCode.SUCCESS
    for layer, v in (("l2.1", 1), ("l2.2", 0), ("l2.2", 1)):
        assert _configure(p, layer, v, CONFIGURE_REFRESH) == ResultCode.SUCCESS
    assert emu.count == 0 and emu.disabled_for_good and not any(_bits(p).values())


def test_rule_registration_needs_control_one_workload_layer_is_the_seed() -> None:
    """With one workload layer (at VMPL2, as COCONUT runs its guest) it controls every other
    layer trivially: exactly the seed."""
    p = guest(vcpus=2, interrupt_mode="alternate")
    assert _configure(p, "l2.1", 0, CONFIGURE_REGISTER) == ResultCode.SUCCESS
    assert machine(p).service.apic.count == 2


def test_rule_registration_needs_control_tdx_l2_vms_are_peers() -> None:
    """TDX L2 VMs are peers: with two of them neither may change the VM-wide count."""
    p = Partition(
        {"memory": "64MiB", "vcpus": 2, "workload_layers": 2, "interrupt_mode": "alternate"}, "tdx"
    )
    for layer in ("l2.1", "l2.2"):
        assert _configure(p, layer, 0, CONFIGURE_DEREGISTER) == ResultCode.INVALID_REQUEST
    assert p.machine.service.apic.count == 1
