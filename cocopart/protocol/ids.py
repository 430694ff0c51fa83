"""Protocol, call and result-code numbers of the L2<->L1 protocol.

The numbering follows the SVSM specification as implemented by COCONUT-SVSM and Linux
(../shared/reference/sev-snp.md §1.5, §1.6, §2, §3). cocopart speaks the same protocol over
both transports (SNP calling area + VMGEXIT; TDX L2 TDCALL exit to L1).
"""

from __future__ import annotations

from enum import IntEnum


class ProtocolId(IntEnum):
    """Protocol numbers (sev-snp.md §1.6, CS protocols/mod.rs)."""

    CORE = 0
    ATTEST = 1
    VTPM = 2
    APIC = 3


class CoreCall(IntEnum):
    """Core protocol calls (sev-snp.md §2)."""

    REMAP_CA = 0
    PVALIDATE = 1
    CREATE_VCPU = 2
    DELETE_VCPU = 3
    DEPOSIT_MEM = 4
    WITHDRAW_MEM = 5
    QUERY_PROTOCOL = 6
    CONFIGURE_VTOM = 7


class AttestCall(IntEnum):
    """Attestation protocol calls (sev-snp.md §3.1)."""

    ATTEST_SERVICES = 0
    ATTEST_SINGLE_SERVICE = 1


class VtpmCall(IntEnum):
    """vTPM protocol calls (sev-snp.md §3.2)."""

    QUERY = 0
    CMD = 1


class ApicCall(IntEnum):
    """APIC (alternate injection) protocol calls (sev-snp.md §3.3)."""

    QUERY_FEATURES = 0
    CONFIGURE = 1
    READ_REGISTER = 2
    WRITE_REGISTER = 3
    CONFIGURE_VECTOR = 4


#: Versions each protocol supports, (min, max) — COCONUT supports version 1 of each.
PROTOCOL_VERSIONS: dict[ProtocolId, tuple[int, int]] = {
    ProtocolId.CORE: (1, 1),
    ProtocolId.ATTEST: (1, 1),
    ProtocolId.VTPM: (1, 1),
    ProtocolId.APIC: (1, 1),
}


class ResultCode(IntEnum):
    """Result codes returned in RAX (sev-snp.md §1.5)."""

    SUCCESS = 0x0000_0000
    INCOMPLETE = 0x8000_0000
    UNSUPPORTED_PROTOCOL = 0x8000_0001
    UNSUPPORTED_CALL = 0x8000_0002
    INVALID_ADDRESS = 0x8000_0003
    INVALID_FORMAT = 0x8000_0004
    INVALID_PARAMETER = 0x8000_0005
    INVALID_REQUEST = 0x8000_0006
    BUSY = 0x8000_0007
    # protocol-specific: 0x8000_1000 + code (CS errors.rs PROTOCOL_BASE)
    APIC_CANNOT_REGISTER = 0x8000_1000
    PVALIDATE_FAIL_INPUT = 0x8000_1001
    PVALIDATE_FAIL_PERMISSION = 0x8000_1002
    PVALIDATE_FAIL_SIZEMISMATCH = 0x8000_1006
    PVALIDATE_FAIL_NO_CHANGE = 0x8000_1010


PROTOCOL_BASE = 0x8000_1000


def protocol_error(hw_code: int) -> int:
    """Surface an architecture return code as a protocol-specific result (CS: base + code)."""
    return PROTOCOL_BASE + hw_code


def result_name(code: int) -> str:
    try:
        return ResultCode(code).name
    except ValueError:
        return (
            f"PROTOCOL_SPECIFIC_{code - PROTOCOL_BASE:#x}"
            if code >= PROTOCOL_BASE
            else f"UNKNOWN_{code:#x}"
        )


def split_rax(rax: int) -> tuple[int, int]:
    """RAX = (protocol << 32) | call (sev-snp.md §1.2)."""
    return (rax >> 32) & 0xFFFF_FFFF, rax & 0xFFFF_FFFF


def make_rax(protocol: int, call: int) -> int:
    return ((protocol & 0xFFFF_FFFF) << 32) | (call & 0xFFFF_FFFF)


_CALL_ENUMS: dict[int, type[IntEnum]] = {
    ProtocolId.CORE: CoreCall,
    ProtocolId.ATTEST: AttestCall,
    ProtocolId.VTPM: VtpmCall,
    ProtocolId.APIC: ApicCall,
}


def call_name(protocol: int, call: int) -> str:
    """``CORE.PVALIDATE``-style name of a call, numeric for unknown ids."""
    try:
        pname = ProtocolId(protocol).name
    except ValueError:
        return f"{protocol}.{call}"
    try:
        return f"{pname}.{_CALL_ENUMS[protocol](call).name}"
    except ValueError:
        return f"{pname}.{call}"
