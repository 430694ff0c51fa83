"""HOST_NO_HUGE_PAGE_OVER_SHARED: with a 2M-mapping host, a 2M block that holds a shared 4K
page is mapped at 4K only (found by the isolation state machine: a 2M AUG used to cover a
shared page); with the refusing host (host_memory_fault = "refuse") accepting the shared page
fails with the unresolved exit — the default QEMU/KVM host converts it implicitly (issue 14,
test_host_implicit_conversion.py)."""

from __future__ import annotations

from cocopart.ops import ConvertPages, Status, ValidatePages

from .tdx_helpers import MIB, PAGE_4K, guest, rng

SHARED_PAGE = 2000  # inside the 2M block [1536, 2048) of 4K pages


def test_2m_block_with_a_shared_page_is_mapped_at_4k() -> None:
    p = guest(8 * MIB, vcpus=1, layers=1, host_mapping="2M", host_memory_fault="refuse")
    assert p.run(
        ConvertPages(layer="l2.1", range=rng(SHARED_PAGE * PAGE_4K, PAGE_4K), to="shared")
    ).ok
    mark = p.trace.mark()
    r = p.run(ValidatePages(layer="l2.1", range=rng(1536 * PAGE_4K, 512 * PAGE_4K)))
    assert r.status is Status.ERROR and r.error is not None
    assert f"{SHARED_PAGE * PAGE_4K:#x}" in r.error.message
    d = p.trace.since(mark)
    augs = {k.target: n for k, n in d.primitives.items() if k.mnemonic == "TDH.MEM.PAGE.AUG"}
    assert augs == {"4K": SHARED_PAGE - 1536}  # the pages before the shared one, at 4K
    view = p.memory_view(1536 * PAGE_4K, 2048 * PAGE_4K)
    shared = [v for v in view if not v.private]
    assert [(v.start, v.end, v.validated) for v in shared] == [
        (SHARED_PAGE * PAGE_4K, (SHARED_PAGE + 1) * PAGE_4K, False)
    ]
    # a block without shared pages is still mapped with one 2M AUG
    mark = p.trace.mark()
    assert p.run(ValidatePages(layer="l2.1", range=rng(0, 2 * MIB))).ok
    augs = {
        k.target: n
        for k, n in p.trace.since(mark).primitives.items()
        if k.mnemonic == "TDH.MEM.PAGE.AUG"
    }
    assert augs == {"2M": 1}
