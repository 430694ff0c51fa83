"""GHCB rules (sev-snp.md §5): MSR protocol, NAE exit codes, page layout and valid bitmap,
Page State Change (253 entries, four operations, partial progress through cur_entry),
AP creation, SNP_RUN_VMPL, hypervisor features."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import ghcb as g
from snp_helpers import MIB, guest, machine, rng, validated

from cocopart.client import PageRun
from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.ops import ConvertPages, CreateVcpu, Status, ValidatePages
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode


def test_msr_protocol_codes_and_encodings() -> None:
    assert g.MSR_GHCB == 0xC001_0130
    assert (g.MsrInfo.VMPL_REQ, g.MsrInfo.VMPL_RESP) == (0x016, 0x017)
    assert (g.MsrInfo.PSC_REQ, g.MsrInfo.PSC_RESP) == (0x014, 0x015)
    assert (g.MsrInfo.HV_FEATURES_REQ, g.MsrInfo.HV_FEATURES_RESP) == (0x080, 0x081)
    assert g.MsrInfo.TERM_REQ == 0x100 and g.MsrInfo.REGISTER_GHCB_REQ == 0x012
    assert g.msr_vmpl_request(2) == 0x016 | (2 << 32)
    assert g.msr_psc_decode(g.msr_psc_request(0x1234, 2)) == (0x1234, 2)
    assert g.msr_term_request(1, 3) == 0x100 | (1 << 12) | (3 << 16)
    assert g.msr_response_error(g.msr_vmpl_response(5)) == 5


def test_nae_exit_codes() -> None:
    assert g.ExitCode.PSC == 0x8000_0010 and g.ExitCode.GUEST_REQUEST == 0x8000_0011
    assert g.ExitCode.AP_CREATION == 0x8000_0013 and g.ExitCode.SNP_RUN_VMPL == 0x8000_0018
    assert g.ExitCode.HV_FEATURES == 0x8000_FFFD and g.ExitCode.TERMINATE == 0x8000_FFFE


def test_ghcb_layout_offsets_and_the_valid_bitmap() -> None:
    assert (
        g.OFF_RAX,
        g.OFF_SW_EXITCODE,
        g.OFF_SW_EXITINFO1,
        g.OFF_SW_EXITINFO2,
        g.OFF_SW_SCRATCH,
        g.OFF_VALID_BITMAP,
        g.OFF_SHARED_BUFFER,
    ) == (0x1F8, 0x390, 0x398, 0x3A0, 0x3A8, 0x3F0, 0x800)
    page = g.GhcbPage()
    page.request(g.ExitCode.HV_FEATURES)
    assert page.is_valid(g.OFF_SW_EXITCODE) and not page.is_valid(g.OFF_RAX)
    assert page.buf[g.OFF_VALID_BITMAP + 0x390 // 64] & (1 << ((0x390 // 8) % 8))


def test_the_host_refuses_a_request_whose_inputs_are_not_marked_valid() -> None:
    m = machine(guest())
    page = g.GhcbPage()
    page.set(g.OFF_SW_EXITCODE, g.ExitCode.HV_FEATURES)  # EXITINFO1/2 not marked valid
    m.host.exit("l2.1", page)
    assert page.failed() and page.info2 == g.GhcbError.MISSING_INPUT


def test_hv_features_through_msr_and_nae() -> None:
    m = machine(guest())
    resp = m.host.msr_exit("l2.1", g.MsrInfo.HV_FEATURES_REQ)
    assert g.msr_info(resp) == g.MsrInfo.HV_FEATURES_RESP
    bits = resp >> 12
    assert bits & g.SVSM_REQUIRED_FEATURES == g.SVSM_REQUIRED_FEATURES
    page = g.GhcbPage()
    page.request(g.ExitCode.HV_FEATURES)
    m.host.exit("l2.1", page)
    assert not page.failed() and page.info2 == bits
    assert (g.HvFeature.SNP, g.HvFeature.MULTI_VMPL, g.HvFeature.EXTENDED_INTERRUPTS) == (
        1,
        32,
        512,
    )


# --- page state change ----------------------------------------------------------------------
def test_psc_descriptor_round_trip_and_contiguous_runs() -> None:
    entries = g.pack_run(4 * PAGE_2M, True, 3, g.PscOp.PRIVATE) + g.pack_run(
        0, False, 2, g.PscOp.SHARED
    )
    buf = g.psc_encode(entries)
    assert g.psc_header(buf) == (0, 4, 0)
    runs, bad = g.psc_runs(buf, 0, 4)
    assert bad is None
    assert [(r.first, r.entries, r.gpa, r.op, r.page_2m, r.pages) for r in runs] == [
        (0, 3, 4 * PAGE_2M, g.PscOp.PRIVATE, True, 3),
        (3, 2, 0, g.PscOp.SHARED, False, 2),
    ]


def test_psc_at_most_253_entries_per_request() -> None:
    assert g.VMGEXIT_PSC_MAX_ENTRY == 253
    g.psc_encode(g.pack_run(0, False, 253, 1))
    with pytest.raises(ValueError):
        g.psc_encode(g.pack_run(0, False, 254, 1))
    m = machine(guest())
    page = m.ghcb_page("l2.1", 0)
    page.write_shared(g.PSC_HEADER.pack(0, 253, 0) + g.pack_run(0, False, 253, 1))
    page.request(g.ExitCode.PSC, scratch=g.OFF_SHARED_BUFFER)
    m.host.exit("l2.1", page)
    assert page.info2 == g.PSC_ERROR_INVALID_HEADER


def test_psc_partial_progress_through_cur_entry_the_guest_reissues() -> None:
    p = guest(16 * MIB)
    machine(p).host.options.psc_budget = 3
    r = p.run(ValidatePages(range=rng(0, 16 * MIB)))  # 8 entries: served 3 + 3 + 2
    assert r.ok
    assert p.trace.count("VMGEXIT", issuer="l2.1", target="PSC") == 3
    assert p.trace.count("PSC.ENTRY") == 8
    assert p.memory_view()[0].validated


def test_psc_a_host_that_makes_no_progress_stops_the_guest() -> None:
    p = guest(16 * MIB)
    machine(p).host.options.psc_budget = 0
    r = p.run(ValidatePages(range=rng(0, 16 * MIB)))
    assert r.status is Status.ERROR and r.error is not None
    assert r.error.mnemonic == "VMGEXIT(PSC)"


def test_psc_private_then_pvalidate_shared_after_rescind() -> None:
    p = validated(16 * MIB)
    mark = p.trace.mark()
    assert p.run(ConvertPages(range=rng(0, 4 * MIB), to="shared")).ok
    names = [
        (e.issuer, e.mnemonic, e.target)
        for e in p.trace.since(mark).events
        if e.kind == "primitive"
    ]
    rescind = names.index(("l1", "PVALIDATE.2M", "rescind"))
    psc = names.index(("l2.1", "VMGEXIT", "PSC"))
    assert rescind < psc
    assert not p.memory_view(0, 4 * MIB)[0].private
    mark = p.trace.mark()
    assert p.run(ConvertPages(range=rng(0, 4 * MIB), to="private")).ok
    pairs = [(e.issuer, e.mnemonic) for e in p.trace.since(mark).events if e.kind == "primitive"]
    assert pairs.index(("l2.1", "VMGEXIT")) < pairs.index(("l1", "PVALIDATE.2M"))
    assert p.memory_view(0, 4 * MIB)[0].validated


def test_psc_shared_of_a_running_vmsa_fails_inuse_at_the_host() -> None:
    p = guest(16 * MIB)
    m = machine(p)
    ctx = m.layout.context(0, 0)
    err = m.psc("l2.1", 0, [PageRun(ctx, PAGE_4K, 1)], g.PscOp.SHARED)
    assert err is not None and err.code & 0xFF == 3  # FAIL_INUSE
    assert m.rmp_entry(ctx).vmsa and m.rmp_entry(ctx).assigned


def test_msr_protocol_psc_converts_one_4k_page() -> None:
    m = machine(guest(16 * MIB))
    resp = m.host.msr_exit("l2.1", g.msr_psc_request(5, g.PscOp.PRIVATE))
    assert g.msr_info(resp) == g.MsrInfo.PSC_RESP and g.msr_response_error(resp) == 0
    assert m.rmp_entry(5 * PAGE_4K).assigned and not m.rmp_entry(6 * PAGE_4K).assigned


def test_psc_fast_forward_equals_one_request_at_a_time() -> None:
    def run(fast: bool, strategy: str) -> tuple[object, object, object]:
        p = guest(2048 * MIB, strategy=strategy)
        machine(p).fast_forward = fast
        assert p.run(ValidatePages(range=rng(PAGE_4K, 2040 * MIB))).ok
        assert p.run(ConvertPages(range=rng(64 * MIB, 1024 * MIB), to="shared")).ok
        return p.trace.primitives, p.trace.switches, machine(p).rmp.map.items()

    for strategy in ("optimal", "linux"):
        assert run(True, strategy) == run(False, strategy)


# --- AP creation, SNP_RUN_VMPL --------------------------------------------------------------
def test_ap_creation_exitinfo1_carries_op_target_vmpl_and_apic_id() -> None:
    info1 = g.ap_creation_info1(g.ApCreateOp.CREATE, 2, 7)
    assert info1 == 1 | (2 << 16) | (7 << 32)
    assert g.ap_creation_decode(info1) == (1, 2, 7)
    assert (g.ApCreateOp.CREATE_ON_INIT, g.ApCreateOp.CREATE, g.ApCreateOp.DESTROY) == (0, 1, 2)


def test_ap_creation_for_the_target_vmpl_create_on_init_and_destroy() -> None:
    p = validated(16 * MIB, vcpus=4)
    m = machine(p)
    assert p.run(CreateVcpu(vcpu=1)).ok
    ctx = m.host.contexts[(1, 2)]  # (APIC ID 1, VMPL2)
    assert ctx.state == "running" and ctx.vmsa_gpa == m.layout.context(0, 1)
    page = m.ghcb_page("l1", 0)
    page.request(
        g.ExitCode.AP_CREATION, g.ap_creation_info1(g.ApCreateOp.CREATE_ON_INIT, 2, 1), ctx.vmsa_gpa
    )
    page.set(g.OFF_RAX, m.sev_features["l2.1"])
    m.host.exit("l1", page)
    assert not page.failed() and m.host.contexts[(1, 2)].state == "init-wait"
    page.request(g.ExitCode.AP_CREATION, g.ap_creation_info1(g.ApCreateOp.DESTROY, 2, 1))
    m.host.exit("l1", page)
    assert not page.failed() and (1, 2) not in m.host.contexts


def test_ap_creation_refuses_unknown_apic_ids_and_non_vmsa_pages() -> None:
    p = validated(16 * MIB, vcpus=2)
    m = machine(p)
    page = m.ghcb_page("l1", 0)
    for info1, gpa in (
        (g.ap_creation_info1(1, 2, 9), m.layout.context(0, 0)),
        (g.ap_creation_info1(1, 2, 1), 0),
    ):
        page.request(g.ExitCode.AP_CREATION, info1, gpa)
        page.set(g.OFF_RAX, 1)
        m.host.exit("l1", page)
        assert page.failed() and page.info2 == g.GhcbError.INVALID_INPUT


def test_snp_run_vmpl_over_the_ghcb_protocol() -> None:
    p = guest()
    m = machine(p)
    out = m.client.query_protocol("l2.1", 0, ProtocolId.CORE)
    assert out == (1, 1)
    page = m.ghcb_page("l2.1", 0)
    assert page.exit_code == g.ExitCode.SNP_RUN_VMPL and page.info1 == 0
    assert p.trace.count("VMGEXIT", issuer="l2.1", target="SNP_RUN_VMPL") == 1
    assert p.trace.switch_count("VMGEXIT(SNP_RUN_VMPL)") == 2


def test_snp_run_vmpl_over_the_msr_protocol() -> None:
    p = guest(backend_options={"call_protocol": "msr"})
    m = machine(p)
    assert m.client.query_protocol("l2.1", 0, ProtocolId.ATTEST) == (1, 1)
    assert ("l2.1", 0) not in m.ghcb_pages  # no GHCB page used
    assert p.trace.switch_count("VMGEXIT(SNP_RUN_VMPL)") == 2


def test_a_host_without_multi_vmpl_cannot_run_vmpl0_so_the_call_is_never_serviced() -> None:
    for proto in ("ghcb", "msr"):
        p = guest(backend_options={"call_protocol": proto})
        m = machine(p)
        m.host.options.hv_features &= ~g.HvFeature.MULTI_VMPL
        out = m.client.call("l2.1", 0, ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, 1 << 32 | 1)
        assert out.code == ResultCode.INVALID_REQUEST
        assert any("call_pending" in n for n in out.notes)


def test_guest_request_exitinfo2_splits_vmm_and_firmware_errors() -> None:
    info2 = g.guest_request_info2(g.VmmError.BUSY, 0x16)
    assert g.guest_request_errors(info2) == (2, 0x16)


def test_ghcb_input_errors_invalid_scratch_event_and_usage() -> None:
    m = machine(guest())
    page = m.ghcb_page("l2.1", 0)
    page.write_shared(g.psc_encode(g.pack_run(0, False, 1, g.PscOp.PRIVATE)))
    page.request(g.ExitCode.PSC)  # no SW_SCRATCH
    m.host.exit("l2.1", page)
    assert page.failed() and page.info2 == g.GhcbError.INVALID_SCRATCH == 3
    page.request(g.ExitCode.MMIO_READ)  # an exit the model's host does not serve
    m.host.exit("l2.1", page)
    assert page.failed() and page.info2 == g.GhcbError.INVALID_EVENT == 6
    m.host.options.hv_features &= ~g.HvFeature.AP_CREATION
    page.request(g.ExitCode.AP_CREATION, g.ap_creation_info1(1, 2, 1), m.layout.context(0, 1))
    m.host.exit("l2.1", page)
    assert page.failed() and page.info2 == g.GhcbError.INVALID_USAGE == 2


def test_psc_private_over_a_page_the_guest_does_not_own_is_refused() -> None:
    from cocopart_sev_snp.host import PSC_ERROR_RMP_BASE
    from cocopart_sev_snp.rmp import RmpEntry

    m = machine(guest(16 * MIB))
    m.rmp.set(0, PAGE_4K, RmpEntry(assigned=True, asid=0, immutable=True))  # a firmware page
    err = m.psc("l2.1", 0, [PageRun(0, PAGE_4K, 2)], g.PscOp.PRIVATE)
    assert err is not None and err.code == PSC_ERROR_RMP_BASE | 2


def test_msr_protocol_sev_info_register_ghcb_and_termination() -> None:
    m = machine(guest())
    info = m.host.msr_exit("l2.1", g.MsrInfo.SEV_INFO_REQ)
    assert g.msr_info(info) == g.MsrInfo.SEV_INFO_RESP
    assert (info >> 48, (info >> 32) & 0xFFFF, (info >> 24) & 0xFF) == (2, 1, 51)
    reg = m.host.msr_exit("l2.1", g.MsrInfo.REGISTER_GHCB_REQ | (0x1234 << 12))
    assert reg == g.MsrInfo.REGISTER_GHCB_RESP | (0x1234 << 12)
    m.host.msr_exit("l2.1", g.msr_term_request(1, 3))
    assert m.host.terminated["l2.1"] == (1, 3)
