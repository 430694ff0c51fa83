"""Measurement: vTPM PCR extends mirrored into RTMRs with the UEFI CC mapping, TDG.MR.RTMR.EXTEND
from L1, and the RTMRs carried by the next report (tdx.md §1.1, §7)."""

from __future__ import annotations

import hashlib

import pytest
from cocopart_tdx.l1 import pcr_to_rtmr
from cocopart_tdx.measure import rtmr_extend
from cocopart_tdx.quote import TdQuote
from cocopart_tdx.status import Operand, TdxStatus, with_details

from cocopart.attest.evidence import Evidence
from cocopart.ops import Attest, ExtendMeasurement

from .tdx_helpers import MIB, guest, machine

DIGEST = hashlib.sha384(b"event").digest()


@pytest.mark.parametrize(
    "pcr,rtmr", [(0, 3), (1, 0), (7, 0), (2, 1), (6, 1), (8, 2), (15, 2), (16, 3), (23, 3)]
)
def test_pcr_to_rtmr_follows_the_uefi_cc_mapping(pcr: int, rtmr: int) -> None:
    assert pcr_to_rtmr(pcr) == rtmr


def test_l2_pcr_extend_goes_through_the_vtpm_and_lands_in_the_rtmr() -> None:
    p = guest(16 * MIB)
    r = p.run(ExtendMeasurement(register=9, digest=DIGEST))
    assert r.ok and r.data["rtmr"] == 2
    assert machine(p).rtmrs()[2] == rtmr_extend(bytes(48), DIGEST)
    assert p.trace.count("TDG.MR.RTMR.EXTEND", issuer="l1", target="RTMR2") == 1
    assert p.trace.count("HANDLE", target="VTPM.CMD") == 1


def test_rtmrs_appear_in_the_next_quote() -> None:
    p = guest(16 * MIB)
    p.run(ExtendMeasurement(register=1, digest=DIGEST))
    ev = Evidence.model_validate(p.run(Attest(report_data=None)).data["evidence"])
    body = TdQuote.from_bytes(ev.raw).body
    assert body.rtmrs[0] == rtmr_extend(bytes(48), DIGEST) and body.rtmrs[1] == bytes(48)
    assert body.mrtd == machine(p).module.config.mrtd


def test_l1_extends_an_rtmr_directly_and_index_above_3_is_operand_invalid() -> None:
    p = guest(16 * MIB)
    assert p.run(ExtendMeasurement(layer="l1", register=3, digest=DIGEST)).ok
    r = p.run(ExtendMeasurement(layer="l1", register=4, digest=DIGEST))
    assert r.error is not None and r.error.code == with_details(
        TdxStatus.OPERAND_INVALID, Operand.RDX
    )


def test_without_a_vtpm_an_l2_cannot_extend() -> None:
    r = guest(16 * MIB, services=[]).run(ExtendMeasurement(register=8, digest=DIGEST))
    assert r.status.value == "not-supported" and "vTPM" in (r.reason or "")


def test_rtmr_extend_operand_rules() -> None:
    m = machine(guest(16 * MIB)).module
    gpa = machine(guest(16 * MIB)).region.rtmr_data
    assert m.rtmr_extend(gpa + 8, 0).status == with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    assert m.rtmr_extend(0x1000, 0).status == with_details(
        TdxStatus.OPERAND_INVALID, Operand.RCX
    )  # not accepted


def test_l1_attests_itself_with_the_hardware_or_its_service() -> None:
    p = guest(16 * MIB)
    hw = Evidence.model_validate(
        p.run(Attest(layer="l1", source="hardware", report_data=b"\x07" * 64)).data["evidence"]
    )
    assert TdQuote.from_bytes(hw.raw).body.report_data == b"\x07" * 64 and hw.manifest is None
    svc = Evidence.model_validate(p.run(Attest(layer="l1", report_data=None)).data["evidence"])
    assert svc.manifest and svc.nonce == bytes(64)
    assert (
        TdQuote.from_bytes(svc.raw).body.report_data
        == hashlib.sha512(svc.nonce + svc.manifest).digest()
    )


def test_planning_an_extend_changes_neither_the_vtpm_nor_the_rtmrs() -> None:
    p = guest(16 * MIB)
    plan = p.plan(ExtendMeasurement(register=8, digest=DIGEST))
    assert any(e.mnemonic == "TDG.MR.RTMR.EXTEND" for e in plan.events)
    assert machine(p).rtmrs()[2] == bytes(48)
    tpm = machine(p).service.vtpm  # type: ignore[attr-defined]
    assert tpm.pcrs[0x000C][8] == bytes(48)  # the SHA-384 bank of PCR 8 is untouched
