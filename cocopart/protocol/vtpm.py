"""vTPM protocol layouts (sev-snp.md §3.2).

SVSM_VTPM_QUERY returns in RCX a bitmap of supported MS-TPM-simulator platform commands
(bit 8 = TPM_SEND_COMMAND) and in RDX the features (0). SVSM_VTPM_CMD takes the GPA of a 4K
buffer: request u32 command (=8) @0, u8 locality @4, u32 inbuf_size @5, inbuf @9; the
response overwrites it with u32 outbuf_size @0, outbuf @4.
"""

from __future__ import annotations

import struct

TPM_SEND_COMMAND = 8
SUPPORTED_COMMANDS = 1 << TPM_SEND_COMMAND
_REQ = struct.Struct("<IBI")
_RSP = struct.Struct("<I")
MAX_INBUF = 4096 - _REQ.size  # 4087


def encode_request(tpm_command: bytes, locality: int = 0) -> bytes:
    if len(tpm_command) > MAX_INBUF:
        raise ValueError(f"TPM command of {len(tpm_command)} bytes exceeds {MAX_INBUF}")
    return _REQ.pack(TPM_SEND_COMMAND, locality, len(tpm_command)) + tpm_command


def decode_request(buf: bytes) -> tuple[int, int, bytes] | None:
    """(platform command, locality, TPM command bytes), or None when malformed."""
    if len(buf) < _REQ.size:
        return None
    cmd, loc, size = _REQ.unpack_from(buf)
    if size > MAX_INBUF or _REQ.size + size > len(buf):
        return None
    return cmd, loc, bytes(buf[_REQ.size : _REQ.size + size])


def encode_response(tpm_response: bytes) -> bytes:
    return _RSP.pack(len(tpm_response)) + tpm_response


def decode_response(buf: bytes) -> bytes:
    (size,) = _RSP.unpack_from(buf)
    return bytes(buf[_RSP.size : _RSP.size + size])
