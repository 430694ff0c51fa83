"""AMD's public ASK/ASVK/ARK are built in (issue 16 point 3): a report plus its VCEK or VLEK
verifies offline; a certificate cache directory in the KDS layout supplies what the evidence
lacks; checks that cannot be evaluated fail instead of passing.

Sources: AMD KDS ``https://kdsintf.amd.com/{vcek,vlek}/v1/{Milan,Genoa,Turin}/cert_chain``
(the same certificates as go-sev-guest ``verify/trust/ask_ark_*.pem``, copied into
shared/vectors ``snp/amd-roots``); VCEK URL layout: AMD pub. 57230 (VCEK certificate and KDS
interface specification) and go-sev-guest ``kds.VCEKCertURL``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp import amd_kds, certs
from cocopart_sev_snp.report import SnpReport
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from cryptography.hazmat.primitives import serialization

from cocopart.attest.evidence import Evidence
from cocopart.attest.verifier import TrustStore, VendorResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

NOW = datetime(2025, 12, 8, tzinfo=UTC)
VERIFIER = SnpEvidenceVerifier()


def failed(result: VendorResult) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


def detail(result: VendorResult, name: str) -> str:
    return next(c.detail for c in result.checks if c.name == name)


def valid_rows(vectors: Path) -> list[dict[str, Any]]:
    data = json.loads((vectors / "manifest.json").read_text())
    return [
        v
        for f in data["files"]
        for v in f["verification"]
        if v.get("check_type") == "snp" and v["expected_valid"]
    ]


def leaf_only(vectors: Path, row: dict[str, Any]) -> bytes:
    """The VCEK/VLEK of a vector row alone (the first certificate of its key file)."""
    return certs.split_certificates((vectors / row["vcek"]).read_bytes())[0]


def report_evidence(vectors: Path, row: dict[str, Any], *certificates: bytes) -> Evidence:
    return Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / row["report"]).read_bytes(),
        certificates=list(certificates),
    )


def test_rule_builtin_amd_certificates_match_their_pins_and_the_kds_chains(vectors: Path) -> None:
    """Every package file matches its DER pin, each ARK is the pinned AMD root of its product,
    and each file equals the certificate the KDS cert_chain (go-sev-guest copy) carries."""
    assert amd_kds.builtin_problems() == ()
    ders = amd_kds.builtin_ders()
    assert len(ders) == len(amd_kds.BUILTIN_PINS) == 9
    kds = {}
    for path in (vectors / "snp" / "amd-roots").glob("*.pem"):
        for der in certs.split_certificates(path.read_bytes()):
            kds[hashlib.sha256(der).hexdigest()] = der
    for der in ders:
        product, role = amd_kds.PINNED_DER_SHA256[hashlib.sha256(der).hexdigest()]
        assert kds[hashlib.sha256(der).hexdigest()] == der
        cert = certs.load_certificate(der)
        if role == "ARK":
            assert certs.AMD_ARK_SPKI_SHA256[certs.spki_sha256(cert)] == product
        assert product in certs.common_name(cert.subject)


def test_rule_report_plus_vcek_alone_verifies_offline(vectors: Path) -> None:
    """Milan, Genoa and Turin VCEKs and the AWS VLEK: no ASK/ASVK/ARK in the evidence."""
    products = set()
    for row in valid_rows(vectors):
        result = VERIFIER.verify(
            report_evidence(vectors, row, leaf_only(vectors, row)), TrustStore(), NOW
        )
        assert not failed(result), (row["name"], failed(result))
        assert "built in" in detail(result, "snp.chain.certificates")
        assert result.claims is not None and result.claims.signer == row["signing_key"]
        products.add((result.claims.extra["product"], row["signing_key"]))
    assert {("Milan", "VCEK"), ("Genoa", "VCEK"), ("Turin", "VCEK"), ("Milan", "VLEK")} <= products


def test_rule_builtin_certificates_add_no_trust(vectors: Path) -> None:
    """With vendor roots switched off the completed chain still ends at an unpinned ARK."""
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-milan-v3")
    ev = report_evidence(vectors, row, leaf_only(vectors, row))
    result = VERIFIER.verify(ev, TrustStore(trust_vendor_roots=False), NOW)
    assert failed(result) == {"snp.chain.ark_pinned"}


def test_rule_builtin_file_that_misses_its_pin_is_not_used(
    vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "amd_kds"
    shutil.copytree(Path(amd_kds.__file__).with_name("amd_kds"), data)
    genoa = certs.split_certificates((data / "genoa-ask.pem").read_bytes())[0]
    (data / "milan-ask.pem").write_bytes(  # a genuine AMD certificate under the wrong name
        certs.load_certificate(genoa).public_bytes(serialization.Encoding.PEM)
    )
    monkeypatch.setattr(amd_kds, "_DATA", data)
    amd_kds._load_builtin.cache_clear()
    try:
        assert [p for p in amd_kds.builtin_problems() if "milan-ask.pem" in p]
        row = next(r for r in valid_rows(vectors) if r["name"] == "routex-milan-v3")
        result = VERIFIER.verify(
            report_evidence(vectors, row, leaf_only(vectors, row)), TrustStore(), NOW
        )
        assert "snp.chain.certificates" in failed(result)
        assert "no ASK/ASVK" in detail(result, "snp.chain.certificates")
    finally:
        amd_kds._load_builtin.cache_clear()


def test_rule_missing_vcek_names_its_kds_url(vectors: Path) -> None:
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-milan-v3")
    ev = report_evidence(vectors, row)
    result = VERIFIER.verify(ev, TrustStore(), NOW)
    report = SnpReport.parse(ev.raw)
    url = (
        f"https://kdsintf.amd.com/vcek/v1/Milan/{report.chip_id.hex()}"
        "?blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=219"
    )
    assert url in detail(result, "snp.chain.certificates")
    assert "--cert-cache" in detail(result, "snp.chain.certificates")
    turin = next(r for r in valid_rows(vectors) if r["name"] == "routex-turin-v5")
    report = SnpReport.parse((vectors / turin["report"]).read_bytes())
    assert amd_kds.vcek_url(report.chip_id, report.tcb("reported"), "Turin").endswith(
        f"/vcek/v1/Turin/{report.chip_id[:8].hex()}"
        "?blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71&fmcSPL=00"
    )


# --- the misleading passes the issue lists ------------------------------------------------------


def test_rule_unevaluable_checks_fail_instead_of_passing(vectors: Path) -> None:
    """A v2 report without certificates: validity was 'valid (window )', the product 'pass:
    no product named anywhere'; both now fail and say why."""
    row = next(r for r in valid_rows(vectors) if r["name"] == "virtee-milan-v2")
    result = VERIFIER.verify(report_evidence(vectors, row), TrustStore(), NOW)
    bad = failed(result)
    assert {"snp.chain.validity", "snp.product", "snp.signing_key"} <= bad
    assert detail(result, "snp.chain.validity").startswith("not checked")
    assert "window" not in detail(result, "snp.chain.validity")
    assert "TCB layout is unknown" in detail(result, "snp.product")
    assert "None" not in detail(result, "snp.signing_key")


def test_rule_report_without_signing_key_fails_the_signing_key_check(vectors: Path) -> None:
    """SIGNING_KEY 7 ('none'; sev-snp.md §6.3) used to pass as 'report names 7, leaf is
    None' when no certificate was given."""
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-milan-v3")
    raw = bytearray((vectors / row["report"]).read_bytes())
    raw[0x48] = (raw[0x48] & ~0x1C) | (7 << 2)
    result = VERIFIER.verify(
        Evidence(vendor="sev-snp", format="snp-report", raw=bytes(raw)), TrustStore(), NOW
    )
    assert "snp.signing_key" in failed(result)
    assert "SIGNING_KEY is none" in detail(result, "snp.signing_key")


# --- certificate cache in the KDS layout ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["{hwid}", "{HWID}", "{hwid}.der", "{hwid}?blSPL=04&x=1", "{hwid}/vcek.der"]
)
def test_rule_cert_cache_supplies_the_vcek_in_the_kds_layout(
    vectors: Path, tmp_path: Path, name: str
) -> None:
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-milan-v3")
    report = SnpReport.parse((vectors / row["report"]).read_bytes())
    hwid = report.chip_id.hex()
    path = tmp_path / "vcek" / "v1" / "Milan" / name.format(hwid=hwid, HWID=hwid.upper())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(leaf_only(vectors, row))
    trust = TrustStore(certificate_cache=tmp_path)
    result = VERIFIER.verify(report_evidence(vectors, row), trust, NOW)
    assert not failed(result), detail(result, "snp.chain.certificates")


def test_rule_cert_cache_picks_the_vcek_of_the_reported_tcb(vectors: Path, tmp_path: Path) -> None:
    """Two VCEKs under one hwID (as after a firmware update): the one whose SPLs equal
    REPORTED_TCB is used, whatever the file order. Turin: the hwID is 8 bytes."""
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-turin-v5")
    report = SnpReport.parse((vectors / row["report"]).read_bytes())
    folder = tmp_path / "vcek" / "v1" / "Turin" / report.chip_id[:8].hex()
    folder.mkdir(parents=True)
    other = certs.split_certificates((vectors / "snp" / "virtee-turin.vcek.der").read_bytes())
    (folder / "a-older-tcb.der").write_bytes(other[0])
    (folder / "b-current.der").write_bytes(leaf_only(vectors, row))
    result = VERIFIER.verify(
        report_evidence(vectors, row), TrustStore(certificate_cache=tmp_path), NOW
    )
    assert not failed(result), failed(result)


def test_rule_cert_cache_chains_complete_what_is_not_built_in(
    vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without built-in certificates (a product cocopart does not know yet, say) the
    cache's cert_chain files fill the ASK and ARK; without either the chain is incomplete."""
    monkeypatch.setattr(amd_kds, "builtin_ders", lambda: ())
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-genoa-v5")
    ev = report_evidence(vectors, row, leaf_only(vectors, row))
    assert "snp.chain.certificates" in failed(VERIFIER.verify(ev, TrustStore(), NOW))
    chain = tmp_path / "vcek" / "v1" / "Genoa" / "cert_chain"
    chain.parent.mkdir(parents=True)
    chain.write_bytes((vectors / "snp" / "amd-roots" / "ask_ark_genoa.pem").read_bytes())
    result = VERIFIER.verify(ev, TrustStore(certificate_cache=tmp_path), NOW)
    assert not failed(result), failed(result)


def test_rule_builtin_certificates_do_not_complete_a_simulated_chain() -> None:
    """A simulated VCEK alone (its issuer's organisation is not AMD's): AMD's ASKs did not
    issue it, so the chain stays incomplete even with the simulated ARK pinned."""
    from cocopart_sev_snp.simroots import SimulatedAmdRoots

    roots = SimulatedAmdRoots.load("cocopart-tests", "Milan")
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=roots.build_report(),
        certificates=[roots.vcek_der],
    )
    result = VERIFIER.verify(ev, roots.trust_store(), datetime(2026, 1, 1, tzinfo=UTC))
    assert "snp.chain.certificates" in failed(result)
    assert "no ASK/ASVK certificate given or built in" in detail(result, "snp.chain.certificates")
    full = ev.model_copy(update={"certificates": roots.certificates()})
    assert not failed(VERIFIER.verify(full, roots.trust_store(), datetime(2026, 1, 1, tzinfo=UTC)))


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_verify_report_with_vcek_alone_and_with_a_cache(vectors: Path, tmp_path: Path) -> None:
    from cli_helpers import invoke
    from typer.testing import CliRunner

    runner = CliRunner()
    row = next(r for r in valid_rows(vectors) if r["name"] == "routex-genoa-v3")
    vcek = tmp_path / "vcek.der"
    vcek.write_bytes(leaf_only(vectors, row))
    report = vectors / row["report"]
    now = "2025-12-08T00:00:00Z"
    res = invoke(runner, "verify", report, "--certs", vcek, "--now", now)
    assert res.exit_code == 0, res.output
    assert "built in" in res.stdout
    cache = tmp_path / "cache"
    hwid = SnpReport.parse(report.read_bytes()).chip_id.hex()
    (cache / "vcek" / "v1" / "Genoa").mkdir(parents=True)
    (cache / "vcek" / "v1" / "Genoa" / hwid).write_bytes(vcek.read_bytes())
    assert invoke(runner, "verify", report, "--cert-cache", cache, "--now", now).exit_code == 0
    res = invoke(runner, "verify", report, "--now", now)
    assert res.exit_code == 1 and "kdsintf.amd.com/vcek/v1/Genoa" in res.stdout
    assert invoke(runner, "verify", report, "--cert-cache", tmp_path / "nope").exit_code == 2
