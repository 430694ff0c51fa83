"""L1's vCPU primitives: create an L2 vCPU = the L2 VMCS through TDG.VP.WR + the first
TDG.VP.ENTER on L1 vCPU n; delete = the L2 VMCS's virtual-APIC address cleared (it can never
be entered again) and its state buffer zeroed; entering and scheduling L2 vCPUs."""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from typing import Protocol

from cocopart.spi import PAGE_4K, ResultCode
from cocopart_tdx import attributes as attrs
from cocopart_tdx import metadata as md
from cocopart_tdx.l1_core import L1Core
from cocopart_tdx.l1_errors import EPT_UNRESOLVED, L1Error
from cocopart_tdx.l1_memory import PROTOCOL_PAGE_GRANT
from cocopart_tdx.l1_tally import Tally, vm_name
from cocopart_tdx.l1_walker import MAX_EXIT_RETRIES, AttrWrOp, WalkResult
from cocopart_tdx.sept import LEVEL_4K
from cocopart_tdx.status import Operand, TdxStatus, status_name, with_details
from cocopart_tdx.tdcall import TdcallResult
from cocopart_tdx.vp_enter import PENDING_INTERRUPT, L2Exit, VmxExit, enter_rcx

U64 = (1 << 64) - 1
#: L2 VMCS fields L1 writes for a new L2 vCPU before its first TDG.VP.ENTER: a 32-bit flat
#: protected-mode start like a TDX vCPU after TDH.VP.INIT (tdx.md §6); RIP, RSP, RFLAGS and
#: GPRs come from the L2_ENTER_GUEST_STATE buffer. The list is our choice: no source gives
#: the count (cost-model.md §4). The virtual-APIC address is appended (mandatory, §2.3).
L2_BOOT_STATE: tuple[tuple[int, int], ...] = (
    (0x0802, 0x08),  # GUEST_CS_SELECTOR
    (0x4802, 0xFFFF_FFFF),  # GUEST_CS_LIMIT
    (0x4816, 0xC09B),  # GUEST_CS_AR_BYTES (tdx.md §6)
    (0x0804, 0x10),  # GUEST_SS_SELECTOR
    (0x4804, 0xFFFF_FFFF),  # GUEST_SS_LIMIT
    (0x4818, 0xC093),  # GUEST_SS_AR_BYTES
    (0x481A, 0xC093),  # GUEST_DS_AR_BYTES
    (0x6802, 0),  # GUEST_CR3 (paging off; CR4.MCE is not L1-writable: mask)
)


@dataclass
class L2VcpuRecord:
    """An L2 vCPU L1 has built: VM, vCPU (= L1 vCPU), its state buffer."""

    vm: int
    vcpu: int
    context_gpa: int


class EntryHooks(Protocol):
    """L1's interrupt work around an L2 entry (:mod:`cocopart_tdx.interrupts`)."""

    def before_enter(self, vcpu: int, vm: int, tally: Tally) -> None: ...

    def after_enter(self, vcpu: int, vm: int, result: TdcallResult, tally: Tally) -> None: ...

    def on_pending_interrupt(self, vcpu: int, vm: int, tally: Tally) -> None: ...

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int: ...


class L1Vcpus(L1Core):
    """Building, entering, scheduling and deleting L2 vCPUs; interrupts L1 posts to them."""

    # -- vCPUs -----------------------------------------------------------------------------------
    def vp_wr(
        self, vcpu: int, field_id: int, value: int, target: str, tally: Tally, mask: int = U64
    ) -> int:
        r = self.module.vp_wr(vcpu, 0, field_id, value, mask)
        tally.record("l1", "TDG.VP.WR", target, "ok" if r.ok else status_name(r.status))
        return r.status

    def enter_l2(self, vcpu: int, vm: int, tally: Tally) -> int:
        """TDG.VP.ENTER of VM ``vm`` on ``vcpu`` with its state buffer; L1 takes a pending
        interrupt first when the module answers TDX_PENDING_INTERRUPT (tdx.md §5)."""
        rec = self.l2_vcpus.get((vm, vcpu))
        if rec is None:
            return with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        exits = 0
        hooks = self.interrupt_hooks
        if hooks is not None:
            hooks.before_enter(vcpu, vm, tally)
        for _ in range(MAX_EXIT_RETRIES + 2):
            r = self.module.vp_enter(vcpu, enter_rcx(vm), rec.context_gpa)
            tally.record(
                "l1",
                "TDG.VP.ENTER",
                vm_name(vm),
                "ok" if r.entered else ("EPT_VIOLATION" if r.exit else status_name(r.status)),
            )
            if r.entered:
                tally.switch("l1", self.layer_of(vm), "TDG.VP.ENTER")
                if hooks is not None:
                    hooks.after_enter(vcpu, vm, r, tally)
                return 0
            if r.exit is not None:
                tally.switch("l1", "host", "TD exit")
                fixed = self.host.on_ept_violation(r.exit, tally)
                tally.switch("host", "l1", "TDH.VP.ENTER")
                exits += 1
                if not fixed:
                    return EPT_UNRESOLVED
                continue
            if r.status == PENDING_INTERRUPT:
                if hooks is not None:
                    hooks.on_pending_interrupt(vcpu, vm, tally)
                else:
                    self.module.l1_pending_interrupt.discard(vcpu)  # L1 handles its interrupt
                    tally.record("l1", "L1 interrupt handled", vm_name(vm))
                continue
            return r.status
        return int(TdxStatus.OPERAND_BUSY)

    def schedule(self, vcpu: int, vm: int, tally: Tally) -> int:
        """Make VM ``vm``'s vCPU the one running on L1 vCPU ``vcpu``; another L2 running there
        is preempted first (an L2 -> L1 exit, reason 52, from its TSC deadline)."""
        cur = self.module.running_vm(vcpu)
        if cur == vm:
            return 0
        if cur:
            self.module.l2_exit(vcpu, L2Exit(VmxExit.PREEMPTION_TIMER))
            tally.switch(self.layer_of(cur), "l1", "L2->L1 exit")
        return self.enter_l2(vcpu, vm, tally)

    def vcpu_exists(self, vm: int, vcpu: int) -> bool:
        return (vm, vcpu) in self.l2_vcpus

    def start_vcpu(self, vm: int, vcpu: int, context_gpa: int, tally: Tally) -> int:
        """Build the L2 VMCS with TDG.VP.WR and enter it the first time."""
        target = vm_name(vm)
        writes = list(L2_BOOT_STATE) + [(md.VIRTUAL_APIC_PAGE_ADDR, self.region.vapic(vm, vcpu))]
        for enc, value in writes:
            st = self.vp_wr(vcpu, md.l2_vmcs_field(vm, enc), value, target, tally)
            if st:
                return st
        ctls = (md.L2_CTLS_ENABLE_TDVMCALL if self.enable_tdvmcall else 0) | (
            md.L2_CTLS_ENABLE_SHARED_EPTP if self.enable_shared_eptp else 0
        )
        if ctls:  # L2_CTLS: shared EPT (I/O buffers), TDVMCALL straight to the host
            st = self.vp_wr(vcpu, md.l2_ctls(vm), ctls, target, tally)
            if st:
                return st
        self.l2_vcpus[(vm, vcpu)] = L2VcpuRecord(vm, vcpu, context_gpa)
        insort(self._state_pages, context_gpa)
        st = self.schedule(vcpu, vm, tally)
        if st:
            del self.l2_vcpus[(vm, vcpu)]
            self._state_pages.remove(context_gpa)
        return st

    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        vm, vcpu = self.vm_of(layer), apic_id
        if (
            context_gpa % 256
            or not self.module.private_accepted(context_gpa)
            or self.host.shared.get(context_gpa)
        ):
            self.last_error = L1Error(
                "TDX_OPERAND_INVALID",
                with_details(TdxStatus.OPERAND_INVALID, Operand.RDX),
                "the L2 state buffer must be a 256-byte aligned, accepted private page",
            )
            return ResultCode.INVALID_PARAMETER
        if self.vcpu_exists(vm, vcpu):
            return ResultCode.INVALID_PARAMETER
        tally = Tally()
        # The state buffer becomes L1-only: no L2 VM keeps an alias (L2 state never shared).
        r = (
            self.walker.walk(
                AttrWrOp(
                    self.module,
                    attrs.pack({v: attrs.VALID for v in self.module.sept.l2}),
                    attrs.pack({v: attrs.RWX | attrs.FLAG_INVEPT for v in self.module.sept.l2}),
                    "all L2 VMs",
                ),
                context_gpa,
                context_gpa + PAGE_4K,
                (LEVEL_4K,),
                tally,
            )
            if self._aliased_runs(context_gpa, context_gpa + PAGE_4K)
            else WalkResult()
        )
        if r.status:
            self._flush(tally)
            return self.fail(r.status, "TDG.MEM.PAGE.ATTR.WR")
        st = self.start_vcpu(vm, vcpu, context_gpa, tally)
        self._flush(tally)
        if st:
            return self.fail(st, "building the L2 vCPU (TDG.VP.WR / TDG.VP.ENTER)")
        return ResultCode.SUCCESS

    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        vm = self.vm_of(layer)
        rec = next(
            (r for r in self.l2_vcpus.values() if r.vm == vm and r.context_gpa == context_gpa), None
        )
        if rec is None:
            return ResultCode.INVALID_PARAMETER
        tally = Tally()
        if self.module.running_vm(rec.vcpu) == vm:  # stop it: L1 takes it off the CPU
            self.module.l2_exit(rec.vcpu, L2Exit(VmxExit.PREEMPTION_TIMER))
            tally.switch(layer, "l1", "L2->L1 exit")
        # Never entered again: without a virtual-APIC address TDG.VP.ENTER fails (tdx.md §2.3).
        self.vp_wr(rec.vcpu, md.l2_vmcs_field(vm, md.VIRTUAL_APIC_PAGE_ADDR), 0, vm_name(vm), tally)
        del self.l2_vcpus[(vm, rec.vcpu)]
        self._state_pages.remove(context_gpa)
        self.module.clear_l2(rec.vcpu, vm)
        self.memory.zero(context_gpa, PAGE_4K)
        # The page goes back to the L2 (like an SNP VMSA page after DELETE_VCPU).
        tally_r = self.walker.walk(
            AttrWrOp(
                self.module,
                attrs.pack({vm: attrs.VALID | PROTOCOL_PAGE_GRANT}),
                attrs.pack({vm: attrs.RWX}),
                vm_name(vm),
            ),
            context_gpa,
            context_gpa + PAGE_4K,
            (LEVEL_4K,),
            tally,
        )
        self._flush(tally)
        if tally_r.status:
            return self.fail(tally_r.status, "TDG.MEM.PAGE.ATTR.WR")
        return ResultCode.SUCCESS

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """An IPI L1's APIC emulation sends to another vCPU of ``layer`` (issue 6)."""
        if self.interrupt_hooks is None:
            return ResultCode.UNSUPPORTED_CALL
        return self.interrupt_hooks.post_interrupt(layer, vcpu, vector)
