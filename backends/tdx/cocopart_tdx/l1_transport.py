"""The transport of protocol calls: an L2's TDG.VP.VMCALL (or VMCALL with
``enable_tdvmcall``) exits to L1, which serves it from the L2_ENTER_GUEST_STATE buffer and
TDG.VP.ENTERs back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cocopart.spi import GuestMemory, Registers, Trace, Transport
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1_platform import TdxPlatform
from cocopart_tdx.l1_tally import Tally, vm_name
from cocopart_tdx.tdcall import TdxModule
from cocopart_tdx.vp_enter import (
    ENTER_GUEST_STATE_SIZE,
    TDCALL_LENGTH,
    VMCALL_LENGTH,
    EnterGuestState,
    VmxExit,
)

if TYPE_CHECKING:
    from cocopart.spi import ServiceDispatcher


class TdxTransport(Transport):
    """An L2's protocol call: TDCALL(TDG.VP.VMCALL) -> L2 -> L1 exit (reason 77), L1 serves it
    from the L2_ENTER_GUEST_STATE buffer, TDG.VP.ENTER back."""

    mechanism: ClassVar[str] = "L2->L1 exit"

    def __init__(
        self,
        dispatcher: ServiceDispatcher,
        memory: GuestMemory,
        trace: Trace,
        platform: TdxPlatform,
    ) -> None:
        super().__init__(dispatcher, memory, trace)
        self.platform = platform
        self._pending: dict[tuple[int, int], EnterGuestState] = {}

    @property
    def module(self) -> TdxModule:
        return self.platform.module

    def _buffer(self, vm: int, vcpu: int) -> int:
        return self.platform.l2_vcpus[(vm, vcpu)].context_gpa

    def l2_exit(
        self, layer: str, vcpu: int, gprs: dict[str, int], what: str, count: int = 1
    ) -> EnterGuestState | None:
        """The L2 executes TDCALL (or VMCALL with ENABLE_TDVMCALL) with ``gprs``; returns the
        state L1 reads from the buffer, or None when the L2 vCPU does not exist."""
        p = self.platform
        vm = p.vm_of(layer)
        if not p.vcpu_exists(vm, vcpu):
            return None
        if self.module.running_vm(vcpu) != vm:
            tally = Tally()
            p.schedule(vcpu, vm, tally)
            tally.flush(self.trace)
        cpu = self.module.l2cpu(vcpu, vm)
        cpu.gprs.update(gprs)
        if p.enable_tdvmcall and what == "protocol":
            out = self.module.l2_vmcall_instruction(vcpu)
            self.trace.record(layer, "VMCALL", "L1", "exit 18", count)
        else:
            res = self.module.l2_tdcall(vcpu)
            if not isinstance(res, dict):
                raise RuntimeError("an L2 TDVMCALL reached the host on the protocol path")
            out = res
            self.trace.record(layer, "TDCALL", what, "exit 77", count)
        self.trace.switch(layer, "l1", self.mechanism, count)
        reason = out["rax"] & 0xFFFF_FFFF
        state = EnterGuestState.decode(
            self.memory.read(self._buffer(vm, vcpu), ENTER_GUEST_STATE_SIZE)
        )
        state.rip += VMCALL_LENGTH if reason == VmxExit.VMCALL else TDCALL_LENGTH
        return state

    def l2_resume(
        self, layer: str, vcpu: int, state: EnterGuestState, count: int = 1
    ) -> dict[str, int] | None:
        """L1 writes its answer into the buffer and enters the L2 again; the L2's registers
        after the entry (None if the vCPU is gone)."""
        p = self.platform
        vm = p.vm_of(layer)
        if not p.vcpu_exists(vm, vcpu):
            return None
        self.memory.write(self._buffer(vm, vcpu), state.encode())
        tally = Tally()
        st = p.enter_l2(vcpu, vm, tally)
        if count > 1:  # the other count - 1 identical round trips
            tally.record("l1", "TDG.VP.ENTER", vm_name(vm), "ok", count - 1)
            tally.switch("l1", layer, "TDG.VP.ENTER", count - 1)
        tally.flush(self.trace)
        if st:
            return None
        return dict(self.module.l2cpu(vcpu, vm).gprs)

    # -- Transport ----------------------------------------------------------------------------
    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        vm = self.platform.vm_of(layer)
        gprs = (
            vmc.encode_vmcall_instruction(regs)
            if self.platform.enable_tdvmcall
            else vmc.encode_protocol_call(regs)
        )
        state = self.l2_exit(layer, vcpu, gprs, "protocol")
        if state is None:
            return False
        self._pending[(vm, vcpu)] = state
        if self.platform.enable_tdvmcall:
            req = vmc.decode_vmcall_instruction(state.gprs)
        elif vmc.is_protocol_call(state.gprs):
            req = vmc.decode_protocol_call(state.gprs)
        else:
            return False
        regs.rax, regs.rcx, regs.rdx, regs.r8 = req.rax, req.rcx, req.rdx, req.r8
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        vm = self.platform.vm_of(layer)
        state = self._pending.pop((vm, vcpu), None)
        if state is None:
            return
        if self.platform.enable_tdvmcall:
            vmc.encode_vmcall_result(state.gprs, regs)
        else:
            vmc.encode_protocol_result(state.gprs, regs)
        after = self.l2_resume(layer, vcpu, state)
        if after is None:
            return
        if self.platform.enable_tdvmcall:
            out = vmc.decode_vmcall_instruction(after)
            regs.rax, regs.rcx, regs.rdx, regs.r8 = out.rax, out.rcx, out.rdx, out.r8
        else:
            vmc.decode_protocol_result(after, regs)
