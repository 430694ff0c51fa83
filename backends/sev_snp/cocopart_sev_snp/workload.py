"""SEV-SNP's answers to the core's requesting side (:mod:`cocopart.workload`).

* validating asks the host first: GHCB Page State Change to private, then PVALIDATE (the
  SVSM's own, or SVSM_CORE_PVALIDATE calls for a workload VMPL); converting to shared
  rescinds first and then asks the host (sev-snp.md §5.5 ordering);
* set access = RMPADJUST, executed by the SVSM (any workload VMPL) or by a workload VMPL
  itself towards a less privileged VMPL; no SVSM call sets access (docs/authority.md);
* a vCPU's context page is a VMSA the requester writes before CREATE_VCPU;
* a hardware report is a guest request with the layer's own VMPCK; a service report's
  certificates come as the SNP GUID table; the SVSM's vTPM records measurements (SNP has no
  runtime measurement registers).

Two strategies (``PartitionConfig.strategy``, cost-model.md §3): ``linux`` issues at most 64
entries per PSC request and per SVSM call (one SVSM call per PSC batch, as Linux builds its
PVALIDATE list from the PSC descriptor); ``optimal`` packs 253 entries per PSC request and
510 per SVSM call. Both use 2M entries wherever the range is 2M aligned, and redo a 2M entry
refused with SIZEMISMATCH as 4K entries in full calls of 510.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cocopart.spi import (
    L1,
    PAGE_2M,
    PAGE_4K,
    Access,
    ArchError,
    DirectResult,
    Evidence,
    GpaRange,
    HardwareAttestation,
    Limits,
    NotSupportedError,
    PageRun,
    PageSize,
    ResultCode,
    Strategy,
    WorkloadHooks,
    page_runs,
    result_name,
    vtpm_commands,
)
from cocopart.spi import pvalidate as pv
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp import npf
from cocopart_sev_snp import vmsa as vm
from cocopart_sev_snp.cert_table import parse as parse_cert_table

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

VENDOR = "amd"
#: Where an AP starts (the model does not run code; any canonical address would do).
AP_ENTRY_RIP = 0x0010_0000

#: cost-model.md §3: Linux packs 64 entries per PSC (VMGEXIT_PSC_MAX_ENTRY lowered to 64)
#: and builds each SVSM call from one PSC descriptor; the architecture allows 253 per PSC
#: (sev-snp.md §5.5) and 510 per SVSM call (§2.1). A 2M entry refused with SIZEMISMATCH is
#: redone as 512 4K entries in full calls of 510 (+2) under both.
STRATEGY_LIMITS = {
    Strategy.LINUX: Limits(per_call=64, fallback_per_call=pv.MAX_ENTRIES_IN_CAA, host_group=64),
    Strategy.OPTIMAL: Limits(
        per_call=pv.MAX_ENTRIES_IN_CAA, fallback_per_call=pv.MAX_ENTRIES_IN_CAA
    ),
}
#: Entries per GHCB PSC request by strategy.
PSC_ENTRIES = {Strategy.LINUX: 64, Strategy.OPTIMAL: g.VMGEXIT_PSC_MAX_ENTRY}
NO_1G = "PVALIDATE has 4K and 2M page sizes only (sev-snp.md §4.3)"


def _arch(mnemonic: str, code: int, message: str) -> ArchError:
    return ArchError(vendor=VENDOR, mnemonic=mnemonic, code=code, message=message)


class SnpWorkloadHooks(WorkloadHooks):
    """The SNP primitives behind every request of the SVSM or a workload VMPL."""

    protocol_vendor = VENDOR
    validate_converts = True

    def __init__(self, machine: SnpMachine) -> None:
        self.m = machine

    def limits(self) -> Limits:
        return STRATEGY_LIMITS[self.m.config.strategy]

    def check_entry_size(self, size: PageSize) -> None:
        if size is PageSize.SIZE_1G:
            raise NotSupportedError("1G pages", NO_1G)

    def host_convert(self, layer: str, runs: list[PageRun], private: bool) -> ArchError | None:
        op = g.PscOp.PRIVATE if private else g.PscOp.SHARED
        return self.m.psc(layer, 0, runs, op, PSC_ENTRIES[self.m.config.strategy])

    # -- the SVSM's own pages --------------------------------------------------------------
    def direct_pages(
        self, rng: GpaRange, forced: PageSize | None, *, validate: bool, ignore_unchanged: bool
    ) -> DirectResult:
        """The SVSM's own PVALIDATE: no call, same primitives; a 2M page failing with
        SIZEMISMATCH is redone as 512 4K pages."""
        self.check_entry_size(forced or PageSize.SIZE_4K)
        p = self.m.platform
        op = p.validate_pages if validate else p.rescind_pages
        todo = page_runs(rng, forced)
        done = 0
        while todo:
            r = todo.pop(0)
            n, code = op(L1, r.gpa, r.page_bytes, r.count, ignore_unchanged=ignore_unchanged)
            done += n * r.page_bytes
            rest = r.count - n - 1
            if code == ResultCode.PVALIDATE_FAIL_SIZEMISMATCH and r.page_bytes == PAGE_2M:
                at = r.gpa + n * PAGE_2M
                todo[0:0] = [PageRun(at, PAGE_4K, PAGE_2M // PAGE_4K)] + (
                    [PageRun(at + PAGE_2M, PAGE_2M, rest)] if rest else []
                )
                continue
            if code:
                at = r.gpa + n * r.page_bytes
                return DirectResult(
                    done,
                    _arch(
                        "PVALIDATE",
                        code,
                        f"the SVSM's PVALIDATE of {at:#x} answered {result_name(code)}.",
                    ),
                )
        return DirectResult(done)

    # -- access ----------------------------------------------------------------------------
    def set_access(
        self, layer: str, target: str, rng: GpaRange, access: Access, *, direct: bool
    ) -> DirectResult:
        m = self.m
        vmpl = m.vmpls[target]
        perms = int(access)
        if layer == L1:
            done, code = m.platform.grant(vmpl, rng.start, rng.end, perms)
            if code:
                return DirectResult(
                    done,
                    _arch(
                        "RMPADJUST",
                        code,
                        f"setting {target}'s access stopped at "
                        f"{rng.start + done:#x}: {result_name(code)}.",
                    ),
                )
            return DirectResult(done, data={"via": "RMPADJUST"})
        own = m.vmpls[layer]
        if vmpl <= own:
            # RMPADJUST only targets a less privileged VMPL, and no SVSM protocol call sets a
            # VMPL's access (sev-snp.md §2, §4.3): nothing carries this request
            raise NotSupportedError(
                f"set-access for {target} from {layer}",
                f"RMPADJUST at VMPL{own} only changes less privileged VMPLs (numerically "
                f"higher than {own}), and the SVSM protocol has no call that sets a VMPL's "
                "access; ask from l1 or a more privileged VMPL",
            )
        return self._rmpadjust(layer, own, vmpl, rng, perms)

    def _rmpadjust(
        self, layer: str, vmpl: int, target: int, rng: GpaRange, perms: int
    ) -> DirectResult:
        """RMPADJUST executed by the workload itself, towards a less privileged VMPL; a 2M
        page over 4K entries is redone as 4K as Linux does for PVALIDATE (a 4K page inside a
        2M entry is resolved by the host: :data:`~.npf.RULE_SIZEM_NPF_PSMASH_RETRY`)."""
        m = self.m
        todo = page_runs(rng, None)
        done = 0
        while todo:
            r = todo.pop(0)
            big = r.page_bytes == PAGE_2M

            def run(at: int, n: int, big: bool = big) -> ins.InstrResult:
                return ins.rmpadjust(
                    m.rmp,
                    asid=m.asid,
                    vmpl=vmpl,
                    gpa=at,
                    page_2m=big,
                    count=n,
                    target_vmpl=target,
                    perms=perms,
                )

            res = npf.execute(m, layer, run, r.gpa, r.page_bytes, r.count)
            m.trace.record(layer, "RMPADJUST", f"VMPL{target}", count=res.done)
            done += res.done * r.page_bytes
            if not res.rc and not res.fault:
                continue
            why = ins.RmpRc(res.rc).name if res.rc else str(res.fault)
            m.trace.record(layer, "RMPADJUST", f"VMPL{target}", why)
            at = r.gpa + res.done * r.page_bytes
            rest = r.count - res.done
            if res.rc == ins.RmpRc.FAIL_SIZEMISMATCH and big:
                todo[0:0] = [PageRun(at, PAGE_4K, PAGE_2M // PAGE_4K)] + (
                    [PageRun(at + PAGE_2M, PAGE_2M, rest - 1)] if rest > 1 else []
                )
                continue
            return DirectResult(
                done,
                _arch(
                    "RMPADJUST",
                    res.rc,
                    f"RMPADJUST from VMPL{vmpl} for VMPL{target} failed at {at:#x} with {why}.",
                ),
            )
        return DirectResult(done, data={"via": "RMPADJUST"})

    # -- vCPUs -----------------------------------------------------------------------------
    def prepare_context(
        self, layer: str, target: str, vcpu: int, context_gpa: int
    ) -> ArchError | None:
        """The requester writes the new VMSA into the context page (it must be able to)."""
        m = self.m
        touch = m.access(layer, context_gpa, Access.WRITE)
        if not touch.ok:
            return _arch(
                "VMSA.WRITE",
                0,
                f"{layer} cannot write the context page "
                f"{context_gpa:#x} ({touch.fault}, handled by {touch.handled_by}): it "
                "is a live VMSA or not validated.",
            )
        m.memory.write(
            context_gpa, vm.build(m.vmpls[target], m.sev_features[target], rip=AP_ENTRY_RIP)
        )
        return None

    # -- attestation and measurement -------------------------------------------------------
    def hardware_attestation(
        self, layer: str, report_data: bytes
    ) -> HardwareAttestation | ArchError:
        m = self.m
        rep = m.guest_report(layer, report_data)
        if rep.report is None:
            return _arch(rep.mnemonic, rep.code, rep.message)
        ev = Evidence(
            vendor="sev-snp",
            format="snp-report",
            raw=rep.report,
            certificates=rep.certificates,
            layer_map=m.layer_map(),
        )
        return HardwareAttestation(ev, {"vmpl": m.vmpl_of(layer)})

    def evidence(
        self, raw: bytes, cert_table: bytes, nonce: bytes | None, manifest: bytes | None
    ) -> Evidence:
        certs = [entry.data for entry in parse_cert_table(cert_table)]
        return Evidence(
            vendor="sev-snp",
            format="snp-report",
            raw=raw,
            certificates=certs,
            nonce=nonce,
            manifest=manifest,
            layer_map=self.m.layer_map(),
        )

    def direct_extend(self, index: int, digest: bytes) -> dict[str, Any] | ArchError:
        if "vtpm" not in self.m.config.services:
            raise NotSupportedError(
                "extend-measurement",
                "SNP has no hardware runtime measurement registers and this guest runs no vTPM",
            )
        rsp = self.m.vtpm().execute(vtpm_commands.pcr_extend(index, digest))
        rc = vtpm_commands.response_code(rsp)
        if rc:
            return ArchError(
                vendor="tcg",
                mnemonic="TPM2_PCR_Extend",
                code=rc,
                message=f"the vTPM answered TPM_RC {rc:#x}.",
            )
        return self.measurement_data(index)

    def measurement_data(self, index: int) -> dict[str, Any]:
        return {"pcr": index, "bank": "sha384"}
