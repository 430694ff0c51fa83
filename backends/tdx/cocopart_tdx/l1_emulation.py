"""L1 serving the exits of an L2 that are not protocol calls: the L2's standard TDVMCALLs
(MapGPA forwarded to the host after the authority check, or straight to the host with
``enable_tdvmcall``) and the L2's TDG.MEM.PAGE.ATTR.WR (every L2 TDCALL but VMCALL exits to
L1 with basic reason 77; L1 checks :data:`L1_ATTR_POLICY` and issues the real ATTR.WR)."""

from __future__ import annotations

from dataclasses import dataclass

from cocopart.spi import PartitionConfig, ResultCode, Trace
from cocopart_tdx import attributes as attrs
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1_errors import L1Error
from cocopart_tdx.l1_platform import TdxPlatform
from cocopart_tdx.l1_tally import Tally
from cocopart_tdx.l1_transport import TdxTransport
from cocopart_tdx.status import Operand, TdxStatus, with_details
from cocopart_tdx.vp_enter import EnterGuestState

#: L1_ATTR_POLICY — how L1 emulates an L2's TDG.MEM.PAGE.ATTR.WR: the core's authority rules
#: (cocopart.authority, docs/authority.md). L2 VMs are peers: an L2 may set an L2 VM's
#: attributes (its own or a peer's) only on pages it owns, and only to a subset of its own
#: R/W/Xs/Xu there; it never changes access on a peer's page. Violations are answered
#: TDX_OPERAND_INVALID (operand RDX).
L1_ATTR_POLICY = "an L2 sets access only on its own pages, within what it holds"


@dataclass
class L2Exits:
    """L1's handling of an L2's TDVMCALL and ATTR.WR exits."""

    config: PartitionConfig
    platform: TdxPlatform
    transport: TdxTransport
    trace: Trace

    @property
    def workloads(self) -> tuple[str, ...]:
        return self.config.workloads

    def l2_tdvmcall(self, layer: str, vcpu: int, regs: dict[str, int], what: str) -> dict[str, int]:
        """One TDG.VP.VMCALL by the L2: straight to the host with ENABLE_TDVMCALL, else an
        L2 -> L1 exit that L1 serves (forwarding MapGPA to the host)."""
        p = self.platform
        vm = p.vm_of(layer)
        if p.enable_tdvmcall:
            tally = Tally()
            p.schedule(vcpu, vm, tally)
            tally.flush(self.trace)
            cpu = p.module.l2cpu(vcpu, vm)
            cpu.gprs.update(regs)
            res = p.module.l2_tdcall(vcpu)
            if isinstance(res, dict):  # refused by the module (bad GPR select)
                return dict(cpu.gprs)
            self.trace.record(layer, "TDG.VP.VMCALL", what, "ok")
            self.trace.switch(layer, "host", "TD exit")
            out = p.host.on_tdvmcall(res.regs, tally)
            tally.flush(self.trace)
            self.trace.switch("host", layer, "TDH.VP.ENTER")
            cpu.gprs.update(out)
            cpu.gprs["rax"] = 0
            return dict(cpu.gprs)
        state = self.transport.l2_exit(layer, vcpu, regs, what)
        if state is None:
            return {"r10": vmc.TdvmcallStatus.INVALID_OPERAND}
        self.emulate_tdvmcall(state, layer)
        after = self.transport.l2_resume(layer, vcpu, state)
        return after if after is not None else {"r10": vmc.TdvmcallStatus.INVALID_OPERAND}

    def emulate_tdvmcall(self, state: EnterGuestState, layer: str) -> None:
        """L1 serving ``layer``'s standard TDVMCALL: MapGPA is forwarded to the host when
        the range is guest RAM the L2 may convert (its own or pool pages — docs/authority.md), else INVALID_OPERAND; the other TDVMCALLs
        are not offered to L2s here (SUBFUNC_UNSUPPORTED)."""
        g = state.gprs
        tally = Tally()
        if g["r10"] == 0 and g["r11"] == vmc.SubFunction.MAP_GPA:
            sbit = self.platform.module.shared_bit
            start, size = g["r12"] & ~sbit, g["r13"]
            auth = self.transport.dispatcher.authority
            refusal = None
            if size <= 0 or start % 4096 or size % 4096 or start + size > self.config.memory:
                out = {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0}
            else:
                refusal = auth.check_state(layer, start, start + size, "convert")
                out = (
                    {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0}
                    if refusal
                    else self.platform.forward_map_gpa(layer, g["r12"], size, tally)
                )
                if refusal is None and g["r12"] & sbit:  # pages now shared: back to the pool
                    for s, e, shared in self.platform.host.shared.runs(start, start + size):
                        if shared:
                            auth.ownership.release(s, e)
            if refusal is not None:
                self.platform.last_error = L1Error(
                    "TDG.VP.VMCALL_INVALID_OPERAND",
                    vmc.TdvmcallStatus.INVALID_OPERAND,
                    f"L1 refused {layer}'s MapGPA: {refusal.message} ({refusal.rule})",
                )
        else:
            out = {"r10": vmc.TdvmcallStatus.SUBFUNC_UNSUPPORTED, "r11": 0}
        tally.flush(self.trace)
        g.update(rax=0, r10=out.get("r10", 0), r11=out.get("r11", 0))

    def emulate_attr_wr(
        self, layer: str, state: EnterGuestState, start: int, end: int, tvm: int, word: int
    ) -> int:
        """L1 emulating the L2's ATTR.WR over ``[start, end)``; the status lands in RAX."""
        p = self.platform
        deny = with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        status = 0
        if not 1 <= tvm <= len(self.workloads):  # VM 0 is L1 itself; no such L2 VM
            status = deny
            p.last_error = L1Error(
                "TDX_OPERAND_INVALID",
                deny,
                f"{layer}'s TDG.MEM.PAGE.ATTR.WR names VM {tvm}, which is not an L2 VM of this TD",
            )
        else:
            target = self.workloads[tvm - 1]
            refusal = self.transport.dispatcher.authority.check_set_access(
                layer, target, start, end, attrs.attr_to_access(word)
            )
            if refusal is not None:
                status = deny
                p.last_error = L1Error(
                    "TDX_OPERAND_INVALID",
                    deny,
                    f"L1 refused {layer}'s TDG.MEM.PAGE.ATTR.WR: "
                    f"{refusal.message} ({refusal.rule})",
                )
        if status == 0:
            r = p.set_access(
                self.workloads[tvm - 1],
                start,
                4096,
                (end - start) // 4096,
                attrs.attr_to_access(word),
            )
            if r.code != ResultCode.SUCCESS:
                err = p.last_error
                status = (
                    err.code
                    if err is not None and err.code > 0
                    else with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
                )
        state.gprs["rax"] = status
        return status
