"""TDX module completion status codes (tdx.md §9) and TDCALL operand ids (tdx.md §1).

A status is 64 bits: bits 63:32 name the condition (bit 63 = error, 62 = non-recoverable,
61 = fatal, 60 = host-recoverability hint, 47:40 class), bits 31:0 carry details — an
operand id (:class:`Operand`), a SEPT level, or for L2_SEPT_WALK_FAILED the VM (31:16) and
level (15:0). Linux compares ``status >> 32``; so do :func:`status_name` and :func:`base`.

A status with bit 63 clear and a non-zero upper half is a *warning*: the call completed and
says something, e.g. PAGE_ALREADY_ACCEPTED (0x00000B0A00000000).
"""

from __future__ import annotations

from enum import IntEnum

ERROR_BIT = 1 << 63  # tdx.md §1 (MOD tdx_api_defs.h): bit 63 = error
NON_RECOVERABLE_BIT = 1 << 62
FATAL_BIT = 1 << 61
HOST_RECOVERABILITY_HINT_BIT = 1 << 60
DETAILS_MASK = 0xFFFF_FFFF
U64 = (1 << 64) - 1


class TdxStatus(IntEnum):
    """Status codes with their details bits clear (tdx.md §9, MOD tdx_error_codes_defs.h)."""

    SUCCESS = 0x0000000000000000
    OPERAND_INVALID = 0xC000010000000000
    OPERAND_ADDR_RANGE_ERROR = 0xC000010100000000
    OPERAND_BUSY = 0x8000020000000000
    OPERAND_BUSY_HOST_PRIORITY = 0x8000020400000000
    PAGE_METADATA_INCORRECT = 0xC000030000000000
    INTERRUPTED_RESTARTABLE = 0x8000000400000000
    EPT_WALK_FAILED = 0xC0000B0000000000
    EPT_ENTRY_FREE = 0xC0000B0100000000
    EPT_ENTRY_NOT_FREE = 0xC0000B0200000000
    GPA_RANGE_NOT_BLOCKED = 0xC0000B0600000000
    GPA_RANGE_ALREADY_BLOCKED = 0x00000B0700000000
    TLB_TRACKING_NOT_DONE = 0xC0000B0800000000
    EPT_INVALID_PROMOTE_CONDITIONS = 0xC0000B0900000000
    PAGE_ALREADY_ACCEPTED = 0x00000B0A00000000
    PAGE_SIZE_MISMATCH = 0xC0000B0B00000000
    GPA_RANGE_BLOCKED = 0xC0000B0C00000000
    EPT_ENTRY_STATE_INCORRECT = 0xC0000B0D00000000
    L2_SEPT_WALK_FAILED = 0xC0000B0F00000000
    L2_SEPT_ENTRY_NOT_FREE = 0xC0000B1000000000
    PAGE_ATTR_INVALID = 0xC0000B1100000000
    L2_SEPT_PAGE_NOT_PROVIDED = 0xC0000B1200000000
    METADATA_FIELD_ID_INCORRECT = 0xC0000C0000000000
    METADATA_FIELD_NOT_WRITABLE = 0xC0000C0100000000
    METADATA_FIELD_NOT_READABLE = 0xC0000C0200000000
    METADATA_FIELD_VALUE_NOT_VALID = 0xC0000C0300000000
    INVALID_CPUSVN = 0xC000100000000000
    INVALID_REPORTMACSTRUCT = 0xC000100100000000
    L2_EXIT_HOST_ROUTED_ASYNC = 0x0000110000000000
    L2_EXIT_HOST_ROUTED_TDVMCALL = 0x0000110100000000
    L2_EXIT_PENDING_INTERRUPT = 0x0000110200000000
    PENDING_INTERRUPT = 0x0000112000000000
    TD_EXIT_BEFORE_L2_ENTRY = 0x0000114000000000
    TD_EXIT_ON_L2_VM_EXIT = 0x0000114100000000
    TD_EXIT_ON_L2_TO_L1 = 0x0000114200000000
    GLA_NOT_CANONICAL = 0xC000116000000000
    NON_RECOVERABLE_TD = 0x6000000200000000
    NON_RECOVERABLE_TD_NON_ACCESSIBLE = 0x6000000500000000
    TD_FATAL = 0xE000060400000000


class Operand(IntEnum):
    """Operand ids reported in the low bits of a status (tdx.md §1, MOD tdx_api_defs.h)."""

    RAX = 0
    RCX = 1
    RDX = 2
    RBX = 3
    RBP = 5
    RSI = 6
    RDI = 7
    R8 = 8
    R9 = 9
    R10 = 10
    R11 = 11
    R12 = 12
    R13 = 13
    R14 = 14
    R15 = 15
    ATTRIBUTES = 64
    NUM_L2_VMS = 71
    SEPT_TREE = 146
    SEPT_ENTRY = 147
    RTMR = 168
    L2_VAPIC_GPA = 170


_BY_HIGH: dict[int, TdxStatus] = {int(s) >> 32: s for s in TdxStatus}


def base(status: int) -> int:
    """The status with its details (bits 31:0) cleared."""
    return status & ~DETAILS_MASK & U64


def details(status: int) -> int:
    """Bits 31:0: operand id, SEPT level or other details."""
    return status & DETAILS_MASK


def with_details(code: TdxStatus | int, value: int) -> int:
    """``code`` with ``value`` in its details bits (operand id or level)."""
    return (int(code) & ~DETAILS_MASK & U64) | (value & DETAILS_MASK)


def is_error(status: int) -> bool:
    """Bit 63 set: the call failed."""
    return bool(status & ERROR_BIT)


def is_warning(status: int) -> bool:
    """A completed call with something to say (bit 63 clear, upper half non-zero)."""
    return not is_error(status) and (status >> 32) != 0


def status_name(status: int) -> str:
    """``"PAGE_SIZE_MISMATCH"``-style name of a status (details ignored)."""
    known = _BY_HIGH.get(status >> 32)
    return known.name if known is not None else f"UNKNOWN_{status:#018x}"


def mnemonic(status: int) -> str:
    """The spec's mnemonic, e.g. ``"TDX_PAGE_SIZE_MISMATCH"`` (``"TDX_SUCCESS"``)."""
    return "TDX_" + status_name(status)


def describe(status: int) -> str:
    """A short human rendering: name, value and what the details bits carry."""
    d = details(status)
    if d == 0:
        return f"{mnemonic(status)} ({status:#018x})"
    try:
        operand = Operand(d).name
    except ValueError:
        operand = f"{d:#x}"
    return f"{mnemonic(status)} ({status:#018x}, details {operand})"
