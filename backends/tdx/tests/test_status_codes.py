"""TDX status codes (tdx.md §9): every code with its value, severity and name, and every code
the model produces, produced by the rule that produces it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cocopart_tdx import attributes as A
from cocopart_tdx import metadata as md
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, SeptEntry, SeptState
from cocopart_tdx.status import (
    Operand,
    TdxStatus,
    base,
    describe,
    details,
    is_error,
    is_warning,
    mnemonic,
    status_name,
    with_details,
)
from cocopart_tdx.tdcall import TdcallResult, TdxModule
from cocopart_tdx.vmcall import TdvmcallStatus

from .tdx_helpers import MIB, PAGE_2M, PAGE_4K, guest, module

# tdx.md §9, typed from the table
TABLE = {
    "SUCCESS": 0x0000000000000000,
    "OPERAND_INVALID": 0xC000010000000000,
    "OPERAND_ADDR_RANGE_ERROR": 0xC000010100000000,
    "OPERAND_BUSY": 0x8000020000000000,
    "OPERAND_BUSY_HOST_PRIORITY": 0x8000020400000000,
    "PAGE_METADATA_INCORRECT": 0xC000030000000000,
    "EPT_WALK_FAILED": 0xC0000B0000000000,
    "EPT_ENTRY_FREE": 0xC0000B0100000000,
    "EPT_ENTRY_NOT_FREE": 0xC0000B0200000000,
    "EPT_ENTRY_STATE_INCORRECT": 0xC0000B0D00000000,
    "GPA_RANGE_BLOCKED": 0xC0000B0C00000000,
    "PAGE_ALREADY_ACCEPTED": 0x00000B0A00000000,
    "PAGE_SIZE_MISMATCH": 0xC0000B0B00000000,
    "L2_SEPT_WALK_FAILED": 0xC0000B0F00000000,
    "L2_SEPT_ENTRY_NOT_FREE": 0xC0000B1000000000,
    "PAGE_ATTR_INVALID": 0xC0000B1100000000,
    "L2_SEPT_PAGE_NOT_PROVIDED": 0xC0000B1200000000,
    "METADATA_FIELD_ID_INCORRECT": 0xC0000C0000000000,
    "METADATA_FIELD_NOT_WRITABLE": 0xC0000C0100000000,
    "METADATA_FIELD_NOT_READABLE": 0xC0000C0200000000,
    "METADATA_FIELD_VALUE_NOT_VALID": 0xC0000C0300000000,
    "INVALID_CPUSVN": 0xC000100000000000,
    "INVALID_REPORTMACSTRUCT": 0xC000100100000000,
    "L2_EXIT_HOST_ROUTED_ASYNC": 0x0000110000000000,
    "L2_EXIT_HOST_ROUTED_TDVMCALL": 0x0000110100000000,
    "L2_EXIT_PENDING_INTERRUPT": 0x0000110200000000,
    "PENDING_INTERRUPT": 0x0000112000000000,
    "TD_EXIT_BEFORE_L2_ENTRY": 0x0000114000000000,
    "TD_EXIT_ON_L2_VM_EXIT": 0x0000114100000000,
    "TD_EXIT_ON_L2_TO_L1": 0x0000114200000000,
    "GLA_NOT_CANONICAL": 0xC000116000000000,
    "NON_RECOVERABLE_TD": 0x6000000200000000,
    "NON_RECOVERABLE_TD_NON_ACCESSIBLE": 0x6000000500000000,
    "TD_FATAL": 0xE000060400000000,
    # the host-side SEAMCALLs of issue 14 (MOD 1.5 include/auto_gen/tdx_error_codes_defs.h)
    "INTERRUPTED_RESTARTABLE": 0x8000000400000000,
    "GPA_RANGE_NOT_BLOCKED": 0xC0000B0600000000,
    "GPA_RANGE_ALREADY_BLOCKED": 0x00000B0700000000,
    "TLB_TRACKING_NOT_DONE": 0xC0000B0800000000,
    "EPT_INVALID_PROMOTE_CONDITIONS": 0xC0000B0900000000,
}
WARNINGS = {
    "PAGE_ALREADY_ACCEPTED",
    "L2_EXIT_HOST_ROUTED_ASYNC",
    "L2_EXIT_HOST_ROUTED_TDVMCALL",
    "L2_EXIT_PENDING_INTERRUPT",
    "PENDING_INTERRUPT",
    "TD_EXIT_BEFORE_L2_ENTRY",
    "TD_EXIT_ON_L2_VM_EXIT",
    "TD_EXIT_ON_L2_TO_L1",
    "NON_RECOVERABLE_TD",
    "NON_RECOVERABLE_TD_NON_ACCESSIBLE",
    "GPA_RANGE_ALREADY_BLOCKED",
}


def test_every_status_code_of_the_reference_is_defined_with_its_value() -> None:
    assert {s.name: int(s) for s in TdxStatus} == TABLE


@pytest.mark.parametrize("name", sorted(TABLE))
def test_status_code_severity_bit_63_and_name(name: str) -> None:
    code = TABLE[name]
    assert is_error(code) == bool(code >> 63)
    assert is_warning(code) == (name in WARNINGS)
    assert status_name(with_details(code, 0x12)) == name
    assert mnemonic(code) == f"TDX_{name}"
    assert base(with_details(code, Operand.RDX)) == code
    assert details(with_details(code, Operand.RDX)) == 2


def test_page_already_accepted_is_a_warning_with_bit_63_clear() -> None:
    code = TdxStatus.PAGE_ALREADY_ACCEPTED
    assert not is_error(code) and is_warning(code) and code >> 32 == 0x00000B0A


def test_operand_ids_and_describe() -> None:
    assert (Operand.RAX, Operand.RCX, Operand.RDX, Operand.R8) == (0, 1, 2, 8)
    assert (Operand.NUM_L2_VMS, Operand.RTMR, Operand.L2_VAPIC_GPA) == (71, 168, 170)
    assert "L2_VAPIC_GPA" in describe(with_details(TdxStatus.OPERAND_INVALID, 170))
    assert status_name(0x1234_5678_0000_0000).startswith("UNKNOWN_")


def test_tdvmcall_status_values() -> None:
    assert [int(s) for s in TdvmcallStatus] == [
        0,
        1,
        0x8000000000000000,
        0x8000000000000001,
        0x8000000000000002,
        0x8000000000000003,
    ]


# -- every code the model produces, produced -------------------------------------------------
def _mod(**opts: object) -> TdxModule:
    return module(guest(16 * MIB, **opts))  # type: ignore[arg-type]


def _pending(m: TdxModule, gpa: int, level: int) -> None:
    size = PAGE_2M if level == LEVEL_2M else PAGE_4K
    m.sept.set_entries(gpa, gpa + size, SeptEntry(SeptState.PENDING, level))


def _success() -> TdcallResult:
    m = _mod()
    _pending(m, 0, LEVEL_4K)
    return m.accept(0, LEVEL_4K)


def _operand_invalid() -> TdcallResult:
    return _mod().tdcall(0, {"rax": 1 << 24})


def _busy() -> TdcallResult:
    m = _mod()
    m.busy = 1
    return m.accept(0, LEVEL_4K)


def _already() -> TdcallResult:
    m = _mod()
    _pending(m, 0, LEVEL_4K)
    m.accept(0, LEVEL_4K)
    return m.accept(0, LEVEL_4K)


def _size_mismatch() -> TdcallResult:
    m = _mod()
    _pending(m, 0, LEVEL_4K)
    return m.accept(0, LEVEL_2M)


def _entry_free() -> TdcallResult:
    return _mod(module="2.0").release(0, LEVEL_4K)


def _state_incorrect() -> TdcallResult:
    m = _mod(module="2.0")
    _pending(m, 0, LEVEL_4K)
    return m.release(0, LEVEL_4K)


def _l2_sept_walk_failed() -> TdcallResult:
    m = _mod()
    _pending(m, 0, LEVEL_4K)
    m.accept(0, LEVEL_4K)
    m.l2_sept_missing.add((1, 0))
    return m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.R}), A.pack({1: A.RWX}))


def _attr_invalid() -> TdcallResult:
    m = _mod()
    _pending(m, 0, LEVEL_4K)
    return m.attr_wr(0, LEVEL_4K, A.pack({1: A.VALID | A.W}), A.pack({1: A.RWX}))


def _field_id_incorrect() -> TdcallResult:
    return _mod().vp_rd(0, 0, md.l2_vmcs_field(2, 0x681E))  # VM 2 does not exist


def _not_writable() -> TdcallResult:
    return _mod().vp_wr(0, 0, md.l2_vmcs_field(1, 0x4000), 1, ~0 & (2**64 - 1))


def _not_readable() -> TdcallResult:
    return _mod().vp_rd(0, 0, md.l2_vmcs_field(1, 0x0000))  # VPID is not visible


def _value_not_valid() -> TdcallResult:
    return _mod().vp_wr(0, 0, md.l2_vmcs_field(1, 0x6800), 1 << 5, 1 << 5)  # CR0.NE masked


def _pending_interrupt() -> TdcallResult:
    m = _mod()
    m.l1_pending_interrupt.add(0)
    from cocopart_tdx.vp_enter import enter_rcx

    return m.vp_enter(
        0, enter_rcx(1), m.vp_md(0).get_internal(md.L2_ENTER_GUEST_STATE_GPA_BASE + 1)
    )


PRODUCED: dict[str, Callable[[], TdcallResult]] = {
    "SUCCESS": _success,
    "OPERAND_INVALID": _operand_invalid,
    "OPERAND_BUSY": _busy,
    "PAGE_ALREADY_ACCEPTED": _already,
    "PAGE_SIZE_MISMATCH": _size_mismatch,
    "EPT_ENTRY_FREE": _entry_free,
    "EPT_ENTRY_STATE_INCORRECT": _state_incorrect,
    "L2_SEPT_WALK_FAILED": _l2_sept_walk_failed,
    "PAGE_ATTR_INVALID": _attr_invalid,
    "METADATA_FIELD_ID_INCORRECT": _field_id_incorrect,
    "METADATA_FIELD_NOT_WRITABLE": _not_writable,
    "METADATA_FIELD_NOT_READABLE": _not_readable,
    "METADATA_FIELD_VALUE_NOT_VALID": _value_not_valid,
    "PENDING_INTERRUPT": _pending_interrupt,
}


def _seamcall(name: str) -> int:
    """The host-side SEAMCALL statuses of issue 14, each from the check that produces it
    (cocopart_tdx.host_seamcalls / sept_resize), on a 2M host's accepted 2M leaf at 0."""
    from cocopart.ops import ValidatePages

    from .tdx_helpers import machine, rng

    p = guest(16 * MIB, host_mapping="2M")
    assert p.run(ValidatePages(range=rng(0, PAGE_2M))).ok
    calls = machine(p).seamcalls
    if name == "GPA_RANGE_NOT_BLOCKED":
        return calls.page_demote(0).status
    calls.range_block(0, LEVEL_2M)
    if name == "GPA_RANGE_ALREADY_BLOCKED":
        return calls.range_block(0, LEVEL_2M).status
    if name == "TLB_TRACKING_NOT_DONE":
        return calls.page_demote(0).status
    calls.mem_track()
    if name == "L2_SEPT_PAGE_NOT_PROVIDED":
        return calls.page_demote(0, l2_pages=()).status
    if name == "INTERRUPTED_RESTARTABLE":
        calls.host.module.host_interrupts = 1
        return calls.page_demote(0).status
    assert calls.page_demote(0).ok  # EPT_INVALID_PROMOTE_CONDITIONS: one leaf differs
    sept = calls.host.module.sept
    sept.set_alias(1, 0, PAGE_4K, sept.alias(1, 0)._replace(attr=1))
    calls.range_block(0, LEVEL_2M)
    calls.mem_track()
    return calls.page_promote(0).status


SEAMCALL_PRODUCED = (
    "GPA_RANGE_ALREADY_BLOCKED",
    "TLB_TRACKING_NOT_DONE",
    "L2_SEPT_PAGE_NOT_PROVIDED",
    "INTERRUPTED_RESTARTABLE",
    "GPA_RANGE_NOT_BLOCKED",
    "EPT_INVALID_PROMOTE_CONDITIONS",
)


@pytest.mark.parametrize("name", SEAMCALL_PRODUCED)
def test_host_seamcall_status_is_produced_by_its_rule(name: str) -> None:
    assert status_name(_seamcall(name)) == name


#: Defined, but no modelled leaf returns them (host-side, debug, service-TD, INVGLA,
#: VERIFYREPORT, or — EPT_WALK_FAILED — replaced by the TD-exit path, tdx.md §4.1).
NOT_PRODUCED = {
    "OPERAND_ADDR_RANGE_ERROR",
    "OPERAND_BUSY_HOST_PRIORITY",
    "PAGE_METADATA_INCORRECT",
    "EPT_WALK_FAILED",
    "EPT_ENTRY_NOT_FREE",
    "GPA_RANGE_BLOCKED",
    "L2_SEPT_ENTRY_NOT_FREE",
    "INVALID_CPUSVN",
    "INVALID_REPORTMACSTRUCT",
    "L2_EXIT_HOST_ROUTED_ASYNC",
    "L2_EXIT_HOST_ROUTED_TDVMCALL",
    "L2_EXIT_PENDING_INTERRUPT",
    "TD_EXIT_BEFORE_L2_ENTRY",
    "TD_EXIT_ON_L2_VM_EXIT",
    "TD_EXIT_ON_L2_TO_L1",
    "GLA_NOT_CANONICAL",
    "NON_RECOVERABLE_TD",
    "NON_RECOVERABLE_TD_NON_ACCESSIBLE",
    "TD_FATAL",
}


def test_produced_and_not_produced_cover_every_code() -> None:
    assert set(PRODUCED) | set(SEAMCALL_PRODUCED) | NOT_PRODUCED == set(TABLE)
    assert not (set(PRODUCED) | set(SEAMCALL_PRODUCED)) & NOT_PRODUCED


@pytest.mark.parametrize("name", sorted(PRODUCED))
def test_status_code_is_produced_by_its_rule(name: str) -> None:
    r = PRODUCED[name]()
    assert r.exit is None
    assert status_name(r.status) == name


def test_accept_of_a_free_page_is_a_td_exit_not_ept_walk_failed() -> None:
    r = _mod().accept(0, LEVEL_4K)
    assert r.exit is not None and r.exit.reason == "EPT_VIOLATION" and r.status == 0
