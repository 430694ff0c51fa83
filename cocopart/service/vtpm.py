"""A vTPM service of the privileged layer: the vTPM protocol (sev-snp.md §3.2) carrying a
small TPM 2.0 command set — enough to read the endorsement key and extend and read PCRs.

Commands (TPM 2.0 Library Part 3): TPM2_ReadPublic (0x173) of the EK at the TCG persistent
handle 0x81010001, TPM2_PCR_Extend (0x182, password session), TPM2_PCR_Read (0x17E). Banks
SHA-256 and SHA-384, 24 PCRs. The EK is an ECC NIST P-256 key derived from the guest seed;
its public area (TPMT_PUBLIC) is the vTPM's entry in the services manifest, as COCONUT puts
the EK public key there.
"""

from __future__ import annotations

from cocopart.authority import RULE_OUTPUT_FITS_BUFFER, Refusal
from cocopart.model import Access
from cocopart.protocol import vtpm as codec
from cocopart.protocol.ids import ProtocolId, ResultCode, VtpmCall
from cocopart.service.dispatcher import CallContext, ServiceDispatcher
from cocopart.service.tpm import Vtpm


def _query(ctx: CallContext) -> int:
    ctx.regs.rcx = codec.SUPPORTED_COMMANDS
    ctx.regs.rdx = 0
    return ResultCode.SUCCESS


def _cmd(ctx: CallContext) -> int:
    """SVSM_VTPM_CMD: RCX = GPA of the caller's 4K command/response page, which must be
    memory the caller may read and write itself (RULE_BUFFER_MUST_BE_CALLERS). A response
    that does not fit the page is INVALID_PARAMETER and nothing is written
    (RULE_OUTPUT_FITS_BUFFER) — never an overflow into the next page."""
    tpm = ctx.dispatcher.vtpm
    gpa = ctx.regs.rcx
    if gpa % 4096:
        return ResultCode.INVALID_ADDRESS
    code = ctx.buffer_error(gpa, 4096, Access.RW)
    if code:
        return code
    req = codec.decode_request(ctx.memory.read(gpa, 4096))
    if tpm is None or req is None or req[0] != codec.TPM_SEND_COMMAND:
        return ResultCode.INVALID_PARAMETER
    response = codec.encode_response(tpm.execute(req[2]))
    if len(response) > 4096:
        ctx.dispatcher.last_refusal = Refusal(
            RULE_OUTPUT_FITS_BUFFER,
            ResultCode.INVALID_PARAMETER,
            gpa,
            f"the TPM response of {len(response)} bytes does not fit the 4 KiB buffer",
        )
        return ResultCode.INVALID_PARAMETER
    ctx.memory.write(gpa, response)
    return ResultCode.SUCCESS


def register(dispatcher: ServiceDispatcher, vtpm: Vtpm) -> None:
    """Offer the vTPM protocol (2) backed by ``vtpm``. The handlers find the vTPM through
    the dispatcher, so a forked machine's copy serves its own PCRs."""
    dispatcher.vtpm = vtpm
    dispatcher.register(ProtocolId.VTPM, {VtpmCall.QUERY: _query, VtpmCall.CMD: _cmd})
