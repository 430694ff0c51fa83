"""Core protocol (protocol 0) handlers (sev-snp.md §2), over PrivilegedPlatform only."""

from __future__ import annotations

from cocopart.authority import bsp_refusal
from cocopart.model import L1, PAGE_4K, Access
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode
from cocopart.service.dispatcher import CallContext, Handler, ServiceDispatcher
from cocopart.service.state import VcpuRecord

U32 = 0xFFFF_FFFF


def remap_ca(ctx: CallContext) -> int:
    """REMAP_CA: RCX = new calling-area GPA; 4K aligned, zeroed, same GPA is a no-op.

    The new calling area must be a page the caller may read and write itself, no vCPU
    context page (RULE_BUFFER_MUST_BE_CALLERS, RULE_CONTEXT_PAGE_UNTOUCHABLE) and no other
    vCPU's calling area (cocopart's choice: two vCPUs sharing one calling area would read
    each other's call_pending byte) — INVALID_ADDRESS / INVALID_PARAMETER otherwise.
    """
    gpa = ctx.regs.rcx
    if gpa % PAGE_4K:
        return ResultCode.INVALID_PARAMETER
    key = (ctx.layer, ctx.vcpu)
    code = ctx.buffer_error(gpa, PAGE_4K, Access.RW)
    if code:
        return code
    holder = ctx.state.caa_owner(gpa)
    if holder is not None and holder != key:
        return ResultCode.INVALID_PARAMETER
    if ctx.state.areas.get(key) != gpa:
        ctx.memory.zero(gpa, PAGE_4K)
        ctx.state.areas[key] = gpa
    return ResultCode.SUCCESS


def _inside(ctx: CallContext, gpa: int, page_bytes: int, count: int) -> int:
    """How many of ``count`` pages from ``gpa`` are guest RAM a workload may validate or
    rescind: never the protocol region above it (RULE_RANGE_INSIDE_RAM, the same on every
    backend); l1 reaches all guest memory."""
    limit = ctx.authority.ownership.ram if ctx.layer != L1 else ctx.dispatcher.state.layout.total
    if gpa >= limit:
        return 0
    return min(count, (limit - gpa) // page_bytes)


def _allowed(ctx: CallContext, gpa: int, page_bytes: int, count: int, validate: bool) -> int:
    """How many of ``count`` pages from ``gpa`` the caller may validate or rescind (its own
    or pool pages, no live context page or calling area): RULE_STATE_CHANGE_NEEDS_OWNERSHIP."""
    end = gpa + page_bytes * count
    auth = ctx.authority
    refusal = auth.check_state(ctx.layer, gpa, end, "validate" if validate else "rescind")
    if refusal is None:
        return count
    ctx.dispatcher.last_refusal = refusal
    assert refusal.gpa is not None
    return (refusal.gpa - gpa) // page_bytes


def pvalidate(ctx: CallContext) -> int:
    """PVALIDATE: RCX = GPA of the request list (8-byte aligned, fits in its page).

    Entries run from ``next``; ``next`` advances past every success and is written back, so
    on failure it indexes the failing entry (CS core.rs). Contiguous entries with equal flags
    go to the platform as one run. The list must be the caller's own readable and writable
    memory, and every entry a page the caller may change (its own or l1's pool); the first entry that is not stops the call with INVALID_ADDRESS, ``next``
    pointing at it (docs/authority.md). Pages validated become the caller's; pages
    rescinded go back to the pool unless assigned to the caller by the memory map.
    """
    gpa = ctx.regs.rcx
    if gpa % 8:
        return ResultCode.INVALID_PARAMETER
    code: int = ctx.buffer_error(gpa, pv.HEADER.size, Access.RW)
    if code:
        return code
    page_base, offset = gpa & ~(PAGE_4K - 1), gpa & (PAGE_4K - 1)
    decoded = pv.PvalidateList.decode(ctx.memory.page(page_base), offset)
    if isinstance(decoded, ResultCode):
        return decoded
    code = ctx.buffer_error(gpa, pv.HEADER.size + pv.ENTRY_SIZE * decoded.count, Access.READ)
    if code:
        return code
    entries, idx, stop = decoded.entries, decoded.next, decoded.count
    bad: int | None = None
    # one contiguous run shares flags and alignment: checking its first entry checks all
    single = pv.progression(entries, idx, stop)
    for i in (idx,) if single else range(idx, stop):
        err = pv.entry_error(entries[i])
        if err is not None:
            stop, bad = i, err
            break
    runs = (
        [pv.EntryRun.of(entries, idx, stop)]
        if single and bad is None
        else pv.runs(entries, idx, stop)
    )
    ownership = ctx.authority.ownership
    for run in runs:
        n = _inside(ctx, run.gpa, run.page_bytes, run.count)
        n = _allowed(ctx, run.gpa, run.page_bytes, n, run.validate) if n else 0
        op = ctx.platform.validate_pages if run.validate else ctx.platform.rescind_pages
        done, c = (
            op(ctx.layer, run.gpa, run.page_bytes, n, ignore_unchanged=run.ignore_cf)
            if n
            else (0, ResultCode.SUCCESS)
        )
        if done:
            end = run.gpa + done * run.page_bytes
            if run.validate:
                ownership.claim(ctx.layer, run.gpa, end)
            else:
                ownership.release(run.gpa, end)
        idx = run.index + done
        if c:
            code = c
            break
        if n < run.count:
            code = ResultCode.INVALID_ADDRESS
            break
    else:
        if bad is not None:
            idx, code = stop, bad
    ctx.memory.write(gpa + 2, idx.to_bytes(2, "little"))
    return code


def create_vcpu(ctx: CallContext) -> int:
    """CREATE_VCPU: RCX = context (VMSA) GPA, RDX = calling-area GPA, R8[31:0] = APIC ID."""
    ctx_gpa, caa, apic = ctx.regs.rcx, ctx.regs.rdx, ctx.regs.r8 & U32
    p = ctx.platform
    if (
        ctx_gpa % PAGE_4K
        or caa % PAGE_4K
        or ctx_gpa == caa
        or not p.is_guest_range(ctx_gpa, PAGE_4K)
        or not p.is_guest_range(caa, PAGE_4K)
    ):
        return ResultCode.INVALID_ADDRESS
    # the caller prepared the context page and will use the calling area: both must be its
    # own memory (RULE_BUFFER_MUST_BE_CALLERS); a live context page is never either
    if ctx.buffer_error(caa, PAGE_4K, Access.RW) or (
        ctx.layer != L1
        and (
            ctx.authority.ownership.first_not_owned(ctx.layer, ctx_gpa, ctx_gpa + PAGE_4K)
            is not None
        )
    ):
        return ResultCode.INVALID_ADDRESS
    holder = ctx.state.caa_owner(caa)
    if holder is not None and holder != (ctx.layer, apic):  # another vCPU's calling area
        return ResultCode.INVALID_PARAMETER
    if apic not in p.apic_ids():
        return ResultCode.INVALID_PARAMETER
    if ctx_gpa in ctx.state.contexts or ctx.state.caa_in_use(ctx_gpa):
        return ResultCode.INVALID_PARAMETER
    code = p.create_vcpu(ctx.layer, ctx_gpa, caa, apic)
    if code == ResultCode.SUCCESS:
        vcpu = apic  # APIC ID n is vCPU n in the model
        ctx.state.contexts[ctx_gpa] = VcpuRecord(ctx.layer, vcpu, apic, caa)
        ctx.state.areas[(ctx.layer, vcpu)] = caa
    return code


def delete_vcpu(ctx: CallContext) -> int:
    """DELETE_VCPU: RCX = context GPA of a vCPU created through CREATE_VCPU."""
    ctx_gpa = ctx.regs.rcx
    rec = ctx.state.contexts.get(ctx_gpa)
    if ctx_gpa % PAGE_4K or rec is None or rec.layer != ctx.layer:
        return ResultCode.INVALID_PARAMETER
    if rec.vcpu == 0:  # RULE_BSP_KEEPS_RUNNING, for raw calls as for operations
        refusal = ctx.dispatcher.last_refusal = bsp_refusal(ctx.layer, ctx_gpa)
        return refusal.code
    code = ctx.platform.delete_vcpu(ctx.layer, ctx_gpa)
    if code == ResultCode.SUCCESS:
        del ctx.state.contexts[ctx_gpa]
    return code


def unsupported_memory_call(_ctx: CallContext) -> int:
    """DEPOSIT_MEM / WITHDRAW_MEM: the spec's argument layout is unconfirmed
    (sev-snp.md §9.1); like COCONUT, cocopart answers UNSUPPORTED_CALL."""
    return ResultCode.UNSUPPORTED_CALL


def query_protocol(ctx: CallContext) -> int:
    """QUERY_PROTOCOL: RCX = (protocol << 32) | version -> (max << 32) | min, or 0."""
    protocol, want = ctx.regs.rcx >> 32, ctx.regs.rcx & U32
    d = ctx.dispatcher
    out = 0
    if d.is_offered(protocol, ctx.layer, ctx.vcpu):
        lo, hi = d.versions[protocol]
        if lo <= want <= hi:
            out = (hi << 32) | lo
    ctx.regs.rcx = out
    return ResultCode.SUCCESS


def configure_vtom(ctx: CallContext) -> int:
    """CONFIGURE_VTOM: a query (RCX bit 0) answers 0 = vTOM not supported; setting it is an
    INVALID_REQUEST (CS core.rs)."""
    if ctx.regs.rcx & 1:
        ctx.regs.rcx = 0
        return ResultCode.SUCCESS
    return ResultCode.INVALID_REQUEST


CORE_CALLS: dict[int, Handler] = {
    CoreCall.REMAP_CA: remap_ca,
    CoreCall.PVALIDATE: pvalidate,
    CoreCall.CREATE_VCPU: create_vcpu,
    CoreCall.DELETE_VCPU: delete_vcpu,
    CoreCall.DEPOSIT_MEM: unsupported_memory_call,
    CoreCall.WITHDRAW_MEM: unsupported_memory_call,
    CoreCall.QUERY_PROTOCOL: query_protocol,
    CoreCall.CONFIGURE_VTOM: configure_vtom,
}


def register(dispatcher: ServiceDispatcher) -> None:
    dispatcher.register(ProtocolId.CORE, CORE_CALLS)
