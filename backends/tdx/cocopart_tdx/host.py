"""The host VMM's side of a TD (KVM-like): TD build, TDH.MEM.PAGE.AUG on demand, MapGPA,
GetQuote, and the SEPT transitions its SEAMCALLs cause (tdx.md §4.2, §4.3, §6, §1.2).

Modelled behaviour (each one named rule):

* **HOST_AUG_ON_DEMAND** — the host adds private pages only when an EPT-violation TD exit asks
  for them (an ACCEPT or ATTR.WR of a FREE page), as upstream KVM does; MapGPA to private only
  flips the host's view. It AUGs at ``min(requested level, host_mapping)``: ``"4K"`` =
  upstream KVM (private memory mapped at 4K only, cost-model.md §3), ``"2M"`` = a host that
  maps 2M pages.
* **HOST_DEMOTE_PROTOCOL** — a TD exit for a page whose leaf is larger than the level the
  guest asked for (tdx.md §3, §4.1), and a MapGPA that cuts through a leaf, make the host
  split the leaf the way a running TD requires (MOD tdh_mem_page_demote.c): RANGE.BLOCK,
  TRACK with the vCPU kicks, DEMOTE with one new L2 SEPT page per aliased L2 VM, re-issued
  while it answers INTERRUPTED_RESTARTABLE (:mod:`cocopart_tdx.sept_resize`).
* **HOST_TRACK_KICKS_VCPUS** — every TDH.MEM.TRACK (before a REMOVE, DEMOTE or PROMOTE) is
  followed by an IPI to every other vCPU in guest mode, each a TD exit and TDH.VP.ENTER
  (KVM ``tdx_track``).
* **HOST_PROMOTES_UNIFORM_BLOCKS** — a 2M host merges a 2M block it maps at 4K back into one
  2M leaf (RANGE.BLOCK, TRACK, PROMOTE) as soon as the TD's request that left all 512 pages
  accepted with equal L2 attributes completes (our timing choice: a real host does it at
  its next chance; the KVM huge-page series keeps a range the guest accepted at 4K at 4K).
* **HOST_IMPLICIT_CONVERSION** (host option ``host_memory_fault = "convert"``, the default:
  what the QEMU/KVM host does) — a private fault (an ACCEPT or ATTR.WR TD exit) on a GPA the
  host treats as shared makes KVM exit to the VMM with KVM_EXIT_MEMORY_FAULT for that 4K page
  (Linux arch/x86/kvm/mmu ``kvm_mmu_prepare_memory_fault_exit``: size PAGE_SIZE); QEMU
  answers with an implicit conversion to private (accel/kvm/kvm-all.c ``kvm_convert_memory``
  with the PRIVATE flag); KVM then AUGs and the TDCALL completes on its retry.
* **HOST_REFUSES_AUG_ON_SHARED** (``host_memory_fault = "refuse"``, a named host behaviour
  for comparisons, not the default) — the VMM does not convert: the GPA stays shared, the
  host never AUGs it, and the guest's TDCALL cannot complete.
* **HOST_NO_HUGE_PAGE_OVER_SHARED** — the host never AUGs a large page over a range that holds
  a shared 4K page; it maps the faulting page at 4K instead, as KVM keeps ranges with mixed
  private/shared attributes out of huge mappings (Linux arch/x86/kvm/mmu: hugepage attributes).
* **REMOVE_DROPS_L2_ALIASES** — TDH.MEM.PAGE.REMOVE takes the page out of the TD, so no L2 VM
  keeps an alias of it (unconfirmed: tdx.md does not say how the module treats L2 aliases).
* **MAP_GPA_CHUNK** — the host handles at most :attr:`TdxHost.map_gpa_chunk` bytes per MapGPA
  and answers RETRY with R11 = where to resume (tdx.md §4.3); ``None`` (default) = all.
* A host access to a TD-private page never sees plaintext: a host read of a TD-owned line
  returns zeros without a fault (:mod:`cocopart_tdx.host_faults`, the one code path of
  ``TdxMachine.access("host", ...)``).
"""

from __future__ import annotations

from collections.abc import Callable

from cocopart.spi import PAGE_2M, PAGE_4K, EvidenceError, GuestMemory, RangeMap
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1_tally import Tally
from cocopart_tdx.measure import MrtdBuilder
from cocopart_tdx.options import HOST_MAPPING_NAMES, HOST_MEMORY_FAULTS
from cocopart_tdx.sept import (
    AUG_FROM,
    BLOCK_TRANSITIONS,
    LEVEL_2M,
    LEVEL_4K,
    LEVEL_BYTES,
    LEVEL_NAMES,
    REMOVE_FROM,
    UNBLOCK_TRANSITIONS,
    Sept,
    SeptEntry,
    SeptState,
)
from cocopart_tdx.sept_resize import aliased_vms, demote, promote
from cocopart_tdx.status import TdxStatus, base, status_name
from cocopart_tdx.tdcall import EEQ_L2_SEPT, TdExit, TdxModule

HOST_MAPPINGS = dict(zip(HOST_MAPPING_NAMES, (LEVEL_4K, LEVEL_2M), strict=True))
#: What the VMM does on KVM_EXIT_MEMORY_FAULT (a private fault on a GPA it treats as shared):
#: "convert" = QEMU's implicit conversion (default), "refuse" = HOST_REFUSES_AUG_ON_SHARED.
#: DEMOTE/PROMOTE re-issued at most this many times after INTERRUPTED_RESTARTABLE (our bound:
#: the module gives none, which is why KVM wants ENHANCED_DEMOTE_INTERRUPTIBILITY).
MAX_RESTARTS = 16
#: The leaves HOST_PROMOTES_UNIFORM_BLOCKS merges: accepted 4K pages.
MAPPED_4K = SeptEntry(SeptState.MAPPED, LEVEL_4K)
#: Pages of the TD's initial image measured with TDH.MR.EXTEND (the L1 image page).
L1_IMAGE_TAG = b"cocopart simulated L1 VMM image\0"
#: TDVPS pages per vCPU: 6 + 3 per L2 VM (tdx.md §2.1, §6).
TDVPS_BASE_PAGES, TDVPS_PAGES_PER_L2 = 6, 3


#: MAX_VCPUS is a u16 in TD_PARAMS (tdx.md §6).
MAX_TD_VCPUS = 0xFFFF


def tdvps_pages(num_l2_vms: int) -> int:
    """TDVPS pages a vCPU needs: TDVPR + TDH.VP.ADDCX pages, 6 + 3 per L2 VM (tdx.md §6)."""
    return TDVPS_BASE_PAGES + TDVPS_PAGES_PER_L2 * num_l2_vms


def initial_l1_state(
    vcpu: int, gpaw: int, cpuid1_eax: int = 0x000806F8, init_value: int = 0
) -> dict[str, int]:
    """L1's registers after TDH.VP.INIT (tdx.md §6, MOD tdh_vp_init.c / td_vmcs_init.c):
    32-bit flat protected mode at the reset vector; RBX = GPAW, RCX = R8 = the host's init
    value, RDX = CPUID(1).EAX (the default is a Sapphire Rapids signature, our choice), RSI =
    the vCPU index."""
    return {
        "rip": 0xFFFF_FFF0,
        "cr0": 0x21,
        "cr4": 0x2040,
        "efer": 0x901,
        "rflags": 0x2,
        "cs_ar": 0xC09B,
        "cs_limit": 0xFFFF_FFFF,
        "pat": 0x0007040600070406,
        "rbx": gpaw,
        "rcx": init_value,
        "r8": init_value,
        "rdx": cpuid1_eax,
        "rsi": vcpu,
    }


def create_vcpus(count: int, num_l2_vms: int, gpaw: int) -> list[dict[str, int]]:
    """The host's TDH.VP.CREATE (SEAMCALL 10) + TDH.VP.ADDCX (4) + TDH.VP.INIT (22) for each
    vCPU at TD build: every vCPU gets its TDVPS pages and its initial state (L2 vCPUs are not
    created by the host: each L1 vCPU owns one L2 VMCS per L2 VM, tdx.md §6)."""
    if not 1 <= count <= MAX_TD_VCPUS:
        raise ValueError(f"a TD has 1 to {MAX_TD_VCPUS} vCPUs, not {count}")
    pages = tdvps_pages(num_l2_vms)
    return [{**initial_l1_state(v, gpaw), "tdvps_pages": pages} for v in range(count)]


def build_td(
    sept: Sept, memory: GuestMemory, launch: list[tuple[int, int]], image_gpa: int, seed: str
) -> bytes:
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

    def __init__(
        self, module: TdxModule, mapping: str = "4K", memory_fault: str = "convert"
    ) -> None:
        #: Whether the host gives DEMOTE an L2 SEPT page for each aliased L2 VM (a host that
        #: does not cannot split an aliased leaf: L2_SEPT_PAGE_NOT_PROVIDED).
        self.l2_sept_pages = True
        if mapping not in HOST_MAPPINGS:
            raise ValueError(f"host_mapping must be one of {', '.join(HOST_MAPPINGS)}")
        if memory_fault not in HOST_MEMORY_FAULTS:
            raise ValueError(f"host_memory_fault must be one of {', '.join(HOST_MEMORY_FAULTS)}")
        self.module = module
        self.mapping = mapping
        self.memory_fault = memory_fault
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
        if gpa >= self.sept.size:
            return False
        if self.shared.get(gpa) and not self.implicit_conversion(gpa, tally):
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
        if e.level > level:  # the guest asked for a smaller page: split the leaf
            return self.demote_leaf(gpa, tally, faulting=True)
        return False

    def implicit_conversion(self, gpa: int, tally: Tally) -> bool:
        """A private fault on a GPA the host treats as shared: KVM_EXIT_MEMORY_FAULT for the
        4K page, and the VMM converts it to private (HOST_IMPLICIT_CONVERSION) — or, with
        ``memory_fault = "refuse"``, leaves it shared (HOST_REFUSES_AUG_ON_SHARED)."""
        tally.record(
            "host",
            "KVM_EXIT_MEMORY_FAULT",
            "4K",
            "convert" if self.memory_fault == "convert" else "refused",
        )
        if self.memory_fault != "convert":
            return False
        page = gpa - gpa % PAGE_4K
        tally.record("host", "QEMU.CONVERT", "to private")
        self.shared.set(page, page + PAGE_4K, False)
        return True

    # -- splitting and merging leaves of the running TD (cocopart_tdx.sept_resize) ----------
    def track(self, tally: Tally, *, faulting: bool) -> None:
        """TDH.MEM.TRACK and the kicks that let it complete (HOST_TRACK_KICKS_VCPUS): every
        vCPU in the TD is sent an IPI so it exits and re-enters in the new TLB epoch (KVM
        ``tdx_track``: KVM_REQ_OUTSIDE_GUEST_MODE to all vCPUs). In guest mode are the vCPUs
        running an L2 VM and — unless it is the vCPU whose TD exit the host is serving
        (``faulting``) — vCPU 0, where L1 works for the model's requests; idle L1 vCPUs halt
        in the host. The kicked exits are counted as L1's TD exits."""
        tally.record("host", "TDH.MEM.TRACK")
        kicks = (
            self.module.l2_running
            - (1 if self.module.running_vm(0) else 0)
            + (0 if faulting else 1)
        )
        if kicks > 0:
            tally.record("host", "IPI.KICK", "vCPU", count=kicks)
            tally.switch("l1", "host", "TD exit", kicks)
            tally.switch("host", "l1", "TDH.VP.ENTER", kicks)

    def demote_leaf(self, gpa: int, tally: Tally, *, faulting: bool) -> bool:
        """Split the leaf covering ``gpa`` one level down, KVM's way for a running TD
        (HOST_DEMOTE_PROTOCOL): TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK with the vCPU kicks, then
        TDH.MEM.PAGE.DEMOTE with one new L2 SEPT page per L2 VM that aliases the range,
        re-issued while it answers TDX_INTERRUPTED_RESTARTABLE (at most
        :data:`MAX_RESTARTS` times). On failure the leaf is unblocked again and False is
        returned (the guest's TDCALL then cannot complete)."""
        e = self.sept.entry(gpa)
        level, size = e.level, LEVEL_BYTES[e.level]
        start = gpa - gpa % size
        blocked = BLOCK_TRANSITIONS.get(e.state)
        if level == LEVEL_4K or (blocked is None and e.state not in UNBLOCK_TRANSITIONS):
            return False
        if blocked is not None:
            self.sept.set_entries(start, start + size, SeptEntry(blocked, level))
            tally.record("host", "TDH.MEM.RANGE.BLOCK", LEVEL_NAMES[level])
        self.track(tally, faulting=faulting)
        pages = aliased_vms(self.sept, start, start + size) if self.l2_sept_pages else ()
        status = self._restarted(
            "TDH.MEM.PAGE.DEMOTE",
            level,
            tally,
            lambda interrupted: demote(
                self.sept, start, level, tracked=True, l2_pages=pages, interrupted=interrupted
            ),
        )
        if status:
            if blocked is not None:
                self.sept.set_entries(start, start + size, SeptEntry(e.state, level))
                tally.record("host", "TDH.MEM.RANGE.UNBLOCK", LEVEL_NAMES[level])
            return False
        if pages:
            tally.record(
                "host", "TDH.MEM.PAGE.DEMOTE.L2_SEPT", LEVEL_NAMES[level], count=len(pages)
            )
        return True

    def _restarted(
        self, mnemonic: str, level: int, tally: Tally, call: Callable[[bool], int]
    ) -> int:
        """Issue a DEMOTE/PROMOTE until it is not INTERRUPTED_RESTARTABLE (or the bound)."""
        status = int(TdxStatus.INTERRUPTED_RESTARTABLE)
        for _ in range(MAX_RESTARTS + 1):
            status = call(self.module.host_interrupted())
            tally.record(
                "host", mnemonic, LEVEL_NAMES[level], "ok" if status == 0 else status_name(status)
            )
            if base(status) != TdxStatus.INTERRUPTED_RESTARTABLE:
                break
        return status

    def promote_block(self, start: int, tally: Tally) -> bool:
        """Merge the 512 4K leaves of the 2M block at ``start`` back into one 2M leaf
        (HOST_PROMOTES_UNIFORM_BLOCKS): TDH.MEM.RANGE.BLOCK of the non-leaf entry,
        TDH.MEM.TRACK with the kicks, TDH.MEM.PAGE.PROMOTE (restarted while interrupted)."""
        tally.record("host", "TDH.MEM.RANGE.BLOCK", LEVEL_NAMES[LEVEL_2M])
        self.track(tally, faulting=False)
        status = self._restarted(
            "TDH.MEM.PAGE.PROMOTE",
            LEVEL_2M,
            tally,
            lambda interrupted: promote(
                self.sept, start, LEVEL_2M, blocked=True, tracked=True, interrupted=interrupted
            ),
        )
        if status:
            tally.record("host", "TDH.MEM.RANGE.UNBLOCK", LEVEL_NAMES[LEVEL_2M])
        return status == 0

    def promote_blocks(self, start: int, end: int, tally: Tally) -> int:
        """HOST_PROMOTES_UNIFORM_BLOCKS: a 2M host promotes every 2M block overlapping
        ``[start, end)`` whose 512 leaves are accepted 4K pages with equal L2 aliases and that
        it treats as private; a 4K host never does. Blocks in one run of equal state behave
        alike: the first is promoted through the checked sequence, the rest get its result
        and its primitives counted again. Returns the number of blocks promoted."""
        if self.mapping_level < LEVEL_2M:
            return 0
        lo = start - start % PAGE_2M
        hi = min(self.sept.size, -(-end // PAGE_2M) * PAGE_2M)
        if all(v != MAPPED_4K for _s, _e, v in self.sept.l1.runs(lo, hi)):
            return 0  # nothing mapped at 4K here (the common case on a 2M host)
        done = 0
        for s, e in self._uniform_runs(lo, hi):
            first, last = -(-s // PAGE_2M) * PAGE_2M, e - e % PAGE_2M
            if first >= last or self.sept.entry(first) != MAPPED_4K:
                continue
            sub = Tally()
            if not self.promote_block(first, sub):
                tally.add(sub)
                continue
            n = (last - first) // PAGE_2M
            if self.module.host_interrupts == 0:  # the others behave as the first did
                if n > 1:
                    self.sept.set_entries(
                        first + PAGE_2M, last, SeptEntry(SeptState.MAPPED, LEVEL_2M)
                    )
                tally.add(sub, n)
            else:  # interrupts pending: one block at a time
                n = 1 + sum(
                    self.promote_block(b, sub) for b in range(first + PAGE_2M, last, PAGE_2M)
                )
                tally.add(sub)
            done += n
        return done

    def _uniform_runs(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Pieces of ``[lo, hi)`` of one state each (L1 SEPT, L2 aliases, the host's shared
        view) that the host treats as private."""
        return [
            (s, e) for s, e in self.sept.segments(lo, hi, self.shared) if not self.shared.get(s)
        ]

    def split_leaves(self, start: int, end: int, tally: Tally) -> bool:
        """Demote leaves that straddle ``start`` or ``end`` until they do not, so that the
        host acts on exactly ``[start, end)`` (each split is :meth:`demote_leaf`). False when
        a leaf could not be split."""
        for b in (start, end):
            while 0 <= b < self.sept.size:
                e = self.sept.entry(b)
                size = LEVEL_BYTES[e.level]
                if e.level == LEVEL_4K or b % size == 0 or e.state in AUG_FROM:
                    break
                if not self.demote_leaf(b, tally, faulting=True):
                    return False
        return True

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

    def remove_private(self, start: int, end: int, tally: Tally) -> bool:
        """Take private pages out of the TD: BLOCK, TRACK (with the kicks), REMOVE (the KVM
        sequence); False when a straddling leaf could not be split first."""
        if not self.split_leaves(start, end, tally):
            return False
        blocked = self.block(start, end, tally)
        if blocked:
            self.track(tally, faulting=True)
        self.remove(start, end, tally)
        return True

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
            return {"r10": self.get_quote(regs.get("r12", 0), regs.get("r13", 0), tally), "r11": 0}
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
        if to_shared and not self.remove_private(start, end, tally):
            return vmc.TdvmcallStatus.RETRY, gpa  # no progress: the guest retries or gives up
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
        out = vmc.GetQuoteBuffer(
            buf.version,
            status,
            buf.in_len,
            len(quote),
            quote if status == vmc.GET_QUOTE_SUCCESS else buf.data,
        )
        try:
            self.module.memory.write(gpa, out.encode(size))
        except ValueError:
            self.module.memory.write(
                gpa,
                vmc.GetQuoteBuffer(buf.version, vmc.GET_QUOTE_ERROR, buf.in_len, 0, b"").encode(
                    size
                ),
            )
        return vmc.TdvmcallStatus.SUCCESS

    # -- host touching guest memory ------------------------------------------------------------
    def can_read(self, gpa: int) -> bool:
        """Only shared pages are readable by the host in plaintext."""
        return self.shared.get(gpa)
