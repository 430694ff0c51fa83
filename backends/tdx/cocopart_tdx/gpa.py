"""Guest-physical addresses of a TD: the shared bit and the validity check every TDCALL that
takes a GPA applies (MOD 1.5 ``src/common/helpers/helpers.c`` ``check_gpa_validity``).

* The shared bit is GPA bit GPAW-1: 47 with GPAW 48, 51 with GPAW 52 (tdx.md §4.3).
* No GPA bit at or above MAX_PA may be set (the model's platform has MAX_PA = 52).
* With GPAW 48, bits 51:48 must be 0 as well: the CPU treats them as reserved in every
  paging-structure entry of such a TD.
* Callers that need a private GPA also reject the shared bit (``PRIVATE_ONLY``).

A GPA that fails the check is TDX_OPERAND_INVALID naming the operand that carried it; it
never reaches the SEPT walk, so it is not an EPT-violation TD exit (``RULE_GPA_WITHIN_GPAW``).
"""

from __future__ import annotations

#: The model's platform MAX_PA (bits of a host physical address the CPU implements).
MAX_PA = 52
#: A page-call or buffer GPA with a bit at or above GPAW (other than the shared bit of a
#: shared GPA) is TDX_OPERAND_INVALID of its operand (MOD helpers.c check_gpa_validity).
RULE_GPA_WITHIN_GPAW = "a GPA with bits above GPAW is OPERAND_INVALID, not an EPT violation"


def shared_bit(gpaw: int) -> int:
    """GPA bit GPAW-1 (tdx.md §4.3)."""
    return 1 << (gpaw - 1)


def gpa_valid(gpa: int, gpaw: int, *, private_only: bool) -> bool:
    """MOD helpers.c ``check_gpa_validity``: no bit at or above MAX_PA, none of bits 51:48 with
    GPAW 48, and (``private_only``) not the shared bit."""
    if gpa < 0 or gpa >> MAX_PA:
        return False
    if private_only and gpa & shared_bit(gpaw):
        return False
    return not (gpaw == 48 and gpa >> 48)
