"""Attestation manifests: what the privileged layer binds into its evidence.

Two shapes, as the SVSM attestation protocol and COCONUT define them (sev-snp.md §3.1; CS
kernel/src/protocols/attest.rs):

* SVSM_ATTEST_SERVICES binds the *services manifest*, a GUID table: a 24-byte header (table
  GUID 63849ebb-3d92-4670-a1ff-58f9c94b87bb, u32 total length, u32 entry count), one 24-byte
  entry per service (GUID, u32 offset from the table start, u32 length), then the blobs —
  each service's own manifest (CS GuidTable::to_vec). GUIDs are stored in their
  little-endian (Microsoft) byte order.
* SVSM_ATTEST_SINGLE_SERVICE binds the one service's *own* manifest, unwrapped (CS
  attest_single_service: the vTPM's is its EK public key, a TPMT_PUBLIC,
  attest_single_vtpm / vtpm_get_manifest).

Either way REPORT_DATA = SHA-512(nonce || manifest).

cocopart's *requester* entry is an opt-in extension (``PartitionConfig.
attest_requester_entry``, :data:`RULE_REQUESTER_ENTRY_OPT_IN`): one more GUID-table entry, so
that services evidence produced on behalf of a workload layer says which layer asked (SNP: the
requesting VMPL; TDX: the L2 VM index). A verifier written for COCONUT evidence reads a table
with it (an entry with an unknown GUID); :func:`read_manifest` reads both shapes.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass, field

from cocopart.errors import EvidenceError

MANIFEST_TABLE_GUID = uuid.UUID("63849ebb-3d92-4670-a1ff-58f9c94b87bb")
VTPM_SERVICE_GUID = uuid.UUID("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")
UEFI_MM_SERVICE_GUID = uuid.UUID("a4453a59-9e1b-4787-a033-1986d6adbe55")
#: cocopart's own entry naming the requesting layer (not in the SVSM spec; our extension).
REQUESTER_GUID = uuid.UUID("6c0c0a70-8a1e-4f3b-9d54-2f6b1f0c7e01")

#: SVSM_ATTEST_SERVICES returns the GUID table of the services only, as COCONUT does; the
#: requester entry is added only when the guest is configured for it
#: (``PartitionConfig.attest_requester_entry``). Without it, service evidence speaks for the
#: privileged layer itself (its own report, its own services), whichever layer asked.
RULE_REQUESTER_ENTRY_OPT_IN = "the services manifest names the requester only when opted in"

_HEADER = struct.Struct("<16sII")
_ENTRY = struct.Struct("<16sII")
_REQUESTER = struct.Struct("<HBB4s8s")  # version, vendor level index, role, rsvd, layer name
REQUESTER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Requester:
    """Which layer asked the privileged layer for evidence."""

    layer: str  # neutral name, e.g. "l2.1"
    level: int  # VMPL number (SNP) or L2 VM index (TDX)

    def to_bytes(self) -> bytes:
        return _REQUESTER.pack(
            REQUESTER_FORMAT_VERSION, self.level, 1, b"\0" * 4, self.layer.encode().ljust(8, b"\0")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Requester:
        if len(data) != _REQUESTER.size:
            raise EvidenceError(f"requester entry is {len(data)} bytes, expected {_REQUESTER.size}")
        version, level, _role, _rsvd, name = _REQUESTER.unpack(data)
        if version != REQUESTER_FORMAT_VERSION:
            raise EvidenceError(f"requester entry version {version} is not supported")
        return cls(layer=name.rstrip(b"\0").decode(), level=level)


@dataclass
class ServicesManifest:
    """An ordered GUID -> blob table."""

    services: dict[uuid.UUID, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        n = len(self.services)
        offset = _HEADER.size + n * _ENTRY.size
        entries, blobs = [], []
        for guid, blob in self.services.items():
            entries.append(_ENTRY.pack(guid.bytes_le, offset, len(blob)))
            blobs.append(blob)
            offset += len(blob)
        header = _HEADER.pack(MANIFEST_TABLE_GUID.bytes_le, offset, n)
        return header + b"".join(entries) + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> ServicesManifest:
        if len(data) < _HEADER.size:
            raise EvidenceError("services manifest shorter than its 24-byte header")
        guid, total, count = _HEADER.unpack_from(data)
        if uuid.UUID(bytes_le=guid) != MANIFEST_TABLE_GUID:
            raise EvidenceError("services manifest does not start with the table GUID")
        if total != len(data):
            raise EvidenceError(f"services manifest says {total} bytes, has {len(data)}")
        if _HEADER.size + count * _ENTRY.size > total:
            raise EvidenceError(f"services manifest entry table ({count} entries) overruns it")
        services: dict[uuid.UUID, bytes] = {}
        for i in range(count):
            g, off, length = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
            if off + length > total:
                raise EvidenceError(f"services manifest entry {i} points past the end")
            services[uuid.UUID(bytes_le=g)] = data[off : off + length]
        return cls(services)

    @property
    def requester(self) -> Requester | None:
        blob = self.services.get(REQUESTER_GUID)
        return Requester.from_bytes(blob) if blob is not None else None


def is_services_table(data: bytes) -> bool:
    """True if ``data`` starts like a services manifest (the table GUID)."""
    return data[:16] == MANIFEST_TABLE_GUID.bytes_le


@dataclass(frozen=True)
class ManifestReading:
    """What a bound manifest says: the services it covers, the one service whose own manifest
    it is (single-service evidence), and the requester entry, if any."""

    services: tuple[uuid.UUID, ...]
    single: uuid.UUID | None = None
    requester: Requester | None = None

    def describe(self) -> str:
        if self.single is not None:
            return f"the own manifest of service {self.single}"
        names = ", ".join(str(g) for g in self.services if g != REQUESTER_GUID) or "no service"
        return f"the services manifest ({names})"


def read_manifest(manifest: bytes, service: str | None) -> ManifestReading:
    """Read a bound manifest: ``service`` (the GUID the caller asked
    SVSM_ATTEST_SINGLE_SERVICE for, ``Evidence.service``) means ``manifest`` is that service's
    own blob, taken as it is; otherwise it must be a services manifest (GUID table), with or
    without the requester entry. Raises EvidenceError when it is neither."""
    if service is not None:
        try:
            guid = uuid.UUID(service)
        except ValueError as exc:
            raise EvidenceError(f"service {service!r} is not a GUID") from exc
        return ManifestReading(services=(guid,), single=guid)
    table = ServicesManifest.from_bytes(manifest)
    return ManifestReading(services=tuple(table.services), requester=table.requester)


def bind_report_data(nonce: bytes, manifest: bytes) -> bytes:
    """REPORT_DATA = SHA-512(nonce || manifest), as the SVSM attestation protocol defines."""
    return hashlib.sha512(nonce + manifest).digest()
