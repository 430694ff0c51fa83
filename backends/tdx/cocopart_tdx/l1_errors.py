"""L1's failures: the architectural reason behind L1's last failed primitive (:class:`L1Error`)
and the protocol result code it surfaces as (:func:`protocol_code`)."""

from __future__ import annotations

from typing import NamedTuple

from cocopart.spi import ResultCode
from cocopart_tdx.status import TdxStatus, base, mnemonic, status_name
from cocopart_tdx.vp_enter import VmxExit

#: An EPT-violation TD exit the host did not fix: not a TDX status, the VMX exit reason.
EPT_UNRESOLVED = -1


class L1Error(NamedTuple):
    """The architectural reason behind L1's last failed primitive."""

    mnemonic: str
    code: int
    message: str


def error_of(status: int, what: str) -> L1Error:
    if status == EPT_UNRESOLVED:
        return L1Error(
            "EPT_VIOLATION",
            int(VmxExit.EPT_VIOLATION),
            f"{what}: the EPT-violation TD exit was not resolved by the host "
            "(it did not map the page), so the TDCALL cannot complete",
        )
    return L1Error(mnemonic(status), status, f"{what} returned {status_name(status)}")


def protocol_code(status: int) -> int:
    """The protocol result an L1 failure surfaces as (one table, our choice)."""
    b = base(status) if status >= 0 else status
    table = {
        int(TdxStatus.PAGE_SIZE_MISMATCH): ResultCode.PVALIDATE_FAIL_SIZEMISMATCH,
        int(TdxStatus.OPERAND_BUSY): ResultCode.BUSY,
        int(TdxStatus.PAGE_ALREADY_ACCEPTED): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.EPT_ENTRY_STATE_INCORRECT): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.EPT_ENTRY_FREE): ResultCode.PVALIDATE_FAIL_NO_CHANGE,
        int(TdxStatus.PAGE_ATTR_INVALID): ResultCode.PVALIDATE_FAIL_PERMISSION,
        int(TdxStatus.L2_SEPT_WALK_FAILED): ResultCode.PVALIDATE_FAIL_PERMISSION,
    }
    return int(table.get(b, ResultCode.PVALIDATE_FAIL_INPUT))
