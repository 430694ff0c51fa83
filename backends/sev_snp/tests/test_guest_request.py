"""SNP guest messages and attestation (sev-snp.md §6): AES-256-GCM with VMPCKn, sequence
numbers, the report VMPL rule, the VMPCK of the caller's VMPL, evidence that verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cocopart_sev_snp import guest_request as gr
from cocopart_sev_snp import secrets
from cocopart_sev_snp.report import RSP_STATUS_INVALID_KEY, ReportRequest, SnpReport
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from snp_helpers import guest, machine

from cocopart.attest.evidence import Evidence
from cocopart.model import MIB
from cocopart.ops import Attest, Status
from cocopart.protocol.manifest import ServicesManifest, bind_report_data

KEYS = secrets.derive_vmpcks("test")
NONCE = bytes(range(64))


def test_message_is_aes_256_gcm_with_the_header_as_aad() -> None:
    page = gr.seal(KEYS[2], 5, gr.MsgType.REPORT_REQ, 2, b"hello")
    assert len(page) == 4096
    seqno, algo, hver, hsz, mtype, mver, msz, vmpck = gr.header(page)
    assert (seqno, algo, hver, hsz, mtype, mver, msz, vmpck) == (5, 1, 1, 0x60, 5, 1, 5, 2)
    msg = gr.unseal(KEYS[2], page)
    assert msg is not None and msg.payload == b"hello"
    assert gr.unseal(KEYS[1], page) is None  # another VMPCK
    tampered = bytearray(page)
    tampered[0x34] = 3  # msg_type is authenticated (AAD)
    assert gr.unseal(KEYS[2], bytes(tampered)) is None


def _firmware() -> gr.GuestRequestFirmware:
    return gr.GuestRequestFirmware(KEYS, lambda data, vmpl: bytes([vmpl]) + data)


def test_seqno_rules_response_is_request_plus_one_and_the_guest_adds_two() -> None:
    fw = _firmware()
    g = gr.GuestMessenger(bytearray(secrets.build(KEYS)))
    for expect in (1, 3, 5):
        seqno, req = g.prepare(2, gr.MsgType.REPORT_REQ, ReportRequest(vmpl=2).encode())
        assert seqno == expect
        status, rsp = fw.handle(req)
        assert status == 0 and gr.header(rsp)[0] == seqno + 1
        g.complete(2, seqno, gr.MsgType.REPORT_REQ, rsp)
        assert secrets.msg_seqno(g.secrets_page, 2) == expect + 1


def test_a_replayed_request_is_refused_by_the_firmware() -> None:
    fw = _firmware()
    g = gr.GuestMessenger(bytearray(secrets.build(KEYS)))
    _seqno, req = g.prepare(1, gr.MsgType.REPORT_REQ, ReportRequest(vmpl=1).encode())
    assert fw.handle(req)[0] == 0
    assert fw.handle(req)[0] == gr.FW_STATUS_BAD_MESSAGE == 0x16


def test_a_bad_response_wipes_the_key() -> None:
    g = gr.GuestMessenger(bytearray(secrets.build(KEYS)))
    seqno, _req = g.prepare(3, gr.MsgType.REPORT_REQ, b"x")
    wrong = gr.seal(KEYS[3], seqno + 3, gr.MsgType.REPORT_RSP, 3, b"y")
    with pytest.raises(gr.GuestMessageError):
        g.complete(3, seqno, gr.MsgType.REPORT_REQ, wrong)
    assert not any(g.key(3))
    with pytest.raises(gr.GuestMessageError, match="zero"):
        g.prepare(3, gr.MsgType.REPORT_REQ, b"x")


def test_sequence_numbers_at_the_limit_are_refused() -> None:
    page = bytearray(secrets.build(KEYS))
    secrets.set_msg_seqno(page, 0, gr.SEQNO_LIMIT - 1)
    with pytest.raises(gr.GuestMessageError, match="exhausted"):
        gr.GuestMessenger(page).prepare(0, gr.MsgType.REPORT_REQ, b"")


def test_report_vmpl_floor_a_vmpl2_guest_cannot_get_a_vmpl1_report() -> None:
    m = machine(guest(16 * MIB))  # l2.1 at VMPL2
    out = m.guest_report("l2.1", NONCE, vmpl=1)
    assert out.report is None and (out.mnemonic, out.code) == ("MSG_REPORT_RSP", 0x16)
    ok = m.guest_report("l2.1", NONCE, vmpl=3)  # a less privileged VMPL is fine
    assert ok.report is not None and SnpReport.parse(ok.report).vmpl == 3


def test_the_caller_uses_the_vmpck_of_its_own_vmpl_lower_keys_are_zeroed() -> None:
    m = machine(guest(16 * MIB))
    copy = bytes(m.messengers["l2.1"].secrets_page)
    assert not any(secrets.vmpck(copy, 0)) and not any(secrets.vmpck(copy, 1))
    assert secrets.vmpck(copy, 2) == secrets.vmpck(m.secrets_page, 2)
    out = m.guest_report("l2.1", NONCE, vmpck=1)
    assert out.report is None and "VMPCK1 is zero" in out.message
    assert m.trace.count("SNP_GUEST_REQUEST") == 0  # refused before reaching the AMD-SP


def test_vlek_key_selection_without_a_vlek_is_invalid_key() -> None:
    fw = _firmware()
    g = gr.GuestMessenger(bytearray(secrets.build(KEYS)))
    seqno, req = g.prepare(2, gr.MsgType.REPORT_REQ, ReportRequest(vmpl=2, flags=2).encode())
    status, rsp = fw.handle(req)
    assert status == 0  # the exchange worked; the report request did not
    payload = g.complete(2, seqno, gr.MsgType.REPORT_REQ, rsp)
    assert int.from_bytes(payload[:4], "little") == RSP_STATUS_INVALID_KEY == 0x27


def test_cert_table_round_trip() -> None:
    from cocopart_sev_snp import cert_table

    table = cert_table.build([("VCEK", b"v" * 5), ("ASK", b"a" * 3), ("ARK", b"r")])
    assert [(e.name, e.data) for e in cert_table.parse(table)] == [
        ("VCEK", b"v" * 5),
        ("ASK", b"a" * 3),
        ("ARK", b"r"),
    ]


def _verify(ev: dict[str, object], p_seed: str = "cocopart") -> object:
    from cocopart_sev_snp.simroots import SimulatedAmdRoots

    roots = SimulatedAmdRoots.load(p_seed, "Milan")
    return SnpEvidenceVerifier().verify(
        Evidence.model_validate(ev), roots.trust_store(), datetime.now(UTC)
    )


def test_hardware_attestation_report_carries_the_layers_own_vmpl_and_verifies() -> None:
    p = guest(16 * MIB, workload_layers=2)
    r = p.run(Attest(layer="l2.2", report_data=NONCE, source="hardware"))
    assert r.ok and r.data["vmpl"] == 2
    ev = r.data["evidence"]
    report = SnpReport.parse(Evidence.model_validate(ev).raw)
    assert report.vmpl == 2 and report.report_data == NONCE
    assert p.trace.count("SNP_GUEST_REQUEST", issuer="firmware", target="VMPCK2") == 1
    assert p.trace.count("VMGEXIT", issuer="l2.2", target="GUEST_REQUEST") == 1
    res = _verify(ev)
    assert all(c.ok for c in res.checks), [c for c in res.checks if not c.ok]  # type: ignore[attr-defined]
    assert res.claims.origin.layer == "l2.2"  # type: ignore[attr-defined]


def test_service_attestation_binds_nonce_and_manifest_in_a_vmpl0_report() -> None:
    p = guest(16 * MIB)
    r = p.run(Attest(report_data=NONCE, source="service"))
    assert r.ok
    ev = Evidence.model_validate(r.data["evidence"])
    report = SnpReport.parse(ev.raw)
    assert report.vmpl == 0 and ev.manifest is not None and ev.nonce == NONCE
    assert report.report_data == bind_report_data(NONCE, ev.manifest)
    # issue 13: the services manifest as COCONUT emits it, without a requester entry
    assert ServicesManifest.from_bytes(ev.manifest).requester is None
    assert len(ev.certificates) == 3
    res = _verify(r.data["evidence"])
    assert all(c.ok for c in res.checks), [c for c in res.checks if not c.ok]  # type: ignore[attr-defined]
    assert p.trace.count("SNP_GUEST_REQUEST", target="VMPCK0") == 1


def test_single_service_attestation_of_an_unknown_service_is_not_supported() -> None:
    p = guest(16 * MIB)
    assert p.run(Attest(source="service", service="vtpm", report_data=None)).ok
    assert (
        p.run(Attest(source="service", service="nope", report_data=None)).status
        is Status.NOT_SUPPORTED
    )
