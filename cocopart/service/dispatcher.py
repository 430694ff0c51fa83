"""Route a protocol call to its handler (sev-snp.md §1.6: unknown protocol ->
UNSUPPORTED_PROTOCOL, unknown call -> UNSUPPORTED_CALL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocopart.backend import PrivilegedPlatform
from cocopart.memory import GuestMemory
from cocopart.protocol.call import Registers
from cocopart.protocol.ids import PROTOCOL_VERSIONS, ProtocolId, ResultCode, call_name
from cocopart.service.state import ServiceState
from cocopart.trace import Trace

if TYPE_CHECKING:
    from cocopart.service.vtpm import Vtpm


@dataclass
class CallContext:
    """One call as a handler sees it. Handlers return the result code and may update regs."""

    dispatcher: ServiceDispatcher
    layer: str
    vcpu: int
    regs: Registers

    @property
    def platform(self) -> PrivilegedPlatform:
        return self.dispatcher.platform

    @property
    def memory(self) -> GuestMemory:
        return self.dispatcher.memory

    @property
    def state(self) -> ServiceState:
        return self.dispatcher.state


Handler = Callable[[CallContext], int]
#: Whether a protocol is offered to (layer, vCPU); it gets the dispatcher so that state is
#: read from the dispatcher, never captured (a forked machine copies the dispatcher).
Offered = Callable[["ServiceDispatcher", str, int], bool]


class ServiceDispatcher:
    """The privileged layer's protocol service. Protocols register their call tables."""

    def __init__(self, platform: PrivilegedPlatform, memory: GuestMemory, state: ServiceState,
                 trace: Trace, issuer: str = "l1") -> None:
        self.platform = platform
        self.memory = memory
        self.state = state
        self.trace = trace
        self.issuer = issuer
        self.protocols: dict[int, dict[int, Handler]] = {}
        self.versions: dict[int, tuple[int, int]] = {}
        #: Per-layer predicate deciding whether a protocol is offered to the caller
        self.offered: dict[int, Offered] = {}
        from cocopart.service.apic import ApicEmulation
        #: APIC emulation state (registration count, emulated APICs); the protocol is
        #: offered only to vCPUs it emulates.
        self.apic = ApicEmulation()
        #: The vTPM service, when the guest has one.
        self.vtpm: Vtpm | None = None
        #: Attestable services: name -> (GUID, manifest blob provider), and the vendor level
        #: (VMPL / L2 VM index) of each layer, for the manifest's requester entry.
        self.services: dict[str, tuple[uuid.UUID, Callable[[], bytes]]] = {}
        self.level_of: Callable[[str], int] = lambda _layer: 0

    def register(self, protocol: ProtocolId, calls: dict[int, Handler],
                 offered: Offered | None = None) -> None:
        self.protocols[int(protocol)] = calls
        self.versions[int(protocol)] = PROTOCOL_VERSIONS[protocol]
        if offered is not None:
            self.offered[int(protocol)] = offered

    def is_offered(self, protocol: int, layer: str, vcpu: int) -> bool:
        if protocol not in self.protocols:
            return False
        pred = self.offered.get(protocol)
        return pred is None or pred(self, layer, vcpu)

    def dispatch(self, layer: str, vcpu: int, regs: Registers) -> None:
        """Run the call in ``regs`` for ``layer``/``vcpu``; the result code lands in RAX."""
        protocol, call = regs.protocol, regs.call_id
        self.trace.record(self.issuer, "HANDLE", call_name(protocol, call))
        if not self.is_offered(protocol, layer, vcpu):
            regs.rax = ResultCode.UNSUPPORTED_PROTOCOL
            return
        handler = self.protocols[protocol].get(call)
        if handler is None:
            regs.rax = ResultCode.UNSUPPORTED_CALL
            return
        ctx = CallContext(self, layer, vcpu, regs)
        regs.rax = int(handler(ctx))
