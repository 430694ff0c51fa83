"""Issue 14 point 7: a page-call GPA with bits above GPAW is TDX_OPERAND_INVALID(RCX), from
MOD 1.5 src/common/helpers/helpers.c ``check_gpa_validity`` (called by
tdg_mem_page_accept.c, tdg_mem_page_attr_rd.c, tdg_mem_page_attr_wr.c), not an
EPT-violation TD exit."""

from __future__ import annotations

import pytest
from cocopart_tdx import attributes as A
from cocopart_tdx.gpa import RULE_GPA_WITHIN_GPAW, gpa_valid
from cocopart_tdx.sept import LEVEL_4K
from cocopart_tdx.status import Operand, TdxStatus, with_details

from .tdx_helpers import MIB, guest, module

BAD_RCX = with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)


@pytest.mark.parametrize("bit", [48, 49, 50])
def test_rule_gpa_above_gpaw_is_operand_invalid_rcx(bit: int) -> None:
    """GPAW 48: bits 51:48 of a page GPA are OPERAND_INVALID(RCX) for ACCEPT, ATTR.RD and
    ATTR.WR; the module never walks the SEPT for them, so there is no TD exit."""
    m = module(guest(16 * MIB))
    gpa = 1 << bit
    for r in (
        m.accept(gpa, LEVEL_4K),
        m.attr_rd(gpa),
        m.attr_wr(gpa, LEVEL_4K, A.pack({1: A.VALID | A.R}), A.pack({1: A.RWX})),
    ):
        assert r.status == BAD_RCX and r.exit is None
    assert RULE_GPA_WITHIN_GPAW


def test_gpa_width_52_has_no_bits_above_the_shared_bit() -> None:
    """With GPAW 52 bit 51 is the shared bit (a private call refuses it); bits 48-50 are an
    ordinary GPA beyond this guest's memory: an EPT-violation TD exit for the host."""
    m = module(guest(16 * MIB, gpaw=52))
    assert m.accept(1 << 51, LEVEL_4K).status == BAD_RCX
    r = m.accept(1 << 50, LEVEL_4K)
    assert r.exit is not None and r.exit.reason == "EPT_VIOLATION"
    assert gpa_valid(1 << 50, 52, private_only=True)
    assert not gpa_valid(1 << 52, 52, private_only=False)
    assert not gpa_valid(1 << 48, 48, private_only=False)
    assert gpa_valid(1 << 47, 48, private_only=False)
    assert not gpa_valid(1 << 47, 48, private_only=True)
