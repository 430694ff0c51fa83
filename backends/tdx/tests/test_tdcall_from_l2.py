"""TDCALL from an L2 versus from L1 (tdx.md §1, §2.4): only TDG.VP.VMCALL with
L2_CTLS.ENABLE_TDVMCALL reaches the host; every other TDCALL exits to L1 with basic reason 77.
Also the RAX leaf/version rules of a TDCALL issued by L1."""

from __future__ import annotations

import pytest
from cocopart_tdx import metadata as md
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.status import Operand, TdxStatus, with_details
from cocopart_tdx.tdcall import Leaf, TdExit, check_rax
from cocopart_tdx.vp_enter import EnterGuestState, VmxExit

from cocopart.model import Access
from cocopart.ops import Attest, ConvertPages, ValidatePages

from .tdx_helpers import MIB, guest, machine, module, rng

BAD_RAX = with_details(TdxStatus.OPERAND_INVALID, Operand.RAX)


@pytest.mark.parametrize("leaf", list(Leaf))
def test_every_l2_tdcall_exits_to_l1_with_reason_77(leaf: Leaf) -> None:
    m = module(guest(16 * MIB))
    m.l2cpu(0, 1).gprs["rax"] = int(leaf)
    out = m.l2_tdcall(0)
    assert isinstance(out, dict)
    assert out["rax"] & 0xFFFF_FFFF == VmxExit.TDCALL == 77
    assert out["r11"] >> 32 == 4  # instruction length


def test_l2_vmcall_goes_to_the_host_only_with_enable_tdvmcall() -> None:
    m = module(guest(16 * MIB, enable_tdvmcall=True))
    cpu = m.l2cpu(0, 1)
    cpu.gprs.update(vmc.map_gpa_registers(0, 4096))
    cpu.gprs["r15"] = 0x5EC12E7  # not selected: the host sees 0
    out = m.l2_tdcall(0)
    assert isinstance(out, TdExit) and out.reason == "TDVMCALL"
    assert out.regs["rcx"] >> 32 == 1  # the host sees which VM issued it (bits 33:32)
    assert out.regs["r15"] == 0 and out.regs["r12"] == 0
    assert out.regs["r11"] == vmc.SubFunction.MAP_GPA


def test_l2_ctls_enable_tdvmcall_is_written_by_l1_per_vcpu() -> None:
    on = module(guest(16 * MIB, enable_tdvmcall=True)).vp_md(0).read(md.l2_ctls(1))
    off = module(guest(16 * MIB)).vp_md(0).read(md.l2_ctls(1))
    bit = md.L2_CTLS_ENABLE_TDVMCALL  # ENABLE_SHARED_EPTP (bit 0) is on by default (issue 14)
    assert (on & bit, off & bit) == (bit, 0)


def test_protocol_call_is_a_vendor_tdvmcall_in_the_state_buffer() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    m = machine(p)
    buf = m.platform.l2_vcpus[(1, 0)].context_gpa
    state = EnterGuestState.decode(m.memory.read(buf, 160))
    # after L1's answer: RAX = 0 (TDCALL done), RCX still the GPR selection, R10 = TDVMCALL
    # SUCCESS, R11 = the protocol result code
    assert state.gprs["rax"] == 0 and state.gprs["rcx"] == vmc.PROTOCOL_SELECT
    assert state.gprs["r10"] == vmc.TdvmcallStatus.SUCCESS and state.gprs["r11"] == 0
    regs = vmc.encode_protocol_call(vmc.Registers.call(0, 1, 0x1000))
    assert regs["r10"] == vmc.PROTOCOL_R10 == int.from_bytes(b"COCOPART", "big")
    assert vmc.is_protocol_call(regs) and vmc.decode_protocol_call(regs).rcx == 0x1000
    t = p.trace
    assert t.count("TDCALL", issuer="l2.1", target="protocol", result="exit 77") == 1
    assert t.switches[("l2.1", "l1", "L2->L1 exit")] == 1
    assert t.switches[("l1", "l2.1", "TDG.VP.ENTER")] == 1


def test_with_enable_tdvmcall_the_protocol_uses_the_vmcall_instruction() -> None:
    p = guest(16 * MIB, host_mapping="2M", enable_tdvmcall=True)
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert p.trace.count("VMCALL", issuer="l2.1", result="exit 18") == 1
    assert p.trace.count("TDCALL", issuer="l2.1") == 0


def test_l2_map_gpa_goes_through_l1_or_straight_to_the_host() -> None:
    via_l1 = guest(16 * MIB, host_mapping="2M")
    assert via_l1.run(ConvertPages(range=rng(0, 2 * MIB), to="shared")).ok
    assert via_l1.trace.count("TDG.VP.VMCALL", issuer="l1", target="MapGPA") == 1
    assert ("l2.1", "host", "TD exit") not in via_l1.trace.switches
    direct = guest(16 * MIB, host_mapping="2M", enable_tdvmcall=True)
    assert direct.run(ConvertPages(range=rng(0, 2 * MIB), to="shared")).ok
    assert direct.trace.count("TDG.VP.VMCALL", issuer="l2.1", target="MapGPA") == 1
    assert direct.trace.switches[("l2.1", "host", "TD exit")] == 1
    assert direct.trace.count("TDG.VP.VMCALL", issuer="l1") == 0


def test_l2_cannot_call_tdg_mr_report_itself() -> None:
    p = guest(16 * MIB)
    r = p.run(Attest(source="hardware", report_data=None))
    assert r.status.value == "not-supported" and "only L1" in (r.reason or "")
    assert p.trace.count("TDG.MR.REPORT") == 0
    assert p.run(Attest(report_data=None)).ok  # through L1's attestation service instead


def test_l1_handles_an_l2_tdvmcall_it_does_not_offer() -> None:
    p = guest(16 * MIB)
    w = machine(p).hooks.exits
    out = w.l2_tdvmcall(
        "l2.1",
        0,
        {
            "rax": 0,
            "rcx": vmc.MAP_GPA_SELECT,
            "r10": 0,
            "r11": vmc.SubFunction.GET_QUOTE,
            "r12": 0,
            "r13": 0,
        },
        "GetQuote",
    )
    assert out["r10"] == vmc.TdvmcallStatus.SUBFUNC_UNSUPPORTED


def test_tdvmcall_gpr_select_rules() -> None:
    assert vmc.check_select(vmc.gpr_select("r10", "r11")) is None
    for bad in (vmc.gpr_select("rax"), vmc.gpr_select("rcx"), vmc.gpr_select("rsp"), 1 << 32):
        assert vmc.check_select(bad) == with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    assert vmc.check_select(vmc.gpr_select("rbp"), no_rbp_mod=True) is not None
    r = module(guest(16 * MIB)).tdcall(0, {"rax": 0, "rcx": 1})
    assert r.status == with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)


# -- RAX of a TDCALL issued by L1 (tdx.md §1) -------------------------------------------------
def test_rax_bits_63_24_must_be_zero() -> None:
    assert check_rax(Leaf.VP_INFO | (1 << 24), "1.5") == BAD_RAX
    assert check_rax(Leaf.VP_INFO, "1.5") is None


def test_only_tdg_vm_rd_takes_version_1() -> None:
    assert check_rax(Leaf.VM_RD | (1 << 16), "1.5") is None
    assert check_rax(Leaf.VM_RD | (2 << 16), "1.5") == BAD_RAX
    assert check_rax(Leaf.VP_RD | (1 << 16), "1.5") == BAD_RAX


def test_leaves_a_module_lacks_are_operand_invalid() -> None:
    assert check_rax(Leaf.MEM_PAGE_RELEASE, "1.5") == BAD_RAX
    assert check_rax(Leaf.MEM_PAGE_RELEASE, "2.0") is None
    assert check_rax(31, "2.0") == BAD_RAX
    r = module(guest(16 * MIB)).tdcall(0, {"rax": Leaf.MEM_PAGE_RELEASE, "rcx": 0})
    assert r.status == BAD_RAX


def test_tdg_vp_info_from_l1() -> None:
    r = module(guest(16 * MIB, vcpus=3, gpaw=52)).tdcall(2, {"rax": Leaf.VP_INFO})
    assert r.out["rcx"] == 52 and r.out["r8"] == 3 | 3 << 32 and r.out["r9"] == 2


def test_tdg_vp_invept_bitmap_rules() -> None:
    m = module(guest(16 * MIB, layers=2))
    assert m.tdcall(0, {"rax": Leaf.VP_INVEPT, "rcx": 0b110}).status == 0
    for bad in (0b1, 0b1000):
        assert m.tdcall(0, {"rax": Leaf.VP_INVEPT, "rcx": bad}).status == with_details(
            TdxStatus.OPERAND_INVALID, Operand.RCX
        )


def test_l2_access_faults_exit_to_l1_or_the_host() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    m = machine(p)
    out = m.access("l2.1", 0, Access.READ)  # not mapped: the host must map it
    assert (out.ok, out.handled_by) == (False, "host")
    p.run(ValidatePages(layer="l1", range=rng(0, 2 * MIB)))
    out = m.access("l2.1", 0, Access.READ)  # accepted by L1, no alias for L2 VM 1
    assert (out.ok, out.handled_by) == (False, "l1")
    assert p.trace.count("EPT_VIOLATION", target="l2.1", result="L2->L1 exit") == 1
