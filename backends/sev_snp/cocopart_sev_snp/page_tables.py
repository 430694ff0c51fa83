"""The C-bit of the guest's page tables: which pages the guest itself maps shared.

A guest maps its memory with C=1 (private) and clears the C-bit only for pages it converted
to shared itself: Linux clears it in ``set_memory_decrypted`` after the page-state change to
shared and sets it again, before PVALIDATE, in ``set_memory_encrypted`` (LX
arch/x86/coco/sev/core.c, arch/x86/mm/mem_encrypt_amd.c; sev-snp.md §5.5). The host cannot
change it: a page the host took back behind the guest's back is still mapped C=1, so the
guest's next access to it takes the #NPF path of :data:`~.npf.RULE_C_BIT_SELECTS_THE_CHECK`
instead of silently reading host memory (:data:`RULE_GUEST_OWNS_THE_C_BIT`).

One view for the whole guest, kept as a range map (runs of equal state) and updated only by
the guest's own successful page-state changes. On hardware every VMPL has its own page
tables; the model's workload layers all map a page the way the last layer that converted it
does (cocopart's simplification: a layer only touches pages it owns, docs/authority.md).
"""

from __future__ import annotations

from cocopart.spi import RangeMap
from cocopart_sev_snp.ghcb import PscOp

#: The C-bit follows the guest's own page-state changes, never the host's: PSC(shared) that
#: the host completed clears it, PSC(private) sets it (LX set_memory_decrypted /
#: set_memory_encrypted). Everything else — RAM the guest never converted, pages the host
#: made shared on its own — stays C=1.
RULE_GUEST_OWNS_THE_C_BIT = "the C-bit changes only with the guest's own page-state changes"


class GuestMappings:
    """Per-page C-bit of the guest's mappings (True = C=1, private)."""

    __slots__ = ("_shared",)

    def __init__(self, size: int) -> None:
        self._shared: RangeMap[bool] = RangeMap(size, False)

    def c_bit(self, gpa: int) -> bool:
        """The C-bit the guest accesses ``gpa`` with."""
        return not self._shared.get(gpa)

    def page_state_changed(self, start: int, end: int, op: int) -> None:
        """The host completed the guest's PSC ``op`` over ``[start, end)``."""
        if op in (PscOp.PRIVATE, PscOp.SHARED):
            self._shared.set(start, end, op == PscOp.SHARED)
