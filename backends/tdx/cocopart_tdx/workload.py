"""What an L2 VM does for each vendor-neutral operation, under both planning strategies.

* validate / rescind: PVALIDATE protocol calls (the same protocol as SNP) carrying 2M entries
  where aligned; ``linux`` puts at most 64 entries in a call (one PSC descriptor's worth),
  ``optimal`` 510 (a full calling area) — :data:`cocopart_tdx.l1.ENTRIES_PER_CALL`. L1 maps
  each entry to TDG.MEM.PAGE.ACCEPT (+ fallbacks) and TDG.MEM.PAGE.ATTR.WR.
* convert to shared: rescind (module "2.0"; on 1.5 L1 removes the L2 aliases while forwarding
  MapGPA and the host's TDH.MEM.PAGE.REMOVE un-accepts), then TDVMCALL<MapGPA>(shared bit
  set), retried on RETRY (Linux: at most 3 times without progress); to private: MapGPA then
  validate. The L2's TDVMCALL exits to L1 (reason 77) which forwards it to the host, or goes
  straight to the host with ``enable_tdvmcall``.
* set access: the L2 issues TDG.MEM.PAGE.ATTR.WR itself; like every TDCALL but VMCALL it
  exits to L1 (reason 77), which checks :data:`L1_ATTR_POLICY` and issues the real ATTR.WR.
* create / delete vCPU: CREATE_VCPU / DELETE_VCPU protocol calls; the context page is the
  new vCPU's L2_ENTER_GUEST_STATE buffer, filled by the L2 with the start state first.
* attest: the attestation protocol through L1 (TDG.MR.REPORT + GetQuote); a hardware report
  for an L2 is not supported — only L1 may call TDG.MR.REPORT.
* extend measurement: TPM2_PCR_Extend through the vTPM protocol; L1 mirrors it into an RTMR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cocopart.attest.evidence import Evidence
from cocopart.client import PageRun, ProtocolClient
from cocopart.memory import ProtocolLayout
from cocopart.model import PageSize, PartitionConfig
from cocopart.ops import (
    ArchError,
    Attest,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    ExtendMeasurement,
    OperationResult,
    Progress,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.protocol.ids import ResultCode, result_name
from cocopart.protocol.manifest import VTPM_SERVICE_GUID, bind_report_data
from cocopart.trace import Trace
from cocopart.vtpm_commands import pcr_extend, response_code
from cocopart_tdx import attributes as attrs
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1 import (
    ENTRIES_PER_CALL,
    L1Error,
    Tally,
    TdxPlatform,
    TdxTransport,
    pcr_to_rtmr,
    vm_name,
)
from cocopart_tdx.sept import LEVEL_2M, LEVEL_4K, SeptState
from cocopart_tdx.simroots import SimulatedIntelRoots
from cocopart_tdx.status import Operand, TdxStatus, status_name, with_details
from cocopart_tdx.tdcall import Leaf
from cocopart_tdx.vp_enter import EnterGuestState

#: The protocol's own error codes travel as ArchError with this vendor.
PROTOCOL_VENDOR = "cocopart-protocol"
#: Start state an L2 writes into a new vCPU's state buffer (its AP entry point; a
#: placeholder — the model does not execute L2 code).
AP_START_RIP = 0xFFFF_FFF0
#: L1_ATTR_POLICY — how L1 emulates an L2's TDG.MEM.PAGE.ATTR.WR: the core's authority rules
#: (cocopart.authority, docs/authority.md). L2 VMs are peers: an L2 may set an L2 VM's
#: attributes (its own or a peer's) only on pages it owns, and only to a subset of its own
#: R/W/Xs/Xu there; it never changes access on a peer's page. Violations are answered
#: TDX_OPERAND_INVALID (operand RDX).
L1_ATTR_POLICY = "an L2 sets access only on its own pages, within what it holds"


def arch_error(err: L1Error | None, code: int, what: str) -> ArchError:
    """An ArchError from L1's last TDX failure, else from the protocol result code."""
    if err is not None:
        return ArchError(vendor="intel", mnemonic=err.mnemonic, code=err.code,
                         message=err.message)
    return ArchError(vendor=PROTOCOL_VENDOR, mnemonic=result_name(code), code=code,
                     message=f"{what} answered {result_name(code)}")


@dataclass
class L2Workload:
    """The L2 VMs' side of every operation (planning + execution on the model)."""

    config: PartitionConfig
    layout: ProtocolLayout
    platform: TdxPlatform
    transport: TdxTransport
    client: ProtocolClient
    trace: Trace
    #: The simulated Intel roots whose collateral goes out with the evidence.
    roots: SimulatedIntelRoots | None = None

    @property
    def workloads(self) -> tuple[str, ...]:
        return self.config.workloads

    @property
    def per_call(self) -> int:
        return ENTRIES_PER_CALL[self.config.strategy]

    def caller(self, layer: str) -> int | None:
        """The L2 vCPU that issues a request: the lowest one that exists."""
        vm = self.platform.vm_of(layer)
        if self.platform.vcpu_exists(vm, 0):
            return 0
        alive = sorted(v for (m, v) in self.platform.l2_vcpus if m == vm)
        return alive[0] if alive else None

    def _no_vcpu(self, name: str, layer: str) -> OperationResult:
        return OperationResult.not_supported(name, f"{layer} has no running vCPU to issue "
                                             "the request (all were deleted)")

    def _failed(self, name: str, code: int, what: str, progress: Progress | None = None
                ) -> OperationResult:
        err = self.platform.take_error()
        if code == ResultCode.UNSUPPORTED_CALL and err is not None:
            return OperationResult.not_supported(name, err.message)
        return OperationResult.failure(name, arch_error(err, code, what), progress)

    # -- memory ------------------------------------------------------------------------------
    def validate(self, op: ValidatePages) -> OperationResult:
        name = op.describe()
        if op.page_size is PageSize.SIZE_1G:
            return OperationResult.not_supported(
                name, "PVALIDATE protocol entries are 4K or 2M; only L1 can accept a 1G page "
                "(and only on a module that allows it)")
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        largest = op.page_size or PageSize.SIZE_2M
        runs = [PageRun(s, ps.bytes, n) for s, ps, n in op.range.chunks(largest)]
        r = self.client.pvalidate(op.layer, vcpu, runs, validate=True, per_call=self.per_call)
        if r.code != ResultCode.SUCCESS:
            return self._failed(name, r.code, "PVALIDATE",
                                Progress(done_bytes=r.done_bytes, next_gpa=r.failed_gpa))
        return OperationResult.success(name, calls=r.calls, entries_per_call=self.per_call)

    def rescind(self, op: RescindPages, *, ignore_cf: bool = False) -> OperationResult:
        name = op.describe()
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        runs = [PageRun(s, ps.bytes, n) for s, ps, n in op.range.chunks()]
        r = self.client.pvalidate(op.layer, vcpu, runs, validate=False, per_call=self.per_call,
                                  ignore_cf=ignore_cf)
        if r.code != ResultCode.SUCCESS:
            return self._failed(name, r.code, "PVALIDATE (rescind)",
                                Progress(done_bytes=r.done_bytes, next_gpa=r.failed_gpa))
        return OperationResult.success(name, calls=r.calls)

    def l2_tdvmcall(self, layer: str, vcpu: int, regs: dict[str, int], what: str
                    ) -> dict[str, int]:
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
                out = {"r10": vmc.TdvmcallStatus.INVALID_OPERAND, "r11": 0} if refusal \
                    else self.platform.forward_map_gpa(layer, g["r12"], size, tally)
                if refusal is None and g["r12"] & sbit:  # pages now shared: back to the pool
                    for s, e, shared in self.platform.host.shared.runs(start, start + size):
                        if shared:
                            auth.ownership.release(s, e)
            if refusal is not None:
                self.platform.last_error = L1Error(
                    "TDG.VP.VMCALL_INVALID_OPERAND", vmc.TdvmcallStatus.INVALID_OPERAND,
                    f"L1 refused {layer}'s MapGPA: {refusal.message} ({refusal.rule})")
        else:
            out = {"r10": vmc.TdvmcallStatus.SUBFUNC_UNSUPPORTED, "r11": 0}
        tally.flush(self.trace)
        g.update(rax=0, r10=out.get("r10", 0), r11=out.get("r11", 0))

    def map_gpa(self, layer: str, vcpu: int, gpa: int, size: int) -> int:
        """TDVMCALL<MapGPA> with the Linux RETRY loop; returns the final TDVMCALL status."""
        sbit = self.platform.module.shared_bit
        start, end = gpa & ~sbit, (gpa & ~sbit) + size
        cur, stuck = gpa, 0
        while True:
            out = self.l2_tdvmcall(layer, vcpu, vmc.map_gpa_registers(cur, end - (cur & ~sbit)),
                                   "MapGPA")
            status = out.get("r10", vmc.TdvmcallStatus.INVALID_OPERAND)
            if status != vmc.TdvmcallStatus.RETRY:
                return int(status)
            nxt = out.get("r11", cur)
            if nxt == cur:
                stuck += 1
                if stuck > vmc.MAP_GPA_MAX_RETRIES_WITHOUT_PROGRESS:
                    return int(status)
            else:
                stuck = 0
            if not start <= (nxt & ~sbit) < end:
                return int(vmc.TdvmcallStatus.INVALID_OPERAND)
            cur = nxt

    def convert(self, op: ConvertPages) -> OperationResult:
        name = op.describe()
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        sbit = self.platform.module.shared_bit
        notes: list[str] = []
        why = self.platform.shared_memory_refusal(op.layer) if op.to == "shared" else None
        if why is not None:  # L2_CTLS.ENABLE_SHARED_EPTP off: nothing is converted
            return OperationResult.not_supported(name, why)
        if op.to == "shared":
            if self.platform.module.config.module == "2.0":
                r = self.rescind(RescindPages(layer=op.layer, range=op.range), ignore_cf=True)
                if not r.ok:  # nothing is shared yet; rescinded pages are listed as changed
                    return r.model_copy(update={
                        "operation": name, "progress": Progress(done_bytes=0,
                                                                next_gpa=op.range.start)})
            else:
                notes.append("module 1.5 has no TDG.MEM.PAGE.RELEASE: L1 removes the L2 "
                             "aliases while forwarding MapGPA; the host's TDH.MEM.PAGE.REMOVE "
                             "un-accepts the pages")
            st = self.map_gpa(op.layer, vcpu, op.range.start | sbit, op.range.size)
        else:
            st = self.map_gpa(op.layer, vcpu, op.range.start, op.range.size)
        if st != vmc.TdvmcallStatus.SUCCESS:
            return OperationResult.failure(name, ArchError(
                vendor="intel", mnemonic=f"TDG.VP.VMCALL_{vmc.TdvmcallStatus(st).name}",
                code=st, message=f"TDVMCALL<MapGPA> answered "
                f"{vmc.TdvmcallStatus(st).name} in R10"))
        if op.to == "private":
            v = self.validate(ValidatePages(layer=op.layer, range=op.range))
            if not v.ok:
                return v
        return OperationResult.success(name, notes=notes)

    def set_access(self, op: SetAccess) -> OperationResult:
        """The L2's own TDG.MEM.PAGE.ATTR.WR, one per 2M/4K page, each exiting to L1."""
        name = op.describe()
        p = self.platform
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        if not op.target.startswith("l2."):
            return OperationResult.not_supported(
                name, f"{op.target} has no TDX page attributes: only L2 VMs 1-3 do "
                "(L1 always has full access to its private pages)")
        tvm = int(op.target.split(".")[1])
        word = attrs.access_to_attr(op.access)
        for s, ps, n in op.range.chunks():
            level = LEVEL_2M if ps is PageSize.SIZE_2M else LEVEL_4K
            regs = {"rax": Leaf.MEM_PAGE_ATTR_WR, "rcx": s | level,
                    "rdx": attrs.pack({tvm: attrs.VALID | word}),
                    "r8": attrs.pack({tvm: attrs.RWX | attrs.FLAG_INVEPT})}
            state = self.transport.l2_exit(op.layer, vcpu, regs, "TDG.MEM.PAGE.ATTR.WR")
            if state is None:
                return self._no_vcpu(name, op.layer)
            status = self.emulate_attr_wr(op.layer, state, s, s + ps.bytes * n, tvm, word)
            if status == 0 and n > 1:  # the other n - 1 identical TDCALLs
                self.trace.record(op.layer, "TDCALL", "TDG.MEM.PAGE.ATTR.WR", "exit 77", n - 1)
                self.trace.switch(op.layer, "l1", self.transport.mechanism, n - 1)
            after = self.transport.l2_resume(op.layer, vcpu, state, n if status == 0 else 1)
            status = after["rax"] if after is not None else status
            if status:
                err = p.take_error()
                return OperationResult.failure(name, ArchError(
                    vendor="intel", mnemonic=f"TDX_{status_name(status)}", code=status,
                    message=err.message if err else f"TDG.MEM.PAGE.ATTR.WR of {s:#x} returned "
                    f"{status_name(status)}"), Progress(done_bytes=s - op.range.start,
                                                         next_gpa=s))
        return OperationResult.success(name, policy=L1_ATTR_POLICY)

    def emulate_attr_wr(self, layer: str, state: EnterGuestState, start: int, end: int,
                        tvm: int, word: int) -> int:
        """L1 emulating the L2's ATTR.WR over ``[start, end)``; the status lands in RAX."""
        p = self.platform
        deny = with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        status = 0
        if not 1 <= tvm <= len(self.workloads):  # VM 0 is L1 itself; no such L2 VM
            status = deny
            p.last_error = L1Error("TDX_OPERAND_INVALID", deny,
                                   f"{layer}'s TDG.MEM.PAGE.ATTR.WR names VM {tvm}, which is "
                                   "not an L2 VM of this TD")
        else:
            target = self.workloads[tvm - 1]
            refusal = self.transport.dispatcher.authority.check_set_access(
                layer, target, start, end, attrs.attr_to_access(word))
            if refusal is not None:
                status = deny
                p.last_error = L1Error("TDX_OPERAND_INVALID", deny,
                                       f"L1 refused {layer}'s TDG.MEM.PAGE.ATTR.WR: "
                                       f"{refusal.message} ({refusal.rule})")
        if status == 0:
            r = p.set_access(self.workloads[tvm - 1], start, 4096, (end - start) // 4096,
                             attrs.attr_to_access(word))
            if r.code != ResultCode.SUCCESS:
                err = p.last_error
                status = err.code if err is not None and err.code > 0 \
                    else with_details(TdxStatus.OPERAND_INVALID, Operand.RDX)
        state.gprs["rax"] = status
        return status

    # -- vCPUs -------------------------------------------------------------------------------
    def create_vcpu(self, op: CreateVcpu) -> OperationResult:
        name = op.describe()
        if op.target != op.layer:
            return OperationResult.not_supported(
                name, f"{op.layer} cannot create a vCPU of {op.target}: CREATE_VCPU acts on "
                "the caller's own L2 VM (ask from that layer, or from l1)")
        if op.vcpu >= self.config.vcpus:
            return OperationResult.failure(name, ArchError(
                vendor=PROTOCOL_VENDOR, mnemonic="INVALID_PARAMETER",
                code=ResultCode.INVALID_PARAMETER,
                message=f"the TD has {self.config.vcpus} vCPUs; L2 vCPU n runs on L1 vCPU n"))
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        i = self.workloads.index(op.layer)
        ctx, caa = self.layout.context(i, op.vcpu), self.layout.caa(i, op.vcpu)
        vm = self.platform.vm_of(op.layer)
        if self.platform.vcpu_exists(vm, op.vcpu):
            return OperationResult.failure(name, ArchError(
                vendor=PROTOCOL_VENDOR, mnemonic="INVALID_PARAMETER",
                code=ResultCode.INVALID_PARAMETER,
                message=f"vCPU {op.vcpu} of {op.layer} already runs (L1 starts each L2 VM's "
                "vCPU 0 at launch)"))
        if self.platform.module.private_accepted(ctx) \
                and self.platform.module.sept.alias(vm, ctx).state is SeptState.L2_MAPPED:
            self.client.memory.write(ctx, EnterGuestState(rip=AP_START_RIP).encode())
        out = self.client.create_vcpu(op.layer, vcpu, ctx, caa, op.vcpu)
        if not out.ok:
            return self._failed(name, out.code, "CREATE_VCPU")
        return OperationResult.success(name, context_gpa=ctx, l1_vcpu=op.vcpu)

    def delete_vcpu(self, op: DeleteVcpu) -> OperationResult:
        name = op.describe()
        if op.target != op.layer:
            return OperationResult.not_supported(
                name, f"{op.layer} cannot delete a vCPU of {op.target}: DELETE_VCPU acts on "
                "the caller's own L2 VM")
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        i = self.workloads.index(op.layer)
        if op.vcpu >= self.config.vcpus:
            return OperationResult.failure(name, ArchError(
                vendor=PROTOCOL_VENDOR, mnemonic="INVALID_PARAMETER",
                code=ResultCode.INVALID_PARAMETER, message=f"no vCPU {op.vcpu}"))
        out = self.client.delete_vcpu(op.layer, vcpu, self.layout.context(i, op.vcpu))
        if not out.ok:
            return self._failed(name, out.code, "DELETE_VCPU")
        return OperationResult.success(name)

    # -- attestation and measurement -------------------------------------------------------
    def attest(self, op: Attest) -> OperationResult:
        name = op.describe()
        if op.source == "hardware":
            return OperationResult.not_supported(
                name, "only L1 may call TDG.MR.REPORT; an L2's TDCALL exits to L1 — use "
                "source 'service' (L1's attestation service binds the nonce and manifest)")
        service = None
        if op.service is not None:
            if op.service != "vtpm" or "vtpm" not in self.config.services:
                return OperationResult.not_supported(
                    name, f"no service '{op.service}' in this guest (services: "
                    f"{', '.join(self.config.services) or 'none'})")
            service = VTPM_SERVICE_GUID
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        a = self.client.attest(op.layer, vcpu, op.report_data, service=service)
        if a.code != ResultCode.SUCCESS:
            return self._failed(name, a.code, "ATTEST_SERVICES")
        evidence = self.evidence(a.report, op.report_data, a.manifest)
        return OperationResult.success(
            name, evidence=evidence, calls=a.calls,
            reportdata=bind_report_data(op.report_data, a.manifest).hex(),
            reportdata_rule="REPORTDATA = SHA-512(nonce || services manifest)")

    def evidence(self, quote: bytes, nonce: bytes | None, manifest: bytes | None
                 ) -> dict[str, object]:
        layer_map = {vm_name(i + 1): w for i, w in enumerate(self.workloads)}
        layer_map["L1"] = "l1"
        # the simulated PCS collateral (TCB info, QE identity, CRLs) issued now, and the
        # simulated root last, so a verifier that trusts that root can check everything
        extra: dict[str, object] = {}
        if self.roots is not None:
            extra = {"certificates": [self.roots.root_pem],
                     "collateral": self.roots.collateral(datetime.now(UTC))}
        return Evidence(vendor="tdx", format="tdx-quote", raw=quote, nonce=nonce,
                        manifest=manifest, layer_map=layer_map, **extra
                        ).model_dump(mode="json")

    def extend(self, op: ExtendMeasurement) -> OperationResult:
        name = op.describe()
        if "vtpm" not in self.config.services:
            return OperationResult.not_supported(
                name, "an L2 extends measurements through L1's vTPM, and this guest has no "
                "vTPM service (services = [])")
        vcpu = self.caller(op.layer)
        if vcpu is None:
            return self._no_vcpu(name, op.layer)
        code, rsp = self.client.vtpm_command(op.layer, vcpu, pcr_extend(op.index, op.digest))
        if code != ResultCode.SUCCESS:
            return self._failed(name, code, "SVSM_VTPM_CMD")
        rc = response_code(rsp)
        if rc:
            return OperationResult.failure(name, ArchError(
                vendor="tcg", mnemonic=f"TPM_RC_{rc:#x}", code=rc,
                message=f"TPM2_PCR_Extend of PCR {op.index} answered {rc:#x}"))
        return OperationResult.success(name, pcr=op.index, rtmr=pcr_to_rtmr(op.index))
