"""SnpEvidenceVerifier on the real SEV-SNP vectors: chains, tampering, trust, policy.

Validity dates are checked against the caller's ``now``; the real certificates here are
valid together on 2025-12-08 (the AWS VLEK expires 2025-12-10, the GCP VCEKs start
2025-12-05), so that is the ``now`` the tests pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp import certs
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import (
    EvidenceVerifier,
    TrustStore,
    VendorResult,
    Verifier,
    load_evidence_verifier,
)

NOW = datetime(2025, 12, 8, tzinfo=UTC)
VERIFIER = SnpEvidenceVerifier()

# manifest boolean -> the check that must agree with it
MANIFEST_CHECKS = {
    "report_sig_ok": "snp.signature",
    "vcek_signed_by_ask": "snp.chain.vcek_ask",
    "ask_signed_by_ark": "snp.chain.ask_ark",
    "ark_self_signed": "snp.chain.ark_self",
    "vcek_tcb_matches_reported_tcb": "snp.tcb",
}


def snp_entries(vectors: Path) -> list[dict[str, Any]]:
    data = json.loads((vectors / "manifest.json").read_text())
    return [v for f in data["files"] for v in f["verification"] if v.get("check_type") == "snp"]


def evidence_for(vectors: Path, report: str, *cert_files: str, **kw: Any) -> Evidence:
    blobs = [(vectors / c).read_bytes() for c in dict.fromkeys(cert_files)]
    return Evidence(
        vendor="sev-snp",
        format=kw.pop("format", "snp-report"),
        raw=(vectors / report).read_bytes(),
        certificates=blobs,
        **kw,
    )


def checks(result: VendorResult) -> dict[str, bool]:
    return {c.name: c.ok for c in result.checks}


def failed(result: VendorResult) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


def verify(ev: Evidence, trust: TrustStore | None = None, now: datetime = NOW) -> VendorResult:
    return VERIFIER.verify(ev, trust or TrustStore(), now)


def test_plugin_contract() -> None:
    assert isinstance(VERIFIER, EvidenceVerifier)
    assert VERIFIER.vendor == "sev-snp"
    assert isinstance(load_evidence_verifier("sev-snp"), SnpEvidenceVerifier)


def test_every_vector_row_gives_the_manifest_outcome(vectors: Path) -> None:
    entries = snp_entries(vectors)
    assert len(entries) == 15
    for e in entries:
        result = verify(evidence_for(vectors, e["report"], e["vcek"], e["chain"]))
        got = checks(result)
        for key, check in MANIFEST_CHECKS.items():
            assert got[check] == e[key], (e["name"], check, result.checks)
        assert got["snp.chain.ark_pinned"] == bool(e["ark_matches_amd_root"])
        want_chip = e["chip_id_matches_vcek_hwID"]
        assert got["snp.chip_id"] == (want_chip is True or str(want_chip).startswith("n/a"))
        assert all(got.values()) == e["expected_valid"], (e["name"], failed(result))
        assert result.claims is not None


def test_valid_vectors_give_the_right_claims(vectors: Path) -> None:
    for e in snp_entries(vectors):
        if not e["expected_valid"]:
            continue
        claims = verify(evidence_for(vectors, e["report"], e["vcek"], e["chain"])).claims
        assert claims is not None
        assert claims.version == e["version"]
        assert claims.measurements == {"measurement": bytes.fromhex(e["measurement"])}
        assert claims.report_data.hex() == e["report_data"]
        assert claims.platform_id.startswith(e["chip_id_prefix"])
        assert claims.signer == e["signing_key"] and not claims.simulated
        assert claims.origin.vendor_level == f"VMPL{e['vmpl']}"
        assert claims.origin.layer == ("l1" if e["vmpl"] == 0 else f"l2.{e['vmpl']}")
        assert not claims.origin.via_privileged_layer
        assert claims.debug == bool(int(e["policy"], 16) >> 19 & 1)
        assert claims.policy["raw"] == int(e["policy"], 16)
        want = e["reported_tcb"]
        assert {k: claims.tcb[k] for k in ("bootloader", "tee", "snp", "microcode")} == {
            "bootloader": want["bl"],
            "tee": want["tee"],
            "snp": want["snp"],
            "microcode": want["ucode"],
        }
        assert ("fmc" in claims.tcb) == (e["product"] == "Turin")
        json.loads(claims.model_dump_json())  # serialisable


def test_tampered_vceks_are_rejected_with_named_reasons(vectors: Path) -> None:
    for name in ("legacy", "new"):
        result = verify(
            evidence_for(
                vectors,
                "snp/trustee-milan-v2.report.bin",
                f"snp/trustee-milan.vcek-tampered-{name}.der",
                "snp/amd-roots/ask_ark_milan.pem",
            )
        )
        assert {"snp.signature", "snp.chain.vcek_ask", "snp.chip_id", "snp.tcb"} <= failed(result)
        got = checks(result)
        assert got["snp.chain.ask_ark"] and got["snp.chain.ark_self"]
        assert got["snp.chain.ark_pinned"]
        detail = {c.name: c.detail for c in result.checks}
        assert "RSASSA-PSS" in detail["snp.chain.vcek_ask"]
        assert "hwID 0001020304050607" in detail["snp.chip_id"]


def test_turin_certificate_only_vector(vectors: Path) -> None:
    entry = json.loads((vectors / "manifest.json").read_text())["snp_chain_only"][0]
    chain = certs.analyse_certificates(
        ((vectors / entry["vcek"]).read_bytes(), (vectors / entry["chain"]).read_bytes())
    )
    assert chain.error is None and chain.amd_product == "Turin"
    assert chain.leaf_by_ask is None and chain.ask_by_ark is None and chain.ark_self is None
    info = entry["vcek_info"]
    ext = chain.leaf_ext
    assert ext.struct_version == info["structVersion"] and ext.product_name == "Turin"
    assert ext.spl == {
        "bootloader": info["blSPL"],
        "tee": info["teeSPL"],
        "snp": info["snpSPL"],
        "microcode": info["ucodeSPL"],
        "fmc": info["fmcSPL"],
    }
    assert ext.hwid is not None and ext.hwid.hex() == info["hwID"]


def test_amd_root_fingerprints_match_the_roots(vectors: Path) -> None:
    for path in sorted((vectors / "snp" / "amd-roots").glob("*.pem")):
        ders = certs.split_certificates(path.read_bytes())
        ark = next(c for c in map(certs.load_certificate, ders) if c.subject == c.issuer)
        product = certs.AMD_ARK_SPKI_SHA256[certs.spki_sha256(ark)]
        assert product.lower() in path.name


def test_vlek_chain(vectors: Path) -> None:
    result = verify(
        evidence_for(
            vectors,
            "snp/trustee-aws-milan-vlek-v3.report.bin",
            "snp/trustee-aws-milan-vlek.vlek.der",
            "snp/amd-roots/ask_ark_milan_vlek.pem",
        )
    )
    assert not failed(result)
    assert result.claims is not None and result.claims.signer == "VLEK"
    assert result.claims.extra["csp_id"] == "CN=cc-us-east-2.amazonaws.com"
    # A VLEK-signed report with a VCEK chain is refused: the key differs, SIGNING_KEY too.
    wrong = verify(
        evidence_for(
            vectors,
            "snp/trustee-aws-milan-vlek-v3.report.bin",
            "snp/routex-milan-v3.vcek-chain.pem",
        )
    )
    assert {"snp.signature", "snp.signing_key", "snp.tcb"} <= failed(wrong)


# --- tampering: one test per signed field family ---------------------------------------------


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    "offset,field",
    [
        (0x008, "policy"),
        (0x030, "vmpl"),
        (0x050, "report_data"),
        (0x090, "measurement"),
        (0x0C0, "host_data"),
        (0x180, "reported_tcb"),
        (0x1A0, "chip_id"),
        (0x29F, "last signed"),
    ],
)
def test_flipped_report_body_byte_breaks_the_signature(
    vectors: Path, offset: int, field: str
) -> None:
    ev = evidence_for(
        vectors, "snp/routex-milan-v3.report.bin", "snp/routex-milan-v3.vcek-chain.pem"
    )
    result = verify(ev.model_copy(update={"raw": _flip(ev.raw, offset)}))
    assert "snp.signature" in failed(result), field


@pytest.mark.parametrize("offset", [0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 47])
def test_flipped_signature_byte_is_rejected(vectors: Path, offset: int) -> None:
    ev = evidence_for(
        vectors, "snp/routex-genoa-v5.report.bin", "snp/routex-genoa-v5.vcek-chain.pem"
    )
    result = verify(ev.model_copy(update={"raw": _flip(ev.raw, offset)}))
    assert failed(result) == {"snp.signature"}


def _der_chain(vectors: Path) -> list[bytes]:
    report_chain = (vectors / "snp" / "routex-turin.vcek-chain.pem").read_bytes()
    return certs.split_certificates(report_chain)  # VCEK, ASK, ARK


@pytest.mark.parametrize(
    "index,where,expect",
    [
        (0, "signature", {"snp.chain.vcek_ask"}),
        (0, "key", {"snp.chain.vcek_ask", "snp.signature"}),
        (1, "signature", {"snp.chain.ask_ark"}),
        (1, "key", {"snp.chain.ask_ark", "snp.chain.vcek_ask"}),
        (2, "signature", {"snp.chain.ark_self"}),
        (2, "key", {"snp.chain.ark_self", "snp.chain.ask_ark", "snp.chain.ark_pinned"}),
    ],
)
def test_flipped_certificate_byte_is_rejected(
    vectors: Path, index: int, where: str, expect: set[str]
) -> None:
    ders = _der_chain(vectors)
    cert = certs.load_certificate(ders[index])
    if where == "signature":
        at = len(ders[index]) - 10  # inside the signature BIT STRING at the end
    else:
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        at = ders[index].find(spki) + len(spki) // 2
    ders[index] = _flip(ders[index], at)
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / "snp" / "routex-turin-v5.report.bin").read_bytes(),
        certificates=ders,
    )
    assert expect <= failed(verify(ev))


def test_unparsable_certificate_is_a_named_failure(vectors: Path) -> None:
    ders = _der_chain(vectors)
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / "snp" / "routex-turin-v5.report.bin").read_bytes(),
        certificates=[ders[0][:200], *ders[1:]],
    )
    result = verify(ev)
    assert "snp.chain.certificates" in failed(result)
    assert "snp.signature" in failed(result)


# --- certificate handling ---------------------------------------------------------------------


def test_certificates_in_any_order_and_form(vectors: Path) -> None:
    ders = _der_chain(vectors)
    report = (vectors / "snp" / "routex-turin-v5.report.bin").read_bytes()
    pem = [certs.load_certificate(d).public_bytes(serialization.Encoding.PEM) for d in ders]
    for certificates in (
        [ders[2], ders[0], ders[1]],
        [pem[1], ders[0], pem[2]],
        [b"".join(ders)],
        [b"# comment\n" + b"".join(reversed(pem))],
        [*ders, *ders],
    ):
        ev = Evidence(vendor="sev-snp", format="snp-report", raw=report, certificates=certificates)
        assert not failed(verify(ev))


def test_missing_certificates_are_named(vectors: Path) -> None:
    """Issue 16 point 3 changed this test: a missing ASK or ARK is no longer a failure (AMD's
    are built in, see test_snp_builtin_kds.py); a missing VCEK still is."""
    ders = _der_chain(vectors)
    report = (vectors / "snp" / "routex-turin-v5.report.bin").read_bytes()
    for certificates, missing in (([], "no certificates"), (ders[1:], "VCEK")):
        ev = Evidence(vendor="sev-snp", format="snp-report", raw=report, certificates=certificates)
        result = verify(ev)
        assert "snp.chain.certificates" in failed(result)
        detail = next(c.detail for c in result.checks if c.name == "snp.chain.certificates")
        assert missing in detail


def test_vendor_roots_can_be_switched_off(vectors: Path) -> None:
    ev = evidence_for(
        vectors, "snp/routex-milan-v3.report.bin", "snp/routex-milan-v3.vcek-chain.pem"
    )
    off = TrustStore(trust_vendor_roots=False)
    result = verify(ev, off)
    assert failed(result) == {"snp.chain.ark_pinned"}
    assert "trust_vendor_roots=False" in next(
        c.detail for c in result.checks if c.name == "snp.chain.ark_pinned"
    )
    # Listing AMD's Milan root explicitly accepts it again (and it is still AMD's, not simulated).
    amd = (vectors / "snp" / "amd-roots" / "ask_ark_milan.pem").read_bytes()
    result = verify(ev, off.with_root("sev-snp", amd))
    assert not failed(result)
    assert result.claims is not None and result.claims.signer == "VCEK"
    # A root of another product does not help.
    genoa = (vectors / "snp" / "amd-roots" / "ask_ark_genoa.pem").read_bytes()
    assert failed(verify(ev, off.with_root("sev-snp", genoa))) == {"snp.chain.ark_pinned"}


def test_wrong_product_root_is_rejected(vectors: Path) -> None:
    # A Genoa report with a Milan chain: that ASK did not issue the VCEK. The Milan
    # certificates fill no role, so AMD's built-in Genoa ASK/ARK do (issue 16 point 3
    # changed this test); without the built-in ones the chain is incomplete.
    result = verify(
        evidence_for(
            vectors, "snp/routex-genoa-v3.report.bin", "snp/routex-genoa-v3.vcek-chain.pem"
        )
    )
    assert not failed(result)
    genoa_vcek = certs.split_certificates(
        (vectors / "snp" / "routex-genoa-v3.vcek-chain.pem").read_bytes()
    )[0]
    milan = (vectors / "snp" / "amd-roots" / "ask_ark_milan.pem").read_bytes()
    raw = (vectors / "snp" / "routex-genoa-v3.report.bin").read_bytes()
    chain = certs.analyse_certificates((genoa_vcek, milan))
    assert chain.error is not None and "ASK/ASVK" in chain.error
    ev = Evidence(vendor="sev-snp", format="snp-report", raw=raw, certificates=[genoa_vcek, milan])
    result = verify(ev)
    assert not failed(result)
    assert "SEV-Genoa <- ARK-Genoa (ASK and ARK built in" in next(
        c.detail for c in result.checks if c.name == "snp.chain.certificates"
    )


@pytest.mark.parametrize(
    "when,expect_ok",
    [
        (datetime(2025, 12, 8, tzinfo=UTC), True),
        (datetime(2024, 12, 1, tzinfo=UTC), False),  # before the VLEK was issued
        (datetime(2026, 6, 1, tzinfo=UTC), False),  # VLEK (one year) expired
        (datetime(2025, 12, 8), True),  # naive = UTC
    ],
)
def test_certificate_validity_is_checked_at_now(
    vectors: Path, when: datetime, expect_ok: bool
) -> None:
    ev = evidence_for(
        vectors,
        "snp/trustee-aws-milan-vlek-v3.report.bin",
        "snp/trustee-aws-milan-vlek.vlek.der",
        "snp/amd-roots/ask_ark_milan_vlek.pem",
    )
    result = verify(ev, now=when)
    assert checks(result)["snp.chain.validity"] == expect_ok
    assert (failed(result) == set()) == expect_ok


# --- formats and parse failures ----------------------------------------------------------------


def test_azure_hcl_report_format(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/trustee-azure-genoa-v3.hcl-report.bin",
        "snp/trustee-azure-genoa.vcek.pem",
        "snp/amd-roots/ask_ark_genoa.pem",
        format="azure-hcl-report",
    )
    result = verify(ev)
    assert not failed(result) and checks(result)["snp.hcl.runtime_data"]
    assert result.claims is not None and result.claims.extra["azure_hcl"]
    # Change the runtime data (a JSON key set after the report): the binding check fails.
    raw = bytearray(ev.raw)
    raw[0x4D4 + 10] ^= 1
    bad = verify(ev.model_copy(update={"raw": bytes(raw)}))
    assert failed(bad) == {"snp.hcl.runtime_data"}


@pytest.mark.parametrize(
    "raw,fmt,reason",
    [
        (b"\x02" * 100, "snp-report", "0x4a0"),
        ((4).to_bytes(4, "little") + bytes(0x49C), "snp-report", "version 4"),
        (bytes(0x4A0), "tdx-quote", "unknown SNP evidence format"),
        (b"XXXX" + bytes(3000), "azure-hcl-report", "HCLA"),
    ],
)
def test_unparsable_evidence_gives_no_claims(raw: bytes, fmt: str, reason: str) -> None:
    result = verify(Evidence(vendor="sev-snp", format=fmt, raw=raw))
    assert result.claims is None
    assert [c.name for c in result.checks] == ["snp.report.parse"]
    assert reason in result.checks[0].detail
    verdict = Verifier().verify(Evidence(vendor="sev-snp", format=fmt, raw=raw), NOW)
    assert not verdict.ok and "snp.report.parse" in {c.name for c in verdict.failed}


# --- origin and policy ---------------------------------------------------------------------------


def test_vmpl1_vector_needs_a_policy_that_allows_its_layer(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/teekit-gcp-milan-v5-vmpl1-reportdata.report.bin",
        "snp/teekit-gcp-milan-v5.vcek.pem",
        "snp/amd-roots/ask_ark_milan.pem",
    )
    strict = Verifier().verify(ev, NOW)
    assert not strict.ok
    assert {c.name for c in strict.failed} == {"policy.origin_layer"}
    assert "l2.1 (VMPL1)" in strict.summary()
    for allowed in (["l1", "l2.1"], ["VMPL1"]):
        verdict = Verifier(Policy(allowed_layers=allowed)).verify(ev, NOW)
        assert verdict.ok, verdict.summary()
    mapped = ev.model_copy(update={"layer_map": {"VMPL1": "l2.3"}})
    verdict = Verifier(Policy(allowed_layers=["l2.3"])).verify(mapped, NOW)
    assert verdict.ok and verdict.claims is not None
    assert verdict.claims.origin.layer == "l2.3"


def test_layer_map_cannot_promote_a_vmpl_to_l1(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/teekit-gcp-milan-v5-vmpl1-reportdata.report.bin",
        "snp/teekit-gcp-milan-v5.vcek.pem",
        "snp/amd-roots/ask_ark_milan.pem",
        layer_map={"VMPL1": "l1"},
    )
    verdict = Verifier().verify(ev, NOW)
    assert not verdict.ok
    assert {"snp.origin.layer_map", "policy.origin_layer"} <= {c.name for c in verdict.failed}


def test_debug_policy_is_rejected_by_default(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/gosevguest-milan-v2.report.bin",
        "snp/gosevguest-milan-v2.vcek.der",
        "snp/amd-roots/ask_ark_milan.pem",
    )
    verdict = Verifier().verify(ev, NOW)
    assert {c.name for c in verdict.failed} == {"policy.debug"}
    assert Verifier(Policy(allow_debug=True)).verify(ev, NOW).ok


def test_measurement_tcb_and_report_data_policies(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/teekit-gcp-milan-v5-vmpl1-x25519.report.bin",
        "snp/teekit-gcp-milan-v5-vmpl1-x25519.vcek.pem",
        "snp/amd-roots/ask_ark_milan.pem",
    )
    txt = dict(
        line.split("=", 1)
        for line in (vectors / "snp" / "teekit-gcp-milan-v5-vmpl1-x25519.txt").read_text().split()
    )
    bound = hashlib.sha512(bytes.fromhex(txt["NONCE"]) + bytes.fromhex(txt["X25519_KEY"]))
    measurement = bytes.fromhex(
        "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cd"
        "c5b1b6d19251b8ee600fd16a3708f58406f3"
    )
    good = Policy(
        allowed_layers=["l2.1"],
        expected_measurements={"measurement": measurement},
        expected_report_data=bound.digest(),
        minimum_tcb={"snp": 27, "microcode": 222},
    )
    assert Verifier(good).verify(ev, NOW).ok
    bad = good.model_copy(update={"expected_report_data": b"other", "minimum_tcb": {"snp": 28}})
    names = {c.name for c in Verifier(bad).verify(ev, NOW).failed}
    assert names == {"policy.report_data", "policy.tcb.snp"}


def test_manifest_without_binding_fails(vectors: Path) -> None:
    ev = evidence_for(
        vectors,
        "snp/routex-milan-v3.report.bin",
        "snp/routex-milan-v3.vcek-chain.pem",
        nonce=b"n" * 32,
        manifest=b"not bound",
    )
    result = verify(ev)
    assert failed(result) == {"snp.manifest_binding"}
    assert result.claims is not None and not result.claims.origin.via_privileged_layer


# --- robustness: bad evidence never raises -----------------------------------------------------


@settings(
    max_examples=int(os.environ.get("SNP_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_evidence_never_raises(vectors: Path, data: st.DataObject) -> None:
    report = bytearray((vectors / "snp" / "routex-turin-v5.report.bin").read_bytes())
    ders = [bytearray(d) for d in _der_chain(vectors)]
    target = data.draw(st.sampled_from([-1, 0, 1, 2]))  # -1: the report
    buf = report if target < 0 else ders[target]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([None, 1, 50, 400]))
    certificates = [bytes(d) for d in ders]
    if cut is not None:
        certificates[0] = certificates[0][:-cut]
    ev = Evidence(
        vendor="sev-snp", format="snp-report", raw=bytes(report), certificates=certificates
    )
    result = verify(ev)
    assert result.checks and all(c.name.startswith("snp.") for c in result.checks)


BAD_PEM = b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"


@pytest.mark.parametrize("blob", [b"", b"garbage", BAD_PEM, b"\x30\x82\xff\xff\x00"])
def test_junk_certificates_are_named(vectors: Path, blob: bytes) -> None:
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / "snp" / "routex-milan-v3.report.bin").read_bytes(),
        certificates=[blob],
    )
    result = verify(ev, TrustStore().with_root("sev-snp", b"junk root"))
    assert {"snp.chain.certificates", "snp.signature"} <= failed(result)


def test_invalid_x509_version_is_named(vectors: Path) -> None:
    ders = _der_chain(vectors)
    vcek = bytearray(ders[0])
    assert vcek[8:13] == b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2 (X.509 v3)
    vcek[12] = 1  # found by the fuzz test above: cryptography raises InvalidVersion
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / "snp" / "routex-turin-v5.report.bin").read_bytes(),
        certificates=[bytes(vcek), *ders[1:]],
    )
    result = verify(ev)
    assert "snp.chain.certificates" in failed(result)
    assert "X509 version" in next(
        c.detail for c in result.checks if c.name == "snp.chain.certificates"
    )
