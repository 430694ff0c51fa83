"""TD measurements: MRTD as the TDX module builds it, and RTMR extension and replay.

MRTD (build time). The TDX module keeps one SHA-384 context per TD and feeds it 128-byte
blocks (intel/tdx-module, ``sha384_128B_block_t``: a 16-byte API name padded with zeros, the
GPA as a little-endian u64 at +16, zeros up to 128):

* TDH.MEM.PAGE.ADD adds one block, name ``"MEM.PAGE.ADD"``, GPA of the 4 KiB page
  (``src/vmm_dispatcher/api_calls/tdh_mem_page_add.c``);
* TDH.MR.EXTEND measures one 256-byte chunk: a block named ``"MR.EXTEND"`` with the chunk's
  GPA, then the chunk's 256 bytes as two more 128-byte blocks
  (``src/vmm_dispatcher/api_calls/tdh_mr_extend.c``);
* TDH.MR.FINALIZE ends the hash; MRTD is the SHA-384 digest.

Independent re-implementations agree on this layout (edgelesssys/contrast
``tools/tdx-measure/mrtd/mrtd.go``, citing the TDX module ABI spec §5.3.20 and §5.3.44).

RTMR (run time). TDG.MR.RTMR.EXTEND replaces RTMR[i] with SHA-384(RTMR[i] || data), where
data is the 48-byte digest being extended; RTMRs start as 48 zero bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

PAGE_SIZE = 0x1000
MR_EXTEND_CHUNK = 256
SHA384_BLOCK = 128
DIGEST_SIZE = 48
RTMR_COUNT = 4


def _api_block(name: bytes, gpa: int) -> bytes:
    """One 128-byte MRTD update block: API name (16, zero padded), GPA (u64 LE), zeros."""
    if len(name) > 16:
        raise ValueError("a SEAMCALL name has at most 16 characters")
    return name.ljust(16, b"\0") + struct.pack("<Q", gpa) + bytes(SHA384_BLOCK - 24)


class MrtdBuilder:
    """Replays the TD build sequence into MRTD.

    >>> m = MrtdBuilder(); m.page_add(0xFFFFF000); m.mr_extend_page(0xFFFFF000, bytes(4096))
    >>> len(m.finalize())
    48
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha384()
        self._final: bytes | None = None

    def _check_open(self) -> None:
        if self._final is not None:
            raise ValueError("MRTD is finalized (TDH.MR.FINALIZE was called)")

    def page_add(self, gpa: int) -> None:
        """TDH.MEM.PAGE.ADD of the 4 KiB page at ``gpa``."""
        self._check_open()
        if gpa % PAGE_SIZE:
            raise ValueError(f"GPA {gpa:#x} is not 4 KiB aligned")
        self._hash.update(_api_block(b"MEM.PAGE.ADD", gpa))

    def mr_extend(self, gpa: int, chunk: bytes) -> None:
        """TDH.MR.EXTEND of the 256-byte chunk at ``gpa``."""
        self._check_open()
        if gpa % MR_EXTEND_CHUNK:
            raise ValueError(f"GPA {gpa:#x} is not 256-byte aligned")
        if len(chunk) != MR_EXTEND_CHUNK:
            raise ValueError(f"TDH.MR.EXTEND measures 256 bytes, got {len(chunk)}")
        self._hash.update(_api_block(b"MR.EXTEND", gpa))
        self._hash.update(chunk)

    def mr_extend_page(self, gpa: int, data: bytes) -> None:
        """TDH.MR.EXTEND of every 256-byte chunk of a page (``data`` is zero-padded to 4 KiB)."""
        if len(data) > PAGE_SIZE:
            raise ValueError("more than one page of data")
        data = data.ljust(PAGE_SIZE, b"\0")
        for off in range(0, PAGE_SIZE, MR_EXTEND_CHUNK):
            self.mr_extend(gpa + off, data[off : off + MR_EXTEND_CHUNK])

    def add_region(self, gpa: int, data: bytes, *, extend: bool = True) -> None:
        """Add the pages of ``data`` at ``gpa`` (page by page: ADD, then EXTEND if asked)."""
        for off in range(0, max(len(data), 1), PAGE_SIZE):
            self.page_add(gpa + off)
            if extend:
                self.mr_extend_page(gpa + off, data[off : off + PAGE_SIZE])

    def finalize(self) -> bytes:
        """TDH.MR.FINALIZE: the 48-byte MRTD (idempotent)."""
        if self._final is None:
            self._final = self._hash.digest()
        return self._final


def rtmr_extend(rtmr: bytes, digest: bytes) -> bytes:
    """TDG.MR.RTMR.EXTEND: SHA-384(old RTMR || 48-byte digest)."""
    if len(rtmr) != DIGEST_SIZE or len(digest) != DIGEST_SIZE:
        raise ValueError("RTMR and extended digest are 48 bytes each")
    return hashlib.sha384(rtmr + digest).digest()


@dataclass(frozen=True)
class RtmrEvent:
    """One measured event: which RTMR (0..3) and the SHA-384 digest extended into it."""

    index: int
    digest: bytes
    description: str = field(default="", compare=False)

    @classmethod
    def of_data(cls, index: int, data: bytes, description: str = "") -> RtmrEvent:
        """An event whose digest is SHA-384 of ``data``."""
        return cls(index, hashlib.sha384(data).digest(), description)


def replay_rtmrs(
    events: Iterable[RtmrEvent], initial: tuple[bytes, ...] | None = None
) -> tuple[bytes, bytes, bytes, bytes]:
    """Replay events (in log order) from all-zero RTMRs (or ``initial``); returns RTMR0..3."""
    regs = list(initial) if initial is not None else [bytes(DIGEST_SIZE)] * RTMR_COUNT
    if len(regs) != RTMR_COUNT:
        raise ValueError("there are 4 RTMRs")
    for ev in events:
        if not 0 <= ev.index < RTMR_COUNT:
            raise ValueError(f"RTMR index {ev.index} is not 0..3")
        regs[ev.index] = rtmr_extend(regs[ev.index], ev.digest)
    return regs[0], regs[1], regs[2], regs[3]
