"""TDREPORT_STRUCT: layout, round trips, hashes, attributes, and the TDREPORT evidence format."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cocopart_tdx.quote import TdQuote, TdQuoteBody
from cocopart_tdx.tdreport import (
    TDREPORT_SIZE,
    TdReport,
    decode_td_attributes,
    encode_td_attributes,
    tee_tcb_valid,
)
from cocopart_tdx.verify import TdxEvidenceVerifier

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verifier
from cocopart.errors import EvidenceError

NOW = datetime(2025, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def azure_report(vectors: Path) -> bytes:
    return (vectors / "tdx/tdreport/trustee-azure.tdreport.bin").read_bytes()


@pytest.fixture(scope="module")
def shifted_report(vectors: Path) -> bytes:
    return (vectors / "tdx/tdreport/gotdx-report-SHIFTED.dat").read_bytes()


def test_real_tdreport_round_trips_and_hashes_match(azure_report: bytes) -> None:
    report = TdReport.from_bytes(azure_report)
    assert report.to_bytes() == azure_report
    assert report.mac_struct.report_type.type == 0x81
    assert report.hash_problems() == []
    # vectors README "TDREPORTs": SHA-384 over 239 bytes at 0x100 and 512 bytes at 0x200
    assert hashlib.sha384(azure_report[0x100 : 0x100 + 239]).digest() == azure_report[32:80]
    assert hashlib.sha384(azure_report[0x200:0x400]).digest() == azure_report[80:128]
    assert report.td_info.mrtd.hex().startswith("024a32b070383331181619fa")
    assert report.report_data.hex().startswith("9734504f161d104c74e3165c")


def test_real_tdreport_matches_the_quote_made_from_it(vectors: Path, azure_report: bytes) -> None:
    """README: the Azure quote's body was built from this TDREPORT (same TD)."""
    report = TdReport.from_bytes(azure_report)
    quote = TdQuote.from_bytes((vectors / "tdx/quotes/trustee-azure-v4.quote.bin").read_bytes())
    assert TdQuoteBody.from_tdreport(report) == quote.body


def test_valid_bitmap_reading_matches_the_real_report(azure_report: bytes) -> None:
    report = TdReport.from_bytes(azure_report)
    assert report.tee_tcb_info.valid == tee_tcb_valid(
        mrsignerseam=any(report.tee_tcb_info.mrsignerseam),
        seam_attributes=any(report.tee_tcb_info.attributes),
        tee_tcb_svn2=any(report.tee_tcb_info.tee_tcb_svn2),
    )


def test_shifted_tdreport_is_rejected_with_the_reason(shifted_report: bytes) -> None:
    assert len(shifted_report) == TDREPORT_SIZE
    with pytest.raises(EvidenceError, match=r"REPORTTYPE.TYPE is 0x0f, not 0x81"):
        TdReport.from_bytes(shifted_report)
    lenient = TdReport.from_bytes(shifted_report, strict=False)
    assert len(lenient.hash_problems()) == 2
    # README: prepending the 48 missing bytes realigns TEE_INFO_HASH with TDINFO
    realigned = bytes(48) + shifted_report[:-48]
    assert hashlib.sha384(realigned[0x200:0x400]).digest() == realigned[80:128]


def test_shifted_tdreport_evidence_is_rejected_with_named_checks(shifted_report: bytes) -> None:
    result = TdxEvidenceVerifier().verify(
        Evidence(vendor="tdx", format="tdreport", raw=shifted_report), TrustStore(), NOW
    )
    failed = {c.name: c.detail for c in result.checks if not c.ok}
    assert "0x81" in failed["tdx.tdreport.type"]
    assert "TEE_TCB_INFO_HASH" in failed["tdx.tdreport.tee_tcb_info_hash"]
    assert "TEE_INFO_HASH" in failed["tdx.tdreport.tee_info_hash"]
    assert result.claims is None


def test_real_tdreport_evidence_has_claims_but_is_never_accepted(azure_report: bytes) -> None:
    ev = Evidence(vendor="tdx", format="tdreport", raw=azure_report)
    result = TdxEvidenceVerifier().verify(ev, TrustStore(), NOW)
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == ["tdx.tdreport.mac"]
    assert "off-platform" in failed[0].detail
    assert result.claims is not None
    assert result.claims.extra["unauthenticated"] is True
    assert result.claims.measurements["mrtd"].hex().startswith("024a32b0")
    assert result.claims.origin.layer == "l1"
    verdict = Verifier(Policy()).verify(ev, NOW)
    assert not verdict.ok and "tdx.tdreport.mac" in verdict.summary()


def test_wrong_size_tdreport_is_a_parse_failure() -> None:
    result = TdxEvidenceVerifier().verify(
        Evidence(vendor="tdx", format="tdreport", raw=bytes(1000)), TrustStore(), NOW
    )
    assert [(c.name, c.ok) for c in result.checks] == [("tdx.tdreport.parse", False)]
    assert "1024 bytes" in result.checks[0].detail


def test_build_computes_both_hashes_and_round_trips() -> None:
    report = TdReport.build(
        report_data=b"\x07" * 64,
        mrtd=b"\x01" * 48,
        rtmrs=(b"\x02" * 48, b"\x03" * 48, b"\x04" * 48, b"\x05" * 48),
        tee_tcb_svn=bytes([5, 1, 7]) + bytes(13),
        mac=b"\x09" * 32,
    )
    raw = report.to_bytes()
    assert len(raw) == TDREPORT_SIZE
    assert TdReport.from_bytes(raw) == report
    assert report.hash_problems() == []
    assert raw[128:192] == b"\x07" * 64 and raw[224:256] == b"\x09" * 32
    assert raw[528:576] == b"\x01" * 48  # MRTD @528 (tdx.md §7.1)
    assert raw[720:768] == b"\x02" * 48 and raw[864:912] == b"\x05" * 48  # RTMR0 / RTMR3
    tampered = bytearray(raw)
    tampered[600] ^= 1  # inside MRCONFIGID
    assert TdReport.from_bytes(bytes(tampered)).hash_problems() == [
        "TEE_INFO_HASH is not SHA-384 of the 512-byte TDINFO at 0x200"
    ]


@pytest.mark.parametrize(
    ("raw_hex", "flags"),
    [
        ("0000001000000000", {"sept_ve_disable"}),  # most quotes in the vectors
        ("0100001000000000", {"debug", "sept_ve_disable"}),  # trustee-spr-debug
        ("0000004000000000", {"pks"}),  # gotdx-spr
        ("0000001000000080", {"sept_ve_disable", "perfmon"}),  # teekit-moemahhouk (bit 63)
        ("0000000000000000", set()),  # Azure
    ],
)
def test_td_attributes_decode(raw_hex: str, flags: set[str]) -> None:
    decoded = decode_td_attributes(bytes.fromhex(raw_hex))
    assert {k for k, v in decoded.items() if v is True} == flags
    assert decoded["unknown_bits"] == []
    assert encode_td_attributes(**dict.fromkeys(flags, True)) == bytes.fromhex(raw_hex)


def test_unknown_attribute_bits_are_reported() -> None:
    assert decode_td_attributes((1 << 1 | 1 << 40).to_bytes(8, "little"))["unknown_bits"] == [1, 40]
    with pytest.raises(ValueError, match="unknown TD attribute"):
        encode_td_attributes(nonsense=True)
