"""What a host access to TD-private memory does on TDX (issue 7; cocopart_tdx.host_faults):
no host fault; host reads see zeros; a host write clears the TD-owner bit and the TD's next
read machine-checks and makes the TD fatal; the partial-write erratum; kexec."""

from __future__ import annotations

import pytest
from cocopart_tdx import host_faults as hf
from cocopart_tdx import status as st
from cocopart_tdx.machine import TdxMachine

from cocopart.errors import ConfigError
from cocopart.host_faults import HostAccessor
from cocopart.ops import ConvertPages, ValidatePages

from .tdx_helpers import MIB, PAGE_4K, guest, machine, rng

PAGE = 0x1000
ERRATUM = frozenset({hf.ERRATUM_PW_MCE})


def _m() -> TdxMachine:
    p = guest(16 * MIB)
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    m = machine(p)
    m.memory.write(PAGE, b"td secret")
    return m


def test_tdx_has_no_host_fault_policy_option() -> None:
    assert machine(guest(16 * MIB)).host_fault_policies() == ()
    with pytest.raises(ConfigError):
        guest(16 * MIB, host_fault_policy="sigbus")


def test_rule_tdx_host_write_unchecked_completes_without_a_fault() -> None:
    m = _m()
    w = hf.host_write(m, PAGE, b"dma data", accessor=HostAccessor.USER, process="qemu:guest0")
    assert w.completed and w.td_private and not w.machine_check and w.killed is None
    assert w.line_state is hf.LineState.HOST_WRITTEN
    assert hf.RULE_TDX_HOST_WRITE_UNCHECKED in w.rules
    assert m.memory.read(PAGE, 8) == b"dma data"
    assert m.sept_state(PAGE) == ("MAPPED", 4)  # the SEPT does not notice


def test_rule_tdx_host_read_returns_zeros() -> None:
    r = hf.host_read(_m(), PAGE, 9)
    assert r.data == bytes(9) and not r.machine_check
    assert hf.RULE_TDX_HOST_READ_RETURNS_ZEROS in r.rules


def test_rule_tdx_host_read_returns_zeros_through_machine_access() -> None:
    """Issue 14 point 8: one rule and one code path — ``TdxMachine.access("host", ...)`` on a
    TD-private page is the same host read (TDX module base spec §16.2.3): no fault, the
    host sees zeros, the TD's data is untouched; a host write completes
    (RULE_TDX_HOST_WRITE_UNCHECKED) and the TD's next read machine-checks."""
    from cocopart.model import Access

    m = _m()
    out = m.access("host", PAGE, Access.READ)
    assert out.ok and out.fault is None
    assert hf.host_read(m, PAGE, 9).data == bytes(9)
    assert m.memory.read(PAGE, 9) == b"td secret"
    assert m.access("host", PAGE, Access.WRITE).ok
    assert m.integrity.state(PAGE) is hf.LineState.HOST_WRITTEN
    out, _steps = hf.td_read(m, "l2.1", PAGE)
    assert not out.ok and hf.MACHINE_CHECK in (out.fault or "")


def test_rule_tdx_host_reads_back_its_write() -> None:
    m = _m()
    hf.host_write(m, PAGE, b"mine")
    r = hf.host_read(m, PAGE, 4)
    assert r.data == b"mine" and hf.RULE_TDX_HOST_READS_BACK_ITS_WRITE in hf.UNCONFIRMED


def test_rule_tdx_td_read_after_host_write_poisons_and_the_td_is_fatal() -> None:
    m = _m()
    assert hf.td_read(m, "l2.1", PAGE)[0].ok  # untouched: fine
    hf.host_write(m, PAGE)
    out, steps = hf.td_read(m, "l2.1", PAGE)
    assert not out.ok and out.fault == "#MC (TD fatal)" and out.handled_by == "host"
    assert m.integrity.fatal_status == st.TdxStatus.NON_RECOVERABLE_TD_NON_ACCESSIBLE
    assert m.integrity.state(PAGE) is hf.LineState.POISONED
    assert "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE" in steps[-1].result
    assert m.trace.count("MACHINE_CHECK", issuer="firmware") == 1
    other, _ = hf.td_read(m, "l2.1", PAGE + PAGE_4K)
    assert not other.ok and other.fault == "the TD is fatal"  # RULE_TDX_MC_IN_TD_IS_FATAL


def test_writes_to_shared_pages_are_plain() -> None:
    p = guest(16 * MIB)
    assert p.run(ValidatePages(range=rng(0, 2 * MIB))).ok
    assert p.run(ConvertPages(range=rng(PAGE, PAGE_4K), to="shared")).ok
    m = machine(p)
    w = hf.host_write(m, PAGE, b"ring")
    assert not w.td_private and w.line_state is hf.LineState.CLEAN
    assert hf.host_read(m, PAGE, 4).data == b"ring"


@pytest.mark.parametrize(
    ("accessor", "killed", "panicked"),
    [(HostAccessor.USER, "qemu", False), (HostAccessor.KERNEL, None, True)],
)
def test_rule_tdx_partial_write_erratum_poisons_at_once_and_the_host_read_machine_checks(
    accessor: HostAccessor, killed: str | None, panicked: bool
) -> None:
    m = _m()
    w = hf.host_write(m, PAGE, b"x", accessor=accessor, partial=True, errata=ERRATUM)
    assert w.line_state is hf.LineState.POISONED
    assert hf.RULE_TDX_PARTIAL_WRITE_ERRATUM in w.rules
    r = hf.host_read(m, PAGE, accessor=accessor)
    assert r.machine_check and r.killed == killed and r.panicked is panicked
    assert hf.RULE_TDX_HOST_POISON_CONSUMPTION in r.rules


def test_a_partial_write_without_the_erratum_is_like_any_host_write() -> None:
    w = hf.host_write(_m(), PAGE, b"x", partial=True)
    assert w.line_state is hf.LineState.HOST_WRITTEN


def test_rule_tdx_kexec_refused_on_erratum_platforms_only() -> None:
    assert hf.kexec_allowed(frozenset()) and not hf.kexec_allowed(ERRATUM)


def test_the_integrity_state_is_forked_with_the_machine() -> None:
    m = _m()
    hf.host_write(m, PAGE)
    other = m.fork()
    assert isinstance(other, TdxMachine)
    assert other.integrity.state(PAGE) is hf.LineState.HOST_WRITTEN
    hf.td_read(other, "l2.1", PAGE)
    assert other.integrity.fatal and not m.integrity.fatal
