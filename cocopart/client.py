"""The workload side of the protocol: build requests in the calling area, call, interpret.

Written once for every transport. Batching follows the caller's ``per_call`` limit (510
entries fit the calling-area buffer; Linux issues at most 64), resumes from ``next`` after a
partial call, and redoes a 2M entry that fails with SIZEMISMATCH as 512 4K entries after
the batch, as Linux does (sev-snp.md §2.1; cost-model.md §3).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from cocopart.memory import (
    REPORT_BUFFER_SIZE,
    SCRATCH_CERTS,
    SCRATCH_MANIFEST,
    SCRATCH_REPORT,
    SCRATCH_VTPM,
    GuestMemory,
    ProtocolLayout,
)
from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.protocol import attest as attest_codec
from cocopart.protocol import pvalidate as pv
from cocopart.protocol import vtpm as vtpm_codec
from cocopart.protocol.call import CallOutcome, Registers
from cocopart.protocol.calling_area import BUFFER
from cocopart.protocol.ids import AttestCall, CoreCall, ProtocolId, ResultCode, VtpmCall
from cocopart.transport import Transport

#: Buffer growth retries of the attestation call (Linux SVSM_MAX_RETRIES).
ATTEST_MAX_RETRIES = 3
#: Nonce location inside the calling-area buffer (any page-contained 64 bytes would do).
NONCE_OFFSET = 0x800


@dataclass
class PageRun:
    gpa: int
    page_bytes: int
    count: int

    @property
    def size(self) -> int:
        return self.page_bytes * self.count


@dataclass
class BatchResult:
    """Outcome of a batched PVALIDATE: code, bytes done, calls made, the failing GPA."""

    code: int = ResultCode.SUCCESS
    done_bytes: int = 0
    calls: int = 0
    failed_gpa: int | None = None
    fallbacks: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class AttestResult:
    code: int
    report: bytes = b""
    manifest: bytes = b""
    certificates: bytes = b""
    calls: int = 0


def _chunks(
    runs: list[PageRun], validate: bool, ignore_cf: bool, per_call: int
) -> Iterator[tuple[list[int], int]]:
    """Entry lists of at most ``per_call`` entries, each with the bytes it covers. Built from
    the runs a slice at a time (``range`` in C), never an entry at a time in Python."""
    chunk: list[int] = []
    size = 0
    for r in runs:
        done = 0
        while done < r.count:
            take = min(r.count - done, per_call - len(chunk))
            chunk += pv.run_entries(
                r.gpa + done * r.page_bytes, r.page_bytes == PAGE_2M, take, validate, ignore_cf
            )
            size += take * r.page_bytes
            done += take
            if len(chunk) == per_call:
                yield chunk, size
                chunk, size = [], 0
    if chunk:
        yield chunk, size


def _bytes(entries: list[int]) -> int:
    n2m = sum(map((1).__and__, entries))
    return n2m * PAGE_2M + (len(entries) - n2m) * PAGE_4K


class ProtocolClient:
    """Calls the privileged layer on behalf of one workload layer."""

    def __init__(
        self,
        transport: Transport,
        memory: GuestMemory,
        layout: ProtocolLayout,
        workloads: tuple[str, ...],
    ) -> None:
        self.transport = transport
        self.memory = memory
        self.layout = layout
        self.workloads = workloads

    def _caa(self, layer: str, vcpu: int) -> int:
        return self.transport.dispatcher.state.caa(layer, vcpu)

    def call(
        self,
        layer: str,
        vcpu: int,
        protocol: int,
        call: int,
        rcx: int = 0,
        rdx: int = 0,
        r8: int = 0,
    ) -> CallOutcome:
        return self.transport.call(layer, vcpu, Registers.call(protocol, call, rcx, rdx, r8))

    # -- core ------------------------------------------------------------------------------
    def pvalidate(
        self,
        layer: str,
        vcpu: int,
        runs: list[PageRun],
        *,
        validate: bool,
        per_call: int = pv.MAX_ENTRIES_IN_CAA,
        ignore_cf: bool = False,
        fallback_per_call: int | None = None,
    ) -> BatchResult:
        """Validate (or rescind) ``runs`` in batches of at most ``per_call`` entries.

        2M entries refused with SIZEMISMATCH are redone afterwards as 4K entries in batches
        of ``fallback_per_call`` (default ``per_call``; Linux uses the full 510).
        """
        for n in (per_call, fallback_per_call or per_call):
            if not 1 <= n <= pv.MAX_ENTRIES_IN_CAA:
                raise ValueError(f"per_call must be 1..{pv.MAX_ENTRIES_IN_CAA}")
        result = BatchResult()
        fallback: list[PageRun] = []
        self._batches(layer, vcpu, _chunks(runs, validate, ignore_cf, per_call), result, fallback)
        if fallback:
            # the deferred 2M entries all precede any failure of the main batches: redo them
            # even when a later entry failed, so every page before ``failed_gpa`` is done
            result.fallbacks = len(fallback)
            main_code, main_failed = result.code, result.failed_gpa
            result.code, result.failed_gpa = ResultCode.SUCCESS, None
            runs4k = [PageRun(r.gpa, PAGE_4K, PAGE_2M // PAGE_4K) for r in fallback]
            self._batches(
                layer,
                vcpu,
                _chunks(runs4k, validate, ignore_cf, fallback_per_call or per_call),
                result,
                None,
            )
            if result.code == ResultCode.SUCCESS:
                result.code, result.failed_gpa = main_code, main_failed
        return result

    def _batches(
        self,
        layer: str,
        vcpu: int,
        chunks: Iterator[tuple[list[int], int]],
        result: BatchResult,
        fallback: list[PageRun] | None,
    ) -> None:
        caa = self._caa(layer, vcpu)
        list_gpa = caa + BUFFER
        for chunk, chunk_bytes in chunks:
            nxt = 0
            while True:
                self.memory.write(list_gpa, pv.encode(chunk, nxt))
                out = self.call(layer, vcpu, ProtocolId.CORE, CoreCall.PVALIDATE, list_gpa)
                result.calls += 1
                after = int.from_bytes(self.memory.read(list_gpa + 2, 2), "little")
                if nxt == 0 and after == len(chunk):
                    result.done_bytes += chunk_bytes
                else:
                    result.done_bytes += _bytes(chunk[nxt:after])
                if out.code == ResultCode.SUCCESS:
                    break
                failed = chunk[after] if after < len(chunk) else None
                if (
                    out.code == ResultCode.PVALIDATE_FAIL_SIZEMISMATCH
                    and fallback is not None
                    and failed is not None
                    and failed & pv.SIZE_MASK == 1
                ):
                    fallback.append(PageRun(failed & pv.GFN_MASK, PAGE_2M, 1))
                    nxt = after + 1
                    if nxt >= len(chunk):
                        break
                    continue
                result.code = out.code
                result.failed_gpa = failed & pv.GFN_MASK if failed is not None else None
                return

    def create_vcpu(
        self, layer: str, caller_vcpu: int, context_gpa: int, caa_gpa: int, apic_id: int
    ) -> CallOutcome:
        return self.call(
            layer, caller_vcpu, ProtocolId.CORE, CoreCall.CREATE_VCPU, context_gpa, caa_gpa, apic_id
        )

    def delete_vcpu(self, layer: str, caller_vcpu: int, context_gpa: int) -> CallOutcome:
        return self.call(layer, caller_vcpu, ProtocolId.CORE, CoreCall.DELETE_VCPU, context_gpa)

    def query_protocol(
        self, layer: str, vcpu: int, protocol: int, version: int = 1
    ) -> tuple[int, int] | None:
        """(min, max) version of ``protocol`` if offered with ``version``, else None."""
        out = self.call(
            layer, vcpu, ProtocolId.CORE, CoreCall.QUERY_PROTOCOL, (protocol << 32) | version
        )
        if out.code != ResultCode.SUCCESS or out.regs.rcx == 0:
            return None
        return out.regs.rcx & 0xFFFF_FFFF, out.regs.rcx >> 32

    # -- attestation -----------------------------------------------------------------------
    def attest(
        self,
        layer: str,
        vcpu: int,
        nonce: bytes,
        service: uuid.UUID | None = None,
        with_certs: bool = True,
    ) -> AttestResult:
        """ATTEST_SERVICES (or ATTEST_SINGLE_SERVICE for ``service``) with buffer growth."""
        idx = self.workloads.index(layer)
        caa = self._caa(layer, vcpu)
        req_gpa, nonce_gpa = caa + BUFFER, caa + NONCE_OFFSET
        self.memory.write(nonce_gpa, nonce)
        sizes = {
            "report": REPORT_BUFFER_SIZE,
            "manifest": PAGE_4K,
            "certs": attest_codec.MAX_CERTS_SIZE if with_certs else 0,
        }
        call = AttestCall.ATTEST_SINGLE_SERVICE if service else AttestCall.ATTEST_SERVICES
        res = AttestResult(code=ResultCode.SUCCESS)
        for _ in range(ATTEST_MAX_RETRIES):
            req = attest_codec.AttestRequest(
                report_gpa=self.layout.scratch(idx, SCRATCH_REPORT),
                report_size=sizes["report"],
                nonce_gpa=nonce_gpa,
                nonce_size=len(nonce),
                manifest_gpa=self.layout.scratch(idx, SCRATCH_MANIFEST),
                manifest_size=sizes["manifest"],
                certs_gpa=self.layout.scratch(idx, SCRATCH_CERTS) if sizes["certs"] else 0,
                certs_size=sizes["certs"],
                service_guid=service,
            )
            self.memory.write(req_gpa, req.encode())
            out = self.call(layer, vcpu, ProtocolId.ATTEST, call, req_gpa)
            res.calls += 1
            res.code = out.code
            if out.code == ResultCode.SUCCESS:
                res.manifest = self.memory.read(req.manifest_gpa, out.regs.rcx)
                res.certificates = (
                    self.memory.read(req.certs_gpa, out.regs.rdx) if out.regs.rdx else b""
                )
                res.report = self.memory.read(req.report_gpa, out.regs.r8)
                return res
            if out.code != ResultCode.INVALID_PARAMETER:
                return res
            grown = {"report": out.regs.r8, "manifest": out.regs.rcx, "certs": out.regs.rdx}
            if all(grown[k] <= sizes[k] for k in sizes):
                return res  # not a buffer-size problem
            for k, have in sizes.items():
                sizes[k] = max(have, -(-grown[k] // PAGE_4K) * PAGE_4K)
        return res

    def vtpm_command(self, layer: str, vcpu: int, command: bytes) -> tuple[int, bytes]:
        """Send one TPM command over SVSM_VTPM_CMD; (result code, TPM response)."""
        gpa = self.layout.scratch(self.workloads.index(layer), SCRATCH_VTPM)
        self.memory.write(gpa, vtpm_codec.encode_request(command))
        out = self.call(layer, vcpu, ProtocolId.VTPM, VtpmCall.CMD, gpa)
        if out.code != ResultCode.SUCCESS:
            return out.code, b""
        return out.code, vtpm_codec.decode_response(self.memory.read(gpa, PAGE_4K))
