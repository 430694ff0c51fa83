"""The SVSM at VMPL0 serving the core protocol on SNP primitives (sev-snp.md §1-2): calling
area handshake, validate/rescind as the SVSM does them, CREATE_VCPU / DELETE_VCPU checks,
QUERY_PROTOCOL, REMAP_CA, DEPOSIT/WITHDRAW_MEM, CONFIGURE_VTOM."""

from __future__ import annotations

from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.svsm import VMSA_GUEST_PERMS
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.model import PAGE_4K, Access
from cocopart.ops import CreateVcpu, DeleteVcpu, RescindPages, Status, ValidatePages
from cocopart.partition import Partition
from cocopart.protocol.calling_area import CALL_PENDING
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode


def test_call_sequence_rax_protocol_call_and_call_pending_cleared() -> None:
    p = guest()
    m = machine(p)
    out = m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, (1 << 32) | 1)
    assert out.code == 0 and out.regs.rcx == (1 << 32) | 1
    caa = m.service.state.caa("l2.1", 0)
    assert m.memory.read(caa + CALL_PENDING, 1) == b"\x00"
    assert p.trace.count("HANDLE", issuer="l1", target="CORE.QUERY_PROTOCOL") == 1
    ctx = m.layout.context(0, 0)  # the SVSM wrote the registers back into the caller's VMSA
    assert int.from_bytes(m.memory.read(ctx + vm.RCX, 8), "little") == (1 << 32) | 1


def test_query_protocol_unknown_protocol_or_version_answers_zero() -> None:
    m = machine(guest())
    assert m.client.query_protocol("l2.1", 0, 9) is None
    assert m.client.query_protocol("l2.1", 0, ProtocolId.CORE, version=2) is None
    assert m.client.call("l2.1", 0, 9, 0).code == ResultCode.UNSUPPORTED_PROTOCOL
    assert m.client.call("l2.1", 0, ProtocolId.CORE, 42).code == ResultCode.UNSUPPORTED_CALL


def test_deposit_and_withdraw_mem_are_unsupported_call_configure_vtom_query_is_zero() -> None:
    m = machine(guest())
    for call in (CoreCall.DEPOSIT_MEM, CoreCall.WITHDRAW_MEM):
        assert m.client.call("l2.1", 0, ProtocolId.CORE, call).code == ResultCode.UNSUPPORTED_CALL
    q = m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.CONFIGURE_VTOM, 1)
    assert q.code == 0 and q.regs.rcx == 0
    assert (
        m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.CONFIGURE_VTOM, 0).code
        == ResultCode.INVALID_REQUEST
    )


def test_remap_ca_moves_the_calling_area_and_calls_keep_working() -> None:
    m = machine(guest(vcpus=2))
    new = m.layout.scratch(0, 7)  # a page of the layer's own protocol region
    assert (
        m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.REMAP_CA, new + 8).code
        == ResultCode.INVALID_PARAMETER
    )
    assert m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.REMAP_CA, new).code == 0
    assert m.service.state.caa("l2.1", 0) == new
    assert m.client.query_protocol("l2.1", 0, ProtocolId.CORE) == (1, 1)


def test_validate_is_pvalidate_zero_and_rmpadjust_granting_the_caller() -> None:
    p = guest(16 * MIB)
    m = machine(p)
    m.memory.write(0, b"host-planted data")
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert m.memory.read(0, 17) == bytes(17)  # zeroed
    t = p.trace
    assert (
        t.count("PVALIDATE.2M", issuer="l1"),
        t.count("ZERO.2M", issuer="l1"),
        t.count("RMPADJUST", issuer="l1", target="VMPL2"),
    ) == (1, 1, 1)
    assert m.rmp_entry(0).perm(2) == int(Access.RWX)


def test_rescind_is_revoke_every_workload_vmpl_then_pvalidate_0_then_tlb_flush() -> None:
    p = validated(16 * MIB)
    mark = p.trace.mark()
    assert p.run(RescindPages(range=rng(0, 4 * MIB))).ok
    d = p.trace.since(mark)
    seq = [
        (e.issuer, e.mnemonic, e.target, e.count)
        for e in d.events
        if e.kind == "primitive" and e.issuer == "l1" and e.mnemonic != "HANDLE" and e.count
    ]
    assert seq[:4] == [
        ("l1", "RMPADJUST", "VMPL2", 2),
        ("l1", "RMPADJUST", "VMPL3", 2),
        ("l1", "PVALIDATE.2M", "rescind", 2),
        ("l1", "TLB.FLUSH", "", 2),
    ]


def test_rescind_of_pages_not_validated_is_no_change_unless_ignored() -> None:
    p = validated(16 * MIB)
    p.run(RescindPages(range=rng(0, 2 * MIB)))
    r = p.run(RescindPages(range=rng(0, 2 * MIB)))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.code == ResultCode.PVALIDATE_FAIL_NO_CHANGE


def test_create_vcpu_sets_the_vmsa_bit_without_lower_vmpl_access_and_starts_the_ap() -> None:
    p = validated(16 * MIB, vcpus=4)
    m = machine(p)
    mark = p.trace.mark()
    assert p.run(CreateVcpu(vcpu=3)).ok
    ctx = m.layout.context(0, 3)
    e = m.rmp_entry(ctx)
    assert e.vmsa and e.validated and e.perms == (0, 0, 0) and VMSA_GUEST_PERMS == 0
    d = p.trace.since(mark)
    assert sum(n for k, n in d.primitives.items() if k.mnemonic == "RMPADJUST") == 5
    assert sum(n for k, n in d.primitives.items() if k.mnemonic == "TLB.FLUSH") == 1
    assert [v.state for v in p.vcpus() if v.vcpu == 3] == ["running"]


def _call_create(p: Partition, ctx: int, caa: int, apic: int) -> int:
    return int(machine(p).client.create_vcpu("l2.1", 0, ctx, caa, apic).code)


def test_create_vcpu_checks_the_vmsa_contents_and_restores_the_page() -> None:
    p = validated(16 * MIB, vcpus=4)
    m = machine(p)
    ctx, caa = m.layout.context(0, 1), m.layout.caa(0, 1)
    feats = m.sev_features["l2.1"]
    for bad in (vm.build(1, feats), vm.build(2, feats, efer=0), vm.build(2, feats ^ 8)):
        m.memory.write(ctx, bad)
        assert _call_create(p, ctx, caa, 1) == ResultCode.INVALID_PARAMETER
        assert m.rmp_entry(ctx).perm(2) == int(Access.RW) and not m.rmp_entry(ctx).vmsa


def test_create_vcpu_refuses_2m_pages_the_caa_unknown_apic_ids_and_misalignment() -> None:
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    caa = m.layout.caa(0, 1)
    m.memory.write(0, vm.build(2, m.sev_features["l2.1"]))
    assert _call_create(p, 0, caa, 1) == ResultCode.INVALID_PARAMETER  # a 2M RMP entry
    ctx = m.layout.context(0, 1)
    assert _call_create(p, ctx, ctx, 1) == ResultCode.INVALID_ADDRESS  # VMSA == CAA
    assert _call_create(p, ctx + 8, caa, 1) == ResultCode.INVALID_ADDRESS
    assert _call_create(p, ctx, caa, 5) == ResultCode.INVALID_PARAMETER  # no such APIC ID
    assert _call_create(p, m.layout.context(0, 0), caa, 1) == ResultCode.INVALID_PARAMETER


def test_create_vcpu_twice_cannot_even_write_the_live_vmsa() -> None:
    p = validated(16 * MIB, vcpus=2)
    assert p.run(CreateVcpu(vcpu=1)).ok
    r = p.run(CreateVcpu(vcpu=1))
    assert r.status is Status.ERROR and r.error is not None and "#NPF" in r.error.message


def test_create_vcpu_for_another_workload_layer_is_not_supported() -> None:
    p = guest(16 * MIB, vcpus=2, workload_layers=2)
    r = p.run(CreateVcpu(layer="l2.1", target="l2.2", vcpu=1))
    assert r.status is Status.NOT_SUPPORTED
    assert p.run(CreateVcpu(layer="l1", target="l2.2", vcpu=1)).ok


def test_create_vcpu_beyond_the_guests_cpus_is_invalid_parameter() -> None:
    r = guest(16 * MIB, vcpus=2).run(CreateVcpu(vcpu=9))
    assert r.error is not None and r.error.code == ResultCode.INVALID_PARAMETER


def test_delete_vcpu_stops_the_ap_and_gives_the_page_back() -> None:
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    assert p.run(CreateVcpu(vcpu=1)).ok
    assert p.run(DeleteVcpu(vcpu=1)).ok
    ctx = m.layout.context(0, 1)
    e = m.rmp_entry(ctx)
    assert not e.vmsa and e.perm(2) == int(Access.RWX)
    assert (1, 2) not in m.host.contexts
    assert not int.from_bytes(m.memory.read(ctx + vm.EFER, 8), "little") & vm.EFER_SVME
    assert [v.vcpu for v in p.vcpus()] == [0]
    assert p.run(DeleteVcpu(vcpu=1)).status is Status.ERROR  # no longer registered
    assert p.run(CreateVcpu(vcpu=1)).ok  # and it can be created again


def test_deleting_the_bsp_is_refused_bsp_keeps_running() -> None:
    """RULE BSP_KEEPS_RUNNING, the same on both backends (docs/authority.md)."""
    r = guest().run(DeleteVcpu(vcpu=0))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.mnemonic == "BSP_KEEPS_RUNNING" and r.primitives == 0


def test_l1_validates_for_itself_without_granting_any_workload() -> None:
    p = guest(16 * MIB)
    assert p.run(ValidatePages(layer="l1", range=rng(0, 4 * MIB + PAGE_4K))).ok
    [run, *_] = p.memory_view(0, 4 * MIB)
    assert run.validated and run.access == {}
    assert p.trace.count("HANDLE") == 0 and p.trace.count("RMPADJUST") == 0


def test_busy_is_retried_the_svsm_returns_busy_and_the_caller_calls_again() -> None:
    from cocopart.ops import Attest

    p = guest()
    m = machine(p)
    m.host.options.guest_request_busy = 2  # the AMD-SP is throttling twice
    r = p.run(Attest(report_data=bytes(64)))
    assert r.ok
    assert p.trace.count("HANDLE", target="ATTEST.ATTEST_SERVICES") == 3  # BUSY, BUSY, ok
    assert p.trace.count("SNP_GUEST_REQUEST") == 1  # throttled requests never reached it


def test_a_workload_retries_its_own_guest_request_while_the_host_says_busy() -> None:
    from cocopart.ops import Attest

    p = guest()
    machine(p).host.options.guest_request_busy = 3
    assert p.run(Attest(report_data=bytes(64), source="hardware")).ok
    assert p.trace.count("VMGEXIT", issuer="l2.1", target="GUEST_REQUEST") == 4
