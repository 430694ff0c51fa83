"""The state of the TD's L1 VMM and the helpers its parts share: L2 VM naming, error
bookkeeping, the live L2 state buffers L1 protects, trace flushing, the L2 aliases L1 tracks
and L1's own TDG.VP.VMCALL. :class:`cocopart_tdx.l1_platform.TdxPlatform` adds the memory,
vCPU and attestation primitives (:mod:`cocopart_tdx.l1_memory`, :mod:`cocopart_tdx.l1_vcpus`,
:mod:`cocopart_tdx.l1_attest`)."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from cocopart.spi import (
    Access,
    GuestMemory,
    PrivilegedPlatform,
    ProtocolLayout,
    ResultCode,
    Strategy,
    Trace,
)
from cocopart_tdx import attributes as attrs
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.host import TdxHost
from cocopart_tdx.l1_errors import L1Error, error_of, protocol_code
from cocopart_tdx.l1_region import L1Region
from cocopart_tdx.l1_tally import Tally
from cocopart_tdx.l1_walker import LeafWalker
from cocopart_tdx.sept import ACCEPTED, L2Alias, SeptEntry, SeptState
from cocopart_tdx.status import Operand, TdxStatus, status_name, with_details
from cocopart_tdx.tdcall import TdxModule

if TYPE_CHECKING:
    from cocopart_tdx.l1_vcpus import EntryHooks, L2VcpuRecord


class L1Core(PrivilegedPlatform):
    """What every part of the TD's L1 VMM works on (see :class:`cocopart_tdx.l1_platform.TdxPlatform`)."""

    def __init__(
        self,
        module: TdxModule,
        host: TdxHost,
        memory: GuestMemory,
        layout: ProtocolLayout,
        region: L1Region,
        workloads: tuple[str, ...],
        trace: Trace,
        *,
        strategy: Strategy,
        enable_tdvmcall: bool,
        enable_shared_eptp: bool = True,
    ) -> None:
        self.module = module
        self.host = host
        self.memory = memory
        self.layout = layout
        self.region = region
        self.workloads = workloads
        self.trace = trace
        self.strategy = strategy
        self.enable_tdvmcall = enable_tdvmcall
        #: L2_CTLS.ENABLE_SHARED_EPTP for every L2 vCPU L1 builds (backend option).
        self.enable_shared_eptp = enable_shared_eptp
        self.walker = LeafWalker(module, host)
        self.l2_vcpus: dict[tuple[int, int], L2VcpuRecord] = {}
        self._state_pages: list[int] = []  # sorted state buffers of live L2 vCPUs
        self.last_error: L1Error | None = None
        #: While not None, what L1's primitives record (for :meth:`_remember_validate`).
        self._capture: list[tuple[bool, tuple[str, str, str, str], int]] | None = None
        self._vmemo: dict[
            tuple[object, ...],
            tuple[
                tuple[tuple[bool, tuple[str, str, str, str], int], ...],
                SeptEntry,
                tuple[L2Alias, ...],
                bool,
            ],
        ] = {}
        #: Interrupt delivery around each L2 entry (set by the machine; issue 6).
        self.interrupt_hooks: EntryHooks | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def vm_of(self, layer: str) -> int:
        return self.workloads.index(layer) + 1

    def layer_of(self, vm: int) -> str:
        return self.workloads[vm - 1]

    def fail(self, status: int, what: str) -> int:
        self.last_error = error_of(status, what)
        return protocol_code(status)

    def take_error(self) -> L1Error | None:
        err, self.last_error = self.last_error, None
        return err

    def live_state_in(self, start: int, end: int) -> int | None:
        """A live L2 vCPU's state buffer inside ``[start, end)``, if any: L1 never lets it be
        validated again, rescinded, given to an L2 or shared (L2 state is never shared)."""
        i = bisect_left(self._state_pages, start)
        if i < len(self._state_pages) and self._state_pages[i] < end:
            return self._state_pages[i]
        return None

    def _refuse_state(self, gpa: int, what: str) -> int:
        self.last_error = L1Error(
            "TDX_OPERAND_INVALID",
            with_details(TdxStatus.OPERAND_INVALID, Operand.RCX),
            f"{what} of {gpa:#x} refused: it is the state buffer of a live L2 vCPU",
        )
        return ResultCode.INVALID_PARAMETER

    def is_guest_range(self, gpa: int, size: int) -> bool:
        return 0 <= gpa and size >= 0 and gpa + size <= self.layout.total

    def layer_access(self, layer: str, start: int, end: int) -> Access:
        """An L2 VM's own access at private GPAs: its alias's R/W/Xs/Xu where the alias is
        mapped over an accepted page that the host has not made shared; none elsewhere."""
        if layer == "l1":
            return Access.RWX
        if layer not in self.workloads or start < 0 or end > self.layout.total:
            return Access.NONE
        sept = self.module.sept
        held = Access.RWX
        for _s, _e, a in sept.l2[self.vm_of(layer)].runs(start, end):
            if a.state is not SeptState.L2_MAPPED:
                return Access.NONE
            held &= attrs.attr_to_access(a.attr)
        if any(v.state not in ACCEPTED for _s, _e, v in sept.l1.runs(start, end)) or any(
            v for _s, _e, v in self.host.shared.runs(start, end)
        ):
            return Access.NONE
        return held

    def apic_ids(self) -> set[int]:
        return set(range(self.layout.vcpus))

    def _flush(self, tally: Tally) -> None:
        if self._capture is not None:
            self._capture.extend(tally.items)
        tally.flush(self.trace)

    def _aliased_runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Sub-ranges of ``[start, end)`` where some L2 VM has an alias (L1 tracks these)."""
        out: list[tuple[int, int]] = []
        for s, e in self.module.sept.segments(start, end):
            if any(
                amap.get(s).state is not SeptState.L2_FREE for amap in self.module.sept.l2.values()
            ):
                if out and out[-1][1] == s:
                    out[-1] = (out[-1][0], e)
                else:
                    out.append((s, e))
        return out

    def tdvmcall(self, regs: dict[str, int], what: str, tally: Tally) -> dict[str, int]:
        """L1's own TDG.VP.VMCALL: a TD exit to the host and TDH.VP.ENTER back."""
        r = self.module.vmcall(0, regs)
        tally.record("l1", "TDG.VP.VMCALL", what, "ok" if r.exit else status_name(r.status))
        if r.exit is None:
            return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND}
        tally.switch("l1", "host", "TD exit")
        out = self.host.on_tdvmcall(r.exit.regs, tally)
        tally.switch("host", "l1", "TDH.VP.ENTER")
        return out
