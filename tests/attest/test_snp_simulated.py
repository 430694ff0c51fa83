"""Simulated AMD roots (cocopart_sev_snp.simroots) and what the verifier makes of them.

The session fixtures load the roots through the normal on-disk cache ($COCOPART_CACHE or
~/.cache/cocopart/simroots), so the slow RSA-4096 derivation runs once per machine; the
caching tests use their own temporary directories.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp import certs, simroots
from cocopart_sev_snp.report import SnpReport
from cocopart_sev_snp.simroots import SimulatedAmdRoots
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, VendorResult, Verifier
from cocopart.errors import ConfigError
from cocopart.protocol.manifest import (
    VTPM_SERVICE_GUID,
    Requester,
    ServicesManifest,
    bind_report_data,
)

SEED = "cocopart-tests"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
VERIFIER = SnpEvidenceVerifier()


@pytest.fixture(scope="session")
def milan() -> SimulatedAmdRoots:
    return SimulatedAmdRoots.load(SEED, "Milan")


@pytest.fixture(scope="session")
def turin() -> SimulatedAmdRoots:
    return SimulatedAmdRoots.load(SEED, "Turin")


def failed(result: VendorResult) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


# --- the chain looks like AMD's ------------------------------------------------------------------


@pytest.mark.parametrize("product", ["Milan", "Turin"])
def test_chain_has_amds_shape(request: pytest.FixtureRequest, product: str) -> None:
    roots: SimulatedAmdRoots = request.getfixturevalue(product.lower())
    ark = x509.load_pem_x509_certificate(roots.ark_pem)
    ask = x509.load_pem_x509_certificate(roots.ask_pem)
    vcek = x509.load_der_x509_certificate(roots.vcek_der)
    assert certs.common_name(ark.subject) == f"ARK-{product}" and ark.subject == ark.issuer
    assert certs.common_name(ask.subject) == f"SEV-{product}" and ask.issuer == ark.subject
    assert certs.common_name(vcek.subject) == "SEV-VCEK" and vcek.issuer == ask.subject
    for key in (ark.public_key(), ask.public_key()):
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    vkey = vcek.public_key()
    assert isinstance(vkey, ec.EllipticCurvePublicKey) and isinstance(vkey.curve, ec.SECP384R1)
    for cert in (ark, ask, vcek):
        assert isinstance(cert.signature_algorithm_parameters, padding.PSS)
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha384"
    chain = certs.analyse_certificates(tuple(roots.certificates()))
    assert chain.error is None and chain.amd_product is None
    assert chain.leaf_by_ask is None and chain.ask_by_ark is None and chain.ark_self is None
    ext = chain.leaf_ext
    assert ext.spl == roots.tcb.components()
    assert ext.product_name is not None and product in ext.product_name
    assert ext.hwid == (roots.chip_id[:8] if product == "Turin" else roots.chip_id)
    assert "not AMD" in str(ark.subject)


def test_chip_id_is_derived_from_the_seed(
    milan: SimulatedAmdRoots, turin: SimulatedAmdRoots
) -> None:
    assert len(milan.chip_id) == 64 and any(milan.chip_id[8:])
    assert len(turin.chip_id) == 64 and not any(turin.chip_id[8:])
    assert simroots.derive_chip_id(SEED, "Milan") == milan.chip_id
    assert simroots.derive_chip_id("other", "Milan") != milan.chip_id


# --- verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["Milan", "Turin"])
def test_simulated_report_verifies_only_with_its_root_trusted(
    request: pytest.FixtureRequest, product: str
) -> None:
    roots: SimulatedAmdRoots = request.getfixturevalue(product.lower())
    ev = roots.evidence(roots.build_report(report_data=b"hello"))
    trusted = VERIFIER.verify(ev, roots.trust_store(), NOW)
    assert not failed(trusted)
    claims = trusted.claims
    assert claims is not None
    assert claims.simulated and claims.signer == f"simulated:ARK-{product}" == roots.name
    assert claims.tcb == roots.tcb.components()
    assert claims.version == (5 if product == "Turin" else 3)
    assert claims.report_data == b"hello".ljust(64, b"\0")
    assert claims.platform_id == roots.chip_id.hex()
    assert ("fmc" in claims.tcb) == (product == "Turin")

    untrusted = VERIFIER.verify(ev, TrustStore(), NOW)
    assert failed(untrusted) == {"snp.chain.ark_pinned"}
    detail = next(c.detail for c in untrusted.checks if c.name == "snp.chain.ark_pinned")
    assert "neither an AMD root nor in the trust store" in detail
    assert untrusted.claims is not None and untrusted.claims.simulated
    assert not Verifier().verify(ev, NOW).ok
    assert Verifier(trust=roots.trust_store()).verify(ev, NOW).ok


def test_trusting_one_simulated_root_does_not_trust_another(
    milan: SimulatedAmdRoots, turin: SimulatedAmdRoots
) -> None:
    ev = milan.evidence(milan.build_report())
    assert failed(VERIFIER.verify(ev, turin.trust_store(), NOW)) == {"snp.chain.ark_pinned"}
    both = turin.trust_store(milan.trust_store())
    assert not failed(VERIFIER.verify(ev, both, NOW))


def test_sign_report_accepts_bytes_and_models(milan: SimulatedAmdRoots) -> None:
    signed = milan.build_report(vmpl=1)
    model = SnpReport.parse(signed).model_copy(update={"guest_svn": 7})
    for item in (model, model.build()):
        again = milan.sign_report(item)
        assert SnpReport.parse(again).guest_svn == 7
        assert not failed(VERIFIER.verify(milan.evidence(again), milan.trust_store(), NOW))
    # Without re-signing, the change breaks the signature.
    stale = milan.evidence(model.build())
    assert failed(VERIFIER.verify(stale, milan.trust_store(), NOW)) == {"snp.signature"}


@pytest.mark.parametrize(
    "fields,check",
    [
        ({"reported_tcb": 0x0000000000000001}, "snp.tcb"),
        ({"chip_id": bytes(range(64))}, "snp.chip_id"),
        ({"signer_info": 1 << 2}, "snp.signing_key"),
        ({"cpuid_mod_id": 0x11}, "snp.product"),  # Genoa CPUID under a Milan chain
        ({"signature_algo": 2}, "snp.signature"),
    ],
)
def test_inconsistent_simulated_reports_are_named(
    milan: SimulatedAmdRoots, fields: dict[str, Any], check: str
) -> None:
    ev = milan.evidence(milan.build_report(**fields))
    assert check in failed(VERIFIER.verify(ev, milan.trust_store(), NOW))


def test_masked_chip_id_is_not_compared(milan: SimulatedAmdRoots) -> None:
    ev = milan.evidence(milan.build_report(signer_info=0b10, chip_id=bytes(64)))
    result = VERIFIER.verify(ev, milan.trust_store(), NOW)
    assert not failed(result)
    assert "MASK_CHIP_KEY" in next(c.detail for c in result.checks if c.name == "snp.chip_id")


def test_simulated_report_with_amd_certificates_is_rejected(
    milan: SimulatedAmdRoots, vectors: Path
) -> None:
    amd = (vectors / "snp" / "amd-roots" / "ask_ark_milan.pem").read_bytes()
    ev = milan.evidence(milan.build_report()).model_copy(
        update={"certificates": [milan.vcek_der, amd]}
    )
    assert "snp.chain.certificates" in failed(VERIFIER.verify(ev, TrustStore(), NOW))


def test_debug_and_layer_policy(milan: SimulatedAmdRoots) -> None:
    trust = milan.trust_store()
    debug = milan.evidence(milan.build_report(policy=0x30000 | 1 << 19))
    verdict = Verifier(trust=trust).verify(debug, NOW)
    assert {c.name for c in verdict.failed} == {"policy.debug"}
    vmpl2 = milan.evidence(milan.build_report(vmpl=2))
    assert {c.name for c in Verifier(trust=trust).verify(vmpl2, NOW).failed} == {
        "policy.origin_layer"
    }
    assert Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(vmpl2, NOW).ok


# --- SVSM-style attestation on behalf of a workload layer -----------------------------------------


def _manifest(layer: str, level: int) -> bytes:
    from cocopart.protocol.manifest import REQUESTER_GUID

    return ServicesManifest(
        {VTPM_SERVICE_GUID: b"vtpm-ek", REQUESTER_GUID: Requester(layer, level).to_bytes()}
    ).to_bytes()


def test_manifest_binding_makes_the_requester_the_origin(milan: SimulatedAmdRoots) -> None:
    nonce, manifest = b"\x5a" * 64, _manifest("l2.2", 2)
    report = milan.build_report(report_data=bind_report_data(nonce, manifest), vmpl=0)
    ev = milan.evidence(report, nonce=nonce, manifest=manifest)
    result = VERIFIER.verify(ev, milan.trust_store(), NOW)
    assert not failed(result)
    assert result.claims is not None
    origin = result.claims.origin
    assert (origin.layer, origin.vendor_level, origin.via_privileged_layer) == (
        "l2.2",
        "VMPL2",
        True,
    )
    trust = milan.trust_store()
    assert {c.name for c in Verifier(trust=trust).verify(ev, NOW).failed} == {"policy.origin_layer"}
    assert Verifier(Policy(allowed_layers=["l2.2"]), trust).verify(ev, NOW).ok
    no_via = Policy(allowed_layers=["l2.2"], allow_via_privileged_layer=False)
    assert {c.name for c in Verifier(no_via, trust).verify(ev, NOW).failed} == {
        "policy.via_privileged_layer"
    }


def test_manifest_binding_failures_are_named(milan: SimulatedAmdRoots) -> None:
    nonce, manifest = b"\x5a" * 64, _manifest("l2.2", 2)
    bound = bind_report_data(nonce, manifest)
    trust = milan.trust_store()
    cases = [
        (
            milan.build_report(report_data=bound),
            {"nonce": b"other", "manifest": manifest},
            "not SHA-512",
        ),
        (milan.build_report(report_data=bound), {"manifest": manifest}, "without its nonce"),
        (
            milan.build_report(report_data=bound, vmpl=2),
            {"nonce": nonce, "manifest": manifest},
            "VMPL2 report cannot attest",
        ),
    ]
    for report, extra, reason in cases:
        result = VERIFIER.verify(milan.evidence(report, **extra), trust, NOW)
        assert failed(result) == {"snp.manifest_binding"}, reason
        detail = next(c.detail for c in result.checks if c.name == "snp.manifest_binding")
        assert reason in detail
        assert result.claims is not None and not result.claims.origin.via_privileged_layer
    # A bound manifest without a requester entry keeps the report's own VMPL as origin.
    plain = ServicesManifest({uuid.uuid4(): b"x"}).to_bytes()
    rep = milan.build_report(report_data=bind_report_data(nonce, plain))
    result = VERIFIER.verify(milan.evidence(rep, nonce=nonce, manifest=plain), trust, NOW)
    assert not failed(result)
    assert result.claims is not None and result.claims.origin.layer == "l1"
    # A garbled manifest that is still bound: named, not raised.
    junk = b"\xff" * 40
    rep = milan.build_report(report_data=bind_report_data(nonce, junk))
    result = VERIFIER.verify(milan.evidence(rep, nonce=nonce, manifest=junk), trust, NOW)
    assert failed(result) == {"snp.manifest_binding"}


# --- independent parsers (cvm-attest, dk-tee-attestation from PyPI) --------------------------------


@pytest.mark.parametrize("product", ["Milan", "Turin"])
def test_independent_parsers_read_the_same_fields(
    request: pytest.FixtureRequest, product: str
) -> None:
    cvm_report = pytest.importorskip("cvm_attest.snp.report")
    cvm_verify = pytest.importorskip("cvm_attest.snp.verify")
    dk = pytest.importorskip("dk_tee_attestation")
    roots: SimulatedAmdRoots = request.getfixturevalue(product.lower())
    raw = roots.build_report(
        report_data=b"independent",
        vmpl=2,
        guest_svn=3,
        host_data=b"\x42" * 32,
        policy=0x30000 | 1 << 19,
    )
    ours = SnpReport.parse(raw)

    theirs = cvm_report.parse_snp_report(raw)
    assert theirs["version"] == ours.version and theirs["vmpl"] == 2
    assert theirs["guest_svn"] == 3
    assert int(theirs["policy"]["raw"], 16) == ours.policy
    assert theirs["policy"]["debug_allowed"] is True
    for name in (
        "report_data",
        "measurement",
        "host_data",
        "chip_id",
        "report_id",
        "report_id_ma",
        "family_id",
        "image_id",
        "id_key_digest",
    ):
        assert theirs[name] == getattr(ours, name).hex(), name
    assert theirs["current_version"] == "1.55.40"
    assert cvm_verify._verify_report_signature(
        raw, roots.vcek_der, roots.ask_pem + roots.ark_pem
    ) == (True, True)

    parsed = dk.tee_rust_py_wrap.parse_report(raw)
    tcb = ours.tcb()
    assert parsed["reported_tcb"] == {
        "bootloader": tcb.bootloader,
        "tee": tcb.tee,
        "snp": tcb.snp,
        "microcode": tcb.microcode,
    }
    assert (parsed["cpuid"]["fam_id"], parsed["cpuid"]["mod_id"], parsed["cpuid"]["step"]) == (
        ours.cpuid_fam_id,
        ours.cpuid_mod_id,
        ours.cpuid_step,
    )
    assert bytes(parsed["signed_bytes"]) == raw[:0x2A0]
    assert int.from_bytes(bytes(parsed["sig_r"]), "little") == ours.signature_r
    assert int.from_bytes(bytes(parsed["sig_s"]), "little") == ours.signature_s
    assert bytes(parsed["chip_id"]) == roots.chip_id


# --- derivation and the on-disk cache ----------------------------------------------------------------


def test_key_derivation_is_deterministic() -> None:
    a = simroots.derive_rsa_key("seed-a", "ARK/Milan", bits=1024)
    assert (
        a.private_numbers()
        == simroots.derive_rsa_key("seed-a", "ARK/Milan", bits=1024).private_numbers()
    )
    assert a.key_size == 1024
    other = simroots.derive_rsa_key("seed-b", "ARK/Milan", bits=1024)
    assert a.public_key().public_numbers() != other.public_key().public_numbers()
    k1, k2 = (simroots.derive_p384_key("s", "VCEK") for _ in range(2))
    assert k1.private_numbers() == k2.private_numbers()
    assert simroots.derive_p384_key("t", "VCEK").private_numbers() != k1.private_numbers()


def test_same_seed_gives_the_same_keys_as_the_session_roots(milan: SimulatedAmdRoots) -> None:
    vcek = x509.load_der_x509_certificate(milan.vcek_der)
    assert vcek.public_key() == milan.vcek_key.public_key()
    assert (
        milan.vcek_key.private_numbers()
        == simroots.derive_p384_key(SEED, f"VCEK/Milan/{milan.tcb.raw:016x}").private_numbers()
    )


@pytest.fixture
def fast_rsa(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count RSA derivations and make them 1024-bit (the cache, not RSA-4096, is under test)."""
    calls: list[str] = []
    real: Callable[..., rsa.RSAPrivateKey] = simroots.derive_rsa_key

    def fake(seed: str, label: str, bits: int = simroots.RSA_BITS) -> rsa.RSAPrivateKey:
        calls.append(label)
        return real(seed, label, bits=1024)

    monkeypatch.setattr(simroots, "derive_rsa_key", fake)
    return calls


def test_second_load_reads_the_cache(tmp_path: Path, fast_rsa: list[str]) -> None:
    first = SimulatedAmdRoots.load("cache-test", "Genoa", cache_dir=tmp_path)
    assert not first.from_cache and fast_rsa == ["ARK/Genoa", "ASK/Genoa"]
    assert first.cache_path is not None and first.cache_path.parent == tmp_path
    data = json.loads(first.cache_path.read_text())
    assert data["product"] == "Genoa" and "ark_pem" in data
    second = SimulatedAmdRoots.load("cache-test", "genoa", cache_dir=tmp_path)
    assert second.from_cache and len(fast_rsa) == 2
    assert (second.ark_pem, second.ask_pem, second.vcek_der) == (
        first.ark_pem,
        first.ask_pem,
        first.vcek_der,
    )
    ev = second.evidence(second.build_report())
    assert not failed(VERIFIER.verify(ev, second.trust_store(), NOW))
    # A different seed or product is a different file.
    SimulatedAmdRoots.load("cache-test-2", "Genoa", cache_dir=tmp_path)
    assert len(fast_rsa) == 4 and len(list(tmp_path.glob("*.json"))) == 2


def test_broken_cache_is_regenerated(tmp_path: Path, fast_rsa: list[str]) -> None:
    first = SimulatedAmdRoots.load("cache-test", "Milan", cache_dir=tmp_path)
    assert first.cache_path is not None
    first.cache_path.write_text("{not json")
    again = SimulatedAmdRoots.load("cache-test", "Milan", cache_dir=tmp_path)
    assert not again.from_cache and len(fast_rsa) == 4
    # A cache whose VCEK is not this seed's key is not trusted either.
    other = SimulatedAmdRoots.load("cache-test-other", "Milan", cache_dir=tmp_path)
    assert other.cache_path is not None and again.cache_path is not None
    data = json.loads(other.cache_path.read_text())
    data["seed_sha256"] = json.loads(again.cache_path.read_text())["seed_sha256"]
    again.cache_path.write_text(json.dumps(data))
    third = SimulatedAmdRoots.load("cache-test", "Milan", cache_dir=tmp_path)
    assert not third.from_cache


def test_default_cache_dir_follows_cocopart_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fast_rsa: list[str]
) -> None:
    monkeypatch.setenv("COCOPART_CACHE", str(tmp_path))
    assert simroots.default_cache_dir() == tmp_path / "simroots"
    roots = SimulatedAmdRoots.load("env-test", "Turin")
    assert roots.cache_path is not None and roots.cache_path.parent == tmp_path / "simroots"
    monkeypatch.delenv("COCOPART_CACHE")
    assert simroots.default_cache_dir() == Path.home() / ".cache" / "cocopart" / "simroots"


def test_unknown_product_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown SNP product"):
        SimulatedAmdRoots.load("x", "Naples", cache_dir=tmp_path)


def test_impossible_vmpl_is_named(milan: SimulatedAmdRoots) -> None:
    ev = milan.evidence(milan.build_report(vmpl=4))
    assert failed(VERIFIER.verify(ev, milan.trust_store(), NOW)) == {"snp.origin.vmpl"}
