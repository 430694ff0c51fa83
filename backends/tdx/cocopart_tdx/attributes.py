"""Per-L2 page attributes: GPA_ATTR, ATTR_FLAGS and the legality rules of
TDG.MEM.PAGE.ATTR.WR (tdx.md §3, MOD tdg_mem_page_attr_wr.c, helpers.h).

GPA_ATTR is four 16-bit words, ATTR[vm] at bits ``16*vm`` (vm 0 = L1, always 0). Per word:
R 0, W 1, Xs 2, Xu 3, VGP 4, PWA 5, SSS 6, SVE 7, reserved 14:8, VALID 15. ATTR_FLAGS (R8)
is four 16-bit masks: bits 14:0 select the attribute bits to change (7:0 name attributes,
14:8 select the reserved bits), bit 15 asks for an INVEPT of that VM after the update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cocopart.spi import Access
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
    """MOD helpers.h ``is_gpa_attr_legal``: VALID = 0 needs every other bit 0; bits 14:8 zero;
    W requires R; PWA requires R; SVE must be 0."""
    if not attr & VALID and attr & ~VALID & 0xFFFF:
        return False
    if attr & RESERVED or attr & SVE:
        return False
    return not (attr & (W | PWA) and not attr & R)


def grants_any(attr: int) -> bool:
    """MOD helpers.h ``is_gpa_attr_present``: an alias exists only while at least one of
    R/W/Xs/Xu is set (tdx.md §3)."""
    return bool(attr & RWX)


#: ATTR.WR checks the per-VM words of RDX (attributes) and R8 (flags) before it looks at RCX
#: (the page): two bad operands give OPERAND_INVALID(RDX) (MOD tdg_mem_page_attr_wr.c).
RULE_ATTR_WR_WORDS_BEFORE_RCX = "ATTR.WR checks the RDX/R8 words before the RCX page info"
#: The mask (R8 bits 14:0 of a VM's word) is never operand-checked: the new attributes are
#: ANDed with it (bit 15 forced to 1 so VALID passes), so unselected bits — reserved ones
#: included — are simply dropped (MOD tdg_mem_page_attr_wr.c get_all_l2_sept_entries).
RULE_ATTR_WR_MASK_NOT_CHECKED = "ATTR.WR never checks its mask: new attributes are ANDed with it"
#: Legality (W => R, PWA => R, no SVE, bits 14:8 clear) is checked only when the resulting
#: attributes are present (one of R/W/Xs/Xu); a result with none removes the alias (or
#: creates none) and returns TDX_SUCCESS (MOD tdg_mem_page_attr_wr.c, helpers.h).
RULE_ATTR_WR_LEGAL_ONLY_WHEN_PRESENT = "ATTR.WR checks legality only of a present result"


@dataclass
class AttrWrPlan:
    """A checked ATTR.WR request, as MOD tdg_mem_page_attr_wr.c computes it before committing.

    ``new``: per VM the new alias word (R..SVE bits; None = leave that VM alone; a word with
    none of R/W/Xs/Xu removes the alias). ``out``: the per-VM words the leaf returns in RDX.
    ``status``: SUCCESS or PAGE_ATTR_INVALID (nothing is committed then). ``walk_failed_vm``:
    the first VM whose L2 SEPT walk failed (the module stops there)."""

    new: dict[int, int | None] = field(default_factory=dict)
    invept: set[int] = field(default_factory=set)
    out: dict[int, int] = field(default_factory=dict)
    status: int = 0
    walk_failed_vm: int | None = None

    @property
    def rdx(self) -> int:
        return pack(self.out)


def check_request(gpa_attr: int, attr_flags: int, num_l2_vms: int) -> int | None:
    """The per-VM operand checks, first of all ATTR.WR's checks, VM by VM (MOD
    tdg_mem_page_attr_wr.c): for VM 0 and VMs that do not exist, a non-zero attribute word is
    OPERAND_INVALID(RDX) and then a non-zero flags word OPERAND_INVALID(R8); for an existing
    L2 VM a word with VALID = 0 must be all 0 (OPERAND_INVALID, RDX). The flags (mask) of an
    existing VM are not checked (:data:`RULE_ATTR_WR_MASK_NOT_CHECKED`)."""
    for vm in range(MAX_VMS):
        a, m = word(gpa_attr, vm), word(attr_flags, vm)
        if vm == 0 or vm > num_l2_vms:
            if a:
                return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
            if m:
                return with_details(TdxStatus.OPERAND_INVALID, Operand.R8)
        elif a and not a & VALID:
            return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
    return None


def plan(
    gpa_attr: int,
    attr_flags: int,
    current: dict[int, int | None],
    num_l2_vms: int,
    walk_ok: Callable[[int], bool] = lambda vm: True,
) -> AttrWrPlan:
    """Combine, VM by VM, the new attributes with the current ones as the module does
    (``get_all_l2_sept_entries``). ``current[vm]`` is the alias's attribute word, or None
    when the page has no alias in that VM; ``walk_ok(vm)`` says whether the L2 SEPT walk for
    a new alias finds its paging structure. Call :func:`check_request` first."""
    out = AttrWrPlan()
    for vm in range(1, num_l2_vms + 1):
        a, m = word(gpa_attr, vm), word(attr_flags, vm)
        if m & FLAG_INVEPT:  # the commit loop flushes every VM that asks, valid or not
            out.invept.add(vm)
        mask = m | VALID
        masked = a & mask
        out.out[vm] = a
        out.new[vm] = None
        if not masked & VALID:
            continue
        cur = current.get(vm)
        if cur is not None:  # aliased: (current & ~mask) | (new & mask)
            value = ((cur | VALID) & ~mask) | masked
            if grants_any(value) and not is_legal(value):
                out.status = int(TdxStatus.PAGE_ATTR_INVALID)
                out.out[vm] = cur | VALID
                continue
            out.new[vm] = value & FLAG_SELECT
            out.out[vm] = value if grants_any(value) else VALID
        elif grants_any(masked):  # not aliased: a new alias, if legal and walkable
            if not is_legal(masked):
                out.status = int(TdxStatus.PAGE_ATTR_INVALID)
                out.out[vm] = 0
                continue
            out.out[vm] = masked
            if not walk_ok(vm):
                out.walk_failed_vm = vm
                return out
            out.new[vm] = masked & FLAG_SELECT
    return out
