"""Attestation protocol (protocol 1) handlers (sev-snp.md §3.1), over PrivilegedPlatform.

The privileged layer builds the services manifest (a GUID table of its services plus
cocopart's requester entry naming the calling layer), binds it with
REPORT_DATA = SHA-512(nonce || manifest), asks the platform for a hardware report and writes
report, manifest and certificates into the caller's buffers. RCX, RDX and R8 always return
the manifest, certificate and report lengths, so a caller with too-small buffers (answered
INVALID_PARAMETER) can grow them and retry, as Linux does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from cocopart.model import Access
from cocopart.platform import HardwareEvidence
from cocopart.protocol import attest as codec
from cocopart.protocol.ids import AttestCall, ProtocolId, ResultCode
from cocopart.protocol.manifest import REQUESTER_GUID, Requester, ServicesManifest, bind_report_data
from cocopart.service.dispatcher import CallContext, ServiceDispatcher

PAGE = 4096

#: service name -> (GUID, manifest blob provider)
ServiceTable = dict[str, tuple[uuid.UUID, Callable[[], bytes]]]


def build_manifest(services: ServiceTable, requester: Requester | None,
                   only: uuid.UUID | None = None) -> bytes:
    table = {guid: blob() for guid, blob in services.values() if only is None or guid == only}
    if requester is not None:
        table[REQUESTER_GUID] = requester.to_bytes()
    return ServicesManifest(table).to_bytes()


def _handler(single: bool) -> Callable[[CallContext], int]:
    def handle(ctx: CallContext) -> int:
        services, level_of = ctx.dispatcher.services, ctx.dispatcher.level_of
        gpa = ctx.regs.rcx
        size = codec.SINGLE_SIZE if single else codec.SERVICES_SIZE
        code = ctx.buffer_error(gpa, size, Access.READ)
        if code:
            return code
        req = codec.AttestRequest.decode(ctx.memory.read(gpa, size), single)
        if isinstance(req, ResultCode):
            return req
        if req.nonce_size != codec.NONCE_SIZE \
                or (req.nonce_gpa % PAGE) + req.nonce_size > PAGE:
            return ResultCode.INVALID_PARAMETER
        if single and req.manifest_version != codec.SUPPORTED_MANIFEST_VERSION:
            return ResultCode.INVALID_PARAMETER
        known = {g for g, _ in services.values()}
        if single and req.service_guid not in known:
            return ResultCode.UNSUPPORTED_PROTOCOL
        # RULE_BUFFER_MUST_BE_CALLERS: the nonce is read, the others written, for the caller
        for buf, n, need in ((req.report_gpa, req.report_size, Access.WRITE),
                             (req.nonce_gpa, req.nonce_size, Access.READ),
                             (req.manifest_gpa, req.manifest_size, Access.WRITE),
                             (req.certs_gpa, req.certs_size, Access.WRITE)):
            if n:
                code = ctx.buffer_error(buf, n, need)
                if code:
                    return code
        nonce = ctx.memory.read(req.nonce_gpa, req.nonce_size)
        requester = Requester(ctx.layer, level_of(ctx.layer))
        manifest = build_manifest(services, requester, req.service_guid if single else None)
        evidence = ctx.platform.hardware_report(bind_report_data(nonce, manifest), ctx.layer)
        if not isinstance(evidence, HardwareEvidence):
            return evidence
        certs = evidence.cert_table if req.certs_size else b""
        ctx.regs.rcx, ctx.regs.rdx, ctx.regs.r8 = len(manifest), len(certs), len(evidence.raw)
        if req.report_size < len(evidence.raw) or req.manifest_size < len(manifest) \
                or (req.certs_size and req.certs_size < len(certs)) \
                or req.certs_size > codec.MAX_CERTS_SIZE:
            return ResultCode.INVALID_PARAMETER
        ctx.memory.write(req.report_gpa, evidence.raw)
        ctx.memory.write(req.manifest_gpa, manifest)
        if certs:
            ctx.memory.write(req.certs_gpa, certs)
        return ResultCode.SUCCESS

    return handle


def register(dispatcher: ServiceDispatcher, services: ServiceTable,
             level_of: Callable[[str], int]) -> None:
    """Offer the attestation protocol (1). ``level_of`` maps a layer to its vendor level
    (VMPL number / L2 VM index) for the requester entry."""
    dispatcher.services = services
    dispatcher.level_of = level_of
    dispatcher.register(ProtocolId.ATTEST, {
        AttestCall.ATTEST_SERVICES: _handler(single=False),
        AttestCall.ATTEST_SINGLE_SERVICE: _handler(single=True),
    })
