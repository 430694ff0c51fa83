"""Planning and carrying out each vendor-neutral operation from a requesting layer: a
workload VMPL (through the host and the SVSM) or the SVSM itself (``l1``, directly).

* validate / convert to private = PSC to private through the host, then PVALIDATE batches
  through the SVSM (2M entries where aligned; a 2M entry failing with SIZEMISMATCH is redone
  as 512 4K entries; resume from ``next`` — all in the core's ProtocolClient);
* rescind = SVSM PVALIDATE(rescind) batches; convert to shared = rescind first, then PSC to
  shared (sev-snp.md §5.5 ordering);
* set access for another layer = RMPADJUST when the caller is more privileged than the
  target; never otherwise (no SVSM call sets access; docs/authority.md);
* create vCPU = prepare a VMSA page and call CREATE_VCPU; delete = DELETE_VCPU;
* attest = a guest request with the layer's own VMPCK (hardware) or the SVSM attestation
  protocol (service); extend a measurement = a vTPM PCR extend.

Two strategies (``PartitionConfig.strategy``, cost-model.md §3): ``linux`` issues at most 64
entries per PSC request and per SVSM call (one SVSM call per PSC batch, as Linux builds its
PVALIDATE list from the PSC descriptor); ``optimal`` packs 253 entries per PSC request and
510 per SVSM call. Both use 2M entries wherever the range is 2M aligned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cocopart import vtpm_commands
from cocopart.attest.evidence import Evidence
from cocopart.client import BatchResult, PageRun
from cocopart.errors import ConfigError, NotSupportedError
from cocopart.model import PAGE_2M, PAGE_4K, Access, GpaRange, PageSize, Strategy
from cocopart.ops import (
    ArchError,
    Attest,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    ExtendMeasurement,
    Operation,
    OperationResult,
    Progress,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.ids import ResultCode, result_name
from cocopart.protocol.manifest import VTPM_SERVICE_GUID
from cocopart.protocol.pvalidate import MAX_ENTRIES_IN_CAA
from cocopart_sev_snp import cert_table
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp import vmsa as vm

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

L1 = "l1"
VENDOR = "amd"
#: Where an AP starts (the model does not run code; any canonical address would do).
AP_ENTRY_RIP = 0x0010_0000


@dataclass(frozen=True)
class Limits:
    """Entries per GHCB PSC request and per SVSM PVALIDATE call."""

    psc_entries: int
    pvalidate_entries: int


#: cost-model.md §3: Linux packs 64 entries per PSC (VMGEXIT_PSC_MAX_ENTRY lowered to 64)
#: and builds each SVSM call from one PSC descriptor; the architecture allows 253 per PSC
#: (sev-snp.md §5.5) and 510 per SVSM call (§2.1).
STRATEGY_LIMITS = {Strategy.LINUX: Limits(64, 64),
                   Strategy.OPTIMAL: Limits(g.VMGEXIT_PSC_MAX_ENTRY, pv.MAX_ENTRIES_IN_CAA)}


def batches(runs: list[PageRun], n: int) -> Iterator[list[PageRun]]:
    """Split runs into groups of at most ``n`` entries (pieces of runs, never pages)."""
    cur: list[PageRun] = []
    room = n
    for r in runs:
        gpa, left = r.gpa, r.count
        while left:
            take = min(left, room)
            cur.append(PageRun(gpa, r.page_bytes, take))
            gpa += take * r.page_bytes
            left -= take
            room -= take
            if room == 0:
                yield cur
                cur, room = [], n
    if cur:
        yield cur


def page_runs(rng: GpaRange, forced: PageSize | None) -> list[PageRun]:
    """The PVALIDATE/PSC entries of a range as runs: 2M where aligned, 4K elsewhere, or
    every entry of the forced size (misaligned 2M entries are left for the SVSM to refuse)."""
    if forced is None:
        return [PageRun(s, ps.bytes, n) for s, ps, n in rng.chunks(PageSize.SIZE_2M)]
    if forced is PageSize.SIZE_1G:
        raise NotSupportedError("1G pages", "PVALIDATE has 4K and 2M page sizes only "
                                "(sev-snp.md §4.3)")
    return [PageRun(rng.start, forced.bytes, max(1, rng.size // forced.bytes))]


def _arch(mnemonic: str, code: int, message: str) -> ArchError:
    return ArchError(vendor=VENDOR, mnemonic=mnemonic, code=code, message=message)


class WorkloadPlanner:
    """Carries out operations requested by a workload layer or by the SVSM."""

    def __init__(self, machine: SnpMachine) -> None:
        self.m = machine

    @property
    def limits(self) -> Limits:
        return STRATEGY_LIMITS[self.m.config.strategy]

    def run(self, op: Operation) -> OperationResult:
        name = op.describe()
        try:
            if isinstance(op, ValidatePages):
                return self.validate(name, op.layer, op.range, op.page_size)
            if isinstance(op, RescindPages):
                return self.rescind(name, op.layer, op.range, ignore_cf=False)
            if isinstance(op, ConvertPages):
                if op.to == "private":
                    return self.validate(name, op.layer, op.range, None)
                return self.to_shared(name, op.layer, op.range)
            if isinstance(op, SetAccess):
                return self.set_access(name, op)
            if isinstance(op, CreateVcpu):
                return self.create_vcpu(name, op)
            if isinstance(op, DeleteVcpu):
                return self.delete_vcpu(name, op)
            if isinstance(op, Attest):
                return self.attest(name, op)
            if isinstance(op, ExtendMeasurement):
                return self.extend(name, op)
        except NotSupportedError as err:
            return OperationResult.not_supported(name, err.reason)
        return OperationResult.not_supported(name, f"{op.op} is not planned by this backend")

    # -- memory ----------------------------------------------------------------------------
    def _pvalidate(self, layer: str, runs: list[PageRun], *, validate: bool, per_call: int,
                   ignore_cf: bool) -> BatchResult:
        if layer != L1:
            # Linux redoes SIZEMISMATCH 2M entries as 4K in full calls of 510 (+2)
            # (sev-snp.md §2.1; cost-model.md §3); both strategies do the same.
            return self.m.client.pvalidate(layer, 0, runs, validate=validate,
                                           per_call=per_call, ignore_cf=ignore_cf,
                                           fallback_per_call=MAX_ENTRIES_IN_CAA)
        return self._pvalidate_direct(runs, validate, ignore_cf)

    def _pvalidate_direct(self, runs: list[PageRun], validate: bool, ignore_cf: bool
                          ) -> BatchResult:
        """The SVSM validating or rescinding for itself: no call, same primitives; a 2M
        page failing with SIZEMISMATCH is redone as 512 4K pages."""
        p = self.m.platform
        op = p.validate_pages if validate else p.rescind_pages
        owners = self.m.ownership
        res = BatchResult()
        todo = list(runs)
        while todo:
            r = todo.pop(0)
            done, code = op(L1, r.gpa, r.page_bytes, r.count, ignore_unchanged=ignore_cf)
            res.done_bytes += done * r.page_bytes
            if done:
                if validate:
                    owners.claim(L1, r.gpa, r.gpa + done * r.page_bytes)
                else:
                    owners.release(r.gpa, r.gpa + done * r.page_bytes)
            if code == ResultCode.PVALIDATE_FAIL_SIZEMISMATCH and r.page_bytes == PAGE_2M:
                at = r.gpa + done * PAGE_2M
                res.fallbacks += 1
                todo[0:0] = [PageRun(at, PAGE_4K, PAGE_2M // PAGE_4K)] + (
                    [PageRun(at + PAGE_2M, PAGE_2M, r.count - done - 1)]
                    if r.count - done - 1 else [])
                continue
            if code:
                res.code, res.failed_gpa = code, r.gpa + done * r.page_bytes
                break
        return res

    def _batch_failure(self, name: str, r: BatchResult, done: int, what: str
                       ) -> OperationResult:
        where = f" at {r.failed_gpa:#x}" if r.failed_gpa is not None else ""
        return OperationResult.failure(name, _arch(
            "SVSM_CORE_PVALIDATE", r.code,
            f"the SVSM answered {result_name(r.code)}{where} while {what}."),
            Progress(done_bytes=done, next_gpa=r.failed_gpa))

    def validate(self, name: str, layer: str, rng: GpaRange, forced: PageSize | None
                 ) -> OperationResult:
        """PSC to private, then PVALIDATE through the SVSM, batch by batch."""
        runs = page_runs(rng, forced)
        lim = self.limits
        optimal = self.m.config.strategy is Strategy.OPTIMAL
        groups = [runs] if optimal else list(batches(runs, lim.psc_entries))
        done = calls = fallbacks = 0
        for group in groups:
            err = self.m.psc(layer, 0, group, g.PscOp.PRIVATE, lim.psc_entries)
            if err is not None:
                return OperationResult.failure(name, err, Progress(done_bytes=done,
                                                                   next_gpa=group[0].gpa))
            r = self._pvalidate(layer, group, validate=True, per_call=lim.pvalidate_entries,
                                ignore_cf=False)
            done += r.done_bytes
            calls += r.calls
            fallbacks += r.fallbacks
            if r.code:
                return self._batch_failure(name, r, done, "validating")
        return OperationResult.success(name, svsm_calls=calls, size_fallbacks=fallbacks)

    def rescind(self, name: str, layer: str, rng: GpaRange, *, ignore_cf: bool
                ) -> OperationResult:
        runs = page_runs(rng, None)
        lim = self.limits
        r = self._pvalidate(layer, runs, validate=False, per_call=lim.pvalidate_entries,
                            ignore_cf=ignore_cf)
        if r.code:
            return self._batch_failure(name, r, r.done_bytes, "rescinding")
        return OperationResult.success(name, svsm_calls=r.calls, size_fallbacks=r.fallbacks)

    def to_shared(self, name: str, layer: str, rng: GpaRange) -> OperationResult:
        """Rescind (pages not validated are fine), then PSC to shared."""
        res = self.rescind(name, layer, rng, ignore_cf=True)
        if not res.ok:  # no page is shared yet: nothing of the conversion is done (the
            # pages rescinded so far are listed by the executor in ``changed``)
            return res.model_copy(update={"progress": Progress(done_bytes=0,
                                                               next_gpa=rng.start)})
        lim = self.limits
        err = self.m.psc(layer, 0, page_runs(rng, None), g.PscOp.SHARED, lim.psc_entries)
        if err is not None:
            return OperationResult.failure(name, err, Progress(done_bytes=0, next_gpa=rng.start))
        return res

    # -- access ----------------------------------------------------------------------------
    def set_access(self, name: str, op: SetAccess) -> OperationResult:
        m = self.m
        if op.target not in m.vmpls:
            if op.target == L1:
                raise NotSupportedError(f"set-access for {op.target}",
                                        "VMPL0 always has full access to the guest's pages")
            if op.target in m.graph:
                raise NotSupportedError(f"set-access for {op.target}", "only workload VMPLs "
                                        "have per-page RMP permissions")
            raise ConfigError(f"no layer '{op.target}' in this guest", field="target")
        target = m.vmpls[op.target]
        perms = int(op.access)
        start, end = op.range.start, op.range.end
        if op.layer == L1:
            done, code = m.platform.grant(target, start, end, perms)
            return self._grant_result(name, "RMPADJUST", done, code, op)
        if target <= m.vmpls[op.layer]:
            # RMPADJUST only targets a less privileged VMPL, and no SVSM protocol call sets a
            # VMPL's access (sev-snp.md §2, §4.3): nothing carries this request
            raise NotSupportedError(
                f"set-access for {op.target} from {op.layer}",
                f"RMPADJUST at VMPL{m.vmpls[op.layer]} only changes less privileged VMPLs "
                f"(numerically higher than {m.vmpls[op.layer]}), and the SVSM protocol has no "
                "call that sets a VMPL's access; ask from l1 or a more privileged VMPL")
        return self._direct_rmpadjust(name, op, target, perms)

    def _grant_result(self, name: str, mnemonic: str, done: int, code: int, op: SetAccess
                      ) -> OperationResult:
        if code:
            return OperationResult.failure(name, _arch(
                mnemonic, code, f"setting {op.target}'s access stopped at "
                f"{op.range.start + done:#x}: {result_name(code)}."),
                Progress(done_bytes=done, next_gpa=op.range.start + done))
        return OperationResult.success(name)

    def _direct_rmpadjust(self, name: str, op: SetAccess, target: int, perms: int
                          ) -> OperationResult:
        """RMPADJUST executed by the workload itself, towards a less privileged VMPL; a
        size mismatch is resolved as Linux does for PVALIDATE (2M redone as 4K) or by asking
        the host to PSMASH (4K inside a 2M entry)."""
        m = self.m
        vmpl = m.vmpls[op.layer]
        todo = [PageRun(s, ps.bytes, n) for s, ps, n in op.range.chunks(PageSize.SIZE_2M)]
        done = 0
        smashed: set[int] = set()
        while todo:
            r = todo.pop(0)
            big = r.page_bytes == PAGE_2M
            res = ins.rmpadjust(m.rmp, asid=m.asid, vmpl=vmpl, gpa=r.gpa, page_2m=big,
                                count=r.count, target_vmpl=target, perms=perms)
            m.trace.record(op.layer, "RMPADJUST", f"VMPL{target}", count=res.done)
            done += res.done * r.page_bytes
            if not res.rc:
                continue
            m.trace.record(op.layer, "RMPADJUST", f"VMPL{target}", ins.RmpRc(res.rc).name)
            at = r.gpa + res.done * r.page_bytes
            rest = r.count - res.done
            region = at // PAGE_2M * PAGE_2M
            if res.rc == ins.RmpRc.FAIL_SIZEMISMATCH and big:
                todo[0:0] = [PageRun(at, PAGE_4K, PAGE_2M // PAGE_4K)] + (
                    [PageRun(at + PAGE_2M, PAGE_2M, rest - 1)] if rest > 1 else [])
                continue
            if res.rc == ins.RmpRc.FAIL_SIZEMISMATCH and region not in smashed:
                smashed.add(region)
                err = m.psc(op.layer, 0, [PageRun(region, PAGE_2M, 1)], g.PscOp.PSMASH)
                if err is None:
                    todo.insert(0, PageRun(at, r.page_bytes, rest))
                    continue
            return OperationResult.failure(name, _arch(
                "RMPADJUST", res.rc, f"RMPADJUST from VMPL{vmpl} for VMPL{target} failed at "
                f"{at:#x} with {ins.RmpRc(res.rc).name}."),
                Progress(done_bytes=done, next_gpa=at))
        return OperationResult.success(name, via="RMPADJUST")

    # -- vCPUs -----------------------------------------------------------------------------
    def _vcpu_target(self, op: CreateVcpu | DeleteVcpu) -> int:
        m = self.m
        if op.target not in m.vmpls:
            if op.target in m.graph:
                raise NotSupportedError(f"vCPUs of {op.target}", "only workload VMPLs have "
                                        "vCPUs the SVSM creates")
            raise ConfigError(f"no layer '{op.target}' in this guest", field="target")
        if op.layer not in (L1, op.target):
            raise NotSupportedError(
                f"{op.op} for {op.target} from {op.layer}",
                "CREATE_VCPU/DELETE_VCPU act at the caller's own VMPL (the SVSM checks the "
                "VMSA's VMPL against the caller's); only the SVSM may act for another VMPL")
        return m.workloads.index(op.target)

    def create_vcpu(self, name: str, op: CreateVcpu) -> OperationResult:
        m = self.m
        idx = self._vcpu_target(op)
        mnemonic = "SVSM_CORE_CREATE_VCPU"
        if op.vcpu >= m.config.vcpus:
            return OperationResult.failure(name, _arch(
                mnemonic, ResultCode.INVALID_PARAMETER,
                f"APIC ID {op.vcpu} is not a CPU of this guest ({m.config.vcpus} vCPUs)."))
        ctx, caa = m.layout.context(idx, op.vcpu), m.layout.caa(idx, op.vcpu)
        touch = m.access(op.layer, ctx, Access.WRITE)
        if not touch.ok:
            return OperationResult.failure(name, _arch(
                "VMSA.WRITE", 0, f"{op.layer} cannot write the context page {ctx:#x} "
                f"({touch.fault}, handled by {touch.handled_by}): it is a live VMSA or not "
                "validated."))
        m.memory.write(ctx, vm.build(m.vmpls[op.target], m.sev_features[op.target],
                                     rip=AP_ENTRY_RIP))
        if op.layer == L1:
            code = m.platform.create_vcpu(op.target, ctx, caa, op.vcpu)
            if code == ResultCode.SUCCESS:
                m.register_vcpu(op.target, op.vcpu, ctx, caa)
        else:
            code = m.client.create_vcpu(op.layer, 0, ctx, caa, op.vcpu).code
        if code:
            return OperationResult.failure(name, _arch(
                mnemonic, code, f"the SVSM answered {result_name(code)}."))
        return OperationResult.success(name, context_gpa=ctx)

    def delete_vcpu(self, name: str, op: DeleteVcpu) -> OperationResult:
        m = self.m
        idx = self._vcpu_target(op)
        if op.vcpu == 0:
            raise NotSupportedError("deleting vCPU 0", "the model issues every call of a "
                                    "layer from its BSP (vCPU 0), which must keep running")
        if op.vcpu >= m.config.vcpus:
            raise ConfigError(f"vCPU {op.vcpu} out of range", field="vcpu")
        ctx = m.layout.context(idx, op.vcpu)
        if op.layer == L1:
            rec = m.service.state.contexts.get(ctx)
            code = m.platform.delete_vcpu(op.target, ctx) if rec is not None \
                else ResultCode.INVALID_PARAMETER
            if code == ResultCode.SUCCESS:
                del m.service.state.contexts[ctx]
        else:
            code = m.client.delete_vcpu(op.layer, 0, ctx).code
        if code:
            return OperationResult.failure(name, _arch(
                "SVSM_CORE_DELETE_VCPU", code, f"the SVSM answered {result_name(code)}."))
        return OperationResult.success(name)

    # -- attestation and measurement -------------------------------------------------------
    def attest(self, name: str, op: Attest) -> OperationResult:
        m = self.m
        if op.source == "hardware":
            rep = m.guest_report(op.layer, op.report_data)
            if rep.report is None:
                return OperationResult.failure(name, _arch(rep.mnemonic, rep.code, rep.message))
            ev = Evidence(vendor="sev-snp", format="snp-report", raw=rep.report,
                          certificates=rep.certificates, layer_map=m.layer_map())
            return OperationResult.success(name, evidence=ev.model_dump(mode="json"),
                                           vmpl=m.vmpl_of(op.layer))
        if op.layer == L1:
            raise NotSupportedError("service attestation from l1", "the SVSM attestation "
                                    "protocol serves lower VMPLs; l1 asks for a hardware report")
        guid = None
        if op.service is not None:
            if op.service != "vtpm" or "vtpm" not in m.config.services:
                raise NotSupportedError(f"attesting service '{op.service}'",
                                        f"this guest's SVSM runs {m.config.services or 'none'}")
            guid = VTPM_SERVICE_GUID
        res = m.client.attest(op.layer, 0, op.report_data, service=guid)
        if res.code:
            call = "SVSM_ATTEST_SINGLE_SERVICE" if guid else "SVSM_ATTEST_SERVICES"
            return OperationResult.failure(name, _arch(
                call, res.code, f"the SVSM answered {result_name(res.code)}."))
        certs = [entry.data for entry in cert_table.parse(res.certificates)]
        ev = Evidence(vendor="sev-snp", format="snp-report", raw=res.report, certificates=certs,
                      nonce=op.report_data, manifest=res.manifest, layer_map=m.layer_map())
        return OperationResult.success(name, evidence=ev.model_dump(mode="json"), vmpl=0)

    def extend(self, name: str, op: ExtendMeasurement) -> OperationResult:
        m = self.m
        if "vtpm" not in m.config.services:
            raise NotSupportedError("extend-measurement", "SNP has no hardware runtime "
                                    "measurement registers and this guest runs no vTPM")
        command = vtpm_commands.pcr_extend(op.index, op.digest)
        if op.layer == L1:
            code, rsp = int(ResultCode.SUCCESS), m.vtpm().execute(command)
        else:
            code, rsp = m.client.vtpm_command(op.layer, 0, command)
        if code:
            return OperationResult.failure(name, _arch(
                "SVSM_VTPM_CMD", code, f"the SVSM answered {result_name(code)}."))
        rc = vtpm_commands.response_code(rsp)
        if rc:
            return OperationResult.failure(name, _arch(
                "TPM2_PCR_Extend", rc, f"the vTPM answered TPM_RC {rc:#x}."))
        data: dict[str, Any] = {"pcr": op.index, "bank": "sha384"}
        return OperationResult.success(name, **data)
