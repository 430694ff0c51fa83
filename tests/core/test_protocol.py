"""Protocol codecs: round trips, and malformed requests mapped to the protocol's codes."""

from __future__ import annotations

import struct
import uuid

import pytest
from fake_backend import FakeBackend

from cocopart.errors import EvidenceError
from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.partition import Partition
from cocopart.protocol import attest, vtpm
from cocopart.protocol import pvalidate as pv
from cocopart.protocol.call import Registers
from cocopart.protocol.calling_area import BUFFER
from cocopart.protocol.ids import (
    CoreCall,
    ProtocolId,
    ResultCode,
    call_name,
    make_rax,
    result_name,
    split_rax,
)
from cocopart.protocol.manifest import (
    REQUESTER_GUID,
    VTPM_SERVICE_GUID,
    Requester,
    ServicesManifest,
    bind_report_data,
)


def test_rax_packs_protocol_and_call() -> None:
    rax = make_rax(ProtocolId.ATTEST, 1)
    assert rax == 0x1_0000_0001 and split_rax(rax) == (1, 1)
    assert call_name(0, 1) == "CORE.PVALIDATE" and call_name(9, 9) == "9.9"
    assert result_name(0x8000_1006) == "PVALIDATE_FAIL_SIZEMISMATCH"
    assert result_name(0x8000_1042).startswith("PROTOCOL_SPECIFIC")
    with pytest.raises(ValueError):
        Registers(rax=1 << 64)


def test_pvalidate_list_round_trip() -> None:
    entries = pv.run_entries(PAGE_2M, True, 3, True) + [pv.entry(0x5000, False, False, True)]
    page = bytes(8) + pv.encode(entries, 1)
    page = page.ljust(4096, b"\0")
    got = pv.PvalidateList.decode(page, 8)
    assert isinstance(got, pv.PvalidateList)
    assert (got.count, got.next, got.entries) == (4, 1, entries)
    runs = list(pv.runs(entries, 0, 4))
    assert [(r.index, r.count, r.gpa, r.page_2m, r.validate, r.ignore_cf) for r in runs] == [
        (0, 3, PAGE_2M, True, True, False),
        (3, 1, 0x5000, False, False, True),
    ]
    assert pv.MAX_ENTRIES_IN_CAA == 510 and pv.max_entries(0) == 511


@pytest.mark.parametrize(
    "count,nxt,offset", [(0, 0, 8), (511, 0, 8), (3, 3, 8), (2, 5, 8), (1, 0, 4092), (1, 0, 4)]
)
def test_pvalidate_list_header_errors(count: int, nxt: int, offset: int) -> None:
    page = bytearray(4096)
    if offset + 8 <= 4096:
        struct.pack_into("<HHI", page, offset, count, nxt, 0)
    assert pv.PvalidateList.decode(bytes(page), offset) is ResultCode.INVALID_PARAMETER


@pytest.mark.parametrize("raw", [0x1000 | 2, 0x1000 | 3, 0x1000 | 0x10, 0x1000 | 0x800, 0x1000 | 1])
def test_pvalidate_entry_errors(raw: int) -> None:
    assert pv.entry_error(raw) is ResultCode.INVALID_PARAMETER
    assert pv.entry_error(PAGE_2M | 1 | 4) is None


def _call(
    p: Partition, layer: str, call: int, rcx: int = 0, rdx: int = 0, r8: int = 0
) -> tuple[int, Registers]:
    t = p.machine.transport  # type: ignore[attr-defined]
    out = t.call(layer, 0, Registers.call(ProtocolId.CORE, call, rcx, rdx, r8))
    return out.code, out.regs


def _caa(p: Partition) -> int:
    return p.machine.layout.caa(0, 0)


def test_pvalidate_truncated_and_out_of_page_lists(fake: Partition) -> None:
    caa = _caa(fake)
    mem = fake.machine.memory
    # a list whose entry count runs past the end of its page
    mem.write(caa + 0xFF0, struct.pack("<HHI", 4, 0, 0))
    assert _call(fake, "l2.1", CoreCall.PVALIDATE, caa + 0xFF0)[0] == ResultCode.INVALID_PARAMETER
    # misaligned list pointer
    assert _call(fake, "l2.1", CoreCall.PVALIDATE, caa + 9)[0] == ResultCode.INVALID_PARAMETER
    # list outside guest memory
    far = fake.machine.layout.total + PAGE_4K
    assert _call(fake, "l2.1", CoreCall.PVALIDATE, far)[0] == ResultCode.INVALID_ADDRESS


def test_pvalidate_reserved_bits_stop_at_the_bad_entry(fake: Partition) -> None:
    caa = _caa(fake)
    entries = (
        pv.run_entries(0, False, 2, True)
        + [0x2000 | 4 | 0x40]
        + pv.run_entries(0x3000, False, 1, True)
    )
    fake.machine.memory.write(caa + BUFFER, pv.encode(entries))
    code, _ = _call(fake, "l2.1", CoreCall.PVALIDATE, caa + BUFFER)
    assert code == ResultCode.INVALID_PARAMETER
    nxt = int.from_bytes(fake.machine.memory.read(caa + BUFFER + 2, 2), "little")
    assert nxt == 2  # the first two were validated, `next` indexes the bad entry
    view = fake.memory_view(0, 0x4000)
    assert view[0].validated and view[0].end == 0x2000 and not view[1].validated


def test_pvalidate_bad_page_size_and_misaligned_2m(fake: Partition) -> None:
    caa = _caa(fake)
    for bad in (0x1000 | 2 | 4, PAGE_4K | 1 | 4):
        fake.machine.memory.write(caa + BUFFER, pv.encode([bad]))
        assert (
            _call(fake, "l2.1", CoreCall.PVALIDATE, caa + BUFFER)[0] == ResultCode.INVALID_PARAMETER
        )


def test_pvalidate_entry_beyond_memory_is_invalid_address(fake: Partition) -> None:
    caa = _caa(fake)
    total = fake.machine.layout.total
    entries = pv.run_entries(total - PAGE_4K, False, 3, True)
    fake.machine.memory.write(caa + BUFFER, pv.encode(entries))
    assert _call(fake, "l2.1", CoreCall.PVALIDATE, caa + BUFFER)[0] == ResultCode.INVALID_ADDRESS
    # the last page of the guest is l1's protocol-region padding: refused at entry 0
    assert int.from_bytes(fake.machine.memory.read(caa + BUFFER + 2, 2), "little") == 0


def test_unknown_protocol_and_call(fake: Partition) -> None:
    t = fake.machine.transport  # type: ignore[attr-defined]
    assert t.call("l2.1", 0, Registers.call(9, 0)).code == ResultCode.UNSUPPORTED_PROTOCOL
    assert t.call("l2.1", 0, Registers.call(0, 99)).code == ResultCode.UNSUPPORTED_CALL
    # APIC protocol is not offered unless the vCPU uses APIC emulation
    assert t.call("l2.1", 0, Registers.call(3, 0)).code == ResultCode.UNSUPPORTED_PROTOCOL


def test_query_protocol_reports_versions(fake: Partition) -> None:
    c = fake.machine.client  # type: ignore[attr-defined]
    assert c.query_protocol("l2.1", 0, ProtocolId.CORE, 1) == (1, 1)
    assert c.query_protocol("l2.1", 0, ProtocolId.VTPM, 1) == (1, 1)
    assert c.query_protocol("l2.1", 0, ProtocolId.CORE, 2) is None
    assert c.query_protocol("l2.1", 0, 7, 1) is None


def test_remap_ca_rules(fake: Partition) -> None:
    new = fake.machine.layout.context(0, 1) - PAGE_4K * 0  # any guest page works
    new = 0x10000
    fake.machine.memory.write(new, b"junk")
    assert _call(fake, "l2.1", CoreCall.REMAP_CA, new + 8)[0] == ResultCode.INVALID_PARAMETER
    assert _call(fake, "l2.1", CoreCall.REMAP_CA, 1 << 50)[0] == ResultCode.INVALID_ADDRESS
    assert _call(fake, "l2.1", CoreCall.REMAP_CA, new)[0] == ResultCode.SUCCESS
    assert fake.machine.memory.read(new + 1, 3) == b"\0\0\0"  # zeroed on remap
    assert fake.machine.service.state.caa("l2.1", 0) == new  # type: ignore[attr-defined]
    # the next call goes through the new calling area
    assert _call(fake, "l2.1", CoreCall.QUERY_PROTOCOL, 1)[0] == ResultCode.SUCCESS


def test_configure_vtom_and_memory_calls(fake: Partition) -> None:
    code, regs = _call(fake, "l2.1", CoreCall.CONFIGURE_VTOM, 1)
    assert code == ResultCode.SUCCESS and regs.rcx == 0
    assert _call(fake, "l2.1", CoreCall.CONFIGURE_VTOM, 0)[0] == ResultCode.INVALID_REQUEST
    assert _call(fake, "l2.1", CoreCall.DEPOSIT_MEM)[0] == ResultCode.UNSUPPORTED_CALL
    assert _call(fake, "l2.1", CoreCall.WITHDRAW_MEM)[0] == ResultCode.UNSUPPORTED_CALL


def test_create_and_delete_vcpu_checks(fake: Partition) -> None:
    lay = fake.machine.layout
    ctx, caa = lay.context(0, 1), lay.caa(0, 1)
    bad = [
        ((ctx + 8, caa, 1), ResultCode.INVALID_ADDRESS),
        ((ctx, ctx, 1), ResultCode.INVALID_ADDRESS),
        ((1 << 50, caa, 1), ResultCode.INVALID_ADDRESS),
        ((ctx, caa, 77), ResultCode.INVALID_PARAMETER),
        ((lay.caa(0, 0), caa, 1), ResultCode.INVALID_PARAMETER),
    ]
    for args, code in bad:
        assert _call(fake, "l2.1", CoreCall.CREATE_VCPU, *args)[0] == code
    assert _call(fake, "l2.1", CoreCall.CREATE_VCPU, ctx, caa, 1)[0] == ResultCode.SUCCESS
    assert (
        _call(fake, "l2.1", CoreCall.CREATE_VCPU, ctx, caa, 1)[0] == ResultCode.INVALID_PARAMETER
    )  # already in use
    assert _call(fake, "l2.2", CoreCall.DELETE_VCPU, ctx)[0] == ResultCode.INVALID_PARAMETER
    assert _call(fake, "l2.1", CoreCall.DELETE_VCPU, ctx + 8)[0] == ResultCode.INVALID_PARAMETER
    assert _call(fake, "l2.1", CoreCall.DELETE_VCPU, ctx)[0] == ResultCode.SUCCESS


def test_attest_request_round_trip_and_reserved_bytes() -> None:
    req = attest.AttestRequest(
        0x1000, 4096, 0x2040, 64, 0x3000, 4096, 0x4000, 0x4000, VTPM_SERVICE_GUID, 0
    )
    raw = req.encode()
    assert len(raw) == 0x58 and attest.AttestRequest.decode(raw, True) == req
    assert len(req.encode()[:0x40]) == 0x40
    bad = bytearray(raw)
    bad[0x0C] = 1  # reserved after report_size
    assert attest.AttestRequest.decode(bytes(bad), True) is ResultCode.INVALID_PARAMETER
    bad = bytearray(raw)
    bad[0x54] = 1
    assert attest.AttestRequest.decode(bytes(bad), True) is ResultCode.INVALID_PARAMETER
    assert attest.AttestRequest.decode(raw[:0x30], False) is ResultCode.INVALID_PARAMETER
    unaligned = attest.AttestRequest(0x1008, 4096, 0, 64, 0x3000, 4096).encode()
    assert attest.AttestRequest.decode(unaligned, False) is ResultCode.INVALID_PARAMETER


def test_attest_binds_nonce_and_manifest(fake: Partition) -> None:
    c = fake.machine.client  # type: ignore[attr-defined]
    nonce = bytes(range(64))
    res = c.attest("l2.2", 0, nonce)
    assert res.code == ResultCode.SUCCESS
    assert res.report == b"FAKE" + bind_report_data(nonce, res.manifest)
    m = ServicesManifest.from_bytes(res.manifest)
    # issue 13: the services only, as COCONUT; the requester entry is opt-in
    assert list(m.services) == [VTPM_SERVICE_GUID] and m.requester is None
    single = c.attest("l2.1", 0, nonce, service=VTPM_SERVICE_GUID)
    tpm = fake.machine.service.vtpm  # type: ignore[attr-defined]
    assert single.code == 0 and single.manifest == tpm.ek_public_area()  # its own manifest
    assert single.report == b"FAKE" + bind_report_data(nonce, tpm.ek_public_area())
    assert c.attest("l2.1", 0, nonce, service=uuid.uuid4()).code == ResultCode.UNSUPPORTED_PROTOCOL
    assert c.attest("l2.1", 0, nonce[:32]).code == ResultCode.INVALID_PARAMETER


def test_attest_requester_entry_is_opt_in() -> None:
    """RULE_REQUESTER_ENTRY_OPT_IN: with ``attest_requester_entry`` the services manifest
    also names the requesting layer; single-service attestation is unchanged."""
    p = Partition(
        {"memory": "64MiB", "vcpus": 2, "workload_layers": 2, "attest_requester_entry": True},
        FakeBackend(),
    )
    c = p.machine.client  # type: ignore[attr-defined]
    nonce = bytes(range(64))
    m = ServicesManifest.from_bytes(c.attest("l2.2", 0, nonce).manifest)
    assert list(m.services) == [VTPM_SERVICE_GUID, REQUESTER_GUID]
    assert m.requester == Requester("l2.2", 2)
    single = c.attest("l2.1", 0, nonce, service=VTPM_SERVICE_GUID)
    assert single.manifest == p.machine.service.vtpm.ek_public_area()  # type: ignore[attr-defined]


def test_services_manifest_round_trip_and_damage() -> None:
    m = ServicesManifest(
        {VTPM_SERVICE_GUID: b"ek", REQUESTER_GUID: Requester("l2.1", 2).to_bytes()}
    )
    raw = m.to_bytes()
    assert ServicesManifest.from_bytes(raw).services == m.services
    with pytest.raises(EvidenceError):
        ServicesManifest.from_bytes(raw[:-1])
    with pytest.raises(EvidenceError):
        ServicesManifest.from_bytes(b"\0" * 24)
    with pytest.raises(EvidenceError):
        ServicesManifest.from_bytes(raw[:10])


def test_vtpm_codec_round_trip() -> None:
    raw = vtpm.encode_request(b"\x80\x01cmd")
    assert vtpm.decode_request(raw.ljust(4096, b"\0")) == (8, 0, b"\x80\x01cmd")
    assert vtpm.decode_request(b"\0\0") is None
    assert vtpm.decode_response(vtpm.encode_response(b"ok") + b"junk") == b"ok"
    with pytest.raises(ValueError):
        vtpm.encode_request(bytes(5000))
