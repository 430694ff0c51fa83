"""SNP guest messages: AES-256-GCM with VMPCKn, sequence numbers, MSG_REPORT_REQ -> report.

Both ends of the channel live here: :class:`GuestMessenger` (the guest side, keeping its
sequence numbers in its copy of the secrets page, as Linux sev-guest does) and
:class:`GuestRequestFirmware` (the AMD-SP side of SNP_GUEST_REQUEST). The hypervisor only
carries the encrypted pages (:mod:`.host`).

Message header (96 bytes, sev-snp.md §6.1): authtag @0x00 (16 of 32 bytes used), msg_seqno
u64 @0x20, algo u8 @0x30 (1 = AES-256-GCM), hdr_version @0x31 (1), hdr_sz u16 @0x32 (0x60),
msg_type @0x34, msg_version @0x35 (1), msg_sz u16 @0x36, msg_vmpck @0x3C. AAD = bytes
0x30..0x5F; IV = msg_seqno little-endian, zero-padded to 12 bytes; key = VMPCKn; the payload
fills the rest of the 4K page. The response carries seqno = request + 1 and type =
request type + 1; the guest adds 2 to its count after each exchange, refuses counts that
reach 2^32 - 1 and wipes the key after any error (IV-reuse protection).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cocopart.spi import EvidenceError
from cocopart_sev_snp import secrets
from cocopart_sev_snp.report import (
    KEY_SEL_VLEK,
    RSP_STATUS_INVALID_KEY,
    RSP_STATUS_INVALID_PARAM,
    RSP_STATUS_SUCCESS,
    ReportRequest,
    ReportResponse,
)

PAGE = 4096
HDR_SIZE = 0x60
MAX_PAYLOAD = PAGE - HDR_SIZE
AAD_START, AAD_END = 0x30, 0x60
TAG_SIZE = 16
ALGO_AES_256_GCM = 1
HDR_VERSION = 1
MSG_VERSION = 1
#: Sequence counts at or above this are refused by the guest (sev-snp.md §6.1).
SEQNO_LIMIT = 2**32 - 1
_HDR = struct.Struct("<32sQ8sBBHBBH4sB35s")
assert _HDR.size == HDR_SIZE


class MsgType(IntEnum):
    """Guest message types (sev-snp.md §6.1)."""

    CPUID_REQ = 1
    CPUID_RSP = 2
    KEY_REQ = 3
    KEY_RSP = 4
    REPORT_REQ = 5
    REPORT_RSP = 6
    EXPORT_REQ = 7
    EXPORT_RSP = 8
    IMPORT_REQ = 9
    IMPORT_RSP = 10
    ABSORB_REQ = 11
    ABSORB_RSP = 12
    VMRK_REQ = 13
    VMRK_RSP = 14
    TSC_INFO_REQ = 17
    TSC_INFO_RSP = 18


#: Firmware status of SNP_GUEST_REQUEST for a message it cannot accept (bad header, wrong
#: sequence number, failed authentication). The references give no status for these: the
#: model uses INVALID_PARAM (0x16, sev-snp.md §8) — an unconfirmed choice.
FW_STATUS_BAD_MESSAGE = 0x16
FW_STATUS_SUCCESS = 0

#: "A report for VMPL n may be requested only from VMPL <= n": MSG_REPORT_REQ.vmpl must be
#: >= the VMPL whose VMPCK carried the request, else MSG_REPORT_RSP status INVALID_PARAM
#: (0x16). sev-snp.md §6.2 (consistent with Linux privlevel_floor; firmware rule text
#: unconfirmed, §9.5). The model identifies the requester's VMPL with the VMPCK index.
RULE_REPORT_VMPL_FLOOR = "MSG_REPORT_REQ.vmpl must be >= the VMPL of the VMPCK used"


def _iv(seqno: int) -> bytes:
    return seqno.to_bytes(8, "little") + bytes(4)


def seal(key: bytes, seqno: int, msg_type: int, vmpck_id: int, payload: bytes) -> bytes:
    """One encrypted message page."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"guest message payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    hdr = bytearray(
        _HDR.pack(
            bytes(32),
            seqno,
            bytes(8),
            ALGO_AES_256_GCM,
            HDR_VERSION,
            HDR_SIZE,
            msg_type,
            MSG_VERSION,
            len(payload),
            bytes(4),
            vmpck_id,
            bytes(35),
        )
    )
    sealed = AESGCM(key).encrypt(_iv(seqno), payload, bytes(hdr[AAD_START:AAD_END]))
    hdr[0:TAG_SIZE] = sealed[-TAG_SIZE:]
    return (bytes(hdr) + sealed[:-TAG_SIZE]).ljust(PAGE, b"\0")


@dataclass(frozen=True)
class Message:
    seqno: int
    msg_type: int
    msg_version: int
    vmpck_id: int
    payload: bytes


def header(page: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    """(seqno, algo, hdr_version, hdr_sz, msg_type, msg_version, msg_sz, vmpck_id)."""
    (_tag, seqno, _r1, algo, hver, hsz, mtype, mver, msz, _r2, vmpck, _r3) = _HDR.unpack_from(page)
    return seqno, algo, hver, hsz, mtype, mver, msz, vmpck


def unseal(key: bytes, page: bytes) -> Message | None:
    """Decrypt and authenticate a message page; None when it does not authenticate or its
    header is malformed."""
    seqno, algo, hver, hsz, mtype, mver, msz, vmpck = header(page)
    if (
        algo != ALGO_AES_256_GCM
        or hver != HDR_VERSION
        or hsz != HDR_SIZE
        or msz > MAX_PAYLOAD
        or not any(key)
    ):
        return None
    body = page[HDR_SIZE : HDR_SIZE + msz] + page[0:TAG_SIZE]
    try:
        payload = AESGCM(key).decrypt(_iv(seqno), body, page[AAD_START:AAD_END])
    except InvalidTag:
        return None
    return Message(seqno, mtype, mver, vmpck, payload)


class GuestMessageError(Exception):
    """A guest-side failure of a guest-message exchange (before or after the firmware)."""


@dataclass
class GuestMessenger:
    """The guest side: one layer's copy of the secrets page (VMPCKs and OS-area counts)."""

    secrets_page: bytearray

    def key(self, vmpck_id: int) -> bytes:
        return secrets.vmpck(bytes(self.secrets_page), vmpck_id)

    def prepare(self, vmpck_id: int, msg_type: int, payload: bytes) -> tuple[int, bytes]:
        """(seqno, encrypted request page) — refuses a zero key and an exhausted count."""
        key = self.key(vmpck_id)
        if not any(key):
            raise GuestMessageError(
                f"VMPCK{vmpck_id} is zero in this layer's secrets page "
                "(the SVSM zeroes the keys of more privileged VMPLs)"
            )
        count = secrets.msg_seqno(self.secrets_page, vmpck_id)
        if count + 1 >= SEQNO_LIMIT:
            raise GuestMessageError(f"VMPCK{vmpck_id} sequence numbers are exhausted")
        seqno = count + 1
        return seqno, seal(key, seqno, msg_type, vmpck_id, payload)

    def complete(self, vmpck_id: int, req_seqno: int, req_type: int, response: bytes) -> bytes:
        """Check and decrypt the response; on success advance the count by 2, on any error
        wipe the key (Linux sev-guest)."""
        msg = unseal(self.key(vmpck_id), response)
        problem = None
        if msg is None:
            problem = "the response does not authenticate with the VMPCK"
        elif msg.seqno != req_seqno + 1:
            problem = f"response seqno {msg.seqno} is not request seqno {req_seqno} + 1"
        elif msg.msg_type != req_type + 1 or msg.msg_version != MSG_VERSION:
            problem = f"response type {msg.msg_type} does not answer request type {req_type}"
        if problem is not None or msg is None:
            self.wipe(vmpck_id)
            raise GuestMessageError(problem or "bad response")
        secrets.set_msg_seqno(self.secrets_page, vmpck_id, req_seqno + 1)
        return msg.payload

    def wipe(self, vmpck_id: int) -> None:
        off = secrets.VMPCK_OFFSETS[vmpck_id]
        self.secrets_page[off : off + secrets.VMPCK_SIZE] = bytes(secrets.VMPCK_SIZE)


#: Builds a signed ATTESTATION_REPORT: (report_data, vmpl) -> 0x4A0 bytes.
ReportBuilder = Callable[[bytes, int], bytes]


@dataclass
class GuestRequestFirmware:
    """The AMD-SP side of SNP_GUEST_REQUEST for one guest: its four VMPCKs and the last
    sequence number seen per key."""

    vmpcks: tuple[bytes, bytes, bytes, bytes]
    build_report: ReportBuilder
    last_seqno: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    vlek_installed: bool = False

    def handle(self, request: bytes) -> tuple[int, bytes]:
        """(firmware status, response page). Status != 0 means no response was produced."""
        seqno, *_rest, vmpck_id = header(request)
        if not 0 <= vmpck_id <= 3:
            return FW_STATUS_BAD_MESSAGE, b""
        msg = unseal(self.vmpcks[vmpck_id], request)
        if msg is None or seqno != self.last_seqno[vmpck_id] + 1 or msg.msg_version != MSG_VERSION:
            return FW_STATUS_BAD_MESSAGE, b""
        if msg.msg_type != MsgType.REPORT_REQ:
            return FW_STATUS_BAD_MESSAGE, b""
        payload = self._report(msg.payload, vmpck_id).encode()
        self.last_seqno[vmpck_id] = seqno + 1
        return FW_STATUS_SUCCESS, seal(
            self.vmpcks[vmpck_id], seqno + 1, MsgType.REPORT_RSP, vmpck_id, payload
        )

    def _report(self, payload: bytes, vmpck_id: int) -> ReportResponse:
        try:
            req = ReportRequest.decode(payload[:0x60])
        except EvidenceError:
            return ReportResponse(status=RSP_STATUS_INVALID_PARAM)
        if any(req.reserved) or req.flags & ~0x3 or req.key_sel == 3:
            return ReportResponse(status=RSP_STATUS_INVALID_PARAM)
        if req.key_sel == KEY_SEL_VLEK and not self.vlek_installed:
            return ReportResponse(status=RSP_STATUS_INVALID_KEY)
        if not vmpck_id <= req.vmpl <= 3:  # RULE_REPORT_VMPL_FLOOR
            return ReportResponse(status=RSP_STATUS_INVALID_PARAM)
        return ReportResponse(
            status=RSP_STATUS_SUCCESS, report=self.build_report(req.user_data, req.vmpl)
        )
