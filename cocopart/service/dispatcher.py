"""Route a protocol call to its handler (sev-snp.md §1.6: unknown protocol ->
UNSUPPORTED_PROTOCOL, unknown call -> UNSUPPORTED_CALL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocopart.memory import GuestMemory
from cocopart.model import Access
from cocopart.platform import PrivilegedPlatform
from cocopart.protocol.call import Registers
from cocopart.protocol.ids import PROTOCOL_VERSIONS, ProtocolId, ResultCode, call_name
from cocopart.service.apic_state import ApicEmulation
from cocopart.service.state import ServiceState
from cocopart.trace import Trace

if TYPE_CHECKING:
    from cocopart.authority import Authority, Refusal
    from cocopart.service.tpm import Vtpm


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

    @property
    def authority(self) -> Authority:
        return self.dispatcher.authority

    def buffer_error(self, gpa: int, size: int, need: Access) -> int:
        """SUCCESS if the caller may itself access ``[gpa, gpa + size)`` with ``need``
        (RULE_BUFFER_MUST_BE_CALLERS), else the protocol's INVALID_ADDRESS."""
        if not self.platform.is_guest_range(gpa, size):
            return ResultCode.INVALID_ADDRESS
        refusal = self.authority.check_buffer(self.layer, gpa, size, need)
        if refusal is not None:
            self.dispatcher.last_refusal = refusal
            return refusal.code
        return ResultCode.SUCCESS


Handler = Callable[[CallContext], int]
#: Whether a protocol is offered to (layer, vCPU); it gets the dispatcher so that state is
#: read from the dispatcher, never captured (a forked machine copies the dispatcher).
Offered = Callable[["ServiceDispatcher", str, int], bool]


class ServiceDispatcher:
    """The privileged layer's protocol service. Protocols register their call tables."""

    def __init__(
        self,
        platform: PrivilegedPlatform,
        memory: GuestMemory,
        state: ServiceState,
        trace: Trace,
        issuer: str = "l1",
    ) -> None:
        self.platform = platform
        self.memory = memory
        self.state = state
        self.trace = trace
        self.issuer = issuer
        self.protocols: dict[int, dict[int, Handler]] = {}
        self.versions: dict[int, tuple[int, int]] = {}
        #: Per-layer predicate deciding whether a protocol is offered to the caller
        self.offered: dict[int, Offered] = {}
        #: APIC emulation state (registration count, emulated APICs); the protocol is
        #: offered only to vCPUs it emulates.
        self.apic = ApicEmulation()
        #: The vTPM service, when the guest has one.
        self.vtpm: Vtpm | None = None
        #: Attestable services: name -> (GUID, manifest blob provider), and the vendor level
        #: (VMPL / L2 VM index) of each layer, for the manifest's requester entry.
        self.services: dict[str, tuple[uuid.UUID, Callable[[], bytes]]] = {}
        self.level_of: Callable[[str], int] = lambda _layer: 0
        #: Whether the services manifest names the requesting layer (cocopart's opt-in
        #: extension, cocopart.protocol.manifest.RULE_REQUESTER_ENTRY_OPT_IN).
        self.requester_entry = False
        #: Ownership and the authority rules (set by cocopart.service.build).
        self.authority: Authority
        #: The last request the authority rules refused (for results and tests).
        self.last_refusal: Refusal | None = None

    def register(
        self, protocol: ProtocolId, calls: dict[int, Handler], offered: Offered | None = None
    ) -> None:
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
