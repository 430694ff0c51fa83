"""SEV-SNP ATTESTATION_REPORT and MSG_REPORT_REQ/RSP codecs (cocopart_sev_snp.report).

Real reports come from the shared vectors (never copied here); their expected field values
are read from the vectors' manifest.json, which was produced by an independent parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp.report import (
    KEY_SEL_VLEK,
    REPORT_REQ_SIZE,
    REPORT_SIZE,
    RSP_STATUS_INVALID_PARAM,
    ReportRequest,
    ReportResponse,
    SnpReport,
    TcbVersion,
    decode_policy,
    decode_signer_info,
    product_from_cpuid,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cocopart.errors import EvidenceError

REPORT_NAMES = [
    "gosevguest-milan-v2",
    "virtee-milan-v2",
    "trustee-milan-v2",
    "trustee-aws-milan-vlek-v3",
    "trustee-azure-milan-v2",
    "trustee-azure-genoa-v3",
    "teekit-gcp-milan-v5",
    "teekit-gcp-milan-v5-vmpl1-reportdata",
    "teekit-gcp-milan-v5-vmpl1-x25519",
    "routex-turin-v5",
    "routex-genoa-v5",
    "routex-genoa-v3",
    "routex-milan-v3",
]


def snp_manifest_entries(vectors: Path) -> list[dict[str, Any]]:
    data = json.loads((vectors / "manifest.json").read_text())
    return [v for f in data["files"] for v in f["verification"] if v.get("check_type") == "snp"]


@pytest.mark.parametrize("name", REPORT_NAMES)
def test_real_report_round_trips_bit_exact(vectors: Path, name: str) -> None:
    raw = (vectors / "snp" / f"{name}.report.bin").read_bytes()
    report = SnpReport.parse(raw)
    assert report.build() == raw
    again = SnpReport(**report.model_dump())  # through validation, too
    assert again == report
    assert SnpReport.parse(again.build()) == again


def test_real_report_fields_match_the_manifest(vectors: Path) -> None:
    entries = snp_manifest_entries(vectors)
    assert len(entries) >= 13
    for e in entries:
        r = SnpReport.parse((vectors / e["report"]).read_bytes())
        assert r.version == e["version"], e["name"]
        assert r.vmpl == e["vmpl"]
        assert r.policy == int(e["policy"], 16)
        assert r.measurement.hex() == e["measurement"]
        assert r.report_data.hex() == e["report_data"]
        assert r.host_data.hex() == e["host_data"]
        assert r.chip_id[:8].hex() == e["chip_id_prefix"]
        assert r.signer()["signing_key_name"] == e["signing_key"]
        assert r.reported_tcb == int(e["reported_tcb"]["raw"], 16)
        tcb = r.tcb("reported").components()
        want = e["reported_tcb"]
        assert (tcb["bootloader"], tcb["tee"], tcb["snp"], tcb["microcode"]) == (
            want["bl"],
            want["tee"],
            want["snp"],
            want["ucode"],
        )
        if "fmc" in want:
            assert tcb["fmc"] == want["fmc"]
        assert r.to_dict()["current_version"] == e["current_fw"]
        assert r.to_dict()["committed_version"] == e["committed_fw"]
        if r.version >= 3:
            assert [r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step] == e["cpuid_fam_mod_step"]
        else:
            assert r.cpuid_fam_id is None and r.product is None


def test_turin_report_uses_the_turin_tcb_layout(vectors: Path) -> None:
    r = SnpReport.parse((vectors / "snp" / "routex-turin-v5.report.bin").read_bytes())
    assert r.product == "Turin"
    assert r.tcb().components() == {"fmc": 0, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 71}
    # The same raw value read with the Milan/Genoa layout gives other numbers.
    assert r.tcb(product="Milan").components()["bootloader"] == 0
    assert not any(r.chip_id[8:])  # Turin: 8-byte chip id, rest zero (sev-snp.md §6.3)


def test_version_5_has_mitigation_vectors(vectors: Path) -> None:
    r = SnpReport.parse((vectors / "snp" / "teekit-gcp-milan-v5.report.bin").read_bytes())
    assert r.launch_mit_vector == 0xB and r.current_mit_vector == 0xB
    r3 = SnpReport.parse((vectors / "snp" / "routex-milan-v3.report.bin").read_bytes())
    assert r3.launch_mit_vector is None and r3.current_mit_vector is None


def test_azure_hcl_report_carries_the_report_at_0x20(vectors: Path) -> None:
    for name in ("trustee-azure-milan-v2", "trustee-azure-genoa-v3"):
        hcl = (vectors / "snp" / f"{name}.hcl-report.bin").read_bytes()
        raw = (vectors / "snp" / f"{name}.report.bin").read_bytes()
        assert hcl[:4] == b"HCLA" and hcl[0x20 : 0x20 + REPORT_SIZE] == raw


def test_to_dict_is_json_and_decodes_everything(vectors: Path) -> None:
    r = SnpReport.parse((vectors / "snp" / "gosevguest-milan-v2.report.bin").read_bytes())
    d = json.loads(json.dumps(r.to_dict(product="Milan")))
    assert d["policy_decoded"]["debug"] is True  # 0xb0000: bit 19
    assert d["policy_decoded"]["smt"] is True and d["policy_decoded"]["mbz_clear"] is True
    assert d["signer_info_decoded"]["signing_key_name"] == "VCEK"
    assert d["reported_tcb_decoded"]["microcode"] == 68
    assert d["measurement"] == r.measurement.hex()
    assert d["product"] == "Milan"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, REPORT_SIZE - 1, REPORT_SIZE + 1, 4096])
def test_wrong_size_is_an_evidence_error(size: int) -> None:
    with pytest.raises(EvidenceError, match="0x4a0"):
        SnpReport.parse(b"\x02" + bytes(max(0, size - 1)))


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unknown_version_is_an_evidence_error(version: int) -> None:
    raw = version.to_bytes(4, "little") + bytes(REPORT_SIZE - 4)
    with pytest.raises(EvidenceError, match=f"version {version} is not supported"):
        SnpReport.parse(raw)


def test_fields_that_do_not_exist_in_a_version_are_rejected() -> None:
    with pytest.raises(ValidationError, match="cpuid"):
        SnpReport(version=2, cpuid_fam_id=0x19)
    with pytest.raises(ValidationError, match="mitigation"):
        SnpReport(version=3, launch_mit_vector=1)
    with pytest.raises(ValidationError, match="measurement must be 48 bytes"):
        SnpReport(version=3, measurement=b"short")
    with pytest.raises(EvidenceError, match="out of range"):
        SnpReport(version=3, vmpl=1 << 40).build()


# --- built reports --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3, 5])
def test_built_report_round_trips(version: int) -> None:
    extra: dict[str, Any] = {}
    if version >= 3:
        extra.update(cpuid_fam_id=0x1A, cpuid_mod_id=0x02, cpuid_step=1)
    if version >= 5:
        extra.update(launch_mit_vector=7, current_mit_vector=9)
    r = SnpReport(
        version=version,
        vmpl=2,
        policy=0xB0000,
        report_data=b"\x11" * 64,
        measurement=b"\x22" * 48,
        chip_id=b"\x33" * 8 + bytes(56),
        signature_r=(1 << 383) + 5,
        signature_s=12345,
        **extra,
    )
    raw = r.build()
    assert len(raw) == REPORT_SIZE
    assert SnpReport.parse(raw) == r
    assert raw[0x2A0 : 0x2A0 + 48] == r.signature_r.to_bytes(48, "little")  # R little-endian
    assert raw[0x2A0 + 48 : 0x2E8] == bytes(24)  # rest of the 72-byte field
    assert raw[0x2E8 : 0x2E8 + 2] == (12345).to_bytes(2, "little")
    assert r.signed_bytes() == raw[:0x2A0]
    assert r.debug


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=REPORT_SIZE - 4, max_size=REPORT_SIZE - 4),
    version=st.sampled_from([2, 3, 5]),
)
def test_any_report_bytes_round_trip(body: bytes, version: int) -> None:
    raw = version.to_bytes(4, "little") + body
    r = SnpReport.parse(raw)
    assert r.build() == raw
    assert SnpReport.parse(r.build()) == r


@pytest.mark.parametrize("product", ["Milan", "Genoa", "Turin"])
def test_tcb_version_encode_decode(product: Any) -> None:
    fmc = 3 if product == "Turin" else None
    raw = TcbVersion.encode(bootloader=4, tee=1, snp=24, microcode=219, fmc=fmc, product=product)
    t = TcbVersion.decode(raw, product)
    assert (t.bootloader, t.tee, t.snp, t.microcode, t.fmc) == (4, 1, 24, 219, fmc)
    b = raw.to_bytes(8, "little")
    if product == "Turin":  # byte0 FMC, 1 BL, 2 TEE, 3 SNP, 7 ucode
        assert b == bytes([3, 4, 1, 24, 0, 0, 0, 219])
    else:  # byte0 BL, 1 TEE, 6 SNP, 7 ucode
        assert b == bytes([4, 1, 0, 0, 0, 0, 24, 219])
    with pytest.raises(EvidenceError, match="FMC"):
        TcbVersion.encode(bootloader=0, tee=0, snp=0, microcode=0, fmc=1, product="Milan")


def test_product_from_cpuid() -> None:
    assert product_from_cpuid(0x19, 0x01) == "Milan"
    assert product_from_cpuid(0x19, 0x11) == "Genoa"
    assert product_from_cpuid(0x1A, 0x02) == "Turin"
    assert product_from_cpuid(0x17, 0x31) is None


def test_policy_and_signer_decoding() -> None:
    p = decode_policy(0x3001F | 1 << 19 | 1 << 25)
    assert (p["abi_minor"], p["abi_major"]) == (0x1F, 0)
    assert p["debug"] and p["smt"] and p["reserved_must_be_one"] and p["page_swap_disable"]
    assert not p["migrate_ma"] and p["mbz_clear"]
    assert not decode_policy(1 << 40)["mbz_clear"]
    s = decode_signer_info(0b00110)
    assert s["mask_chip_key"] and not s["author_key_en"] and s["signing_key_name"] == "VLEK"
    assert decode_signer_info(7 << 2)["signing_key_name"] == "none"


# --- MSG_REPORT_REQ / MSG_REPORT_RSP ----------------------------------------------------------


def test_report_request_layout() -> None:
    req = ReportRequest(user_data=b"nonce", vmpl=2, flags=KEY_SEL_VLEK)
    raw = req.encode()
    assert len(raw) == REPORT_REQ_SIZE == 96
    assert raw[:5] == b"nonce" and raw[5:64] == bytes(59)
    assert raw[0x40:0x44] == (2).to_bytes(4, "little")
    assert raw[0x44:0x48] == (2).to_bytes(4, "little")
    back = ReportRequest.decode(raw)
    assert back.key_sel == KEY_SEL_VLEK and back.vmpl == 2
    assert back.user_data == b"nonce".ljust(64, b"\0")
    assert ReportRequest.decode(back.encode()) == back
    with pytest.raises(EvidenceError, match="96 bytes"):
        ReportRequest.decode(raw[:-1])
    with pytest.raises(EvidenceError, match="at most 64"):
        ReportRequest(user_data=bytes(65)).encode()


def test_report_response_layout(vectors: Path) -> None:
    report = (vectors / "snp" / "routex-milan-v3.report.bin").read_bytes()
    rsp = ReportResponse(report=report)
    raw = rsp.encode()
    assert raw[:4] == bytes(4) and raw[4:8] == (0x4A0).to_bytes(4, "little")
    assert raw[0x20:] == report
    padded = raw + bytes(4096 - len(raw))  # the rest of the message page
    back = ReportResponse.decode(padded)
    assert back == rsp and back.parsed_report() == SnpReport.parse(report)
    err = ReportResponse.decode(ReportResponse(status=RSP_STATUS_INVALID_PARAM).encode())
    assert err.status == 0x16 and err.report == b""
    with pytest.raises(EvidenceError, match="status 0x16"):
        err.parsed_report()
    with pytest.raises(EvidenceError, match="report_size"):
        ReportResponse.decode(raw[:0x100])
