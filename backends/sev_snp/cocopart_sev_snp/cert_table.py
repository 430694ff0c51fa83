"""The SEV-SNP certificate table: the one builder and the one parser.

It is what the extended guest request (SNP_GUEST_REQUEST with a certificate buffer), the
SVSM attestation protocol's certificate buffer and configfs-tsm's ``auxblob`` of the
``sev_guest`` provider carry (sev-snp.md §6.4; GHCB spec MSG_REPORT_REQ cert_table; ABI doc
``configfs-tsm-report`` auxblob).

Layout: entries of ``{GUID 16 bytes, u32 offset, u32 length}`` (little-endian integers; the
GUID in RFC 4122 byte order, as go-sev-guest abi.go reads it) ended by an all-zero entry,
then the certificate data; offsets count from the start of the table. Entries of length 0
are skipped.

This module imports only the standard library: the platform plug-in uses it to recognise a
table given as ``--certs`` without loading any cryptography.
"""

from __future__ import annotations

import struct
import uuid
from typing import NamedTuple

from cocopart.spi import EvidenceError

#: GUIDs of the table's entries (sev-snp.md §6.4, from go-sev-guest abi.go).
CERT_GUIDS: dict[str, uuid.UUID] = {
    "VCEK": uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"),
    "VLEK": uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
    "ASK": uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"),
    "ARK": uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"),
}
NAMES_BY_GUID: dict[bytes, str] = {g.bytes: n for n, g in CERT_GUIDS.items()}
#: Leaf first, as Evidence.certificates asks: VCEK/VLEK, ASK/ASVK, ARK.
LEAF_FIRST = {"VCEK": 0, "VLEK": 1, "ASK": 2, "ARK": 3}
_ENTRY = struct.Struct("<16sII")


class TableEntry(NamedTuple):
    """One certificate of a table: its GUID, its name (None for an unknown GUID), its data."""

    guid: uuid.UUID
    name: str | None
    data: bytes


def build(certs: list[tuple[str, bytes]]) -> bytes:
    """A table of ``(name, certificate)`` pairs, in that order."""
    offset = _ENTRY.size * (len(certs) + 1)
    entries, blobs = [], []
    for name, blob in certs:
        entries.append(_ENTRY.pack(CERT_GUIDS[name].bytes, offset, len(blob)))
        blobs.append(blob)
        offset += len(blob)
    return b"".join(entries) + bytes(_ENTRY.size) + b"".join(blobs)


def parse(blob: bytes) -> list[TableEntry]:
    """The entries of a table, in table order; an empty blob is an empty table.

    Raises :class:`EvidenceError` for a table without its all-zero terminator, or with an
    entry pointing into the table itself or past the end of the blob.
    """
    if not blob:
        return []
    raw: list[tuple[bytes, int, int]] = []
    pos = 0
    while True:
        if pos + _ENTRY.size > len(blob):
            raise EvidenceError(
                f"SNP certificate table has no all-zero terminating entry within its "
                f"{len(blob)} bytes (stopped at offset {pos})"
            )
        guid, offset, length = _ENTRY.unpack_from(blob, pos)
        pos += _ENTRY.size
        if offset == 0 and length == 0 and guid == bytes(16):
            break
        raw.append((guid, offset, length))
    out: list[TableEntry] = []
    for index, (guid, offset, length) in enumerate(raw):
        if length == 0:
            continue
        name = NAMES_BY_GUID.get(guid)
        if offset < pos:
            raise EvidenceError(
                f"SNP certificate table entry {index} ({name or uuid.UUID(bytes=guid)}) points "
                f"at offset {offset}, inside the table itself (which ends at {pos})"
            )
        if offset + length > len(blob):
            raise EvidenceError(
                f"SNP certificate table entry {index} ({name or uuid.UUID(bytes=guid)}) covers "
                f"bytes {offset}..{offset + length}, past the end of the {len(blob)}-byte blob"
            )
        out.append(TableEntry(uuid.UUID(bytes=guid), name, blob[offset : offset + length]))
    return out


def looks_like_table(blob: bytes) -> bool:
    """True when ``blob`` starts with an entry of a known GUID (a cheap recogniser)."""
    return len(blob) >= 2 * _ENTRY.size and blob[:16] in NAMES_BY_GUID


def leaf_first(entries: list[TableEntry]) -> list[bytes]:
    """The certificates ordered VCEK/VLEK, ASK, ARK (unknown GUIDs last, in table order)."""
    order = sorted(
        enumerate(entries),
        key=lambda item: (LEAF_FIRST.get(item[1].name or "", len(LEAF_FIRST)), item[0]),
    )
    return [entry.data for _, entry in order]
