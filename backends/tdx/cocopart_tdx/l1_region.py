"""L1's own memory: the L1-private pages above the protocol region (:class:`L1Region`)."""

from __future__ import annotations

from dataclasses import dataclass

from cocopart.spi import PAGE_2M, PAGE_4K

# -- L1's own memory -------------------------------------------------------------------------
QUOTE_BUFFER_PAGES = 4  # GetQuote buffer: 16 KiB, enough for a quote with its PEM chain


@dataclass(frozen=True)
class L1Region:
    """L1-private pages just above the protocol region: a scratch page (TDREPORT @0,
    REPORTDATA @0x400, RTMR data @0x440), the measured L1 image page, the GetQuote buffer
    (shared with the host) and one virtual-APIC page per (L2 VM, vCPU)."""

    base: int
    num_l2_vms: int
    vcpus: int

    @property
    def tdreport(self) -> int:
        return self.base

    @property
    def reportdata(self) -> int:
        return self.base + 0x400

    @property
    def rtmr_data(self) -> int:
        return self.base + 0x440

    @property
    def image(self) -> int:
        return self.base + PAGE_4K

    @property
    def quote_buffer(self) -> int:
        return self.base + 2 * PAGE_4K

    @property
    def quote_buffer_size(self) -> int:
        return QUOTE_BUFFER_PAGES * PAGE_4K

    def vapic(self, vm: int, vcpu: int) -> int:
        first = self.quote_buffer + self.quote_buffer_size
        return first + ((vm - 1) * self.vcpus + vcpu) * PAGE_4K

    @property
    def used_end(self) -> int:
        return self.vapic(self.num_l2_vms, self.vcpus - 1) + PAGE_4K

    @property
    def size(self) -> int:
        raw = self.used_end - self.base
        return -(-raw // PAGE_2M) * PAGE_2M

    def private_ranges(self) -> list[tuple[int, int]]:
        """What TD build adds as private pages (everything but the GetQuote buffer)."""
        return [
            (self.base, self.quote_buffer),
            (self.quote_buffer + self.quote_buffer_size, self.used_end),
        ]
