"""APIC protocol (protocol 3) handlers: the privileged layer emulates a workload vCPU's APIC
(SNP Alternate Injection; sev-snp.md §3.3, seed 001), over PrivilegedPlatform only.

Registration (seed 001, Jon Lange / David Kaplan, May-June 2024; CS apic.rs): one VM-wide
registration count, and a per-vCPU emulation flag (the AlternateInjection SEV feature in each
VMSA on SNP). The count starts at 1 when the guest boots with alternate injection (firmware
is registered). CONFIGURE 0b10 registers (count + 1; refused with APIC_CANNOT_REGISTER once
the count has reached 0 — disabled for good — or on overflow); 0b01 deregisters (count - 1,
a benign no-op at 0) and, when the count reaches 0, stops emulation on the calling vCPU;
0b00 refreshes: a vCPU whose emulation is on while the count is 0 stops it, anything else is
unchanged. The protocol is offered only to vCPUs whose APIC is emulated.

Several workload layers share the one count: only a layer that controls every other workload
layer (or the privileged layer) registers or deregisters
(:data:`RULE_REGISTRATION_NEEDS_CONTROL`); every layer refreshes its own vCPUs.
"""

from __future__ import annotations

from cocopart.apic import ICR, ApicRegisterError, UnknownApicRegister
from cocopart.protocol.ids import ApicCall, ProtocolId, ResultCode
from cocopart.service.apic_state import ApicEmulation
from cocopart.service.dispatcher import CallContext, ServiceDispatcher

CONFIGURE_REFRESH, CONFIGURE_DEREGISTER, CONFIGURE_REGISTER = 0b00, 0b01, 0b10
MAX_REGISTRATIONS = 0xFFFF_FFFF  # the count is a u32 in CS
VECTOR_MASK, VECTOR_ENABLE, VECTOR_ALL = 0xFF, 1 << 8, 1 << 9
VECTOR_RESERVED = ~0x3FF & ((1 << 64) - 1)


#: The registration count is VM-wide, as the seed defines it ("The registration status of
#: Alternate Injection applies to the entire guest", seed 001, J. Lange 2024-05-23): with
#: several workload layers a lower layer's deregistration would irreversibly disable
#: Alternate Injection for a more privileged one. So registering (0b10) and deregistering
#: (0b01) are guest-wide changes and follow RULE_GUEST_WIDE_NEEDS_CONTROL: only a workload
#: layer that controls every other workload layer (SNP: the most privileged VMPL) may make
#: them; another layer's register is APIC_CANNOT_REGISTER, its deregister INVALID_REQUEST, and
#: nothing changes. Refresh (0b00) stays open to every layer: it only aligns the caller's own
#: vCPU with the VM-wide state. One workload layer: exactly the seed and COCONUT. cocopart's
#: choice over per-layer counts, which would let layers run different modes while the guest's
#: interrupt mode is one (ConfigureInterrupts, docs/interrupts.md "Seed 001").
RULE_REGISTRATION_NEEDS_CONTROL = "only a layer controlling every other one (de)registers"


def _stop(ctx: CallContext, emu: ApicEmulation) -> None:
    if emu.apics.pop((ctx.layer, ctx.vcpu), None) is not None:
        ctx.platform.apic_emulation_changed(ctx.layer, ctx.vcpu, False)


#: x2APIC ICR fields (CS cpu/apic.rs ApicIcr): vector 7:0, message type 10:8 (0 fixed),
#: trigger mode 15, assert 14, destination shorthand 19:18 (1 self), destination 63:32.
ICR_TYPE_SHIFT, ICR_ASSERT, ICR_LEVEL, ICR_SHORTHAND_SHIFT = 8, 1 << 14, 1 << 15, 18
ICR_SHORTHAND_SELF = 1


def send_ipi(ctx: CallContext, emu: ApicEmulation, icr: int) -> int:
    """An ICR write sends a fixed, asserted, edge-triggered IPI (the only kind CS emulates;
    others -> INVALID_PARAMETER): to the caller itself it is latched locally, to another vCPU
    of the same layer the platform posts it (``post_interrupt``)."""
    vector = icr & 0xFF
    if (icr >> ICR_TYPE_SHIFT) & 0x7 or not icr & ICR_ASSERT or icr & ICR_LEVEL:
        return ResultCode.INVALID_PARAMETER
    shorthand = (icr >> ICR_SHORTHAND_SHIFT) & 0x3
    dest = ctx.vcpu if shorthand == ICR_SHORTHAND_SELF else icr >> 32
    if shorthand not in (0, ICR_SHORTHAND_SELF):
        return ResultCode.INVALID_PARAMETER  # broadcasts: not modelled
    if dest == ctx.vcpu:
        emu.apics[(ctx.layer, ctx.vcpu)].accept(vector)
        return ResultCode.SUCCESS
    return ctx.platform.post_interrupt(ctx.layer, dest, vector)


def _query_features(ctx: CallContext) -> int:
    ctx.regs.rcx = 0  # no optional features (CS)
    return ResultCode.SUCCESS


def _configure(ctx: CallContext) -> int:
    emu = ctx.dispatcher.apic
    action = ctx.regs.rcx
    if action in (CONFIGURE_REGISTER, CONFIGURE_DEREGISTER):  # RULE_REGISTRATION_NEEDS_CONTROL
        refusal = ctx.authority.check_guest_wide(
            ctx.layer, "register or deregister Alternate Injection (the count is VM-wide)"
        )
        if refusal is not None:
            ctx.dispatcher.last_refusal = refusal
            return (
                ResultCode.APIC_CANNOT_REGISTER
                if action == CONFIGURE_REGISTER
                else ResultCode.INVALID_REQUEST
            )
    if action == CONFIGURE_REGISTER:
        if emu.count == 0 or emu.count >= MAX_REGISTRATIONS:
            return ResultCode.APIC_CANNOT_REGISTER
        emu.count += 1
        return ResultCode.SUCCESS
    if action == CONFIGURE_DEREGISTER:
        if emu.count:
            emu.count -= 1
            if emu.count == 0:
                emu.disabled_for_good = True
                _stop(ctx, emu)
        return ResultCode.SUCCESS
    if action == CONFIGURE_REFRESH:
        if emu.count == 0:
            _stop(ctx, emu)
        return ResultCode.SUCCESS
    return ResultCode.INVALID_PARAMETER


def _register_access(ctx: CallContext, write: bool) -> int:
    apic = ctx.dispatcher.apic.apics[(ctx.layer, ctx.vcpu)]
    try:
        if write:
            apic.write(ctx.regs.rcx, ctx.regs.rdx)
        else:
            ctx.regs.rdx = apic.read(ctx.regs.rcx)
    except UnknownApicRegister:
        return ResultCode.INVALID_ADDRESS
    except ApicRegisterError:
        return ResultCode.INVALID_PARAMETER
    return ResultCode.SUCCESS


def _read_register(ctx: CallContext) -> int:
    return _register_access(ctx, write=False)


def _write_register(ctx: CallContext) -> int:
    code = _register_access(ctx, write=True)
    if code == ResultCode.SUCCESS and ctx.regs.rcx == ICR:
        return send_ipi(ctx, ctx.dispatcher.apic, ctx.regs.rdx)
    return code


def _configure_vector(ctx: CallContext) -> int:
    rcx = ctx.regs.rcx
    if rcx & VECTOR_RESERVED:
        return ResultCode.INVALID_PARAMETER
    apic = ctx.dispatcher.apic.apics.get((ctx.layer, ctx.vcpu))
    if apic is None:
        return ResultCode.INVALID_REQUEST
    bits = ((1 << 256) - 1) if rcx & VECTOR_ALL else 1 << (rcx & VECTOR_MASK)
    apic.allowed = apic.allowed | bits if rcx & VECTOR_ENABLE else apic.allowed & ~bits
    return ResultCode.SUCCESS


def _offered(dispatcher: ServiceDispatcher, layer: str, vcpu: int) -> bool:
    return dispatcher.apic.enabled(layer, vcpu)


def register(dispatcher: ServiceDispatcher, emu: ApicEmulation) -> None:
    """Offer the APIC protocol (3) to vCPUs whose APIC ``emu`` emulates. The handlers find the
    emulation state through the dispatcher, so a forked machine's copy is its own."""
    dispatcher.apic = emu
    dispatcher.register(
        ProtocolId.APIC,
        {
            ApicCall.QUERY_FEATURES: _query_features,
            ApicCall.CONFIGURE: _configure,
            ApicCall.READ_REGISTER: _read_register,
            ApicCall.WRITE_REGISTER: _write_register,
            ApicCall.CONFIGURE_VECTOR: _configure_vector,
        },
        offered=_offered,
    )
