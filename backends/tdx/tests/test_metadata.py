"""TDG.VP.RD/WR and TDG.VM.RD/WR (tdx.md §2.2): the field-id layout, L2 VMCS fields by VM
index (classes 36/44/52), per-VM management fields and L1's access to each."""

from __future__ import annotations

import pytest
from cocopart_tdx import metadata as md
from cocopart_tdx.status import Operand, TdxStatus, status_name, with_details
from cocopart_tdx.tdcall import Leaf, TdxModule

from .tdx_helpers import MIB, guest, module

FULL = 2**64 - 1


def mod(layers: int = 3) -> TdxModule:
    return module(guest(16 * MIB, layers=layers))


def test_l2_vmcs_field_ids_follow_the_reference_examples() -> None:
    assert md.l2_vmcs_field(1, 0x681E) == 0x242000030000681E  # VM1 GUEST_RIP
    assert md.l2_vmcs_field(2, 0x681E) >> 48 == 0x2C20
    assert md.l2_vmcs_field(3, 0x681E) >> 48 == 0x3420
    assert md.l2_vmcs_field(1, 0x4016) == 0x2420000200004016  # VM-entry interruption info
    assert [md.l2_vmcs_class(vm) for vm in (1, 2, 3)] == [36, 44, 52]


def test_field_id_layout_round_trips() -> None:
    fid = md.FieldId.decode(md.L2_CTLS_BASE + 2)
    assert (fid.context, fid.cls, fid.size, fid.non_arch, fid.code) == (2, 32, 3, True, 0x52)
    assert fid.encode() == md.L2_CTLS_BASE + 2
    assert md.FieldId.decode(md.NUM_L2_VMS_FIELD).context == md.CONTEXT_TD


def test_vp_rd_wr_rcx_must_be_zero() -> None:
    m = mod()
    bad = with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    assert m.vp_rd(0, 1, md.l2_vmcs_field(1, 0x681E)).status == bad
    assert m.vp_wr(0, 1, md.l2_vmcs_field(1, 0x681E), 0, FULL).status == bad


def test_vp_wr_returns_the_old_value_and_applies_the_mask() -> None:
    m = mod()
    f = md.l2_vmcs_field(2, 0x6802)  # VM 2 GUEST_CR3
    assert m.vp_wr(0, 0, f, 0x1234_5000, FULL).out["r8"] == 0
    assert m.vp_wr(0, 0, f, 0xFFFF_FFFF, 0xF000).out["r8"] == 0x1234_5000
    assert m.vp_rd(0, 0, f).out["r8"] == 0x1234_F000


def test_vmcs_of_each_vm_is_separate() -> None:
    m = mod()
    m.vp_wr(0, 0, md.l2_vmcs_field(3, 0x681A), 7, FULL)
    assert m.vp_rd(0, 0, md.l2_vmcs_field(1, 0x681A)).out["r8"] == 0
    assert m.vp_rd(0, 0, md.l2_vmcs_field(3, 0x681A)).out["r8"] == 7


def test_l2_vmcs_of_a_vm_that_does_not_exist_is_field_id_incorrect() -> None:
    r = mod(layers=1).vp_rd(0, 0, md.l2_vmcs_field(2, 0x681E))
    assert r.status == TdxStatus.METADATA_FIELD_ID_INCORRECT


def test_wrong_element_size_is_field_id_incorrect() -> None:
    wrong = md.l2_vmcs_field(1, 0x681E) & ~(3 << 32) | (2 << 32)
    assert mod().vp_rd(0, 0, wrong).status == TdxStatus.METADATA_FIELD_ID_INCORRECT


@pytest.mark.parametrize("enc", [0x4000, 0x400C, 0x4826])
def test_read_only_l2_vmcs_fields_are_not_writable(enc: int) -> None:
    r = mod().vp_wr(0, 0, md.l2_vmcs_field(1, enc), 1, FULL)
    assert r.status == TdxStatus.METADATA_FIELD_NOT_WRITABLE


@pytest.mark.parametrize("enc", [0x0000, 0x2010])
def test_hidden_l2_vmcs_fields_are_not_readable(enc: int) -> None:
    assert (
        mod().vp_rd(0, 0, md.l2_vmcs_field(1, enc)).status == TdxStatus.METADATA_FIELD_NOT_READABLE
    )


@pytest.mark.parametrize(
    "enc,mask,bad",
    [(0x6800, 0x8005001F, 1 << 5), (0x6804, 0x03FF1FBF, 1 << 6), (0x2806, 0x501, 1 << 11)],
)
def test_masked_fields_refuse_bits_outside_their_write_mask(enc: int, mask: int, bad: int) -> None:
    m = mod()
    assert md.L2_VMCS_FIELDS[enc].wr_mask == mask
    r = m.vp_wr(0, 0, md.l2_vmcs_field(1, enc), bad, FULL)
    assert r.status == TdxStatus.METADATA_FIELD_VALUE_NOT_VALID


def test_l2_ctls_allows_bits_0_and_1_only() -> None:
    m = mod()
    assert m.vp_wr(0, 0, md.l2_ctls(2), 0b11, FULL).status == 0
    assert (
        m.vp_wr(0, 0, md.l2_ctls(2), 0b100, FULL).status == TdxStatus.METADATA_FIELD_VALUE_NOT_VALID
    )


def test_tsc_deadline_is_l1_writable_debug_ctls_are_not() -> None:
    m = mod()
    assert m.vp_wr(0, 0, md.tsc_deadline(1), 123, FULL).status == 0
    assert m.vp_rd(0, 0, md.tsc_deadline(1)).out["r8"] == 123
    assert (
        m.vp_wr(0, 0, md.L2_DEBUG_CTLS_BASE + 1, 1, FULL).status
        == TdxStatus.METADATA_FIELD_NOT_WRITABLE
    )
    assert m.vp_rd(0, 0, md.L2_VAPIC_GPA_BASE + 1).status == TdxStatus.METADATA_FIELD_NOT_READABLE


def test_virtual_apic_address_sets_l2_vapic_gpa_implicitly() -> None:
    m = mod()
    m.vp_wr(0, 0, md.l2_vmcs_field(2, md.VIRTUAL_APIC_PAGE_ADDR), 0x7000_0000, FULL)
    assert m.vp_md(0).get_internal(md.L2_VAPIC_GPA_BASE + 2) == 0x7000_0000


def test_vm_rd_num_l2_vms_and_rcx_rule() -> None:
    m = mod(layers=2)
    assert m.tdcall(0, {"rax": Leaf.VM_RD, "rdx": md.NUM_L2_VMS_FIELD}).out["r8"] == 2
    assert m.tdcall(0, {"rax": Leaf.VM_RD | (1 << 16), "rdx": md.NUM_L2_VMS_FIELD}).status == 0
    assert m.vm_rd(1, md.NUM_L2_VMS_FIELD).status == with_details(
        TdxStatus.OPERAND_INVALID, Operand.RCX
    )


def test_vm_wr_rules() -> None:
    m = mod()
    assert m.vm_wr(0, md.NUM_L2_VMS_FIELD, 1, FULL).status == TdxStatus.METADATA_FIELD_NOT_WRITABLE
    assert m.vm_wr(0, md.TD_CTLS_FIELD, 1, FULL).status == 0
    assert (
        m.vm_wr(0, md.TD_CTLS_FIELD, 1 << 40, FULL).status
        == TdxStatus.METADATA_FIELD_VALUE_NOT_VALID
    )
    assert status_name(m.vm_rd(0, 0x1234).status) == "METADATA_FIELD_ID_INCORRECT"
    assert m.vm_rd(0, md.VM_CTLS_BASE + 1).status == TdxStatus.METADATA_FIELD_NOT_READABLE


def test_config_flags_reflect_gpaw_and_page_release() -> None:
    assert mod().vm_rd(0, md.CONFIG_FLAGS_FIELD).out["r8"] == 0
    m = module(guest(16 * MIB, gpaw=52, module="2.0"))
    assert m.vm_rd(0, md.CONFIG_FLAGS_FIELD).out["r8"] == (
        md.CONFIG_FLAG_GPAW | md.CONFIG_FLAG_PAGE_RELEASE
    )
