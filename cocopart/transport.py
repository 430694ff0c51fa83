"""The world switch that carries one protocol call from a workload layer to the privileged
layer (:class:`Transport`): the call_pending handshake and the INCOMPLETE/BUSY retry loop,
written once; a backend names its mechanism and, where it differs, how to switch."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cocopart.protocol.call import CallOutcome, Registers
from cocopart.protocol.calling_area import CALL_PENDING
from cocopart.protocol.ids import ResultCode

if TYPE_CHECKING:
    from cocopart.memory import GuestMemory
    from cocopart.service.dispatcher import ServiceDispatcher
    from cocopart.trace import Trace


class Transport:
    """The L2 -> L1 world switch carrying one protocol call.

    :meth:`call` runs the common sequence (sev-snp.md §1.3): the caller sets call_pending in
    its calling area, the vendor mechanism switches to the privileged layer (:meth:`enter`),
    which recognises the request, clears call_pending and dispatches it; the mechanism
    switches back (:meth:`leave`); the caller exchanges call_pending with 0 — still 1 means
    nobody serviced the call — and retries INCOMPLETE and BUSY.
    """

    mechanism: ClassVar[str]
    #: Retries of INCOMPLETE / BUSY before the caller gives up (Linux loops on -EAGAIN).
    MAX_RETRIES: ClassVar[int] = 64

    def __init__(self, dispatcher: ServiceDispatcher, memory: GuestMemory, trace: Trace) -> None:
        self.dispatcher = dispatcher
        self.memory = memory
        self.trace = trace

    #: The mechanism of the switch back (default: :attr:`mechanism`).
    return_mechanism: ClassVar[str | None] = None

    def enter(self, layer: str, vcpu: int, regs: Registers) -> bool:
        """Switch from ``layer`` to the privileged layer; True if it sees a protocol request.
        Default: one world switch by :attr:`mechanism`, and the request is seen."""
        self.trace.switch(layer, "l1", self.mechanism)
        return True

    def leave(self, layer: str, vcpu: int, regs: Registers) -> None:
        """Switch back from the privileged layer to ``layer``. Default: one world switch by
        :attr:`return_mechanism`."""
        self.trace.switch("l1", layer, self.return_mechanism or self.mechanism)

    def call(self, layer: str, vcpu: int, regs: Registers) -> CallOutcome:
        caa = self.dispatcher.state.caa(layer, vcpu)
        notes: list[str] = []
        for attempt in range(self.MAX_RETRIES + 1):
            self.memory.write(caa + CALL_PENDING, b"\x01")
            request = Registers(regs.rax, regs.rcx, regs.rdx, regs.r8)
            # the privileged layer recognises a request only when call_pending is set
            if self.enter(layer, vcpu, request) and self.memory.read(caa + CALL_PENDING, 1)[0]:
                self.memory.write(caa + CALL_PENDING, b"\x00")
                self.dispatcher.dispatch(layer, vcpu, request)
            self.leave(layer, vcpu, request)
            pending = self.memory.read(caa + CALL_PENDING, 1)[0]
            self.memory.write(caa + CALL_PENDING, b"\x00")
            if pending:
                notes.append("call_pending still set after the switch: the call was not serviced")
                return CallOutcome(ResultCode.INVALID_REQUEST, request, attempt, notes)
            if request.rax in (ResultCode.INCOMPLETE, ResultCode.BUSY):
                notes.append(f"attempt {attempt}: {ResultCode(request.rax).name}, retrying")
                regs = Registers(regs.rax, request.rcx, request.rdx, request.r8)
                continue
            return CallOutcome(request.rax, request, attempt, notes)
        return CallOutcome(ResultCode.BUSY, regs, self.MAX_RETRIES, notes)
