"""PVALIDATE request list of core call 1 (sev-snp.md §2.1).

Header (8 bytes): u16 entries, u16 next, u32 reserved. Entries (u64 each): bits 1:0 page
size (0 4K, 1 2M), bit 2 action (1 validate, 0 rescind), bit 3 ignore_cf, bits 11:4
reserved, bits 63:12 GFN. The list must fit in the 4 KiB page that holds it:
max entries = (4096 - page_offset - 8) / 8 — 510 in the calling area buffer at offset 8.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.protocol.ids import ResultCode

HEADER = struct.Struct("<HHI")
ENTRY_SIZE = 8
SIZE_MASK = 0x3
ACTION_VALIDATE = 1 << 2
IGNORE_CF = 1 << 3
RESERVED_MASK = 0xFF0  # bits 11:4 (CS core.rs)
GFN_MASK = ~0xFFF & ((1 << 64) - 1)
PAGE_BYTES = {0: PAGE_4K, 1: PAGE_2M}
#: Entries that fit in the calling-area buffer (offset 8): (4096 - 8 - 8) / 8.
MAX_ENTRIES_IN_CAA = (4096 - 8 - 8) // ENTRY_SIZE


def max_entries(page_offset: int) -> int:
    """Entries that fit in the page from ``page_offset`` on, after the header."""
    return (4096 - page_offset - HEADER.size) // ENTRY_SIZE


def entry(gpa: int, page_size_2m: bool, validate: bool, ignore_cf: bool = False) -> int:
    return (
        (gpa & GFN_MASK)
        | (1 if page_size_2m else 0)
        | (ACTION_VALIDATE if validate else 0)
        | (IGNORE_CF if ignore_cf else 0)
    )


def run_entries(
    gpa: int, page_2m: bool, count: int, validate: bool, ignore_cf: bool = False
) -> list[int]:
    """Entries for ``count`` consecutive pages from ``gpa``."""
    step = PAGE_2M if page_2m else PAGE_4K
    first = (
        gpa
        | (1 if page_2m else 0)
        | (ACTION_VALIDATE if validate else 0)
        | (IGNORE_CF if ignore_cf else 0)
    )
    return list(range(first, first + count * step, step))


def encode(entries: list[int], next_index: int = 0) -> bytes:
    """Header + entries as the caller writes them."""
    return HEADER.pack(len(entries), next_index, 0) + struct.pack(f"<{len(entries)}Q", *entries)


@dataclass
class PvalidateList:
    """A decoded request list; ``entries`` are raw u64 values."""

    count: int
    next: int
    entries: list[int]

    @classmethod
    def decode(cls, page: bytes, page_offset: int) -> PvalidateList | ResultCode:
        """Decode from the page holding the list; a malformed list yields its result code."""
        if page_offset % 8:
            return ResultCode.INVALID_PARAMETER
        if page_offset + HEADER.size > len(page):
            return ResultCode.INVALID_PARAMETER
        count, nxt, _rsvd = HEADER.unpack_from(page, page_offset)
        limit = max_entries(page_offset)
        if count == 0 or count > limit or count <= nxt:
            return ResultCode.INVALID_PARAMETER
        body = page_offset + HEADER.size
        if body + count * ENTRY_SIZE > len(page):
            return ResultCode.INVALID_PARAMETER
        return cls(count, nxt, list(struct.unpack_from(f"<{count}Q", page, body)))


def entry_error(raw: int) -> ResultCode | None:
    """The result code a malformed entry earns, or None."""
    if raw & SIZE_MASK > 1 or raw & RESERVED_MASK:
        return ResultCode.INVALID_PARAMETER
    if (raw & GFN_MASK) % PAGE_BYTES[raw & SIZE_MASK]:
        return ResultCode.INVALID_PARAMETER
    return None


@dataclass(frozen=True)
class EntryRun:
    """Consecutive entries that are contiguous in GPA with equal size and flags."""

    index: int  # index of the first entry in the list
    count: int
    gpa: int
    page_2m: bool
    validate: bool
    ignore_cf: bool

    @property
    def page_bytes(self) -> int:
        return PAGE_2M if self.page_2m else PAGE_4K

    @classmethod
    def of(cls, entries: list[int], start: int, stop: int) -> EntryRun:
        """The run ``entries[start:stop]`` that :func:`progression` confirmed."""
        raw = entries[start]
        return cls(
            start,
            stop - start,
            raw & GFN_MASK,
            bool(raw & 1),
            bool(raw & ACTION_VALIDATE),
            bool(raw & IGNORE_CF),
        )


def progression(entries: list[int], start: int, stop: int) -> bool:
    """True if ``entries[start:stop]`` is one contiguous run of equal flags (checked in C)."""
    if stop <= start:
        return False
    first = entries[start]
    size = first & SIZE_MASK
    if size > 1:
        return False
    step = PAGE_BYTES[size]
    return entries[start:stop] == list(range(first, first + (stop - start) * step, step))


def runs(entries: list[int], start: int, stop: int) -> Iterator[EntryRun]:
    """Coalesce ``entries[start:stop]`` (already checked) into contiguous runs."""
    if progression(entries, start, stop):
        yield EntryRun.of(entries, start, stop)
        return
    i = start
    while i < stop:
        raw = entries[i]
        flags = raw & 0xF
        step = PAGE_BYTES[raw & SIZE_MASK]
        gpa = raw & GFN_MASK
        j = i + 1
        expect = gpa + step
        while j < stop and entries[j] == (expect | flags):
            expect += step
            j += 1
        yield EntryRun(
            i, j - i, gpa, bool(raw & 1), bool(raw & ACTION_VALIDATE), bool(raw & IGNORE_CF)
        )
        i = j
