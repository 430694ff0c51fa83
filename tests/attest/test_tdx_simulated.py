"""Simulated Intel roots: deterministic, cached, cross-checked with dcap-qvl, trusted only on request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cocopart_tdx import simroots as simroots_module
from cocopart_tdx.collateral import collateral_to_dcap_qvl_json
from cocopart_tdx.pck import SgxExtensions, load_certificates, order_chain, signature_problems
from cocopart_tdx.quote import TdQuote
from cocopart_tdx.simroots import SIM_FMSPC, SimulatedIntelRoots
from cocopart_tdx.tdreport import TdReport
from cocopart_tdx.verify import TdxEvidenceVerifier
from cryptography.hazmat.primitives import serialization

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, VendorResult, Verifier
from cocopart.errors import EvidenceError
from cocopart.protocol.manifest import REQUESTER_GUID, Requester, ServicesManifest, bind_report_data

NOW = datetime(2026, 3, 1, tzinfo=UTC)
MRTD = bytes(range(48))
RTMRS = (b"\x10" * 48, b"\x11" * 48, b"\x12" * 48, bytes(48))


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> SimulatedIntelRoots:
    return SimulatedIntelRoots.load("tdx-tests", cache_dir=tmp_path_factory.mktemp("simroots"))


@pytest.fixture(scope="module")
def trust(roots: SimulatedIntelRoots) -> TrustStore:
    return TrustStore().with_root("tdx", roots.root_pem)


def quote_evidence(
    roots: SimulatedIntelRoots, version: int = 4, now: datetime = NOW, **report: object
) -> Evidence:
    tdreport = roots.build_tdreport(mrtd=MRTD, rtmrs=RTMRS, **report)  # type: ignore[arg-type]
    return Evidence(
        vendor="tdx",
        format="tdx-quote",
        raw=roots.quote_from_tdreport(tdreport, version),
        collateral=roots.collateral(now),
    )


def failed(result: VendorResult) -> dict[str, str]:
    return {c.name: c.detail for c in result.checks if not c.ok}


def test_same_seed_same_bytes_and_the_disk_cache_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = SimulatedIntelRoots.load("seed-1", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    monkeypatch.setattr(
        SimulatedIntelRoots,
        "_generate",
        classmethod(lambda cls, seed: pytest.fail("the cache was not used")),
    )
    b = SimulatedIntelRoots.load("seed-1", cache_dir=tmp_path)
    assert a.root_pem == b.root_pem and a.pck_chain_pem == b.pck_chain_pem
    monkeypatch.undo()
    fresh = SimulatedIntelRoots.load("seed-1", cache_dir=tmp_path / "elsewhere")
    assert fresh.pck_chain_pem == a.pck_chain_pem  # deterministic ECDSA: identical certificates
    tdreport = a.build_tdreport(mrtd=MRTD)
    assert a.quote_from_tdreport(tdreport) == fresh.quote_from_tdreport(tdreport)
    assert a.collateral(NOW) == fresh.collateral(NOW)
    assert SimulatedIntelRoots.load("seed-2", cache_dir=tmp_path).root_pem != a.root_pem


def test_default_cache_dir_follows_cocopart_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCOPART_CACHE", str(tmp_path))
    assert simroots_module.default_cache_dir() == tmp_path / "simroots"
    SimulatedIntelRoots.load("env-seed")
    assert len(list((tmp_path / "simroots").glob("*.json"))) == 1


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    good = SimulatedIntelRoots.load("seed-3", cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    assert SimulatedIntelRoots.load("seed-3", cache_dir=tmp_path).root_pem == good.root_pem


def test_pck_certificate_has_intel_style_extensions(roots: SimulatedIntelRoots) -> None:
    chain = order_chain(load_certificates(roots.pck_chain_pem))
    assert signature_problems(chain) == []
    ext = SgxExtensions.from_certificate(chain[0])
    assert ext.fmspc == SIM_FMSPC and ext.pce_id == bytes(2) and len(ext.tcb.comp_svns) == 16
    assert ext.configuration == {
        "dynamic_platform": True,
        "cached_keys": False,
        "smt_enabled": True,
    }


def test_tdreport_mac_is_keyed_and_checked_by_the_quoting_enclave(
    roots: SimulatedIntelRoots,
) -> None:
    tdreport = roots.build_tdreport(report_data=b"\x42" * 64)
    parsed = TdReport.from_bytes(tdreport)
    assert parsed.hash_problems() == [] and parsed.mac_struct.mac == roots.mac(parsed)
    forged = parsed.with_mac(bytes(32)).to_bytes()
    with pytest.raises(EvidenceError, match="MAC is not this simulated platform's"):
        roots.quote_from_tdreport(forged)
    other = SimulatedIntelRoots._generate("another-platform")
    with pytest.raises(EvidenceError, match="MAC"):
        other.quote_from_tdreport(tdreport)


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_quote_is_accepted_only_with_the_simulated_root(
    roots: SimulatedIntelRoots, trust: TrustStore, version: int
) -> None:
    ev = quote_evidence(roots, version)
    plugin = TdxEvidenceVerifier()
    untrusted = plugin.verify(ev, TrustStore(), NOW)
    assert set(failed(untrusted)) == {"tdx.pck.root_pinned", "tdx.collateral.signature"}
    assert "Simulated SGX Root CA [tdx-tests]" in failed(untrusted)["tdx.pck.root_pinned"]
    assert not Verifier(Policy()).verify(ev, NOW).ok

    trusted = plugin.verify(ev, trust, NOW)
    assert failed(trusted) == {}
    claims = trusted.claims
    assert claims is not None
    assert claims.simulated and claims.signer == "simulated:Simulated SGX Root CA [tdx-tests]"
    assert claims.tcb_status == "UpToDate" and claims.platform_id == SIM_FMSPC.hex()
    assert claims.version == version and claims.measurements["mrtd"] == MRTD
    assert ("mrservicetd" in claims.measurements) == (version == 5)
    assert Verifier(Policy(), trust).verify(ev, NOW).ok

    other = TrustStore().with_root("tdx", SimulatedIntelRoots._generate("someone-else").root_pem)
    assert "tdx.pck.root_pinned" in failed(plugin.verify(ev, other, NOW))


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_quote_parses_in_dcap_qvl_with_the_same_fields(
    roots: SimulatedIntelRoots, version: int
) -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    raw = quote_evidence(roots, version, report_data=b"\x5a" * 64).raw
    ours = TdQuote.from_bytes(raw)
    theirs = dcap_qvl.parse_quote(raw)
    assert theirs.header.version == version and theirs.is_tdx()
    assert theirs.header.qe_vendor_id == ours.header.qe_vendor_id
    assert theirs.fmspc().lower() == SIM_FMSPC.hex()
    r, b = theirs.report, ours.body
    assert (r.mr_td, r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3) == (b.mrtd, *b.rtmrs)
    assert (
        r.report_data,
        r.tee_tcb_svn,
        r.td_attributes,
        r.xfam,
        r.mr_seam,
        r.mr_signer_seam,
        r.seam_attributes,
        r.mr_config_id,
        r.mr_owner,
        r.mr_owner_config,
    ) == (
        b.report_data,
        b.tee_tcb_svn,
        b.td_attributes,
        b.xfam,
        b.mrseam,
        b.mrsignerseam,
        b.seam_attributes,
        b.mrconfigid,
        b.mrowner,
        b.mrownerconfig,
    )
    if version == 5:
        assert (r.tee_tcb_svn2, r.mr_service_td) == (b.tee_tcb_svn2, b.mrservicetd)
    # and dcap-qvl verifies it end to end against the simulated root
    collateral = dcap_qvl.QuoteCollateralV3.from_json(
        collateral_to_dcap_qvl_json(roots.collateral(NOW))
    )
    root_der = roots.root.public_bytes(serialization.Encoding.DER)
    result = dcap_qvl.verify_with_root_ca(raw, collateral, root_der, int(NOW.timestamp()))
    assert result.status == "UpToDate"


def test_lower_tdx_module_svn_is_out_of_date(roots: SimulatedIntelRoots, trust: TrustStore) -> None:
    ev = quote_evidence(roots, tee_tcb_svn=bytes([3, 1, 5]) + bytes(13))
    result = TdxEvidenceVerifier().verify(ev, trust, NOW)
    assert failed(result) == {}
    assert result.claims is not None and result.claims.tcb_status == "OutOfDate"
    assert result.claims.extra["advisory_ids"] == ["SIM-SA-0001", "SIM-SA-0002"]
    verdict = Verifier(Policy(), trust).verify(ev, NOW)
    assert [c.name for c in verdict.failed] == ["policy.tcb_status"]


def test_revoked_pck_and_stale_collateral(roots: SimulatedIntelRoots, trust: TrustStore) -> None:
    ev = quote_evidence(roots)
    revoked = ev.model_copy(update={"collateral": roots.collateral(NOW, revoke_pck=True)})
    bad = failed(TdxEvidenceVerifier().verify(revoked, trust, NOW))
    assert (
        "'Simulated SGX PCK Certificate'" in bad["tdx.crl"]
        and "is revoked by PCK CRL" in bad["tdx.crl"]
    )
    stale = failed(TdxEvidenceVerifier().verify(ev, trust, NOW + timedelta(days=60)))
    assert {"tdx.collateral.fresh", "tdx.crl"} <= set(stale)


def test_debug_td_is_left_to_the_policy(roots: SimulatedIntelRoots, trust: TrustStore) -> None:
    ev = quote_evidence(roots, attributes=(1 | 1 << 28).to_bytes(8, "little"))
    result = TdxEvidenceVerifier().verify(ev, trust, NOW)
    assert failed(result) == {} and result.claims is not None and result.claims.debug
    assert [c.name for c in Verifier(Policy(), trust).verify(ev, NOW).failed] == ["policy.debug"]
    assert Verifier(Policy(allow_debug=True), trust).verify(ev, NOW).ok


def test_sept_ve_disable_requirement_can_be_relaxed(
    roots: SimulatedIntelRoots, trust: TrustStore
) -> None:
    ev = quote_evidence(roots, attributes=bytes(8))
    assert "tdx.td_attributes.sept_ve_disable" in failed(
        TdxEvidenceVerifier().verify(ev, trust, NOW)
    )
    relaxed = TdxEvidenceVerifier(require_sept_ve_disable=False).verify(ev, trust, NOW)
    assert failed(relaxed) == {}


def _bound_evidence(roots: SimulatedIntelRoots, manifest: bytes, nonce: bytes) -> Evidence:
    ev = quote_evidence(roots, report_data=bind_report_data(nonce, manifest))
    return ev.model_copy(update={"nonce": nonce, "manifest": manifest})


def test_l1_attesting_for_an_l2_vm_names_it_as_origin(
    roots: SimulatedIntelRoots, trust: TrustStore
) -> None:
    manifest = ServicesManifest({REQUESTER_GUID: Requester("l2.2", 2).to_bytes()}).to_bytes()
    ev = _bound_evidence(roots, manifest, b"nonce-" * 6)
    result = TdxEvidenceVerifier().verify(ev, trust, NOW)
    assert failed(result) == {}
    assert result.claims is not None
    origin = result.claims.origin
    assert (origin.layer, origin.vendor_level, origin.via_privileged_layer) == (
        "l2.2",
        "L2 VM 2",
        True,
    )
    assert not Verifier(Policy(), trust).verify(ev, NOW).ok  # default policy: l1 only
    assert Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(ev, NOW).ok
    mapped = ev.model_copy(update={"layer_map": {"L2 VM 2": "l2.9"}})
    mapped_claims = TdxEvidenceVerifier().verify(mapped, trust, NOW).claims
    assert mapped_claims is not None and mapped_claims.origin.layer == "l2.9"
    # another nonce: the binding fails and the evidence speaks for the TD (L1) only
    wrong = ev.model_copy(update={"nonce": b"other-nonce"})
    wrong_result = TdxEvidenceVerifier().verify(wrong, trust, NOW)
    assert "not bound" in failed(wrong_result)["tdx.manifest_binding"]
    assert wrong_result.claims is not None and wrong_result.claims.origin.layer == "l1"


def test_manifest_without_requester_is_the_l1_itself(
    roots: SimulatedIntelRoots, trust: TrustStore
) -> None:
    manifest = ServicesManifest({}).to_bytes()
    result = TdxEvidenceVerifier().verify(_bound_evidence(roots, manifest, b"n" * 16), trust, NOW)
    assert failed(result) == {}
    assert result.claims is not None and result.claims.origin.layer == "l1"
    assert not result.claims.origin.via_privileged_layer


@pytest.mark.parametrize("missing", ["crl_number", "authority_key_identifier"])
def test_crl_without_crl_number_or_aki_is_rejected(
    roots: SimulatedIntelRoots, trust: TrustStore, missing: str
) -> None:
    """RFC 5280 §5.2.1 / §5.2.3: a conforming CRL issuer includes cRLNumber and
    authorityKeyIdentifier; dcap-qvl refuses a CRL without them, and so do we (issue 16)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = roots._key("root")
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(roots.root.subject)
        .last_update(NOW - timedelta(days=1))
        .next_update(NOW + timedelta(days=29))
    )
    if missing != "crl_number":
        b = b.add_extension(x509.CRLNumber(1), critical=False)
    if missing != "authority_key_identifier":
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    crl = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    ev = quote_evidence(roots)
    good = TdxEvidenceVerifier().verify(ev, trust, NOW)
    assert "tdx.crl" not in failed(good)
    bad = ev.model_copy(update={"collateral": {**ev.collateral, "root_crl": crl}})
    detail = failed(TdxEvidenceVerifier().verify(bad, trust, NOW))["tdx.crl"]
    assert ("cRLNumber" if missing == "crl_number" else "authorityKeyIdentifier") in detail
