"""The vTPM service: read the EK, extend and read PCRs over the vTPM protocol."""

from __future__ import annotations

import hashlib
import struct

from cocopart import vtpm_commands as cmd
from cocopart.partition import Partition
from cocopart.protocol.ids import ProtocolId, ResultCode, VtpmCall
from cocopart.protocol.manifest import VTPM_SERVICE_GUID, ServicesManifest
from cocopart.service.tpm import TPM_RC_COMMAND_CODE, TPM_RC_HANDLE, TPM_RC_VALUE


def test_vtpm_query_reports_send_command(fake: Partition) -> None:
    out = fake.machine.client.call("l2.1", 0, ProtocolId.VTPM, VtpmCall.QUERY)
    assert out.code == 0 and out.regs.rcx & (1 << 8) and out.regs.rdx == 0


def test_pcr_extend_then_read(fake: Partition) -> None:
    c = fake.machine.client
    d = hashlib.sha384(b"event").digest()
    code, rsp = c.vtpm_command("l2.1", 0, cmd.pcr_extend(10, d))
    assert code == ResultCode.SUCCESS and cmd.response_code(rsp) == 0
    code, rsp = c.vtpm_command("l2.1", 0, cmd.pcr_read(10))
    assert cmd.parse_pcr_read(rsp) == [hashlib.sha384(bytes(48) + d).digest()]
    _, rsp = c.vtpm_command("l2.2", 0, cmd.pcr_read(11))
    assert cmd.parse_pcr_read(rsp) == [bytes(48)]


def test_ek_public_matches_manifest(fake: Partition) -> None:
    c = fake.machine.client
    _, rsp = c.vtpm_command("l2.1", 0, cmd.read_public())
    public = cmd.parse_read_public(rsp)
    att = c.attest("l2.1", 0, bytes(64))
    assert ServicesManifest.from_bytes(att.manifest).services[VTPM_SERVICE_GUID] == public
    assert public[:2] == b"\x00\x23"  # TPM_ALG_ECC


def test_tpm_errors_are_response_codes(fake: Partition) -> None:
    c = fake.machine.client
    _, rsp = c.vtpm_command("l2.1", 0, cmd.read_public(0x81000000))
    assert cmd.response_code(rsp) == TPM_RC_HANDLE
    _, rsp = c.vtpm_command("l2.1", 0, struct.pack(">HII", 0x8001, 10, 0x999))
    assert cmd.response_code(rsp) == TPM_RC_COMMAND_CODE
    _, rsp = c.vtpm_command("l2.1", 0, cmd.pcr_extend(24, bytes(48)))
    assert cmd.response_code(rsp) == TPM_RC_VALUE
    _, rsp = c.vtpm_command("l2.1", 0, cmd.pcr_read(0)[:-2])
    assert cmd.response_code(rsp) != 0


def test_vtpm_cmd_buffer_rules(fake: Partition) -> None:
    c = fake.machine.client
    assert (
        c.call("l2.1", 0, ProtocolId.VTPM, VtpmCall.CMD, 0x1008).code == ResultCode.INVALID_ADDRESS
    )
    page = fake.machine.layout.scratch(0, 7)
    fake.machine.memory.write(page, struct.pack("<IBI", 7, 0, 0))
    assert (
        c.call("l2.1", 0, ProtocolId.VTPM, VtpmCall.CMD, page).code == ResultCode.INVALID_PARAMETER
    )


def test_ek_is_deterministic_per_seed() -> None:
    from cocopart.service.tpm import Vtpm

    assert Vtpm("a").ek_public_area() == Vtpm("a").ek_public_area() != Vtpm("b").ek_public_area()
