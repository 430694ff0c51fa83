"""The host VMM's side of a TD (KVM-like): TD build, TDH.MEM.PAGE.AUG on demand, MapGPA,
GetQuote, and the SEPT transitions its SEAMCALLs cause (tdx.md §4.2, §4.3, §6, §1.2).

Modelled behaviour (each one named rule):

* **HOST_AUG_ON_DEMAND** — the host adds private pages only when an EPT-violation TD exit asks
  for them (an ACCEPT or ATTR.WR of a FREE page), as upstream KVM does; MapGPA to private only
  flips the host's view. It AUGs at ``min(requested level, host_mapping)``: ``"4K"`` =
  upstream KVM (private memory mapped at 4K only, cost-model.md §3), ``"2M"`` = a host that
  maps 2M pages.
* **HOST_DEMOTES_LARGER_LEAF** — a TD exit for a page whose leaf is larger than the level the
  guest asked for is answered with TDH.MEM.PAGE.DEMOTE by one level (tdx.md §3, §4.1).
* **HOST_REFUSES_AUG_ON_SHARED** — the host does not AUG a GPA it currently treats as shared
  (after MapGPA to shared); the guest's TDCALL then cannot complete.
* **HOST_NO_HUGE_PAGE_OVER_SHARED** — the host never AUGs a large page over a range that holds
  a shared 4K page; it maps the faulting page at 4K instead, as KVM keeps ranges with mixed
  private/shared attributes out of huge mappings (Linux arch/x86/kvm/mmu: hugepage attributes).
* **REMOVE_DROPS_L2_ALIASES** — TDH.MEM.PAGE.REMOVE takes the page out of the TD, so no L2 VM
  keeps an alias of it (unconfirmed: tdx.md does not say how the module treats L2 aliases).
* **MAP_GPA_CHUNK** — the host handles at most :attr:`TdxHost.map_gpa_chunk` bytes per MapGPA
  and answers RETRY with R11 = where to resume (tdx.md §4.3); ``None`` (default) = all.
* A host access to a TD-private page never sees plaintext (TDX: the TD-owner bit makes host
  reads return zeros; modelled as a refused access).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cocopart.errors import EvidenceError
from cocopart.memory import GuestMemory
from cocopart.model import PAGE_4K
from cocopart.ranges import RangeMap
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.measure import MrtdBuilder
from cocopart_tdx.options import HOST_MAPPING_NAMES
from cocopart_tdx.sept import (
    ACCEPTED,
    AUG_FROM,
    BLOCK_TRANSITIONS,
    LEVEL_2M,
    LEVEL_4K,
    LEVEL_BYTES,
    LEVEL_NAMES,
    REMOVE_FROM,
    Sept,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.tdcall import EEQ_L2_SEPT, TdExit, TdxModule

if TYPE_CHECKING:
    from cocopart_tdx.l1 import Tally

HOST_MAPPINGS = dict(zip(HOST_MAPPING_NAMES, (LEVEL_4K, LEVEL_2M), strict=True))
#: Pages of the TD's initial image measured with TDH.MR.EXTEND (the L1 image page).
L1_IMAGE_TAG = b"cocopart simulated L1 VMM image\0"
#: TDVPS pages per vCPU: 6 + 3 per L2 VM (tdx.md §2.1, §6).
TDVPS_BASE_PAGES, TDVPS_PAGES_PER_L2 = 6, 3


#: MAX_VCPUS is a u16 in TD_PARAMS (tdx.md §6).
MAX_TD_VCPUS = 0xFFFF


def tdvps_pages(num_l2_vms: int) -> int:
    """TDVPS pages a vCPU needs: TDVPR + TDH.VP.ADDCX pages, 6 + 3 per L2 VM (tdx.md §6)."""
    return TDVPS_BASE_PAGES + TDVPS_PAGES_PER_L2 * num_l2_vms


def initial_l1_state(vcpu: int, gpaw: int, cpuid1_eax: int = 0x000806F8,
                     init_value: int = 0) -> dict[str, int]:
    """L1's registers after TDH.VP.INIT (tdx.md §6, MOD tdh_vp_init.c / td_vmcs_init.c):
    32-bit flat protected mode at the reset vector; RBX = GPAW, RCX = R8 = the host's init
    value, RDX = CPUID(1).EAX (the default is a Sapphire Rapids signature, our choice), RSI =
    the vCPU index."""
    return {"rip": 0xFFFF_FFF0, "cr0": 0x21, "cr4": 0x2040, "efer": 0x901, "rflags": 0x2,
            "cs_ar": 0xC09B, "cs_limit": 0xFFFF_FFFF, "pat": 0x0007040600070406,
            "rbx": gpaw, "rcx": init_value, "r8": init_value, "rdx": cpuid1_eax, "rsi": vcpu}


def create_vcpus(count: int, num_l2_vms: int, gpaw: int) -> list[dict[str, int]]:
    """The host's TDH.VP.CREATE (SEAMCALL 10) + TDH.VP.ADDCX (4) + TDH.VP.INIT (22) for each
    vCPU at TD build: every vCPU gets its TDVPS pages and its initial state (L2 vCPUs are not
    created by the host: each L1 vCPU owns one L2 VMCS per L2 VM, tdx.md §6)."""
    if not 1 <= count <= MAX_TD_VCPUS:
        raise ValueError(f"a TD has 1 to {MAX_TD_VCPUS} vCPUs, not {count}")
    pages = tdvps_pages(num_l2_vms)
    return [{**initial_l1_state(v, gpaw), "tdvps_pages": pages} for v in range(count)]


def build_td(sept: Sept, memory: GuestMemory, launch: list[tuple[int, int]], image_gpa: int,
             seed: str) -> bytes:
    """TD build: TDH.MEM.PAGE.ADD every launch page (MAPPED at 4K), TDH.MR.EXTEND the L1
    image page, TDH.MR.FINALIZE. Returns MRTD (cocopart_tdx.measure layout)."""
    mrtd = MrtdBuilder()
    image = L1_IMAGE_TAG + seed.encode()
    for start, end in launch:
        sept.set_entries(start, end, SeptEntry(SeptState.MAPPED, LEVEL_4K))
        for gpa in range(start, end, PAGE_4K):
            mrtd.page_add(gpa)
            if gpa == image_gpa:
                mrtd.mr_extend_page(gpa, image)
    memory.write(image_gpa, image)
    return mrtd.finalize()


class TdxHost:
    """The untrusted host: answers TD exits and TDVMCALLs."""

    def __init__(self, module: TdxModule, mapping: str = "4K") -> None:
        if mapping not in HOST_MAPPINGS:
            raise ValueError(f"host_mapping must be one of {', '.join(HOST_MAPPINGS)}")
        self.module = module
        self.mapping = mapping
        self.mapping_level = HOST_MAPPINGS[mapping]
        self.shared: RangeMap[bool] = RangeMap(module.sept.size, False)
        self.map_gpa_chunk: int | None = None
        #: Quotes come from here: a TDREPORT -> quote bytes (simulated quoting enclave).
        self.quoter: Callable[[bytes], bytes] | None = None

    @property
    def sept(self) -> Sept:
        return self.module.sept

    # -- EPT-violation TD exits --------------------------------------------------------------
    def on_ept_violation(self, exit: TdExit, tally: Tally) -> bool:
        """Fix what the exit asks for; False when the host will not (the TDCALL then can
        never complete)."""
        gpa, level = exit.gpa, exit.level
        if exit.eeq_type == EEQ_L2_SEPT:
            self.module.l2_sept_missing.discard((exit.vm, gpa >> 21))
            tally.record("host", "TDH.MEM.SEPT.ADD", f"L2 VM {exit.vm}")
            return True
        if gpa >= self.sept.size or self.shared.get(gpa):
            return False
        e = self.sept.entry(gpa)
        if e.state in AUG_FROM:
            aug = min(level, self.mapping_level, e.level)
            size = LEVEL_BYTES[aug]
            start = gpa - gpa % size
            # HOST_NO_HUGE_PAGE_OVER_SHARED: a large page is mapped only where every 4K page
            # in it is private in the host's view (KVM keeps mixed-attribute ranges at 4K)
            while aug > LEVEL_4K and self.shared.uniform(start, start + size) is not False:
                aug -= 1
                size = LEVEL_BYTES[aug]
                start = gpa - gpa % size
            self.sept.set_entries(start, start + size, SeptEntry(SeptState.PENDING, aug))
            tally.record("host", "TDH.MEM.PAGE.AUG", LEVEL_NAMES[aug])
            return True
        if e.level > level and (e.state in ACCEPTED or e.state is SeptState.PENDING):
            size = LEVEL_BYTES[e.level]
            start = gpa - gpa % size
            self.sept.set_entries(start, start + size, SeptEntry(e.state, e.level - 1))
            tally.record("host", "TDH.MEM.PAGE.DEMOTE", LEVEL_NAMES[e.level])
            return True
        return False

    # -- SEAMCALL transitions (tdx.md §4.2) -------------------------------------------------
    def split_leaves(self, start: int, end: int, tally: Tally) -> None:
        """TDH.MEM.PAGE.DEMOTE leaves that straddle ``start`` or ``end`` until they do not, so
        that the host acts on exactly ``[start, end)``."""
        for b in (start, end):
            while 0 <= b < self.sept.size:
                e = self.sept.entry(b)
                size = LEVEL_BYTES[e.level]
                if e.level == LEVEL_4K or b % size == 0 or e.state in AUG_FROM:
                    break
                lo = b - b % size
                self.sept.set_entries(lo, lo + size, SeptEntry(e.state, e.level - 1))
                tally.record("host", "TDH.MEM.PAGE.DEMOTE", LEVEL_NAMES[e.level])

    def block(self, start: int, end: int, tally: Tally) -> int:
        """TDH.MEM.RANGE.BLOCK on every leaf of ``[start, end)`` that can be blocked."""
        n = 0
        for s, e, v in list(self.sept.l1.runs(start, end)):
            new = BLOCK_TRANSITIONS.get(v.state)
            if new is None:
                continue
            k = self.sept.leaves(s, e)
            size = LEVEL_BYTES[v.level]
            self.sept.set_entries(s - s % size, -(-e // size) * size, SeptEntry(new, v.level))
            n += k
        tally.record("host", "TDH.MEM.RANGE.BLOCK", count=n)
        return n

    def remove(self, start: int, end: int, tally: Tally) -> int:
        """TDH.MEM.PAGE.REMOVE on every removable leaf of ``[start, end)`` (-> FREE)."""
        n = 0
        for s, e, v in list(self.sept.l1.runs(start, end)):
            if v.state not in REMOVE_FROM:
                continue
            size = LEVEL_BYTES[v.level]
            lo, hi = s - s % size, -(-e // size) * size
            n += self.sept.leaves(s, e)
            self.sept.set_entries(lo, hi, SeptEntry(SeptState.FREE, v.level))
            self.sept.drop_aliases(lo, hi)
            self.module.memory.zero(lo, hi - lo)
        tally.record("host", "TDH.MEM.PAGE.REMOVE", count=n)
        return n

    def remove_private(self, start: int, end: int, tally: Tally) -> None:
        """Take private pages out of the TD: BLOCK, TRACK, REMOVE (the KVM sequence)."""
        self.split_leaves(start, end, tally)
        blocked = self.block(start, end, tally)
        if blocked:
            tally.record("host", "TDH.MEM.TRACK")
        self.remove(start, end, tally)

    # -- TDVMCALLs ---------------------------------------------------------------------------
    def on_tdvmcall(self, regs: dict[str, int], tally: Tally) -> dict[str, int]:
        """Handle a TDG.VP.VMCALL that reached the host; returns R10/R11 (and friends)."""
        if regs.get("r10", 0) != 0:
            return {"r10": vmc.TdvmcallStatus.SUBFUNC_UNSUPPORTED, "r11": 0}
        sub = regs.get("r11", 0)
        if sub == vmc.SubFunction.MAP_GPA:
            status, resume = self.map_gpa(regs.get("r12", 0), regs.get("r13", 0), tally)
            return {"r10": status, "r11": resume}
        if sub == vmc.SubFunction.GET_QUOTE:
            return {"r10": self.get_quote(regs.get("r12", 0), regs.get("r13", 0), tally),
                    "r11": 0}
        return {"r10": vmc.TdvmcallStatus.SUBFUNC_UNSUPPORTED, "r11": 0}

    def map_gpa(self, gpa: int, size: int, tally: Tally) -> tuple[int, int]:
        """MapGPA: shared bit set -> to shared (the host removes the private pages), clear ->
        to private (pages stay FREE until accepted). Returns (status, resume GPA)."""
        sbit = self.module.shared_bit
        to_shared = bool(gpa & sbit)
        start = gpa & ~sbit
        if start % PAGE_4K or size % PAGE_4K or size == 0:
            return vmc.TdvmcallStatus.ALIGN_ERROR, 0
        if start + size > self.sept.size:
            return vmc.TdvmcallStatus.INVALID_OPERAND, 0
        end = start + size
        if self.map_gpa_chunk is not None:
            end = min(end, start + self.map_gpa_chunk)
        if to_shared:
            self.remove_private(start, end, tally)
        self.shared.set(start, end, to_shared)
        if end < start + size:
            return vmc.TdvmcallStatus.RETRY, end | (sbit if to_shared else 0)
        return vmc.TdvmcallStatus.SUCCESS, 0

    def get_quote(self, shared_gpa: int, size: int, tally: Tally) -> int:
        """GetQuote: the quoting enclave quotes the TDREPORT in the shared buffer."""
        sbit = self.module.shared_bit
        gpa = shared_gpa & ~sbit
        if not shared_gpa & sbit or gpa % PAGE_4K or size % PAGE_4K or size == 0:
            return vmc.TdvmcallStatus.INVALID_OPERAND
        buf = vmc.GetQuoteBuffer.decode(self.module.memory.read(gpa, size))
        quoter = self.quoter
        tally.record("host", "QGS.GET_QUOTE")
        status, quote = vmc.GET_QUOTE_SERVICE_UNAVAILABLE, b""
        if quoter is not None and buf.version == vmc.GET_QUOTE_VERSION:
            try:
                quote = quoter(buf.data)
                status = vmc.GET_QUOTE_SUCCESS
            except EvidenceError:
                status = vmc.GET_QUOTE_ERROR
        out = vmc.GetQuoteBuffer(buf.version, status, buf.in_len, len(quote),
                                 quote if status == vmc.GET_QUOTE_SUCCESS else buf.data)
        try:
            self.module.memory.write(gpa, out.encode(size))
        except ValueError:
            self.module.memory.write(gpa, vmc.GetQuoteBuffer(
                buf.version, vmc.GET_QUOTE_ERROR, buf.in_len, 0, b"").encode(size))
        return vmc.TdvmcallStatus.SUCCESS

    # -- host touching guest memory ------------------------------------------------------------
    def can_read(self, gpa: int) -> bool:
        """Only shared pages are readable by the host in plaintext."""
        return self.shared.get(gpa)
