"""Per-L2 page attributes: GPA_ATTR, ATTR_FLAGS and the legality rules of
TDG.MEM.PAGE.ATTR.WR (tdx.md §3, MOD tdg_mem_page_attr_wr.c, helpers.h).

GPA_ATTR is four 16-bit words, ATTR[vm] at bits ``16*vm`` (vm 0 = L1, always 0). Per word:
R 0, W 1, Xs 2, Xu 3, VGP 4, PWA 5, SSS 6, SVE 7, reserved 14:8, VALID 15. ATTR_FLAGS (R8)
is four 16-bit masks: bits 7:0 select the attribute bits to change, bit 15 asks for an
INVEPT of that VM after the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cocopart.model import Access
from cocopart_tdx.status import Operand, TdxStatus, with_details

# tdx.md §3 (MOD helpers.h): per-VM attribute bits
R, W, XS, XU, VGP, PWA, SSS, SVE = (1 << b for b in range(8))
RESERVED = 0x7F00  # bits 14:8
VALID = 1 << 15
EXEC = XS | XU
RWX = R | W | XS | XU
#: ATTR_FLAGS per VM: bits 7:0 select attribute bits, bit 15 = INVEPT after the update
FLAG_SELECT = 0xFF
FLAG_INVEPT = 1 << 15
FLAG_RESERVED = 0x7F00  # bits 14:8 of a mask word: modelled as must-be-zero (unconfirmed)
#: GUEST_L2_GPA_ATTR_MASK (sys field 0xA200000100000000): bits 6:0 | bit 15 (tdx.md §3)
GUEST_L2_GPA_ATTR_MASK = 0x7F | VALID
MAX_VMS = 4  # tdx.md §2.1: VM 0 = L1, VMs 1..3 = L2


def word(value: int, vm: int) -> int:
    """The 16-bit word of VM ``vm`` in a GPA_ATTR or ATTR_FLAGS value."""
    return (value >> (16 * vm)) & 0xFFFF


def pack(words: dict[int, int]) -> int:
    """Build a GPA_ATTR / ATTR_FLAGS value from per-VM words."""
    out = 0
    for vm, w in words.items():
        if not 0 <= vm < MAX_VMS:
            raise ValueError(f"VM index {vm} is not 0..3")
        out |= (w & 0xFFFF) << (16 * vm)
    return out


def access_to_attr(access: Access) -> int:
    """Neutral access -> R/W/Xs/Xu bits (model.Access READ/WRITE/SUPERVISOR_EXEC/USER_EXEC)."""
    a = 0
    if access & Access.READ:
        a |= R
    if access & Access.WRITE:
        a |= W
    if access & Access.SUPERVISOR_EXEC:
        a |= XS
    if access & Access.USER_EXEC:
        a |= XU
    return a


def attr_to_access(attr: int) -> Access:
    """R/W/Xs/Xu bits of an attribute word -> neutral access."""
    acc = Access.NONE
    if attr & R:
        acc |= Access.READ
    if attr & W:
        acc |= Access.WRITE
    if attr & XS:
        acc |= Access.SUPERVISOR_EXEC
    if attr & XU:
        acc |= Access.USER_EXEC
    return acc


def is_legal(attr: int) -> bool:
    """tdx.md §3 legality: W requires R; PWA requires R; SVE must be 0; bits 14:8 zero."""
    if attr & RESERVED or attr & SVE:
        return False
    return not (attr & (W | PWA) and not attr & R)


def grants_any(attr: int) -> bool:
    """An alias exists only while at least one of R/W/Xs/Xu is set (tdx.md §3)."""
    return bool(attr & RWX)


@dataclass
class AttrWrPlan:
    """A checked ATTR.WR request: per VM the new word (None = leave that VM alone)."""

    new: dict[int, int | None] = field(default_factory=dict)
    invept: set[int] = field(default_factory=set)


def check_request(gpa_attr: int, attr_flags: int, num_l2_vms: int) -> int | None:
    """Operand checks that do not depend on the page (tdx.md §3); a status or None.

    * ATTR[0] and MASK[0] must be 0, and the words of VMs that do not exist must be 0:
      OPERAND_INVALID with operand RDX (attributes) or R8 (flags);
    * a VM word with VALID = 0 means "leave this VM alone": its other bits must be 0
      (OPERAND_INVALID, RDX);
    * bits 14:8 of a mask word must be 0 (OPERAND_INVALID, R8) — modelled rule, unconfirmed.
    """
    for vm in range(MAX_VMS):
        a, m = word(gpa_attr, vm), word(attr_flags, vm)
        if vm == 0 or vm > num_l2_vms:
            if a:
                return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
            if m:
                return with_details(TdxStatus.OPERAND_INVALID, Operand.R8)
            continue
        if not a & VALID and a:
            return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        if m & FLAG_RESERVED:
            return with_details(TdxStatus.OPERAND_INVALID, Operand.R8)
    return None


def plan(gpa_attr: int, attr_flags: int, current: dict[int, int], num_l2_vms: int
         ) -> AttrWrPlan | int:
    """Apply ``(current & ~mask) | (new & mask)`` per valid VM and check legality.

    Returns the plan or PAGE_ATTR_INVALID (details 0: the module reports RCX = 0 and the
    current attributes in RDX).
    """
    bad = check_request(gpa_attr, attr_flags, num_l2_vms)
    if bad is not None:
        return bad
    out = AttrWrPlan()
    for vm in range(1, num_l2_vms + 1):
        a, m = word(gpa_attr, vm), word(attr_flags, vm)
        if not a & VALID:
            out.new[vm] = None
            continue
        if a & RESERVED:
            return int(TdxStatus.PAGE_ATTR_INVALID)
        sel = m & FLAG_SELECT
        value = (current.get(vm, 0) & ~sel & FLAG_SELECT) | (a & sel)
        if not is_legal(value):
            return int(TdxStatus.PAGE_ATTR_INVALID)
        out.new[vm] = value
        if m & FLAG_INVEPT:
            out.invept.add(vm)
    return out
