"""Attestation protocol (protocol 1) handlers (sev-snp.md §3.1), over PrivilegedPlatform.

As COCONUT (CS kernel/src/protocols/attest.rs): SVSM_ATTEST_SERVICES binds the services
manifest, a GUID table of every service's own manifest (plus cocopart's requester entry
naming the calling layer only when the guest opted in,
:data:`~cocopart.protocol.manifest.RULE_REQUESTER_ENTRY_OPT_IN`);
SVSM_ATTEST_SINGLE_SERVICE binds the one service's own manifest, unwrapped
(:data:`RULE_SINGLE_SERVICE_BINDS_ITS_OWN_MANIFEST`). REPORT_DATA = SHA-512(nonce ||
manifest); the platform produces the hardware report and the handler writes report,
manifest and certificates into the caller's buffers. RCX, RDX and R8 always return the
manifest, certificate and report lengths, so a caller with too-small buffers (answered
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

#: service name -> (GUID, provider of the service's own manifest)
ServiceTable = dict[str, tuple[uuid.UUID, Callable[[], bytes]]]

#: SVSM_ATTEST_SINGLE_SERVICE returns and binds the service's own manifest, not a GUID table:
#: for the vTPM its EK public key, a TPMT_PUBLIC (CS attest.rs attest_single_service /
#: attest_single_vtpm, vtpm_get_manifest; SVSM spec 58019 "Attest Single Service"), so
#: REPORT_DATA = SHA-512(nonce || that blob).
RULE_SINGLE_SERVICE_BINDS_ITS_OWN_MANIFEST = "single-service attestation binds the service's blob"


def services_manifest(services: ServiceTable, requester: Requester | None) -> bytes:
    """The GUID table of every service's own manifest, in the order the services were
    offered (CS GuidTable), with the requester entry when one is given."""
    table = {guid: blob() for guid, blob in services.values()}
    if requester is not None:
        table[REQUESTER_GUID] = requester.to_bytes()
    return ServicesManifest(table).to_bytes()


def service_manifest(services: ServiceTable, guid: uuid.UUID) -> bytes:
    """The own manifest of the service ``guid`` (RULE_SINGLE_SERVICE_BINDS_ITS_OWN_MANIFEST)."""
    return next(blob() for g, blob in services.values() if g == guid)


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
        if req.nonce_size != codec.NONCE_SIZE or (req.nonce_gpa % PAGE) + req.nonce_size > PAGE:
            return ResultCode.INVALID_PARAMETER
        if single and req.manifest_version != codec.SUPPORTED_MANIFEST_VERSION:
            return ResultCode.INVALID_PARAMETER
        known = {g for g, _ in services.values()}
        if single and req.service_guid not in known:
            return ResultCode.UNSUPPORTED_PROTOCOL
        # RULE_BUFFER_MUST_BE_CALLERS: the nonce is read, the others written, for the caller
        for buf, n, need in (
            (req.report_gpa, req.report_size, Access.WRITE),
            (req.nonce_gpa, req.nonce_size, Access.READ),
            (req.manifest_gpa, req.manifest_size, Access.WRITE),
            (req.certs_gpa, req.certs_size, Access.WRITE),
        ):
            if n:
                code = ctx.buffer_error(buf, n, need)
                if code:
                    return code
        nonce = ctx.memory.read(req.nonce_gpa, req.nonce_size)
        if single and req.service_guid is not None:
            manifest = service_manifest(services, req.service_guid)
        else:
            requester = (
                Requester(ctx.layer, level_of(ctx.layer))
                if ctx.dispatcher.requester_entry
                else None
            )
            manifest = services_manifest(services, requester)
        evidence = ctx.platform.hardware_report(bind_report_data(nonce, manifest), ctx.layer)
        if not isinstance(evidence, HardwareEvidence):
            return evidence
        certs = evidence.cert_table if req.certs_size else b""
        ctx.regs.rcx, ctx.regs.rdx, ctx.regs.r8 = len(manifest), len(certs), len(evidence.raw)
        if (
            req.report_size < len(evidence.raw)
            or req.manifest_size < len(manifest)
            or (req.certs_size and req.certs_size < len(certs))
            or req.certs_size > codec.MAX_CERTS_SIZE
        ):
            return ResultCode.INVALID_PARAMETER
        ctx.memory.write(req.report_gpa, evidence.raw)
        ctx.memory.write(req.manifest_gpa, manifest)
        if certs:
            ctx.memory.write(req.certs_gpa, certs)
        return ResultCode.SUCCESS

    return handle


def register(
    dispatcher: ServiceDispatcher,
    services: ServiceTable,
    level_of: Callable[[str], int],
    *,
    requester_entry: bool = False,
) -> None:
    """Offer the attestation protocol (1). ``level_of`` maps a layer to its vendor level
    (VMPL number / L2 VM index) for the requester entry, which the services manifest carries
    only with ``requester_entry`` (RULE_REQUESTER_ENTRY_OPT_IN)."""
    dispatcher.services = services
    dispatcher.level_of = level_of
    dispatcher.requester_entry = requester_entry
    dispatcher.register(
        ProtocolId.ATTEST,
        {
            AttestCall.ATTEST_SERVICES: _handler(single=False),
            AttestCall.ATTEST_SINGLE_SERVICE: _handler(single=True),
        },
    )
