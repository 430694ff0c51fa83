"""Attestation protocol request layouts (sev-snp.md §3.1).

ATTEST_SERVICES takes a 0x40-byte request, ATTEST_SINGLE_SERVICE a 0x58-byte one (the same
fields plus a service GUID and manifest version). All reserved bytes must be zero.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from cocopart.protocol.ids import ResultCode

_SERVICES = struct.Struct("<QI4sQH6sQI4sQI4s")
_SINGLE_TAIL = struct.Struct("<16sI4s")
SERVICES_SIZE = _SERVICES.size  # 0x40
SINGLE_SIZE = SERVICES_SIZE + _SINGLE_TAIL.size  # 0x58
NONCE_SIZE = 64  # CS accepts exactly 64 bytes (spec: unconfirmed; sev-snp.md §3.1, §9.7)
MAX_CERTS_SIZE = 0x4000  # CS maximum certificate buffer
SUPPORTED_MANIFEST_VERSION = 0  # CS accepts only 0

assert SERVICES_SIZE == 0x40 and SINGLE_SIZE == 0x58


@dataclass(frozen=True)
class AttestRequest:
    report_gpa: int
    report_size: int
    nonce_gpa: int
    nonce_size: int
    manifest_gpa: int
    manifest_size: int
    certs_gpa: int = 0
    certs_size: int = 0
    service_guid: uuid.UUID | None = None  # set only for ATTEST_SINGLE_SERVICE
    manifest_version: int = 0

    def encode(self) -> bytes:
        z4, z6 = b"\0" * 4, b"\0" * 6
        out = _SERVICES.pack(
            self.report_gpa,
            self.report_size,
            z4,
            self.nonce_gpa,
            self.nonce_size,
            z6,
            self.manifest_gpa,
            self.manifest_size,
            z4,
            self.certs_gpa,
            self.certs_size,
            z4,
        )
        if self.service_guid is not None:
            out += _SINGLE_TAIL.pack(self.service_guid.bytes_le, self.manifest_version, z4)
        return out

    @classmethod
    def decode(cls, data: bytes, single: bool) -> AttestRequest | ResultCode:
        need = SINGLE_SIZE if single else SERVICES_SIZE
        if len(data) < need:
            return ResultCode.INVALID_PARAMETER
        (rep, rep_sz, r1, nonce, nonce_sz, r2, man, man_sz, r3, certs, certs_sz, r4) = (
            _SERVICES.unpack_from(data)
        )
        if any(r.strip(b"\0") for r in (r1, r2, r3, r4)):
            return ResultCode.INVALID_PARAMETER
        guid, version = None, 0
        if single:
            g, version, r5 = _SINGLE_TAIL.unpack_from(data, SERVICES_SIZE)
            if r5.strip(b"\0"):
                return ResultCode.INVALID_PARAMETER
            guid = uuid.UUID(bytes_le=g)
        if rep % 4096 or man % 4096 or (certs_sz and certs % 4096):
            return ResultCode.INVALID_PARAMETER
        return cls(rep, rep_sz, nonce, nonce_sz, man, man_sz, certs, certs_sz, guid, version)
