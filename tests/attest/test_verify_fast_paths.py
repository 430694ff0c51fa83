"""The fast paths of verification (issue 16 point 7) give the same answers as the slow ones.

* Intel's pinned certificates (cocopart_tdx.pck.INTEL_PINNED_LINKS) really are signed by the
  Intel SGX Root CA, so skipping those links proves nothing less (RFC 5280 §6.1: a path is
  valid when each certificate is signed by the next; the pin stands for that check).
* Certificates and CRLs are verified over their DER slices: the slices equal what
  ``cryptography`` re-encodes (TBS, issuer, subject), on every real certificate and CRL.
* The signed bytes of PCS collateral come from one JSON scan: byte-exact, duplicates refused.
* Cached contexts never skip a report's or quote's own signature, and are used only inside
  the validity windows they were computed for.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cocopart_sev_snp import certs as snp_certs
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from cocopart_tdx import der, pck
from cocopart_tdx.collateral import (
    CollateralError,
    SignedJson,
    collateral_from_dcap_qvl_json,
    json_members,
)
from cocopart_tdx.quote import TdQuote
from cocopart_tdx.verify import TdxEvidenceVerifier, clear_caches
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cocopart.attest.evidence import Evidence
from cocopart.attest.verifier import TrustStore

TDX_NOW = datetime(2025, 9, 30, tzinfo=UTC)
COLLATERAL = "tdx/dcap-qvl-collateral/2025-09-00806f050000.json"


def intel_certificates(vectors: Path) -> dict[str, x509.Certificate]:
    """Every Intel certificate in the real vectors (quote PCK chains, collateral chains)."""
    out: dict[str, x509.Certificate] = {}
    blobs = [
        TdQuote.from_bytes(p.read_bytes()).signature_data.pck_chain_data or b""
        for p in (vectors / "tdx" / "quotes").glob("*.quote.bin")
    ]
    for p in [
        *(vectors / "tdx" / "collateral").glob("*.json"),
        *(vectors / "tdx" / "dcap-qvl-collateral").glob("*.json"),
    ]:
        data = json.loads(p.read_text())
        blobs += [
            data[k].encode()
            for k in ("tcb_info_issuer_chain", "qe_identity_issuer_chain", "pck_crl_issuer_chain")
            if data.get(k)
        ]
    for blob in blobs:
        for cert in pck.load_certificates(blob):
            out[hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()] = cert
    return out


def test_rule_pinned_intel_links_are_signed_by_the_root(vectors: Path) -> None:
    found = intel_certificates(vectors)
    assert set(pck.INTEL_PINNED_LINKS) <= set(found)
    for digest, issuer_digest in pck.INTEL_PINNED_LINKS.items():
        cert, issuer = found[digest], found[issuer_digest]
        cert.verify_directly_issued_by(issuer)  # raises when the link does not hold
        assert pck.spki_sha256(issuer) == pck.INTEL_SGX_ROOT_CA_SPKI_SHA256


def test_rule_der_slices_equal_the_reencoded_parts(vectors: Path) -> None:
    for cert in intel_certificates(vectors).values():
        data = cert.public_bytes(serialization.Encoding.DER)
        signed = der.Signed.parse(data)
        assert signed.tbs == cert.tbs_certificate_bytes and signed.signature == cert.signature
        assert signed.issuer == cert.issuer.public_bytes()
        assert signed.subject == cert.subject.public_bytes()
        assert hashlib.sha256(signed.spki).hexdigest() == pck.spki_sha256(cert)
        assert der.common_name(signed.subject) == pck.common_name(cert)
    collateral = collateral_from_dcap_qvl_json((vectors / COLLATERAL).read_bytes())
    for name in ("root_crl", "pck_crl"):
        crl = x509.load_der_x509_crl(collateral[name])
        signed = der.Signed.parse(collateral[name], crl=True)
        assert signed.tbs == crl.tbs_certlist_bytes and signed.signature == crl.signature
        assert signed.issuer == crl.issuer.public_bytes()


def test_rule_sgx_extensions_from_der_equal_the_parsed_certificate(vectors: Path) -> None:
    for p in (vectors / "tdx" / "quotes").glob("*.quote.bin"):
        chain = pck.parse_chain(
            TdQuote.from_bytes(p.read_bytes()).signature_data.pck_chain_data or b""
        )
        leaf = chain[0]
        assert pck.SgxExtensions.from_certificate(leaf.der) == pck.SgxExtensions.from_certificate(
            leaf.cert
        ), p.name


@pytest.mark.parametrize(
    "body",
    [
        b'{"tcbInfo":{"a":1},"signature":"00"}',
        b'  {\n "tcbInfo" : { "a" : [1, 2,\t3] , "b":"\\u00e9\\"x"} ,\n"signature":"00"}\n',
        '{"tcbInfo":{"caf\u00e9":"\u2713"},"signature":"00"}'.encode(),
    ],
)
def test_rule_signed_json_bytes_are_exact(body: bytes) -> None:
    """PCS signs the exact bytes of the member's value (shared/vectors README "How
    verified"): the slice is the text between the colon and the following comma."""
    members = json_members(body)
    raw = members["tcbInfo"][1]
    start = body.index(b"{", body.index(b'"tcbInfo"'))
    assert body[start : start + len(raw)] == raw
    assert json.loads(raw) == members["tcbInfo"][0]


@pytest.mark.parametrize(
    "body",
    [
        b'{"tcbInfo":{"a":1},"tcbInfo":{"a":2},"signature":"00"}',
        b'{"tcbInfo":{"a":1},"signature":"00"} trailing',
        b'["tcbInfo"]',
        b'{"tcbInfo":{"a":1} "signature":"00"}',
        b"\xff\xfe",
    ],
)
def test_rule_malformed_or_ambiguous_collateral_is_refused(body: bytes) -> None:
    with pytest.raises(CollateralError):
        SignedJson.parse(body, "tcbInfo")


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_rule_cached_tdx_context_never_skips_the_quote_signature(vectors: Path) -> None:
    clear_caches()
    raw = (vectors / "tdx" / "quotes" / "teekit-gcp-v4.quote.bin").read_bytes()
    collateral = collateral_from_dcap_qvl_json((vectors / COLLATERAL).read_bytes())
    verifier, trust = TdxEvidenceVerifier(), TrustStore()

    def run(data: bytes) -> dict[str, bool]:
        result = verifier.verify(
            Evidence(vendor="tdx", format="tdx-quote", raw=data, collateral=collateral),
            trust,
            TDX_NOW,
        )
        return {c.name: c.ok for c in result.checks}

    assert all(run(raw).values())
    report_data_at = 48 + 584 - 64
    changed = run(_flip(raw, report_data_at))  # same context, REPORTDATA altered
    assert not changed["tdx.quote.signature"]
    assert sum(not ok for ok in changed.values()) == 1
    assert not run(_flip(raw, 48 + 16))["tdx.quote.signature"]  # MRSEAM: another context
    assert all(run(raw).values())


def test_rule_cached_tdx_context_is_used_only_inside_its_window(vectors: Path) -> None:
    clear_caches()
    raw = (vectors / "tdx" / "quotes" / "teekit-gcp-v4.quote.bin").read_bytes()
    ev = Evidence(
        vendor="tdx",
        format="tdx-quote",
        raw=raw,
        collateral=collateral_from_dcap_qvl_json((vectors / COLLATERAL).read_bytes()),
    )
    verifier, trust = TdxEvidenceVerifier(), TrustStore()
    assert all(c.ok for c in verifier.verify(ev, trust, TDX_NOW).checks)
    late = verifier.verify(ev, trust, datetime(2026, 6, 1, tzinfo=UTC))
    bad = {c.name for c in late.checks if not c.ok}
    assert {"tdx.collateral.fresh", "tdx.crl"} <= bad
    assert all(c.ok for c in verifier.verify(ev, trust, TDX_NOW).checks)


def test_rule_cached_snp_context_never_skips_the_report_signature(vectors: Path) -> None:
    raw = (vectors / "snp" / "routex-milan-v3.report.bin").read_bytes()
    vcek = snp_certs.split_certificates(
        (vectors / "snp" / "routex-milan-v3.vcek-chain.pem").read_bytes()
    )[0]
    verifier, trust = SnpEvidenceVerifier(), TrustStore()
    now = datetime(2025, 12, 8, tzinfo=UTC)

    def run(data: bytes) -> tuple[set[str], bytes]:
        result = verifier.verify(
            Evidence(vendor="sev-snp", format="snp-report", raw=data, certificates=[vcek]),
            trust,
            now,
        )
        assert result.claims is not None
        return {c.name for c in result.checks if not c.ok}, result.claims.report_data

    assert run(raw) == (set(), raw[0x50:0x90])
    changed = _flip(raw, 0x50)
    assert run(changed) == ({"snp.signature"}, changed[0x50:0x90])
    assert run(_flip(raw, 0x2A0 + 3))[0] == {"snp.signature"}
    late = verifier.verify(
        Evidence(vendor="sev-snp", format="snp-report", raw=raw, certificates=[vcek]),
        trust,
        datetime(2040, 1, 1, tzinfo=UTC),
    )
    assert "snp.chain.validity" in {c.name for c in late.checks if not c.ok}
