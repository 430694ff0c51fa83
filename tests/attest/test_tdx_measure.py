"""MRTD and RTMR computation.

No TDX firmware image with a known MRTD is among the shared vectors, so MRTD is checked
against the block layout spelled out byte by byte here (intel/tdx-module
tdh_mem_page_add.c / tdh_mr_extend.c, sha384_128B_block_t), and RTMRs against values
computed independently with hashlib.
"""

from __future__ import annotations

import hashlib

import pytest
from cocopart_tdx.measure import MrtdBuilder, RtmrEvent, replay_rtmrs, rtmr_extend

#: FIPS 180-4 SHA-384 of the empty message: the MRTD of a TD finalized with no pages.
SHA384_EMPTY = (
    "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da"
    "274edebfe76f65fbd51ad2f14898b95b"
)


def add_block(gpa: int) -> bytes:
    # "MEM.PAGE.ADD" (12) + 4 zero bytes, GPA little-endian at +16, zeros up to 128
    return b"MEM.PAGE.ADD" + bytes(4) + gpa.to_bytes(8, "little") + bytes(104)


def extend_block(gpa: int) -> bytes:
    # "MR.EXTEND" (9) + 7 zero bytes, GPA little-endian at +16, zeros up to 128
    return b"MR.EXTEND" + bytes(7) + gpa.to_bytes(8, "little") + bytes(104)


def test_empty_td() -> None:
    assert MrtdBuilder().finalize().hex() == SHA384_EMPTY


def test_page_add_block_layout() -> None:
    m = MrtdBuilder()
    m.page_add(0xFFFF_F000)
    assert m.finalize() == hashlib.sha384(add_block(0xFFFF_F000)).digest()


def test_added_and_measured_page() -> None:
    gpa = 0x80_0000
    page = bytes(range(256)) * 16
    m = MrtdBuilder()
    m.add_region(gpa, page)
    expected = add_block(gpa) + b"".join(
        extend_block(gpa + off) + page[off : off + 256] for off in range(0, 4096, 256)
    )
    assert len(expected) == 128 + 16 * (128 + 256)
    assert m.finalize() == hashlib.sha384(expected).digest()


def test_unmeasured_pages_and_short_data() -> None:
    m = MrtdBuilder()
    m.add_region(0x1000, bytes(8192), extend=False)
    m.mr_extend_page(0x1000, b"\xaa" * 10)  # zero-padded to a page
    padded = b"\xaa" * 10 + bytes(4086)
    expected = (
        add_block(0x1000)
        + add_block(0x2000)
        + b"".join(
            extend_block(0x1000 + off) + padded[off : off + 256] for off in range(0, 4096, 256)
        )
    )
    assert m.finalize() == hashlib.sha384(expected).digest()


def test_alignment_size_and_finalize_rules() -> None:
    m = MrtdBuilder()
    with pytest.raises(ValueError, match="4 KiB aligned"):
        m.page_add(0x1001)
    with pytest.raises(ValueError, match="256-byte aligned"):
        m.mr_extend(0x1080, bytes(256))
    with pytest.raises(ValueError, match="256 bytes"):
        m.mr_extend(0x1000, bytes(255))
    first = m.finalize()
    assert m.finalize() == first
    with pytest.raises(ValueError, match="finalized"):
        m.page_add(0x1000)


def test_rtmr_extend_by_hand() -> None:
    zero = bytes(48)
    digest = hashlib.sha384(b"event").digest()
    once = rtmr_extend(zero, digest)
    assert once == hashlib.sha384(zero + digest).digest()
    assert rtmr_extend(once, digest) == hashlib.sha384(once + digest).digest()
    # extending 48 zero bytes into a fresh RTMR is SHA-384 of 96 zero bytes
    assert rtmr_extend(zero, zero) == hashlib.sha384(bytes(96)).digest()
    with pytest.raises(ValueError, match="48 bytes"):
        rtmr_extend(zero, b"short")


def test_replay_event_log() -> None:
    events = [
        RtmrEvent.of_data(0, b"firmware config"),
        RtmrEvent.of_data(1, b"kernel"),
        RtmrEvent.of_data(0, b"acpi tables"),
        RtmrEvent.of_data(2, b"cmdline"),
    ]
    rtmrs = replay_rtmrs(events)
    h = hashlib.sha384
    r0 = h(
        h(bytes(48) + h(b"firmware config").digest()).digest() + h(b"acpi tables").digest()
    ).digest()
    assert rtmrs[0] == r0
    assert rtmrs[1] == h(bytes(48) + h(b"kernel").digest()).digest()
    assert rtmrs[2] == h(bytes(48) + h(b"cmdline").digest()).digest()
    assert rtmrs[3] == bytes(48)
    assert replay_rtmrs(events[::-1])[0] != r0  # order matters
    # replaying the rest of a log from a midpoint gives the same end state
    assert replay_rtmrs(events[2:], initial=replay_rtmrs(events[:2])) == rtmrs
    with pytest.raises(ValueError, match="0..3"):
        replay_rtmrs([RtmrEvent(4, bytes(48))])
