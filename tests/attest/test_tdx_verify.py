"""End-to-end verification of the real TDX quotes, negative vectors and tampering.

Expected TCB answers are dcap-qvl's (vectors README "Intel TDX quotes"; manifest.json
``dcap_qvl_verify``) at the ``now`` given there. dcap-qvl's three refusals map onto named
checks: "No matching TCB level found" -> ``tdx.tcb_status``, "SEPT_VE_DISABLE is not
enabled" -> ``tdx.td_attributes.sept_ve_disable``, "Debug mode is enabled" -> the policy's
``policy.debug`` (debug is the relying party's call in cocopart).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cocopart_tdx.collateral import TCB_STATUSES, collateral_from_dcap_qvl_json
from cocopart_tdx.pck import SgxExtensions, load_certificates, order_chain
from cocopart_tdx.quote import (
    CertificationData,
    QeReportCertificationData,
    QuoteLayout,
    QuoteSignatureData,
    TdQuote,
)
from cocopart_tdx.verify import TdxEvidenceVerifier

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, VendorResult, Verifier

NO_LEVEL = ("tdx.tcb_status", "No matching TCB level found")
NO_SEPT = ("tdx.td_attributes.sept_ve_disable", "SEPT_VE_DISABLE is not enabled")
DEBUG = ("policy.debug", "debug is enabled")
SEPT = "tdx.td_attributes.sept_ve_disable"

# quote, collateral, now, expected: ("status", name, advisories) or ("reject", (check, reason)),
# and vendor checks that fail besides (TDs without SEPT_VE_DISABLE that dcap-qvl stopped
# rejecting earlier for another reason).
CASES: list[tuple[str, str, str, tuple[Any, ...], frozenset[str]]] = [
    (
        "gotdx-spr-v4.quote.bin",
        "dcap-qvl-collateral/2023-06-50806f000000.json",
        "2023-06-20T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset({SEPT}),
    ),
    (
        "gotdx-spr-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-50806f000000.json",
        "2025-09-30T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset({SEPT}),
    ),
    (
        "gotdx-emr-v5.quote.bin",
        "collateral/phala-2026-02.collateral.json",
        "2026-02-19T00:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
    (
        "gotdx-emr-v5.quote.bin",
        "dcap-qvl-collateral/2026-02-90c06f000000-gotdx.json",
        "2026-02-19T00:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
    (
        "gotdx-cos113-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
    (
        "trustee-spr-debug-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-50806f000000.json",
        "2025-09-30T00:00:00Z",
        ("reject", DEBUG),
        frozenset(),
    ),
    (
        "trustee-emr-v5.quote.bin",
        "dcap-qvl-collateral/2025-09-90c06f000000.json",
        "2025-09-30T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "trustee-emr-v5.quote.bin",
        "collateral/phala-2026-02.collateral.json",
        "2026-02-19T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "trustee-azure-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        ("reject", NO_SEPT),
        frozenset(),
    ),
    (
        "phala-emr-v4.quote.bin",
        "collateral/phala-2025-06.collateral.json",
        "2025-06-19T12:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
    (
        "phala-emr-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-b0c06f000000.json",
        "2025-09-30T00:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
    (
        "phala-emr-outdated-v5.quote.bin",
        "collateral/phala-2026-02.collateral.json",
        "2026-02-19T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "phala-emr-sample2-v4.quote.hex",
        "collateral/phala-2025-06.collateral.json",
        "2025-06-19T12:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "phala-tappd-v4.quote.hex",
        "collateral/phala-2025-06.collateral.json",
        "2025-06-19T12:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "teekit-moemahhouk-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-90c06f000000.json",
        "2025-09-30T00:00:00Z",
        ("reject", NO_LEVEL),
        frozenset(),
    ),
    (
        "teekit-edgeless-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        (
            "status",
            "OutOfDate",
            ["INTEL-SA-00837", "INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"],
        ),
        frozenset(),
    ),
    (
        "teekit-zkdcap-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        ("status", "OutOfDate", ["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"]),
        frozenset(),
    ),
    (
        "teekit-azure-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        ("reject", NO_SEPT),
        frozenset(),
    ),
    (
        "teekit-gcp-v4.quote.bin",
        "dcap-qvl-collateral/2025-09-00806f050000.json",
        "2025-09-30T00:00:00Z",
        ("status", "UpToDate", []),
        frozenset(),
    ),
]
_DCAP_ERRORS = {
    NO_LEVEL: "No matching TCB level found",
    NO_SEPT: "SEPT_VE_DISABLE is not enabled",
    DEBUG: "Debug mode is enabled",
}
ALL_STATUSES = Policy(accepted_tcb_status=list(TCB_STATUSES))


def read_quote(vectors: Path, name: str) -> bytes:
    """Quote bytes from a .bin file or a ("0x"-prefixed) hex text file."""
    data = (vectors / "tdx/quotes" / name).read_bytes()
    if name.endswith(".hex"):
        text = data.decode().strip()
        return bytes.fromhex(text.removeprefix("0x"))
    return data


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def collateral(vectors: Path, rel: str) -> dict[str, bytes]:
    return collateral_from_dcap_qvl_json((vectors / "tdx" / rel).read_bytes())


def verify(
    raw: bytes,
    coll: dict[str, bytes],
    now: datetime,
    trust: TrustStore | None = None,
    **evidence: Any,
) -> VendorResult:
    ev = Evidence(vendor="tdx", format="tdx-quote", raw=raw, collateral=coll, **evidence)
    return TdxEvidenceVerifier().verify(ev, trust or TrustStore(), now)


def failed(result: VendorResult) -> dict[str, str]:
    return {c.name: c.detail for c in result.checks if not c.ok}


def test_cases_are_the_readme_expectations(vectors: Path) -> None:
    """Every dcap-qvl result in manifest.json is a case here, with the same answer."""
    files = json.loads((vectors / "manifest.json").read_text())["files"]
    recorded = set()
    for f in files:
        if f["file"].startswith("tdx/quotes/") and f["verification"]:
            for r in f["verification"][0]["dcap_qvl_verify"]:
                want = r.get("status") or r["error"].removeprefix("Verification failed: ")
                recorded.add(
                    (
                        Path(f["file"]).name,
                        r["collateral"].removeprefix("tdx/"),
                        r["now"],
                        want,
                        tuple(r.get("advisories", ())),
                    )
                )
    ours = set()
    for quote, coll, now, expected, _ in CASES:
        if expected[0] == "status":
            ours.add((quote, coll, now, expected[1], tuple(expected[2])))
        else:
            ours.add((quote, coll, now, _DCAP_ERRORS[expected[1]], ()))
    assert ours == recorded


@pytest.mark.parametrize(
    ("quote", "coll", "now", "expected", "also"), CASES, ids=[f"{c[0]}@{c[2][:10]}" for c in CASES]
)
def test_real_quote_gets_the_expected_answer(
    vectors: Path, quote: str, coll: str, now: str, expected: tuple[Any, ...], also: frozenset[str]
) -> None:
    raw = read_quote(vectors, quote)
    ev = Evidence(vendor="tdx", format="tdx-quote", raw=raw, collateral=collateral(vectors, coll))
    result = TdxEvidenceVerifier().verify(ev, TrustStore(), when(now))
    assert result.claims is not None
    claims = result.claims
    bad = failed(result)
    if expected[0] == "status":
        assert bad == {}
        assert claims.tcb_status == expected[1]
        assert claims.extra["advisory_ids"] == expected[2]
        verdict = Verifier(Policy(accepted_tcb_status=[expected[1]])).verify(ev, when(now))
        assert verdict.ok, verdict.summary()
    else:
        name, reason = expected[1]
        if name.startswith("policy."):
            assert bad == {}
            verdict = Verifier(ALL_STATUSES).verify(ev, when(now))
            assert {c.name: c.detail for c in verdict.failed} == {name: verdict.failed[0].detail}
            assert reason in verdict.failed[0].detail
        else:
            assert set(bad) == {name} | also
            assert reason in bad[name]
            assert not Verifier(ALL_STATUSES).verify(ev, when(now)).ok
    # claims that hold whatever the TCB verdict
    assert claims.signer == "PCK" and not claims.simulated
    assert claims.origin.layer == "l1" and claims.origin.vendor_level == "L1"
    assert claims.extra["collateral_issue_date"].endswith("Z")
    parsed = TdQuote.from_bytes(raw)
    chain = parsed.signature_data.pck_chain_data
    assert chain is not None
    pck = SgxExtensions.from_certificate(order_chain(load_certificates(chain))[0])
    assert claims.platform_id == pck.fmspc.hex()
    assert (
        claims.tcb["pcesvn"] == pck.tcb.pcesvn
        and claims.tcb["sgx_tcb_comp01"] == pck.tcb.comp_svns[0]
    )
    body = parsed.body
    assert claims.measurements["mrtd"] == body.mrtd and claims.report_data == body.report_data
    assert claims.debug == bool(body.td_attributes[0] & 1)
    assert claims.tcb["tdx_module_major_svn"] == body.tee_tcb_svn[1]


def test_quote_without_published_collateral_window(vectors: Path) -> None:
    """trustee-gnr: TCB info + QE identity of 2025-10 (no CRL of that month exists)."""
    chain = collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json")[
        "tcb_info_issuer_chain"
    ]
    coll = {
        "tcb_info": (
            vectors / "tdx/collateral/trustee-2025-10.tcbinfo.00a06d080000.json"
        ).read_bytes(),
        "qe_identity": (vectors / "tdx/collateral/trustee-2025-10.qeidentity.json").read_bytes(),
        "tcb_info_issuer_chain": chain,
    }
    result = verify(
        read_quote(vectors, "trustee-gnr-v4.quote.bin"), coll, when("2025-11-01T00:00:00Z")
    )
    assert failed(result) == {}
    crl = next(c for c in result.checks if c.name == "tdx.crl")
    assert "not checked" in crl.detail
    assert result.claims is not None
    # PCESVN 11 < 13 of the UpToDate level: the next level (PCESVN 5) is OutOfDate
    assert result.claims.tcb_status == "OutOfDate" and result.claims.tcb["pcesvn"] == 11


def test_pcs_bodies_and_der_crls_of_2023(vectors: Path) -> None:
    """The separate go-tdx-guest 2023 files: PCS bodies, 2018 TCB signing chain, DER CRLs."""
    c = vectors / "tdx/collateral"
    coll = {
        "tcb_info": (c / "gotdx-2023-06.tcbinfo.50806f000000.json").read_bytes(),
        "qe_identity": (c / "gotdx-2023-06.qeidentity.json").read_bytes(),
        "tcb_info_issuer_chain": (c / "intel-tcb-signing-chain-2018.pem").read_bytes(),
        "pck_crl": (c / "gotdx-2023-06.pck-platform-crl.der").read_bytes(),
        "root_crl": (c / "gotdx-2023.root-ca-crl.der").read_bytes(),
    }
    result = verify(
        read_quote(vectors, "gotdx-spr-v4.quote.bin"), coll, when("2023-06-20T00:00:00Z")
    )
    assert set(failed(result)) == {"tdx.tcb_status", SEPT}
    assert "nothing revoked" in next(c.detail for c in result.checks if c.name == "tdx.crl")
    # the 2018 TCB signing certificate expired on 2025-05-21
    late = verify(read_quote(vectors, "gotdx-spr-v4.quote.bin"), coll, when("2025-06-01T00:00:00Z"))
    bad = failed(late)
    assert "Intel SGX TCB Signing" in bad["tdx.collateral.signature"]
    assert "not at 2025-06-01" in bad["tdx.collateral.fresh"]
    assert "PCK CRL is valid 2023-06-08..2023-07-08" in bad["tdx.crl"]


# --- negative vectors and trust ------------------------------------------------------------


def test_synthetic_intel_sample_is_rejected_against_the_real_root(vectors: Path) -> None:
    raw = (vectors / "tdx/synthetic-intel-sample/quote.dat").read_bytes()
    now = when("2025-01-01T00:00:00Z")
    result = verify(raw, {}, now)
    bad = failed(result)
    assert "root_pinned" in " ".join(bad)
    assert (
        "neither the Intel SGX Root CA pinned by cocopart nor a root in the trust store"
        in bad["tdx.pck.root_pinned"]
    )
    assert "tdx.quote.signature" not in bad  # its attestation key does sign it (README)
    assert result.claims is not None and result.claims.signer == ""
    # with its own test root pinned explicitly, the chain is accepted as a non-Intel root
    root = (vectors / "tdx/synthetic-intel-sample/trustedRootCaCert.pem").read_bytes()
    pinned = verify(raw, {}, now, TrustStore().with_root("tdx", root))
    assert "tdx.pck.root_pinned" not in failed(pinned)
    assert pinned.claims is not None and pinned.claims.simulated
    assert pinned.claims.signer == "simulated:Intel SGX Root CA"


def test_vendor_roots_can_be_switched_off(vectors: Path) -> None:
    raw = read_quote(vectors, "gotdx-cos113-v4.quote.bin")
    coll = collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json")
    result = verify(raw, coll, when("2025-09-30T00:00:00Z"), TrustStore(trust_vendor_roots=False))
    bad = failed(result)
    assert "vendor roots are switched off" in bad["tdx.pck.root_pinned"]
    assert "not a trusted root" in bad["tdx.collateral.signature"]


def test_missing_and_mismatched_collateral(vectors: Path) -> None:
    raw = read_quote(vectors, "teekit-edgeless-v4.quote.bin")
    now = when("2025-09-30T00:00:00Z")
    none = verify(raw, {}, now)
    assert set(failed(none)) == {"tdx.collateral.present"}
    assert none.claims is not None and none.claims.tcb_status is None
    other = verify(raw, collateral(vectors, "dcap-qvl-collateral/2025-09-50806f000000.json"), now)
    assert (
        "FMSPC 50806f000000, the PCK certificate has 00806f050000"
        in failed(other)["tdx.collateral.match"]
    )
    stale = verify(
        raw,
        collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json"),
        when("2025-11-15T00:00:00Z"),
    )
    assert (
        "TCB info is valid 2025-09-29T18:04:58Z..2025-10-29T18:04:58Z"
        in failed(stale)["tdx.collateral.fresh"]
    )


def test_manifest_that_the_quote_does_not_bind_is_rejected(vectors: Path) -> None:
    raw = read_quote(vectors, "gotdx-cos113-v4.quote.bin")
    coll = collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json")
    result = verify(raw, coll, when("2025-09-30T00:00:00Z"), nonce=b"n" * 32, manifest=b"m" * 40)
    assert "not bound to this nonce and services manifest" in failed(result)["tdx.manifest_binding"]
    no_nonce = verify(raw, coll, when("2025-09-30T00:00:00Z"), manifest=b"m" * 40)
    assert "without the nonce" in failed(no_nonce)["tdx.manifest_binding"]


def test_unknown_format_and_garbage() -> None:
    now = when("2025-09-30T00:00:00Z")
    r = TdxEvidenceVerifier().verify(
        Evidence(vendor="tdx", format="sgx-quote", raw=b""), TrustStore(), now
    )
    assert [c.name for c in r.checks] == ["tdx.format"] and r.claims is None
    g = verify(b"\x04\x00" + bytes(100), {}, now)
    assert [c.name for c in g.checks] == ["tdx.quote.parse"] and not g.checks[0].ok


def test_the_plugin_loads_through_the_entry_point(vectors: Path) -> None:
    raw = read_quote(vectors, "gotdx-cos113-v4.quote.bin")
    ev = Evidence(
        vendor="tdx",
        format="tdx-quote",
        raw=raw,
        collateral=collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json"),
    )
    verdict = Verifier().verify(ev, when("2025-09-30T00:00:00Z"))
    assert verdict.ok, verdict.summary()


# --- tampering: one test per signed field family -------------------------------------------


@pytest.fixture(scope="module")
def good(vectors: Path) -> tuple[bytes, dict[str, bytes], datetime]:
    raw = read_quote(vectors, "gotdx-cos113-v4.quote.bin")
    coll = collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json")
    now = when("2025-09-30T00:00:00Z")
    assert failed(verify(raw, coll, now)) == {}
    return raw, coll, now


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _offsets(raw: bytes) -> dict[str, int]:
    layout = QuoteLayout.parse(raw)
    s = layout.sig_start
    qe_report = s + 128 + 6
    return {
        "header": 28,
        "body.mrtd": 48 + 136,
        "body.report_data": 48 + 520,
        "signature": s + 10,
        "attestation_key": s + 64 + 5,
        "qe_report": qe_report + 64,
        "qe_report_signature": qe_report + 384 + 7,
        "qe_auth_data": qe_report + 384 + 64 + 2,
    }


@pytest.mark.parametrize(
    ("field", "check"),
    [
        ("header", "tdx.quote.signature"),
        ("body.mrtd", "tdx.quote.signature"),
        ("body.report_data", "tdx.quote.signature"),
        ("signature", "tdx.quote.signature"),
        ("attestation_key", "tdx.quote.signature"),
        ("attestation_key", "tdx.qe_report.binding"),
        ("qe_report", "tdx.qe_report.signature"),
        ("qe_report_signature", "tdx.qe_report.signature"),
        ("qe_auth_data", "tdx.qe_report.binding"),
    ],
)
def test_tampered_quote_is_rejected(
    good: tuple[bytes, dict[str, bytes], datetime], field: str, check: str
) -> None:
    raw, coll, now = good
    bad = failed(verify(flip(raw, _offsets(raw)[field]), coll, now))
    assert check in bad


def _flip_certificate(pem_chain: bytes, index: int) -> bytes:
    """Flip the last DER byte (inside the ECDSA signature) of certificate ``index``, in place."""
    blocks = list(
        re.finditer(
            rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", pem_chain, re.DOTALL
        )
    )
    m = blocks[index]
    text = m.group(1)
    der = bytearray(base64.b64decode(text))
    der[-1] ^= 0x01
    new_b64 = iter(base64.b64encode(bytes(der)))
    rewrapped = bytes(c if c == 0x0A else next(new_b64) for c in text)
    return pem_chain[: m.start(1)] + rewrapped + pem_chain[m.end(1) :]


def _with_chain(raw: bytes, chain: bytes | None, cert_type: int = 5) -> bytes:
    quote = TdQuote.from_bytes(raw)
    qe = quote.signature_data.qe
    assert qe is not None
    inner = CertificationData(cert_type, chain if chain is not None else b"")
    sig = QuoteSignatureData(
        quote.signature_data.signature,
        quote.signature_data.attestation_key,
        QeReportCertificationData(qe.qe_report, qe.qe_report_signature, qe.qe_auth_data, inner),
    )
    return TdQuote(quote.header, quote.body, sig, quote.trailing).to_bytes()


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (0, "'Intel SGX PCK Certificate' is not signed by 'Intel SGX PCK Platform CA'"),
        (1, "'Intel SGX PCK Platform CA' is not signed by 'Intel SGX Root CA'"),
        (2, "'Intel SGX Root CA' is not self-signed"),
    ],
)
def test_tampered_pck_certificate_is_rejected(
    good: tuple[bytes, dict[str, bytes], datetime], index: int, reason: str
) -> None:
    raw, coll, now = good
    chain = TdQuote.from_bytes(raw).signature_data.pck_chain_data
    assert chain is not None
    tampered = _with_chain(raw, _flip_certificate(chain, index))
    assert len(tampered) == len(raw)
    assert reason in failed(verify(tampered, coll, now))["tdx.pck.chain"]


def test_chain_from_evidence_certificates(good: tuple[bytes, dict[str, bytes], datetime]) -> None:
    """A quote whose certification data is not the chain (e.g. type 3): chain from Evidence."""
    raw, coll, now = good
    chain = TdQuote.from_bytes(raw).signature_data.pck_chain_data
    assert chain is not None
    stripped = _with_chain(raw, b"\x01" * 16, cert_type=3)
    assert "no PCK certificate chain" in failed(verify(stripped, coll, now))["tdx.pck.chain"]
    pems = [
        m.group(0) + b"\n"
        for m in re.finditer(
            rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", chain, re.DOTALL
        )
    ]
    assert failed(verify(stripped, coll, now, certificates=pems)) == {}


@pytest.mark.parametrize(
    ("key", "needle", "check"),
    [
        ("tcb_info", b'"tcbEvaluationDataNumber":17', "tdx.collateral.signature"),
        ("qe_identity", b'"isvprodid":2', "tdx.collateral.signature"),
        ("tcb_info", b'"signature":"', "tdx.collateral.signature"),
        ("root_crl", None, "tdx.crl"),
        ("pck_crl", None, "tdx.crl"),
    ],
)
def test_tampered_collateral_is_rejected(
    good: tuple[bytes, dict[str, bytes], datetime], key: str, needle: bytes | None, check: str
) -> None:
    raw, coll, now = good
    body = coll[key]
    offset = body.index(needle) + len(needle) - 1 if needle else len(body) - 1
    if needle == b'"signature":"':
        offset += 3  # a hex digit of the signature
    changed = bytearray(body)
    changed[offset] = ord("8") if changed[offset] != ord("8") else ord("9")
    bad = failed(verify(raw, {**coll, key: bytes(changed)}, now))
    assert check in bad
    assert ("signature" in bad[check]) or ("does not parse" in bad[check])


def test_policy_can_waive_sept_ve_disable_for_partitioned_tds(vectors: Path) -> None:
    """Azure's partitioned TDs run without SEPT_VE_DISABLE; a relying party may waive it."""
    raw = read_quote(vectors, "teekit-azure-v4.quote.bin")
    ev = Evidence(
        vendor="tdx",
        format="tdx-quote",
        raw=raw,
        collateral=collateral(vectors, "dcap-qvl-collateral/2025-09-00806f050000.json"),
    )
    now = when("2025-09-30T00:00:00Z")
    strict = Verifier(ALL_STATUSES).verify(ev, now)
    assert [c.name for c in strict.failed] == [SEPT]
    waived = Verifier(ALL_STATUSES.model_copy(update={"waive_checks": [SEPT]})).verify(ev, now)
    assert waived.ok
    assert next(c for c in waived.checks if c.name == SEPT).detail.startswith("waived by policy")
