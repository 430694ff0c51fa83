"""Build the TPM 2.0 commands a workload sends through the vTPM protocol, and read replies.

Used by backends' workload side (ExtendMeasurement) and by tests; the service side is
:mod:`cocopart.service.vtpm`.
"""

from __future__ import annotations

import struct

from cocopart.service.tpm import (
    EK_HANDLE,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_CC_PCR_EXTEND,
    TPM_CC_PCR_READ,
    TPM_CC_READ_PUBLIC,
    TPM_RS_PW,
    TPM_ST_NO_SESSIONS,
    TPM_ST_SESSIONS,
)


def _frame(tag: int, cc: int, body: bytes) -> bytes:
    return struct.pack(">HII", tag, 10 + len(body), cc) + body


def pcr_extend(pcr: int, digest: bytes) -> bytes:
    """TPM2_PCR_Extend of the SHA-384 (48-byte) or SHA-256 (32-byte) bank."""
    alg = {48: TPM_ALG_SHA384, 32: TPM_ALG_SHA256}[len(digest)]
    session = struct.pack(">IH", TPM_RS_PW, 0) + b"\x00" + struct.pack(">H", 0)
    body = (
        struct.pack(">I", pcr)
        + struct.pack(">I", len(session))
        + session
        + struct.pack(">IH", 1, alg)
        + digest
    )
    return _frame(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND, body)


def pcr_read(pcr: int, alg: int = TPM_ALG_SHA384) -> bytes:
    mask = bytearray(3)
    mask[pcr // 8] |= 1 << (pcr % 8)
    body = struct.pack(">IHB", 1, alg, 3) + bytes(mask)
    return _frame(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ, body)


def read_public(handle: int = EK_HANDLE) -> bytes:
    return _frame(TPM_ST_NO_SESSIONS, TPM_CC_READ_PUBLIC, struct.pack(">I", handle))


def response_code(rsp: bytes) -> int:
    return int(struct.unpack_from(">I", rsp, 6)[0])


def parse_pcr_read(rsp: bytes) -> list[bytes]:
    """The digests of a TPM2_PCR_Read response."""
    pos = 10 + 4
    (nsel,) = struct.unpack_from(">I", rsp, pos)
    pos += 4
    for _ in range(nsel):
        size = rsp[pos + 2]
        pos += 3 + size
    (n,) = struct.unpack_from(">I", rsp, pos)
    pos += 4
    out = []
    for _ in range(n):
        (sz,) = struct.unpack_from(">H", rsp, pos)
        out.append(rsp[pos + 2 : pos + 2 + sz])
        pos += 2 + sz
    return out


def parse_read_public(rsp: bytes) -> bytes:
    """The TPMT_PUBLIC area of a TPM2_ReadPublic response."""
    (sz,) = struct.unpack_from(">H", rsp, 10)
    return rsp[12 : 12 + sz]
