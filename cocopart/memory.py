"""Guest memory contents and the protocol area layout.

:class:`GuestMemory` stores page *contents* sparsely: only pages something wrote hold bytes;
every other page reads as zeros. It says nothing about page *state* (validated, shared,
who may access it); the backends keep that in their range maps.

:class:`ProtocolLayout` places the pages the L2<->L1 protocol needs in a region just above
guest RAM that the privileged layer sets up at launch (like an SVSM's calling areas): one
calling-area page and one vCPU-context page per (workload layer, vCPU), and per workload
layer a few scratch pages for attestation and vTPM buffers. Users address guest RAM
``[0, memory)``; the region is ``[base, base + layout.size)``, ``base`` being ``memory``
rounded up to 2 MiB.

Each vCPU's calling area and context page are a pair (calling area first), then one spare
page, then the scratch pages; every layer's pages start on an even page, so a context page
always has an odd page number and is never 2 MiB aligned
(:data:`RULE_CONTEXT_PAGE_OFF_2M_BOUNDARY`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cocopart.model import PAGE_4K

PAGE_MASK = PAGE_4K - 1


class GuestMemory:
    """Sparse byte contents of a guest-physical address space of ``size`` bytes."""

    __slots__ = ("_pages", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._pages: dict[int, bytearray] = {}

    def _check(self, gpa: int, n: int) -> None:
        if gpa < 0 or n < 0 or gpa + n > self.size:
            raise ValueError(f"[{gpa:#x}, {gpa + n:#x}) is outside guest memory")

    def read(self, gpa: int, n: int) -> bytes:
        self._check(gpa, n)
        out = bytearray()
        while n:
            pfn, off = gpa >> 12, gpa & PAGE_MASK
            take = min(n, PAGE_4K - off)
            page = self._pages.get(pfn)
            out += page[off : off + take] if page is not None else bytes(take)
            gpa += take
            n -= take
        return bytes(out)

    def write(self, gpa: int, data: bytes) -> None:
        self._check(gpa, len(data))
        pos = 0
        while pos < len(data):
            pfn, off = gpa >> 12, gpa & PAGE_MASK
            take = min(len(data) - pos, PAGE_4K - off)
            page = self._pages.get(pfn)
            if page is None:
                page = self._pages[pfn] = bytearray(PAGE_4K)
            page[off : off + take] = data[pos : pos + take]
            gpa += take
            pos += take

    def zero(self, gpa: int, n: int) -> int:
        """Zero ``[gpa, gpa + n)`` (page aligned). Returns how many stored pages it dropped.
        Cost grows with the pages that hold data, not with ``n``."""
        self._check(gpa, n)
        lo, hi = gpa >> 12, (gpa + n) >> 12
        if hi - lo < len(self._pages):
            victims = [p for p in range(lo, hi) if p in self._pages]
        else:
            victims = [p for p in self._pages if lo <= p < hi]
        for p in victims:
            del self._pages[p]
        return len(victims)

    def page(self, gpa: int) -> bytes:
        """The whole 4K page holding ``gpa``."""
        return self.read(gpa & ~PAGE_MASK, PAGE_4K)

    def stored_pages(self) -> int:
        return len(self._pages)

    def copy(self) -> GuestMemory:
        other = GuestMemory(self.size)
        other._pages = {k: bytearray(v) for k, v in self._pages.items()}
        return other


#: Scratch pages per workload layer (first page of each): report 0-1 (a TD quote with its PEM
#: PCK chain is ~4.3 KiB), manifest 2-3, certificates 4-7 (the 16 KiB SVSM maximum), vTPM 8.
SCRATCH_REPORT, SCRATCH_MANIFEST, SCRATCH_CERTS, SCRATCH_VTPM = 0, 2, 4, 8
SCRATCH_PAGES = 9  # odd: with the spare page, a layer spans an even number of pages
REPORT_BUFFER_SIZE = 2 * PAGE_4K

#: The layout never puts a vCPU-context page on a 2 MiB boundary: some hardware cannot run a
#: context page there (an erratum the privileged layer and the host refuse it for; the
#: backends say which and cite it).
RULE_CONTEXT_PAGE_OFF_2M_BOUNDARY = "vCPU-context pages are never 2 MiB aligned"


@dataclass(frozen=True)
class ProtocolLayout:
    """Where the protocol pages of each (workload layer, vCPU) live."""

    memory: int  # guest RAM size; the region starts here
    workload_layers: int
    vcpus: int

    @property
    def base(self) -> int:
        """Start of the region: guest RAM's end rounded up to 2 MiB (a guest whose RAM is
        not a 2 MiB multiple leaves a hole that belongs to no one)."""
        return -(-self.memory // (2 << 20)) * (2 << 20)

    @property
    def _scratch_offset(self) -> int:
        """Pages before a layer's scratch pages: calling area + context per vCPU, then one
        spare page, so that every layer spans an even number of pages (its pages start on an
        even page: RULE_CONTEXT_PAGE_OFF_2M_BOUNDARY)."""
        return 2 * self.vcpus + 1

    @property
    def _pages_per_layer(self) -> int:
        return self._scratch_offset + SCRATCH_PAGES

    @property
    def size(self) -> int:
        raw = self.workload_layers * self._pages_per_layer * PAGE_4K
        return -(-raw // (2 << 20)) * (2 << 20)  # rounded up to 2 MiB

    @property
    def total(self) -> int:
        """Size of the whole guest-physical space: RAM, the hole, the protocol region."""
        return self.base + self.size

    def _layer_base(self, layer_index: int) -> int:
        if not 0 <= layer_index < self.workload_layers:
            raise ValueError(f"workload layer index {layer_index} out of range")
        return self.base + layer_index * self._pages_per_layer * PAGE_4K

    def caa(self, layer_index: int, vcpu: int) -> int:
        """GPA of the calling area of ``vcpu`` in workload layer ``layer_index`` (0-based)."""
        self._vcpu(vcpu)
        return self._layer_base(layer_index) + 2 * vcpu * PAGE_4K

    def context(self, layer_index: int, vcpu: int) -> int:
        """GPA of the vCPU-context page (SNP VMSA / TDX L2 enter-guest-state page): the page
        after the vCPU's calling area, never 2 MiB aligned."""
        self._vcpu(vcpu)
        return self._layer_base(layer_index) + (2 * vcpu + 1) * PAGE_4K

    def scratch(self, layer_index: int, slot: int) -> int:
        return self._layer_base(layer_index) + (self._scratch_offset + slot) * PAGE_4K

    def layer_region(self, layer_index: int) -> tuple[int, int]:
        """``(start, end)`` of one workload layer's protocol pages."""
        base = self._layer_base(layer_index)
        return base, base + self._pages_per_layer * PAGE_4K

    def _vcpu(self, vcpu: int) -> None:
        if not 0 <= vcpu < self.vcpus:
            raise ValueError(f"vCPU {vcpu} out of range (0..{self.vcpus - 1})")
