"""The Reverse Map Table (RMP): per-page ownership and per-VMPL permissions.

One :class:`RmpEntry` per 4K system page in hardware; here a :class:`~cocopart.ranges.RangeMap`
of entries over the whole guest-physical space (RAM plus the protocol region), so a 1 TiB
guest whose memory is uniformly validated is one run, not 2^28 entries.

Fields (sev-snp.md §4.1, LX rmpentry_raw, MSDOC RMPREAD): assigned, page size (4K / 2M),
immutable, ASID, VMSA, validated, and the permission mask of VMPL1..VMPL3 (bit 0 read, 1
write, 2 user-execute, 3 supervisor-execute — the RMPADJUST attribute byte). VMPL0 always
has full access to a validated page of its guest (sev-snp.md §4.1, model assumption).

Guest GPA: the model backs each guest-physical page with the system page of the same
number, so the entry's GPA field equals the page's own address and is not stored (storing
it would give every 4K page its own value and defeat the run-length representation).

A 2M RMP entry covers 512 4K addresses; all of them carry ``page_size_2m=True`` and equal
state, and every operation on a 2M entry changes the whole 2M region at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import NamedTuple

from cocopart.spi import PAGE_2M, PAGE_4K, Access, RangeMap

#: The workload VMPLs whose permissions an RMP entry holds (sev-snp.md §4.1).
LOWER_VMPLS = (1, 2, 3)
#: Number of VMPLs (CS sev/vmsa.rs VMPL_MAX = 4).
VMPL_COUNT = 4
NO_PERMS: tuple[int, int, int] = (0, 0, 0)
FULL = int(Access.RWX)


class PageState(str, Enum):
    """The page states of sev-snp.md §4.2 the model distinguishes."""

    HYPERVISOR = "hypervisor"  # shared: assigned 0, ASID 0 (Linux rmp_make_shared)
    GUEST_INVALID = "guest-invalid"  # assigned to the guest, not validated
    GUEST_VALID = "guest-valid"  # after PVALIDATE(1) at VMPL0
    FIRMWARE = "firmware"  # assigned, ASID 0, immutable (rmp_mark_pages_firmware)
    VMSA = "vmsa"  # guest-valid with the VMSA attribute set by VMPL0


class RmpEntry(NamedTuple):
    """One RMP entry (immutable, so runs of equal entries merge in the range map)."""

    assigned: bool = False
    validated: bool = False
    vmsa: bool = False
    immutable: bool = False
    page_size_2m: bool = False
    asid: int = 0
    perms: tuple[int, int, int] = NO_PERMS  # VMPL1, VMPL2, VMPL3

    @property
    def state(self) -> PageState:
        if not self.assigned:
            return PageState.HYPERVISOR
        if self.immutable and self.asid == 0:
            return PageState.FIRMWARE
        if not self.validated:
            return PageState.GUEST_INVALID
        return PageState.VMSA if self.vmsa else PageState.GUEST_VALID

    def perm(self, vmpl: int) -> int:
        """Permission mask of ``vmpl`` (VMPL0: everything)."""
        return FULL if vmpl == 0 else self.perms[vmpl - 1]

    def with_perm(self, vmpl: int, mask: int) -> RmpEntry:
        """A copy with ``vmpl``'s (1..3) permission mask replaced."""
        p = list(self.perms)
        p[vmpl - 1] = mask
        return self._replace(perms=(p[0], p[1], p[2]))

    def owned_by(self, asid: int) -> bool:
        """Assigned to the guest with ``asid`` (and not a firmware page)."""
        return self.assigned and self.asid == asid and not (self.immutable and asid == 0)


HYPERVISOR_PAGE = RmpEntry()


def page_bytes(page_2m: bool) -> int:
    return PAGE_2M if page_2m else PAGE_4K


class Rmp:
    """The RMP of one machine: a range map from address to :class:`RmpEntry`."""

    __slots__ = ("map", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.map: RangeMap[RmpEntry] = RangeMap(size, HYPERVISOR_PAGE)

    def get(self, gpa: int) -> RmpEntry:
        return self.map.get(gpa)

    def runs(self, start: int, end: int) -> Iterator[tuple[int, int, RmpEntry]]:
        """Runs of equal entries overlapping ``[start, end)``, clipped to it."""
        return self.map.runs(start, end)

    def set(self, start: int, end: int, entry: RmpEntry) -> None:
        self.map.set(start, end, entry)

    def contains(self, start: int, end: int) -> bool:
        return 0 <= start < end <= self.size

    def count_runs(self) -> int:
        return self.map.count()
