"""Core protocol (protocol 0) handlers (sev-snp.md §2), over PrivilegedPlatform only."""

from __future__ import annotations

from cocopart.model import PAGE_4K
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.ids import CoreCall, ProtocolId, ResultCode
from cocopart.service.dispatcher import CallContext, Handler, ServiceDispatcher
from cocopart.service.state import VcpuRecord

U32 = 0xFFFF_FFFF


def remap_ca(ctx: CallContext) -> int:
    """REMAP_CA: RCX = new calling-area GPA; 4K aligned, zeroed, same GPA is a no-op."""
    gpa = ctx.regs.rcx
    if gpa % PAGE_4K:
        return ResultCode.INVALID_PARAMETER
    if not ctx.platform.is_guest_range(gpa, PAGE_4K):
        return ResultCode.INVALID_ADDRESS
    key = (ctx.layer, ctx.vcpu)
    if ctx.state.areas.get(key) != gpa:
        ctx.memory.zero(gpa, PAGE_4K)
        ctx.state.areas[key] = gpa
    return ResultCode.SUCCESS


def _inside(ctx: CallContext, gpa: int, page_bytes: int, count: int) -> int:
    """How many of ``count`` pages from ``gpa`` are guest memory (binary search)."""
    if ctx.platform.is_guest_range(gpa, page_bytes * count):
        return count
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ctx.platform.is_guest_range(gpa, page_bytes * mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def pvalidate(ctx: CallContext) -> int:
    """PVALIDATE: RCX = GPA of the request list (8-byte aligned, fits in its page).

    Entries run from ``next``; ``next`` advances past every success and is written back, so
    on failure it indexes the failing entry (CS core.rs). Contiguous entries with equal flags
    go to the platform as one run.
    """
    gpa = ctx.regs.rcx
    if gpa % 8:
        return ResultCode.INVALID_PARAMETER
    if not ctx.platform.is_guest_range(gpa & ~(PAGE_4K - 1), PAGE_4K):
        return ResultCode.INVALID_ADDRESS
    page_base, offset = gpa & ~(PAGE_4K - 1), gpa & (PAGE_4K - 1)
    decoded = pv.PvalidateList.decode(ctx.memory.page(page_base), offset)
    if isinstance(decoded, ResultCode):
        return decoded
    entries, idx, stop = decoded.entries, decoded.next, decoded.count
    bad: int | None = None
    # one contiguous run shares flags and alignment: checking its first entry checks all
    single = pv.progression(entries, idx, stop)
    for i in (idx,) if single else range(idx, stop):
        err = pv.entry_error(entries[i])
        if err is not None:
            stop, bad = i, err
            break
    code: int = ResultCode.SUCCESS
    runs = [pv.EntryRun.of(entries, idx, stop)] if single and bad is None \
        else pv.runs(entries, idx, stop)
    for run in runs:
        n = _inside(ctx, run.gpa, run.page_bytes, run.count)
        op = ctx.platform.validate_pages if run.validate else ctx.platform.rescind_pages
        done, c = op(ctx.layer, run.gpa, run.page_bytes, n, ignore_unchanged=run.ignore_cf) \
            if n else (0, ResultCode.SUCCESS)
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
    if ctx_gpa % PAGE_4K or caa % PAGE_4K or ctx_gpa == caa \
            or not p.is_guest_range(ctx_gpa, PAGE_4K) or not p.is_guest_range(caa, PAGE_4K):
        return ResultCode.INVALID_ADDRESS
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
