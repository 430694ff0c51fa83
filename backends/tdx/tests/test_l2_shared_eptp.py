"""Issue 14 point 1: an L2 VM uses shared memory only through the host's shared EPT, which its
L2 VMCS uses only while L1 sets L2_CTLS[vm].ENABLE_SHARED_EPTP; with the bit clear the module
points the L2's shared EPTP at the TDCS zero page (MOD 1.5
src/common/metadata_handlers/metadata_vp.c, L2_CTLS write handling)."""

from __future__ import annotations

import pytest
from cocopart_tdx import metadata as md
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.vp_enter import EnterGuestState

from cocopart.model import Access
from cocopart.ops import ConvertPages, ValidatePages

from .tdx_helpers import MIB, PAGE_4K, guest, machine, rng

PAGE = 4 * MIB


def test_rule_l2_shared_needs_shared_eptp_on_by_default() -> None:
    """Default (as L1s that give L2s I/O do — OpenHCL): L1 sets ENABLE_SHARED_EPTP on every L2
    vCPU it builds; an L2's convert to shared works and the L2 then reaches the page."""
    p = guest(16 * MIB, vcpus=2)
    m = machine(p)
    assert m.module.vp_md(0).read(md.l2_ctls(1)) & md.L2_CTLS_ENABLE_SHARED_EPTP
    assert p.run(ValidatePages(range=rng(PAGE, PAGE_4K))).ok
    assert p.run(ConvertPages(range=rng(PAGE, PAGE_4K), to="shared")).ok
    assert m.access("l2.1", PAGE, Access.WRITE).ok
    assert p.capabilities()["l2-shared-memory"].supported
    assert md.RULE_L2_SHARED_NEEDS_SHARED_EPTP


def test_rule_l2_shared_needs_shared_eptp_off_fails_the_convert_with_the_reason() -> None:
    """enable_shared_eptp = false: the L2's convert to shared is refused before anything runs,
    naming the control; L1's own conversions still work, and an L2 access to a shared page
    is an EPT-violation TD exit (the zero-page EPT) the host cannot resolve."""
    p = guest(16 * MIB, enable_shared_eptp=False)
    m = machine(p)
    assert not m.module.vp_md(0).read(md.l2_ctls(1)) & md.L2_CTLS_ENABLE_SHARED_EPTP
    assert p.run(ValidatePages(range=rng(PAGE, PAGE_4K))).ok
    r = p.run(ConvertPages(range=rng(PAGE, PAGE_4K), to="shared"))
    assert r.status.value == "not-supported" and "ENABLE_SHARED_EPTP" in (r.reason or "")
    assert r.primitives == 0
    [run] = p.memory_view(PAGE, PAGE + PAGE_4K)
    assert run.private and run.validated
    assert p.run(ConvertPages(layer="l1", range=rng(2 * PAGE, PAGE_4K), to="shared")).ok
    out = m.access("l2.1", 2 * PAGE, Access.READ)
    assert (out.ok, out.handled_by) == (False, "host") and "zero page" in (out.fault or "")
    cap = p.capabilities()["l2-shared-memory"]
    assert not cap.supported and "zero page" in (cap.reason or "")


def test_l1_refuses_a_forwarded_map_gpa_to_shared_without_the_shared_ept() -> None:
    """The same rule where L1 enforces it: the L2's raw TDVMCALL<MapGPA>(shared) reaches L1
    (exit 77) and is answered INVALID_OPERAND with the reason; nothing becomes shared."""
    p = guest(16 * MIB, enable_shared_eptp=False)
    m = machine(p)
    assert p.run(ValidatePages(range=rng(PAGE, PAGE_4K))).ok
    w = m.hooks.exits
    sbit = m.module.shared_bit
    state = EnterGuestState()
    state.gprs.update(vmc.map_gpa_registers(PAGE | sbit, PAGE_4K))
    w.emulate_tdvmcall(state, "l2.1")
    assert state.gprs["r10"] == vmc.TdvmcallStatus.INVALID_OPERAND
    err = m.platform.take_error()
    assert err is not None and "ENABLE_SHARED_EPTP" in err.message
    assert not m.host.shared.get(PAGE)


@pytest.mark.parametrize("value", ["yes", 1])
def test_enable_shared_eptp_must_be_a_boolean(value: object) -> None:
    from cocopart.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        guest(16 * MIB, enable_shared_eptp=value)
    assert err.value.field == "backend_options.enable_shared_eptp"
