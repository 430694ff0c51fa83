"""TDG.VP.ENTER (tdx.md §2.3): inputs, failures, the L2_ENTER_GUEST_STATE buffer, the L2 -> L1
exit register layout, and where L2 events go (§2.4)."""

from __future__ import annotations

import pytest
from cocopart_tdx import metadata as md
from cocopart_tdx.sept import LEVEL_4K, SeptEntry, SeptState
from cocopart_tdx.status import Operand, TdxStatus, with_details
from cocopart_tdx.tdcall import TdxModule
from cocopart_tdx.vp_enter import (
    ENTER_GUEST_STATE_SIZE,
    GPRS,
    Destination,
    EnterGuestState,
    L2Exit,
    VmxExit,
    destination,
    enter_rcx,
    never_entered,
)

from cocopart.ops import CreateVcpu, DeleteVcpu, ValidatePages

from .tdx_helpers import MIB, guest, machine, module, rng

BAD_RCX = with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
BAD_RDX = with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)


def td(layers: int = 1) -> tuple[TdxModule, int]:
    """A module whose L2 VM 1 vCPU 0 exists; returns it and vCPU 0's state buffer."""
    p = guest(16 * MIB, layers=layers)
    m = module(p)
    m.l2_exit(0, L2Exit(VmxExit.HLT))  # take the running L2 off vCPU 0
    return m, m.vp_md(0).get_internal(md.L2_ENTER_GUEST_STATE_GPA_BASE + 1)


def test_enter_vm_index_0_is_operand_invalid_rcx() -> None:
    m, buf = td()
    assert m.vp_enter(0, enter_rcx(0), buf).status == BAD_RCX


def test_enter_vm_index_above_num_l2_vms_is_operand_invalid_rcx() -> None:
    m, buf = td(layers=2)
    assert m.vp_enter(0, enter_rcx(3), buf).status == BAD_RCX


@pytest.mark.parametrize("bit", [2, 20, 51, 54, 63])
def test_enter_reserved_rcx_bits_are_operand_invalid(bit: int) -> None:
    m, buf = td()
    assert m.vp_enter(0, enter_rcx(1) | (1 << bit), buf).status == BAD_RCX


def test_enter_misaligned_or_shared_buffer_is_operand_invalid_rdx() -> None:
    m, buf = td()
    assert m.vp_enter(0, enter_rcx(1), buf + 0x80).status == BAD_RDX
    assert m.vp_enter(0, enter_rcx(1), buf | m.shared_bit).status == BAD_RDX


def test_enter_without_a_virtual_apic_address_is_operand_invalid_170() -> None:
    m, buf = td()
    m.vp_wr(0, 0, md.l2_vmcs_field(1, md.VIRTUAL_APIC_PAGE_ADDR), 0, 2**64 - 1)
    r = m.vp_enter(0, enter_rcx(1), buf)
    assert r.status == with_details(TdxStatus.OPERAND_INVALID, Operand.L2_VAPIC_GPA)
    assert never_entered(r.status)


def test_enter_with_an_l1_interrupt_pending_is_tdx_pending_interrupt() -> None:
    m, buf = td()
    m.l1_pending_interrupt.add(0)
    r = m.vp_enter(0, enter_rcx(1), buf)
    assert r.status == TdxStatus.PENDING_INTERRUPT and not r.entered and never_entered(r.status)


def test_l1_takes_its_interrupt_then_enters() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    module(p).l1_pending_interrupt.add(0)
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert p.trace.count("TDG.VP.ENTER", result="PENDING_INTERRUPT") == 1
    assert p.trace.count("TDG.VP.ENTER", result="ok") == 1


def test_enter_with_an_untranslatable_buffer_is_an_ept_violation_td_exit() -> None:
    m, buf = td()
    m.sept.set_entries(buf, buf + 4096, SeptEntry(SeptState.PENDING, LEVEL_4K))
    r = m.vp_enter(0, enter_rcx(1), buf)
    assert r.exit is not None and r.exit.gpa == buf


def test_enter_loads_the_buffer_into_the_l2_vmcs() -> None:
    m, buf = td()
    state = EnterGuestState(rip=0x1234, rflags=0x202, ssp=0x99, interrupt_status=0x3031)
    state.gprs["rsp"] = 0x8000
    m.memory.write(buf, state.encode())
    assert m.vp_enter(0, enter_rcx(1, invd=1), buf).entered
    vmcs = m.vp_md(0)
    assert vmcs.read(md.l2_vmcs_field(1, 0x681E)) == 0x1234
    assert vmcs.read(md.l2_vmcs_field(1, 0x681C)) == 0x8000
    assert vmcs.read(md.l2_vmcs_field(1, 0x0810)) == 0x3031
    assert m.running_vm(0) == 1


def test_enter_guest_state_layout_offsets() -> None:
    s = EnterGuestState(rflags=0x11, rip=0x22, ssp=0x33, interrupt_status=0x4455)
    for i, r in enumerate(GPRS):
        s.gprs[r] = i + 1
    raw = s.encode()
    assert len(raw) == ENTER_GUEST_STATE_SIZE == 160
    assert int.from_bytes(raw[8 * 15 : 8 * 16], "little") == 16  # R15 @120
    assert [int.from_bytes(raw[o : o + 8], "little") for o in (128, 136, 144)] == [0x11, 0x22, 0x33]
    assert int.from_bytes(raw[152:154], "little") == 0x4455
    assert EnterGuestState.decode(raw) == s


def test_l2_to_l1_exit_register_layout() -> None:
    e = L2Exit(
        VmxExit.TDCALL,
        status_class=0x1102,
        exit_qualification=7,
        gla=0xAA,
        gpa=0xBB,
        cs_selector=0x10,
        cs_ar=0xC09B,
        cs_limit=0xFFFF,
        intr_info=5,
        intr_error=6,
        instr_info=9,
        instr_length=4,
        cpl=3,
        eeq=6,
    )
    regs = e.registers()
    assert regs["rax"] == (0x1102 << 32) | 77 and regs["rbx"] == 0
    assert regs["rsi"] == 0x10 | 0xC09B << 16 | 0xFFFF << 32
    assert regs["r11"] == 9 | 4 << 32 and regs["r12"] == 3 and regs["r13"] == 6
    assert regs["r14"] == regs["r15"] == 0
    assert L2Exit.from_registers(regs) == e


def test_l2_exit_writes_the_l2_registers_back_into_the_buffer() -> None:
    p = guest(16 * MIB)
    m = module(p)
    cpu = m.l2cpu(0, 1)
    cpu.gprs.update(rax=1, rbx=0xB0B, r15=0xF15)
    cpu.rip = 0x4444
    out = m.l2_tdcall(0)
    assert isinstance(out, dict) and out["rax"] & 0xFFFF_FFFF == VmxExit.TDCALL
    buf = m.vp_md(0).get_internal(md.L2_ENTER_GUEST_STATE_GPA_BASE + 1)
    state = EnterGuestState.decode(m.memory.read(buf, 160))
    assert (state.gprs["rbx"], state.gprs["r15"], state.rip) == (0xB0B, 0xF15, 0x4444)
    assert m.running_vm(0) == 0  # CURR_VM = 0: L1 runs


def test_l1_advances_the_l2_rip_past_the_tdcall() -> None:
    p = guest(16 * MIB, host_mapping="2M")
    m = module(p)
    rip = m.l2cpu(0, 1).rip
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert m.l2cpu(0, 1).rip == rip + 4  # TDCALL is 4 bytes (66 0F 01 CC)


@pytest.mark.parametrize(
    "event,where",
    [
        ("hlt", Destination.L1),
        ("cpuid", Destination.L1),
        ("io", Destination.L1),
        ("vmcall", Destination.L1),
        ("preemption-timer", Destination.L1),
        ("ept-violation-no-alias", Destination.L1),
        ("ept-violation-pending", Destination.L1),
        ("l1-posted-interrupt", Destination.L1),
        ("nmi", Destination.HOST),
        ("other-external-interrupt", Destination.HOST),
        ("ept-violation-shared", Destination.HOST),
        ("ept-violation-not-mapped", Destination.HOST),
        ("machine-check", Destination.TD_LOST),
    ],
)
def test_which_l2_events_exit_to_l1_and_which_to_the_host(event: str, where: Destination) -> None:
    assert destination(event)[0] is where


def test_a_deleted_l2_vcpu_is_never_entered_again() -> None:
    p = guest(16 * MIB, vcpus=2)
    assert p.run(CreateVcpu(vcpu=1)).ok
    buf = machine(p).platform.l2_vcpus[(1, 1)].context_gpa
    assert p.run(DeleteVcpu(vcpu=1)).ok
    m = module(p)
    r = m.vp_enter(1, enter_rcx(1), buf)
    assert r.status == with_details(TdxStatus.OPERAND_INVALID, Operand.L2_VAPIC_GPA)
    assert m.memory.read(buf, 160) == bytes(160)  # state cleared
    assert [v.vcpu for v in p.vcpus()] == [0]


def test_rule_vp_enter_checks_rdx_before_rcx() -> None:
    """MOD 1.5 src/td_transitions/tdg_vp_enter.c ``tdg_vp_enter``: the buffer GPA (RDX:
    256-byte aligned, ``check_gpa_validity`` private) is checked before the VM index and
    reserved bits of RCX; with both bad the answer names RDX (issue 14 point 6)."""
    from cocopart_tdx.vp_enter import RULE_VP_ENTER_CHECKS_RDX_FIRST

    m, buf = td()
    bad_rcx = enter_rcx(0) | (1 << 20)
    assert m.vp_enter(0, bad_rcx, buf + 0x80).status == BAD_RDX
    assert m.vp_enter(0, bad_rcx, buf | m.shared_bit).status == BAD_RDX
    assert m.vp_enter(0, bad_rcx, buf | (1 << 50)).status == BAD_RDX  # above GPAW 48
    assert m.vp_enter(0, bad_rcx, buf).status == BAD_RCX
    assert RULE_VP_ENTER_CHECKS_RDX_FIRST
