"""The Azure vTPM HCL report: an envelope around a hardware report plus runtime claims.

Azure confidential VMs put an "HCL report" in vTPM NV index 0x01400001: a 32-byte
attestation header, a hardware report buffer of 1184 bytes (the larger of the two hardware
reports it may hold; a smaller one is at its start), and the IGVM request data that the
hardware report binds — a 20-byte header and variable data, a JSON document of *runtime
claims* (the vTPM's attestation and encryption keys as JWKs, the VM configuration, user
data). The hardware report's REPORT_DATA starts with the hash of that variable data.

Layout (azure-cvm-tooling ``az-cvm-vtpm/src/hcl/mod.rs``: ``AttestationHeader``,
``AttestationReport``, ``IgvmRequestData``; confirmed on the three HCL vectors in
``shared/vectors``)::

    0x000  "HCLA", u32 version, u32 report_size, u32 request_type, u32 status, 3 x u32
    0x020  hardware report (1184 bytes)
    0x4C0  u32 data_size, u32 version, u32 report_type, u32 hash_type, u32 variable_size
    0x4D4  variable data (variable_size bytes, JSON)

``report_type`` says which hardware report it is; each platform plug-in declares the
number it handles (:attr:`cocopart.attest.plugin.PlatformPlugin.hcl_report_type`).
``hash_type`` 1, 2, 3 = SHA-256, SHA-384, SHA-512 (``IgvmHashType``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from cocopart.errors import EvidenceError

__all__ = ["HCL_MAGIC", "HclReport", "hcl_report_type"]

HCL_MAGIC = b"HCLA"
_HEADER = struct.Struct("<4sIIII12s")
HW_REPORT_OFFSET = _HEADER.size
HW_REPORT_SIZE = 1184
RUNTIME_OFFSET = HW_REPORT_OFFSET + HW_REPORT_SIZE
_RUNTIME = struct.Struct("<IIIII")
VARIABLE_OFFSET = RUNTIME_OFFSET + _RUNTIME.size
HASHES: dict[int, str] = {1: "sha256", 2: "sha384", 3: "sha512"}


def hcl_report_type(raw: bytes) -> int | None:
    """The hardware report type of an HCL report, or None when ``raw`` is not one."""
    if raw[:4] != HCL_MAGIC or len(raw) < VARIABLE_OFFSET:
        return None
    return int(struct.unpack_from("<I", raw, RUNTIME_OFFSET + 8)[0])


@dataclass(frozen=True)
class HclReport:
    """A parsed HCL report."""

    version: int
    report_size: int
    request_type: int
    status: int
    hardware: bytes
    runtime_version: int
    report_type: int
    hash_type: int
    variable_data: bytes

    @classmethod
    def parse(cls, raw: bytes) -> HclReport:
        """Parse ``raw``; :class:`EvidenceError` names what is wrong."""
        if raw[:4] != HCL_MAGIC:
            raise EvidenceError("not an Azure HCL report: it does not start with 'HCLA'")
        if len(raw) < VARIABLE_OFFSET:
            raise EvidenceError(
                f"an Azure HCL report is at least {VARIABLE_OFFSET} bytes "
                f"(header, hardware report, runtime data header); got {len(raw)}"
            )
        _magic, version, size, request, status, _reserved = _HEADER.unpack_from(raw, 0)
        _data_size, rversion, rtype, htype, var_size = _RUNTIME.unpack_from(raw, RUNTIME_OFFSET)
        end = VARIABLE_OFFSET + var_size
        if end > len(raw):
            raise EvidenceError(
                f"the HCL runtime data says {var_size} bytes, only "
                f"{len(raw) - VARIABLE_OFFSET} follow its header"
            )
        return cls(
            version,
            size,
            request,
            status,
            raw[HW_REPORT_OFFSET:RUNTIME_OFFSET],
            rversion,
            rtype,
            htype,
            raw[VARIABLE_OFFSET:end],
        )

    def hardware_report(self, size: int) -> bytes:
        """The first ``size`` bytes of the hardware report buffer."""
        return self.hardware[:size]

    @property
    def hash_name(self) -> str | None:
        """hashlib name of the runtime-data hash, None for an unknown hash type."""
        return HASHES.get(self.hash_type)

    def digest(self) -> bytes | None:
        """The hash of the variable data the hardware report must carry in REPORT_DATA."""
        name = self.hash_name
        return hashlib.new(name, self.variable_data).digest() if name else None

    def binding_problem(self, report_data: bytes) -> str | None:
        """None when ``report_data`` starts with :meth:`digest` (and is zero after it)."""
        digest = self.digest()
        if digest is None:
            return f"runtime data hash type {self.hash_type} is unknown (1..3 expected)"
        if report_data[: len(digest)] != digest:
            return f"REPORT_DATA does not start with {self.hash_name}(runtime data)"
        if any(report_data[len(digest) :]):
            return (
                f"REPORT_DATA starts with {self.hash_name}(runtime data) but is not zero after it"
            )
        return None

    def runtime_claims(self) -> dict[str, Any] | None:
        """The runtime claims (the variable data as JSON), None when it is not a JSON object."""
        try:
            value = json.loads(self.variable_data.rstrip(b"\0"))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def header_fields(self) -> dict[str, Any]:
        """The envelope's fields, for display."""
        return {
            "hcl_version": self.version,
            "report_size": self.report_size,
            "request_type": self.request_type,
            "status": self.status,
            "report_type": self.report_type,
            "runtime_data_version": self.runtime_version,
            "hash_type": self.hash_name or self.hash_type,
            "runtime_data_size": len(self.variable_data),
        }
