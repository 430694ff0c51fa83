"""Issue 14 point 2: the model's TD has ATTRIBUTES.SEPT_VE_DISABLE = 1 (as KVM requires), so
TDH.MNG.INIT sets TD_CTLS.PENDING_VE_DISABLE and an L1 access to a PENDING page is an
EPT-violation TD exit to the host, not a #VE (MOD 1.5 tdh_mng_init.c, td_ept_violation.c
``td_ept_violation_exit``)."""

from __future__ import annotations

from cocopart_tdx import metadata as md
from cocopart_tdx.tdcall import EEQ_PENDING, RULE_SEPT_VE_DISABLE_PENDING_ACCESS_EXITS_TO_HOST

from cocopart.model import Access

from .tdx_helpers import MIB, guest, machine

PAGE = 8 * MIB


def test_rule_sept_ve_disable_pending_access_exits_to_host() -> None:
    """MOD td_ept_violation.c: PENDING page + TD_CTLS.PENDING_VE_DISABLE -> TD exit with EEQ
    PENDING_EPT_VIOLATION; the host (KVM) finds the page mapped and re-enters."""
    p = guest(16 * MIB)
    m = machine(p)
    assert m.module.config.attributes & md.TD_ATTR_SEPT_VE_DISABLE
    assert m.module.vm_rd(0, md.TD_CTLS_FIELD).out["r8"] & md.TD_CTLS_PENDING_VE_DISABLE
    assert m.seamcalls.page_aug(PAGE).ok  # the host added the page: PENDING
    out = m.access("l1", PAGE, Access.READ)
    assert (out.ok, out.handled_by) == (False, "host") and "#VE" not in (out.fault or "")
    assert p.trace.switches[("l1", "host", "TD exit")] == 1
    exit_ = m.module.l1_pending_access(PAGE)
    assert exit_ is not None and exit_.eeq_type == EEQ_PENDING
    assert RULE_SEPT_VE_DISABLE_PENDING_ACCESS_EXITS_TO_HOST


def test_without_pending_ve_disable_the_access_is_a_ve_for_l1() -> None:
    """TD_CTLS is guest-writable (tdx.md §7.2): with bit 0 cleared the module injects a #VE
    into L1 instead (td_ept_violation.c, tdx_inject_ve)."""
    p = guest(16 * MIB)
    m = machine(p)
    assert m.module.vm_wr(0, md.TD_CTLS_FIELD, 0, md.TD_CTLS_PENDING_VE_DISABLE).ok
    assert m.seamcalls.page_aug(PAGE).ok
    out = m.access("l1", PAGE, Access.READ)
    assert (out.ok, out.handled_by) == (False, "l1") and "#VE" in (out.fault or "")
    assert p.trace.total_switches == 0
