"""RMPUPDATE on the VMSA page of a running vCPU fails with FAIL_INUSE until the vCPU is kicked
out of VMRUN (issue 7; RULE_CONVERT_KICKS_VMSA_VCPU)."""

from __future__ import annotations

from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp.rmp import PageState
from snp_helpers import MIB, guest, machine

from cocopart.partition import Partition


def _convert_guest() -> Partition:
    return guest(64 * MIB, backend_options={"host_fault_policy": "convert"})


def test_rmpupdate_of_a_running_vmsa_is_fail_inuse_until_the_vcpu_is_kicked() -> None:
    m = machine(guest(64 * MIB))
    ctx = m.layout.context(0, 0)
    first = hf.convert_to_shared(m, ctx, kick=False)
    assert not first.ok and first.result == "FAIL_INUSE" and first.attempts == 1
    assert m.rmp_entry(ctx).state is PageState.VMSA
    assert m.host.kick(ctx) is not None
    assert m.host.in_use(ctx, ctx + 4096) is None
    second = hf.convert_to_shared(m, ctx, kick=False)
    assert second.ok and m.rmp_entry(ctx).state is PageState.HYPERVISOR


def test_a_kicked_vcpu_with_its_vmsa_untouched_resumes_and_is_in_use_again() -> None:
    p = guest(64 * MIB)
    m = machine(p)
    ctx = m.layout.context(0, 0)
    m.host.kick(ctx)
    assert [v.state for v in p.vcpus()] == ["stopped"]
    assert m.host.resume(ctx)
    assert [v.state for v in p.vcpus()] == ["running"]
    assert not hf.convert_to_shared(m, ctx, kick=False).ok


def test_convert_policy_kicks_the_vcpu_then_converts_and_the_vcpu_cannot_run_again() -> None:
    p = _convert_guest()
    m = machine(p)
    ctx = m.layout.context(0, 0)
    w = m.host_write(ctx, b"x")
    assert w.action is hf.HostAction.CONVERTED and w.completed
    assert w.conversion is not None and w.conversion.kicked == [ctx]
    assert [s.result for s in w.conversion.steps] == ["FAIL_INUSE", "IN_USE cleared", "ok"]
    assert hf.RULE_CONVERT_KICKS_VMSA_VCPU in w.rules
    assert m.trace.count("KICK", issuer="host") == 1
    assert not m.host.resume(ctx)  # VMRUN: the page is no longer a VMSA -> VMEXIT_INVALID
    assert [v.state for v in p.vcpus()] == ["stopped"]


def test_sigbus_policy_never_converts_a_vmsa_and_the_vcpu_keeps_running() -> None:
    p = guest(64 * MIB)
    m = machine(p)
    ctx = m.layout.context(0, 0)
    w = m.host_write(ctx, b"x")
    assert w.action is hf.HostAction.SIGBUS and w.conversion is None
    assert m.rmp_entry(ctx).state is PageState.VMSA
    assert [v.state for v in p.vcpus()] == ["running"]
