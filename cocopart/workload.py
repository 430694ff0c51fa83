"""The requesting side of every operation, written once for every backend.

:class:`WorkloadSide` carries out validate, rescind, convert, set-access, create/delete vCPU,
attest and extend-measurement for the layer that asks, along the route the layer graph
resolved before anything runs:

* the provider is the requester itself (the privileged layer acting on its own pages, or a
  workload setting a less privileged layer's access): the backend's direct primitives
  (:class:`cocopart.workload_hooks.WorkloadHooks`);
* otherwise the privileged layer serves a protocol call carried by the transport
  (:class:`cocopart.client.ProtocolClient`): PVALIDATE lists batched per strategy, resumed
  from ``next`` after a partial call, 2M entries refused with SIZEMISMATCH redone as 4K
  (sev-snp.md §2.1), CREATE_VCPU / DELETE_VCPU, ATTEST_SERVICES / ATTEST_SINGLE_SERVICE with
  buffer growth, vTPM commands.

Progress is reported here as the exact prefix done; :func:`cocopart.executor.settle` then
lists every other change. A hook's NotSupportedError becomes a ``not-supported`` result.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cocopart import vtpm_commands
from cocopart.client import BatchResult, PageRun, ProtocolClient
from cocopart.errors import ConfigError, NotSupportedError
from cocopart.model import L1, GpaRange, PageSize, PartitionConfig
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
from cocopart.protocol.ids import ResultCode, result_name
from cocopart.protocol.manifest import VTPM_SERVICE_GUID, bind_report_data
from cocopart.service.attest import service_manifest, services_manifest
from cocopart.service.state import VcpuRecord
from cocopart.workload_hooks import DirectResult, WorkloadHooks

if TYPE_CHECKING:
    from cocopart.authority import Ownership
    from cocopart.layers import LayerGraph, Route
    from cocopart.memory import ProtocolLayout
    from cocopart.service.dispatcher import ServiceDispatcher

#: The vCPU a layer issues its requests from: its BSP, which always runs
#: (RULE_BSP_KEEPS_RUNNING, cocopart.authority).
CALLER_VCPU = 0
REPORT_DATA_RULE = "REPORT_DATA = SHA-512(nonce || services manifest)"
SINGLE_SERVICE_RULE = "REPORT_DATA = SHA-512(nonce || the service's own manifest)"
#: Service name -> GUID of the services a workload may attest one by one.
SERVICE_GUIDS = {"vtpm": VTPM_SERVICE_GUID}


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
    """The entries of a range as runs: 2M where aligned and 4K elsewhere, or every entry of
    the forced size (a misaligned forced entry is left for the privileged layer to refuse)."""
    if forced is None:
        return [PageRun(s, ps.bytes, n) for s, ps, n in rng.chunks(PageSize.SIZE_2M)]
    return [PageRun(rng.start, forced.bytes, max(1, rng.size // forced.bytes))]


def span(runs: list[PageRun]) -> GpaRange:
    """The range a contiguous list of runs covers."""
    return GpaRange(start=runs[0].gpa, size=sum(r.size for r in runs))


class WorkloadSide:
    """Carries out the memory, vCPU, attestation and measurement operations of any layer."""

    def __init__(
        self,
        hooks: WorkloadHooks,
        client: ProtocolClient,
        config: PartitionConfig,
        layout: ProtocolLayout,
        graph: LayerGraph,
        ownership: Ownership,
        dispatcher: ServiceDispatcher,
    ) -> None:
        self.hooks = hooks
        self.client = client
        self.config = config
        self.layout = layout
        self.graph = graph
        self.ownership = ownership
        self.dispatcher = dispatcher

    @property
    def workloads(self) -> tuple[str, ...]:
        return self.config.workloads

    def run(self, op: Operation, route: Route) -> OperationResult:
        """Carry ``op`` out along ``route`` (resolved by the layer graph)."""
        name = op.describe()
        if op.layer != L1 and op.layer not in self.workloads:
            return OperationResult.not_supported(
                name,
                f"{op.layer} does not request {op.op}: the guest's own layers ({L1}, "
                f"{', '.join(self.workloads)}) do",
            )
        try:
            if isinstance(op, ValidatePages):
                return self.validate(name, op.layer, op.range, op.page_size, route.direct)
            if isinstance(op, RescindPages):
                return self.rescind(name, op.layer, op.range, route.direct, ignore_cf=False)
            if isinstance(op, ConvertPages):
                return self.convert(name, op, self._direct(op.layer, "validate"))
            if isinstance(op, SetAccess):
                return self.set_access(name, op, route.direct)
            if isinstance(op, CreateVcpu):
                return self.create_vcpu(name, op, route.direct)
            if isinstance(op, DeleteVcpu):
                return self.delete_vcpu(name, op, route.direct)
            if isinstance(op, Attest):
                return self.attest(name, op)
            if isinstance(op, ExtendMeasurement):
                return self.extend(name, op, route.direct)
        except NotSupportedError as err:
            return OperationResult.not_supported(name, err.reason)
        return OperationResult.not_supported(name, f"{op.op} is not a request of a layer")

    def _direct(self, layer: str, capability: str) -> bool:
        """True if ``layer`` holds ``capability`` itself (no protocol call needed)."""
        return self.graph.node(layer).holds_for_itself(capability)

    # -- errors ----------------------------------------------------------------------------
    def protocol_failure(
        self, name: str, call: str, code: int, what: str, progress: Progress | None = None
    ) -> OperationResult:
        """A failed protocol answer: the vendor error behind it when the privileged layer
        recorded one, else the protocol's own code."""
        err = self.hooks.underlying_error()
        if code == ResultCode.UNSUPPORTED_CALL and err is not None:
            return OperationResult.not_supported(name, err.message)
        if err is None:
            where = (
                f" at {progress.next_gpa:#x}" if progress and progress.next_gpa is not None else ""
            )
            err = ArchError(
                vendor=self.hooks.protocol_vendor,
                mnemonic=call,
                code=code,
                message=f"the privileged layer answered {result_name(code)}{where} while {what}.",
            )
        return OperationResult.failure(name, err, progress)

    def _parameter_error(self, name: str, call: str, message: str) -> OperationResult:
        return OperationResult.failure(
            name,
            ArchError(
                vendor=self.hooks.protocol_vendor,
                mnemonic=call,
                code=ResultCode.INVALID_PARAMETER,
                message=message,
            ),
        )

    # -- memory ----------------------------------------------------------------------------
    def _pages(
        self,
        layer: str,
        runs: list[PageRun],
        forced: PageSize | None,
        direct: bool,
        *,
        validate: bool,
        ignore_cf: bool,
    ) -> tuple[BatchResult, ArchError | None, dict[str, Any]]:
        """Validate or rescind ``runs``: the privileged layer's own primitives (``direct``)
        or protocol PVALIDATE calls. The direct path claims / releases what it did, and
        returns the error that stopped it and its data for the result."""
        if direct:
            rng = span(runs)
            d: DirectResult = self.hooks.direct_pages(
                rng, forced, validate=validate, ignore_unchanged=ignore_cf
            )
            if d.done_bytes:
                end = rng.start + d.done_bytes
                if validate:
                    self.ownership.claim(L1, rng.start, end)
                else:
                    self.ownership.release(rng.start, end)
            res = BatchResult(done_bytes=d.done_bytes)
            if d.error is not None:
                res.failed_gpa = rng.start + d.done_bytes
            return res, d.error, d.data
        lim = self.hooks.limits()
        return (
            self.client.pvalidate(
                layer,
                CALLER_VCPU,
                runs,
                validate=validate,
                per_call=lim.per_call,
                ignore_cf=ignore_cf,
                fallback_per_call=lim.fallback_per_call,
            ),
            None,
            {},
        )

    def _pages_failure(
        self, name: str, r: BatchResult, err: ArchError | None, done: int, what: str
    ) -> OperationResult:
        progress = Progress(done_bytes=done, next_gpa=r.failed_gpa)
        if err is not None:
            return OperationResult.failure(name, err, progress)
        return self.protocol_failure(name, "SVSM_CORE_PVALIDATE", r.code, what, progress)

    def validate(
        self, name: str, layer: str, rng: GpaRange, forced: PageSize | None, direct: bool
    ) -> OperationResult:
        """Host conversion first where the architecture needs it, then PVALIDATE (or the
        privileged layer's own primitive), group by group."""
        if forced is not None and not direct:
            self.hooks.check_entry_size(forced)
        runs = page_runs(rng, forced)
        lim = self.hooks.limits()
        groups = (
            [runs]
            if lim.host_group is None or not self.hooks.validate_converts
            else list(batches(runs, lim.host_group))
        )
        done = calls = fallbacks = 0
        data: dict[str, Any] = {}
        for group in groups:
            if self.hooks.validate_converts:
                err = self.hooks.host_convert(layer, group, private=True)
                if err is not None:
                    return OperationResult.failure(
                        name, err, Progress(done_bytes=done, next_gpa=group[0].gpa)
                    )
            r, arch, extra = self._pages(
                layer, group, forced, direct, validate=True, ignore_cf=False
            )
            done += r.done_bytes
            calls += r.calls
            fallbacks += r.fallbacks
            for key, value in extra.items():  # the direct path's counts, over all groups
                data[key] = data.get(key, 0) + value
            if r.code or arch is not None:
                return self._pages_failure(name, r, arch, done, "validating")
        data.update(calls=calls, size_fallbacks=fallbacks)
        if not direct:
            data["entries_per_call"] = lim.per_call
        return OperationResult.success(name, **data)

    def rescind(
        self, name: str, layer: str, rng: GpaRange, direct: bool, *, ignore_cf: bool
    ) -> OperationResult:
        r, arch, _data = self._pages(
            layer, page_runs(rng, None), None, direct, validate=False, ignore_cf=ignore_cf
        )
        if r.code or arch is not None:
            return self._pages_failure(name, r, arch, r.done_bytes, "rescinding")
        return OperationResult.success(name, calls=r.calls, size_fallbacks=r.fallbacks)

    def convert(self, name: str, op: ConvertPages, direct: bool) -> OperationResult:
        """To private: the host first (unless validating does it), then validate. To
        shared: rescind first where the architecture does, then the host. Nothing of a
        conversion is done until the host has converted (progress 0 before that)."""
        none_done = Progress(done_bytes=0, next_gpa=op.range.start)
        why = self.hooks.convert_refusal(op.layer, op.to == "private")
        if why is not None:
            return OperationResult.not_supported(name, why)
        if op.to == "private":
            if not self.hooks.validate_converts:
                err = self.hooks.host_convert(op.layer, page_runs(op.range, None), private=True)
                if err is not None:
                    return OperationResult.failure(name, err, none_done)
            return self.validate(name, op.layer, op.range, None, direct)
        rescind_first, note = self.hooks.rescind_before_share(op.layer)
        if rescind_first:
            res = self.rescind(name, op.layer, op.range, direct, ignore_cf=True)
            if not res.ok:  # rescinded pages are listed by the executor in ``changed``
                return res.model_copy(update={"progress": none_done})
        err = self.hooks.host_convert(op.layer, page_runs(op.range, None), private=False)
        if err is not None:
            return OperationResult.failure(name, err, none_done)
        return OperationResult.success(name, notes=[note] if note else [])

    # -- access ----------------------------------------------------------------------------
    def _workload_target(self, target: str, what: str) -> None:
        """Only workload layers have per-page access and vCPUs the privileged layer runs."""
        if target in self.workloads:
            return
        if target not in self.graph:
            raise ConfigError(f"no layer '{target}' in this guest", field="target")
        if target == L1:
            raise NotSupportedError(
                f"{what} for {target}",
                "the privileged layer always has "
                "full access to the guest's pages and runs its own vCPUs",
            )
        raise NotSupportedError(
            f"{what} for {target}",
            "only workload layers have per-page access and vCPUs the privileged layer creates",
        )

    def set_access(self, name: str, op: SetAccess, direct: bool) -> OperationResult:
        self._workload_target(op.target, "set-access")
        d = self.hooks.set_access(op.layer, op.target, op.range, op.access, direct=direct)
        if d.error is not None:
            at = op.range.start + d.done_bytes
            return OperationResult.failure(
                name, d.error, Progress(done_bytes=d.done_bytes, next_gpa=at)
            )
        return OperationResult.success(name, **d.data)

    # -- vCPUs -----------------------------------------------------------------------------
    def _vcpu_slot(self, op: CreateVcpu | DeleteVcpu) -> tuple[int, int] | None:
        """(context page, calling area) of ``op``'s vCPU; None if the guest has no such
        vCPU."""
        self._workload_target(op.target, op.op)
        if op.layer not in (L1, op.target):
            raise NotSupportedError(
                f"{op.op} for {op.target} from {op.layer}",
                "CREATE_VCPU/DELETE_VCPU act on the caller's own layer (the privileged layer "
                "checks the context's level against the caller's); only the privileged layer "
                "acts for another layer",
            )
        if op.vcpu >= self.config.vcpus:
            return None
        idx = self.workloads.index(op.target)
        return self.layout.context(idx, op.vcpu), self.layout.caa(idx, op.vcpu)

    def create_vcpu(self, name: str, op: CreateVcpu, direct: bool) -> OperationResult:
        call = "SVSM_CORE_CREATE_VCPU"
        slot = self._vcpu_slot(op)
        if slot is None:
            return self._parameter_error(
                name,
                call,
                f"APIC ID {op.vcpu} is not a CPU of this guest ({self.config.vcpus} vCPUs).",
            )
        ctx, caa = slot
        refused = self.hooks.prepare_context(op.layer, op.target, op.vcpu, ctx)
        if refused is not None:
            return OperationResult.failure(name, refused)
        if direct:
            code = self.dispatcher.platform.create_vcpu(op.target, ctx, caa, op.vcpu)
            if code == ResultCode.SUCCESS:
                self.dispatcher.state.contexts[ctx] = VcpuRecord(op.target, op.vcpu, op.vcpu, caa)
                self.dispatcher.state.areas[(op.target, op.vcpu)] = caa
        else:
            code = self.client.create_vcpu(op.layer, CALLER_VCPU, ctx, caa, op.vcpu).code
        if code:
            return self.protocol_failure(
                name, call, code, f"creating vCPU {op.vcpu} of {op.target}"
            )
        return OperationResult.success(name, context_gpa=ctx)

    def delete_vcpu(self, name: str, op: DeleteVcpu, direct: bool) -> OperationResult:
        call = "SVSM_CORE_DELETE_VCPU"
        slot = self._vcpu_slot(op)
        if slot is None:
            return self._parameter_error(
                name, call, f"no vCPU {op.vcpu} in this guest ({self.config.vcpus} vCPUs)."
            )
        ctx = slot[0]
        if direct:
            contexts = self.dispatcher.state.contexts
            code = (
                self.dispatcher.platform.delete_vcpu(op.target, ctx)
                if ctx in contexts
                else ResultCode.INVALID_PARAMETER
            )
            if code == ResultCode.SUCCESS:
                del contexts[ctx]
        else:
            code = self.client.delete_vcpu(op.layer, CALLER_VCPU, ctx).code
        if code:
            return self.protocol_failure(
                name, call, code, f"deleting vCPU {op.vcpu} of {op.target}"
            )
        return OperationResult.success(name)

    # -- attestation and measurement -------------------------------------------------------
    def attest(self, name: str, op: Attest) -> OperationResult:
        if op.source == "hardware":
            hw = self.hooks.hardware_attestation(op.layer, op.report_data)
            if isinstance(hw, ArchError):
                return OperationResult.failure(name, hw)
            return OperationResult.success(
                name, evidence=hw.evidence.model_dump(mode="json"), **hw.data
            )
        guid = None
        if op.service is not None:
            if op.service not in SERVICE_GUIDS or op.service not in self.config.services:
                raise NotSupportedError(
                    f"attesting service '{op.service}'",
                    "this guest's privileged layer runs "
                    f"{', '.join(self.config.services) or 'no services'}",
                )
            guid = SERVICE_GUIDS[op.service]
        # the manifest a single service binds is its own (RULE_SINGLE_SERVICE_BINDS_ITS_OWN_
        # MANIFEST); the evidence names that service so a verifier knows the shape
        single = {"service": str(guid)} if guid else {}
        rule = REPORT_DATA_RULE if guid is None else SINGLE_SERVICE_RULE
        if op.layer == L1:  # the privileged layer binds its own manifest into its report
            services = self.dispatcher.services
            manifest = (
                service_manifest(services, guid) if guid else services_manifest(services, None)
            )
            hw = self.hooks.hardware_attestation(L1, bind_report_data(op.report_data, manifest))
            if isinstance(hw, ArchError):
                return OperationResult.failure(name, hw)
            ev = hw.evidence.model_copy(
                update={"nonce": op.report_data, "manifest": manifest, **single}
            )
            return OperationResult.success(
                name,
                evidence=ev.model_dump(mode="json"),
                calls=0,
                reportdata=bind_report_data(op.report_data, manifest).hex(),
                reportdata_rule=rule,
                **hw.data,
            )
        a = self.client.attest(op.layer, CALLER_VCPU, op.report_data, service=guid)
        if a.code != ResultCode.SUCCESS:
            call = "SVSM_ATTEST_SINGLE_SERVICE" if guid else "SVSM_ATTEST_SERVICES"
            return self.protocol_failure(name, call, a.code, "attesting")
        ev = self.hooks.evidence(a.report, a.certificates, op.report_data, a.manifest).model_copy(
            update=single
        )
        return OperationResult.success(
            name,
            evidence=ev.model_dump(mode="json"),
            calls=a.calls,
            reportdata=bind_report_data(op.report_data, a.manifest).hex(),
            reportdata_rule=rule,
        )

    def extend(self, name: str, op: ExtendMeasurement, direct: bool) -> OperationResult:
        if op.layer == L1:
            out = self.hooks.direct_extend(op.index, op.digest)
            if isinstance(out, ArchError):
                return OperationResult.failure(name, out)
            return OperationResult.success(name, **out)
        if "vtpm" not in self.config.services:
            raise NotSupportedError(
                "extend-measurement",
                "a workload extends measurements "
                "through the privileged layer's vTPM, and this guest runs "
                "no vTPM service",
            )
        code, rsp = self.client.vtpm_command(
            op.layer, CALLER_VCPU, vtpm_commands.pcr_extend(op.index, op.digest)
        )
        if code != ResultCode.SUCCESS:
            return self.protocol_failure(name, "SVSM_VTPM_CMD", code, "extending a PCR")
        rc = vtpm_commands.response_code(rsp)
        if rc:
            return OperationResult.failure(
                name,
                ArchError(
                    vendor="tcg",
                    mnemonic="TPM2_PCR_Extend",
                    code=rc,
                    message=f"TPM2_PCR_Extend of PCR {op.index} answered TPM_RC {rc:#x}.",
                ),
            )
        return OperationResult.success(name, **self.hooks.measurement_data(op.index))
