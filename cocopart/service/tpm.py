"""The vTPM the privileged layer runs (the TPM 2.0 commands cocopart models: ReadPublic of
the EK, PCR_Read, PCR_Extend); its protocol handlers are in :mod:`cocopart.service.vtpm`."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002
TPM_CC_READ_PUBLIC = 0x173
TPM_CC_PCR_READ = 0x17E
TPM_CC_PCR_EXTEND = 0x182
TPM_RS_PW = 0x40000009
EK_HANDLE = 0x81010001
TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ALG_ECC, TPM_ALG_NULL = 0x000B, 0x000C, 0x0023, 0x0010
TPM_ALG_AES, TPM_ALG_CFB, TPM_ECC_NIST_P256 = 0x0006, 0x0043, 0x0003
TPM_RC_SUCCESS, TPM_RC_VALUE, TPM_RC_HANDLE = 0x000, 0x084, 0x08B
TPM_RC_HASH, TPM_RC_COMMAND_CODE, TPM_RC_INSUFFICIENT, TPM_RC_TAG = 0x083, 0x143, 0x09A, 0x017
TPM_RC_SIZE = 0x095
#: TPML_DIGEST holds at most 8 digests, so TPM2_PCR_Read returns at most 8 PCR values and
#: clears the rest from pcrSelectionOut (TPM 2.0 Library Part 2 §10.9.2 TPML_DIGEST; Part 3
#: §22.4 TPM2_PCR_Read). A TPML_PCR_SELECTION may name at most one selection per implemented
#: bank (HASH_COUNT); more is TPM_RC_SIZE (Part 2 §10.9.7).
MAX_PCR_READ_DIGESTS = 8
# EK template attributes: fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|
# decrypt (TCG EK Credential Profile, template L-2)
EK_ATTRIBUTES = 0x000300B2
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
PCR_COUNT = 24
BANKS = {TPM_ALG_SHA256: hashlib.sha256, TPM_ALG_SHA384: hashlib.sha384}


class TpmError(Exception):
    def __init__(self, rc: int) -> None:
        self.rc = rc


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TpmError(TPM_RC_INSUFFICIENT)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def tpm2b(self) -> bytes:
        return self.take(self.u16())


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


class Vtpm:
    """The TPM state: EK and PCR banks."""

    def __init__(self, seed: str) -> None:
        scalar = int.from_bytes(
            hashlib.sha512(b"cocopart-vtpm-ek:" + seed.encode()).digest(), "big"
        )
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        self.ek = ec.derive_private_key(scalar % (order - 1) + 1, ec.SECP256R1())
        self.pcrs = {
            alg: [bytes(h().digest_size) for _ in range(PCR_COUNT)] for alg, h in BANKS.items()
        }
        #: Called after each SHA-384 PCR extend with (pcr, digest): lets a platform mirror
        #: the measurement into a hardware register (TDX RTMRs).
        self.on_extend: Callable[[int, bytes], object] | None = None

    def ek_public_area(self) -> bytes:
        """TPMT_PUBLIC of the EK (ECC P-256, TCG EK template L-2 attributes)."""
        nums = self.ek.public_key().public_numbers()
        return (
            struct.pack(">HHI", TPM_ALG_ECC, TPM_ALG_SHA256, EK_ATTRIBUTES)
            + _tpm2b(EK_POLICY)
            + struct.pack(
                ">HHHHHH",
                TPM_ALG_AES,
                128,
                TPM_ALG_CFB,
                TPM_ALG_NULL,
                TPM_ECC_NIST_P256,
                TPM_ALG_NULL,
            )
            + _tpm2b(nums.x.to_bytes(32, "big"))
            + _tpm2b(nums.y.to_bytes(32, "big"))
        )

    def extend(self, pcr: int, alg: int, digest: bytes) -> None:
        h = BANKS[alg]
        self.pcrs[alg][pcr] = h(self.pcrs[alg][pcr] + digest).digest()
        if alg == TPM_ALG_SHA384 and self.on_extend is not None:
            self.on_extend(pcr, digest)

    # -- command processing ----------------------------------------------------------------
    def execute(self, command: bytes) -> bytes:
        """Run one TPM 2.0 command; always returns a response (errors as response codes)."""
        try:
            r = _Reader(command)
            tag, size, cc = r.u16(), r.u32(), r.u32()
            if size != len(command):
                raise TpmError(TPM_RC_INSUFFICIENT)
            if cc == TPM_CC_READ_PUBLIC:
                return self._read_public(tag, r)
            if cc == TPM_CC_PCR_READ:
                return self._pcr_read(tag, r)
            if cc == TPM_CC_PCR_EXTEND:
                return self._pcr_extend(tag, r)
            raise TpmError(TPM_RC_COMMAND_CODE)
        except TpmError as err:
            return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10, err.rc)

    @staticmethod
    def _response(tag: int, body: bytes) -> bytes:
        return struct.pack(">HII", tag, 10 + len(body), TPM_RC_SUCCESS) + body

    def _read_public(self, tag: int, r: _Reader) -> bytes:
        if tag != TPM_ST_NO_SESSIONS:
            raise TpmError(TPM_RC_TAG)
        if r.u32() != EK_HANDLE:
            raise TpmError(TPM_RC_HANDLE)
        public = self.ek_public_area()
        name = struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(public).digest()
        return self._response(tag, _tpm2b(public) + _tpm2b(name) + _tpm2b(name))

    def _pcr_read(self, tag: int, r: _Reader) -> bytes:
        if tag != TPM_ST_NO_SESSIONS:
            raise TpmError(TPM_RC_TAG)
        selections: list[bytes] = []
        digests: list[bytes] = []
        count = r.u32()
        if count > len(BANKS):
            raise TpmError(TPM_RC_SIZE)
        for _ in range(count):
            alg, size = r.u16(), r.u8()
            mask = r.take(size)
            if alg not in BANKS:
                raise TpmError(TPM_RC_HASH)
            out = bytearray(size)
            for pcr in range(min(size * 8, PCR_COUNT)):
                if mask[pcr // 8] >> (pcr % 8) & 1 and len(digests) < MAX_PCR_READ_DIGESTS:
                    digests.append(_tpm2b(self.pcrs[alg][pcr]))
                    out[pcr // 8] |= 1 << (pcr % 8)
            selections.append(struct.pack(">HB", alg, size) + bytes(out))
        body = (
            struct.pack(">I", 0)
            + struct.pack(">I", len(selections))
            + b"".join(selections)
            + struct.pack(">I", len(digests))
            + b"".join(digests)
        )
        return self._response(tag, body)

    def _pcr_extend(self, tag: int, r: _Reader) -> bytes:
        if tag != TPM_ST_SESSIONS:
            raise TpmError(TPM_RC_TAG)
        pcr = r.u32()
        if pcr >= PCR_COUNT:
            raise TpmError(TPM_RC_VALUE)
        auth = _Reader(r.take(r.u32()))
        if auth.u32() != TPM_RS_PW:
            raise TpmError(TPM_RC_HANDLE)
        auth.tpm2b(), auth.u8(), auth.tpm2b()
        updates = []
        for _ in range(r.u32()):
            alg = r.u16()
            if alg not in BANKS:
                raise TpmError(TPM_RC_HASH)
            updates.append((alg, r.take(BANKS[alg]().digest_size)))
        for alg, digest in updates:
            self.extend(pcr, alg, digest)
        session = _tpm2b(b"") + b"\x01" + _tpm2b(b"")
        return self._response(TPM_ST_SESSIONS, struct.pack(">I", 0) + session)
