"""Policy parity with go-sev-guest ``validate.Options``, go-tdx-guest ``validate.Options`` and
Trustee's default policy (issue 16 point 6): every field passes and fails, on the real vectors
(../shared/vectors) and on simulated evidence; every key and length is checked when the
policy is built.

Sources: go-sev-guest validate/validate.go (``validatePolicy``, ``validateVerbatimFields``,
``validateTcb``, ``validateVersion``, ``validatePlatformInfo``, ``validateKeys``, VMPL and
GUEST_SVN checks in ``SnpAttestation``); go-tdx-guest validate/validate.go
(``exactByteMatch``, ``minVersionCheck``, ``validateXfam``, ``validateTdAttributes`` and their
fixed0/fixed1 constants); Trustee attestation-service ``ear_default_policy_cpu.rego``
(reference-value lists, QE vendor ID, TCB date, advisory IDs).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp import certs
from cocopart_sev_snp.policy import SnpPolicy
from cocopart_sev_snp.report import SnpReport
from cocopart_sev_snp.simroots import SimulatedAmdRoots
from cocopart_tdx.collateral import collateral_from_dcap_qvl_json
from cocopart_tdx.policy import INTEL_QE_VENDOR_ID, TdxPolicy
from cocopart_tdx.simroots import SimulatedIntelRoots

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verdict, Verifier
from cocopart.errors import InputError

SNP_NOW = datetime(2025, 12, 8, tzinfo=UTC)
TDX_NOW = datetime(2025, 9, 30, tzinfo=UTC)
SIM_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def snp_evidence(vectors: Path, name: str) -> Evidence:
    """A real SNP report with its VCEK/VLEK (the AMD chain is built in)."""
    keys = {
        "trustee-aws-milan-vlek-v3": "snp/trustee-aws-milan-vlek.vlek.der",
        "teekit-gcp-milan-v5-vmpl1-reportdata": "snp/teekit-gcp-milan-v5.vcek.pem",
        "virtee-milan-v2": "snp/virtee-milan-v2.vcek.der",
        "trustee-milan-v2": "snp/trustee-milan-v2.vcek.der",
        "trustee-azure-genoa-v3": "snp/trustee-azure-genoa.vcek.pem",
    }
    key = keys.get(
        name,
        f"snp/{name.rsplit('-', 1)[0]}-{name.rsplit('-', 1)[1]}.vcek-chain.pem"
        if name != "routex-turin-v5"
        else "snp/routex-turin.vcek-chain.pem",
    )
    leaf = certs.split_certificates((vectors / key).read_bytes())[0]
    return Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / "snp" / f"{name}.report.bin").read_bytes(),
        certificates=[leaf],
    )


def tdx_evidence(
    vectors: Path,
    quote: str = "teekit-gcp-v4.quote.bin",
    coll: str = "dcap-qvl-collateral/2025-09-00806f050000.json",
) -> Evidence:
    return Evidence(
        vendor="tdx",
        format="tdx-quote",
        raw=(vectors / "tdx" / "quotes" / quote).read_bytes(),
        collateral=collateral_from_dcap_qvl_json((vectors / "tdx" / coll).read_bytes()),
    )


def run(ev: Evidence, now: datetime, trust: TrustStore | None = None, **policy: Any) -> Verdict:
    return Verifier(Policy.model_validate(policy), trust).verify(ev, now)


def outcome(verdict: Verdict, name: str) -> bool:
    found = [c.ok for c in verdict.checks if c.name == name]
    assert len(found) == 1, (name, [c.name for c in verdict.checks])
    return found[0]


def detail(verdict: Verdict, name: str) -> str:
    return next(c.detail for c in verdict.checks if c.name == name)


def assert_only_failure(verdict: Verdict, name: str) -> None:
    assert {c.name for c in verdict.failed} == {name}, verdict.summary()


# --- neutral fields ----------------------------------------------------------------------------


def test_rule_policy_measurement_value_lists(vectors: Path) -> None:
    """Several accepted values for one field (Trustee ``in query_reference_value``,
    go-tdx-guest ``AnyMrTd``): two MRSEAMs, two launch measurements."""
    tdx = tdx_evidence(vectors)
    mrseam = run(tdx, TDX_NOW).claims.measurements["mrseam"]  # type: ignore[union-attr]
    other = bytes(48)
    ok = run(tdx, TDX_NOW, expected_measurements={"mrseam": [other.hex(), mrseam.hex()]})
    assert ok.ok and "accepted value 2 of 2" in detail(ok, "policy.measurement.mrseam")
    bad = run(tdx, TDX_NOW, expected_measurements={"mrseam": [other, b"\1" * 48]})
    assert_only_failure(bad, "policy.measurement.mrseam")
    snp = snp_evidence(vectors, "routex-milan-v3")
    m = "195b01b74976a1faba13bd85eaf787958f0a46e6dddd45c5bdbf8673522777842b8057ae5d866b75416efb62012deaa3"
    assert run(snp, SNP_NOW, expected_measurements={"measurement": ["00" * 48, m]}).ok
    assert_only_failure(
        run(snp, SNP_NOW, expected_measurements={"measurement": "00" * 48}),
        "policy.measurement.measurement",
    )
    # a TDX name on SNP evidence: the check says which names the evidence has
    wrong = run(snp, SNP_NOW, expected_measurements={"mrtd": "00" * 48})
    assert "sev-snp evidence has no measurement 'mrtd' (it has: measurement)" in detail(
        wrong, "policy.measurement.mrtd"
    )


def test_rule_policy_rejected_advisories(vectors: Path) -> None:
    """Trustee's disallowed advisory IDs: teekit-edgeless lists INTEL-SA-00837 (dcap-qvl)."""
    listed = tdx_evidence(vectors, "teekit-edgeless-v4.quote.bin")
    base = {"accepted_tcb_status": ["UpToDate", "OutOfDate"]}
    assert run(listed, TDX_NOW, **base, rejected_advisories=["INTEL-SA-00001"]).ok
    bad = run(listed, TDX_NOW, **base, rejected_advisories=["INTEL-SA-00837", "INTEL-SA-00001"])
    assert_only_failure(bad, "policy.advisories")
    assert "INTEL-SA-00837" in detail(bad, "policy.advisories")
    assert run(tdx_evidence(vectors), TDX_NOW, rejected_advisories=["INTEL-SA-00837"]).ok


def test_rule_policy_minimum_tcb_names_a_component_the_evidence_lacks(vectors: Path) -> None:
    verdict = run(snp_evidence(vectors, "routex-milan-v3"), SNP_NOW, minimum_tcb={"pcesvn": 1})
    assert "has no TCB component 'pcesvn'" in detail(verdict, "policy.tcb.pcesvn")
    assert run(tdx_evidence(vectors), TDX_NOW, minimum_tcb={"pcesvn": 11, "qe_isvsvn": 6}).ok
    assert_only_failure(
        run(tdx_evidence(vectors), TDX_NOW, minimum_tcb={"qe_isvsvn": 99}), "policy.tcb.qe_isvsvn"
    )


def test_rule_policy_waives_a_policy_check(vectors: Path) -> None:
    listed = tdx_evidence(vectors, "teekit-edgeless-v4.quote.bin")
    assert_only_failure(run(listed, TDX_NOW), "policy.tcb_status")
    verdict = run(listed, TDX_NOW, waive_checks=["policy.tcb_status"])
    assert verdict.ok and detail(verdict, "policy.tcb_status").startswith("waived by policy")


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ({"minimum_tcb": {"snp_spl": 3}}, "minimum_tcb.snp_spl", "unknown TCB component"),
        (
            {"expected_measurements": {"measurement": "ab"}},
            "expected_measurements.measurement",
            "must be 48 bytes",
        ),
        (
            {"expected_measurements": {"mrtdd": "00" * 48}},
            "expected_measurements.mrtdd",
            "unknown measurement",
        ),
        ({"allowed_layers": ["l2_1"]}, "allowed_layers.0", "unknown layer"),
        ({"waive_checks": ["tdx.sept_ve_disable"]}, "waive_checks.0", "unknown check"),
        ({"accepted_tcb_status": ["UpToDat"]}, "accepted_tcb_status.0", "unknown TCB status"),
        ({"expected_report_data": "00" * 65}, "expected_report_data", "at most 64"),
        ({"expected_nonce": "zz"}, "expected_nonce", "expected hex"),
        ({"sev-snp": {"host_data": "00" * 31}}, "host_data", "must be 32 bytes"),
        ({"sev-snp": {"chip_id": ["00" * 64, "00" * 8]}}, "chip_id", "must be 64 bytes"),
        ({"sev-snp": {"hostdata": "00" * 32}}, "hostdata", "Extra inputs"),
        ({"sev-snp": {"platform_info": {"smt": False}}}, "platform_info", "unknown PLATFORM_INFO"),
        (
            {"sev-snp": {"minimum_launch_tcb": {"ucode": 1}}},
            "minimum_launch_tcb",
            "unknown TCB component",
        ),
        ({"sev-snp": {"minimum_version": "1"}}, "minimum_version", "major.minor"),
        ({"sev-snp": {"vmpl": [4]}}, "vmpl", "less than or equal to 3"),
        ({"tdx": {"xfam": "e7020600"}}, "xfam", "must be 8 bytes"),
        ({"tdx": {"minimum_tee_tcb_svn": "00" * 15}}, "minimum_tee_tcb_svn", "16 bytes"),
        ({"tdx": {"qe_vendor_id": "00"}}, "qe_vendor_id", "must be 16 bytes"),
        ({"tdx": {"xfam_fixed0": "nothex"}}, "xfam_fixed0", "expected an integer"),
        ({"sev_snp": {}}, "sev_snp", "Extra inputs"),
    ],
)
def test_rule_policy_keys_and_lengths_are_checked_when_built(
    policy: dict[str, Any], path: str, message: str
) -> None:
    """go-sev-guest ``checkOptionsLengths`` / go-tdx-guest ``checkOptionsLengths`` check pin
    lengths up front; here every key too."""
    with pytest.raises(InputError) as err:
        Policy.model_validate(policy)
    text = str(err.value)
    assert path in text and message in text, text


# --- [sev-snp] ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def milan() -> SimulatedAmdRoots:
    return SimulatedAmdRoots.load("cocopart-tests", "Milan")


def sim(roots: SimulatedAmdRoots, **fields: Any) -> Evidence:
    return roots.evidence(roots.build_report(**fields))


def sim_run(roots: SimulatedAmdRoots, ev: Evidence, **section: Any) -> Verdict:
    return run(ev, SIM_NOW, roots.trust_store(), **{"sev-snp": section})


@pytest.mark.parametrize("key", ["host_data", "family_id", "image_id", "report_id", "report_id_ma"])
def test_rule_snp_policy_verbatim_fields(vectors: Path, milan: SimulatedAmdRoots, key: str) -> None:
    """go-sev-guest ``validateVerbatimFields``, with value lists."""
    real = snp_evidence(vectors, "routex-genoa-v5")
    have = SnpReport.parse(real.raw).model_dump()[key]
    ok = run(real, SNP_NOW, **{"sev-snp": {key: [b"\x01" * len(have), have]}})
    assert ok.ok and outcome(ok, f"policy.sev-snp.{key}")
    bad = run(real, SNP_NOW, **{"sev-snp": {key: b"\x01" * len(have)}})
    assert_only_failure(bad, f"policy.sev-snp.{key}")
    value = hashlib.sha512(key.encode()).digest()[: len(have)]
    ev = sim(milan, **{key: value})
    assert sim_run(milan, ev, **{key: value}).ok
    assert_only_failure(sim_run(milan, ev, **{key: bytes(len(have))}), f"policy.sev-snp.{key}")


def test_rule_snp_policy_chip_id_pins(vectors: Path) -> None:
    real = snp_evidence(vectors, "routex-turin-v5")
    chip = SnpReport.parse(real.raw).chip_id
    assert run(real, SNP_NOW, **{"sev-snp": {"chip_id": [bytes(64), chip]}}).ok
    assert_only_failure(
        run(real, SNP_NOW, **{"sev-snp": {"chip_id": [bytes(64)]}}), "policy.sev-snp.chip_id"
    )


def test_rule_snp_policy_vmpl_shortcut(vectors: Path) -> None:
    """go-sev-guest ``Options.VMPL``: the report's VMPL field (the GCP VMPL1 vector)."""
    ev = snp_evidence(vectors, "teekit-gcp-milan-v5-vmpl1-reportdata")
    both = {"allowed_layers": ["l1", "l2.1"]}
    assert run(ev, SNP_NOW, **both, **{"sev-snp": {"vmpl": [1]}}).ok
    assert_only_failure(
        run(ev, SNP_NOW, **both, **{"sev-snp": {"vmpl": [0, 2]}}), "policy.sev-snp.vmpl"
    )


def test_rule_snp_policy_minimum_guest_svn(vectors: Path) -> None:
    ev = snp_evidence(vectors, "trustee-azure-genoa-v3")  # GUEST_SVN 65547, debug policy
    allow = {"allow_debug": True}
    assert run(ev, SNP_NOW, **allow, **{"sev-snp": {"minimum_guest_svn": 65547}}).ok
    assert_only_failure(
        run(ev, SNP_NOW, **allow, **{"sev-snp": {"minimum_guest_svn": 65548}}),
        "policy.sev-snp.minimum_guest_svn",
    )


def test_rule_snp_policy_id_and_author_keys(milan: SimulatedAmdRoots) -> None:
    """go-sev-guest ``validateKeys``: a trusted author key, else a trusted ID key."""
    id_key, author = hashlib.sha384(b"id key").digest(), hashlib.sha384(b"author").digest()
    with_author = sim(milan, id_key_digest=id_key, author_key_digest=author, signer_info=1)
    id_only = sim(milan, id_key_digest=id_key)
    name = "policy.sev-snp.id_keys"
    assert sim_run(milan, id_only, trusted_id_key_digests=[id_key]).ok
    assert sim_run(
        milan, with_author, trusted_author_key_digests=[author], require_author_key=True
    ).ok
    assert sim_run(milan, with_author, require_id_block=True, trusted_id_key_digests=id_key).ok
    assert_only_failure(sim_run(milan, id_only, require_id_block=True), name)
    assert_only_failure(sim_run(milan, id_only, trusted_id_key_digests=[author]), name)
    no_author = sim_run(
        milan, id_only, require_author_key=True, trusted_author_key_digests=[author]
    )
    assert_only_failure(no_author, name)
    assert "AUTHOR_KEY_EN is not set" in detail(no_author, name)


def test_rule_snp_policy_guest_policy_bits(vectors: Path, milan: SimulatedAmdRoots) -> None:
    """go-sev-guest ``validatePolicy``; Trustee compares abi/smt/single-socket/migrate-ma."""
    real = snp_evidence(vectors, "routex-milan-v3")  # policy 0x30000: SMT allowed, ABI 0.0
    assert_only_failure(
        run(real, SNP_NOW, **{"sev-snp": {"allow_smt": False}}), "policy.sev-snp.smt"
    )
    assert_only_failure(
        run(real, SNP_NOW, **{"sev-snp": {"require_single_socket": True}}),
        "policy.sev-snp.single_socket",
    )
    assert_only_failure(
        run(real, SNP_NOW, **{"sev-snp": {"minimum_abi": "0.31"}}), "policy.sev-snp.minimum_abi"
    )
    strict = sim(milan, policy=0x100000 | 0x20000 | 0x1F | 0x100)  # single socket, ABI 1.31
    assert sim_run(
        milan, strict, allow_smt=False, require_single_socket=True, minimum_abi="1.31"
    ).ok
    assert_only_failure(sim_run(milan, strict, minimum_abi="1.32"), "policy.sev-snp.minimum_abi")
    migrating = sim(milan, policy=0x30000 | 1 << 18)
    assert_only_failure(sim_run(milan, migrating), "policy.sev-snp.migrate_ma")  # default
    assert sim_run(milan, migrating, allow_migrate_ma=True).ok


def test_rule_snp_policy_platform_info(vectors: Path) -> None:
    """PLATFORM_INFO flags (go-sev-guest ``validatePlatformInfo``; Trustee equality)."""
    ev = snp_evidence(vectors, "routex-milan-v3")  # 0x25: SMT_EN, ECC_EN, ALIAS_CHECK_COMPLETE
    assert run(
        ev,
        SNP_NOW,
        **{"sev-snp": {"platform_info": {"smt_en": True, "tsme_en": False, "ecc_en": True}}},
    ).ok
    assert_only_failure(
        run(ev, SNP_NOW, **{"sev-snp": {"platform_info": {"smt_en": False}}}),
        "policy.sev-snp.platform_info.smt_en",
    )


def test_rule_snp_policy_firmware_version_build_and_provisional(vectors: Path) -> None:
    """go-sev-guest ``validateVersion`` and ``validateTcb`` (committed vs current)."""
    routex = snp_evidence(vectors, "routex-milan-v3")  # 1.55.29, committed == current
    section = {"minimum_version": "1.55", "minimum_build": 29, "permit_provisional_firmware": False}
    assert run(routex, SNP_NOW, **{"sev-snp": section}).ok
    old = run(snp_evidence(vectors, "virtee-milan-v2"), SNP_NOW, **{"sev-snp": section})
    assert_only_failure(old, "policy.sev-snp.firmware")
    assert "below the minimum 1.55" in detail(old, "policy.sev-snp.firmware")
    assert_only_failure(
        run(routex, SNP_NOW, **{"sev-snp": {"minimum_build": 30}}), "policy.sev-snp.firmware"
    )
    # AWS: CURRENT_TCB microcode 220 above COMMITTED 219 — provisional firmware
    aws = snp_evidence(vectors, "trustee-aws-milan-vlek-v3")  # a VMPL1 report
    assert run(aws, SNP_NOW, allowed_layers=["l2.1"]).ok
    strict = run(
        aws, SNP_NOW, allowed_layers=["l2.1"], **{"sev-snp": {"permit_provisional_firmware": False}}
    )
    assert_only_failure(strict, "policy.sev-snp.firmware")
    assert "provisional firmware" in detail(strict, "policy.sev-snp.firmware")


def test_rule_snp_policy_committed_above_current_is_refused(milan: SimulatedAmdRoots) -> None:
    """go-sev-guest ``validateTcb``: COMMITTED <= CURRENT even with provisional firmware."""
    assert milan.tcb.microcode < 255
    higher = milan.tcb.raw + (1 << 56)  # microcode + 1 (byte 7 on Milan)
    verdict = sim_run(milan, sim(milan, committed_tcb=higher))
    assert_only_failure(verdict, "policy.sev-snp.firmware")
    assert "COMMITTED_TCB above CURRENT_TCB: microcode" in detail(
        verdict, "policy.sev-snp.firmware"
    )


def test_rule_snp_policy_minimum_launch_tcb(vectors: Path) -> None:
    ev = snp_evidence(vectors, "routex-genoa-v5")  # LAUNCH_TCB bl 10 tee 0 snp 27 ucode 88
    assert run(ev, SNP_NOW, **{"sev-snp": {"minimum_launch_tcb": {"snp": 27, "microcode": 88}}}).ok
    assert_only_failure(
        run(ev, SNP_NOW, **{"sev-snp": {"minimum_launch_tcb": {"snp": 28}}}),
        "policy.sev-snp.minimum_launch_tcb",
    )


# --- [tdx] --------------------------------------------------------------------------------------


def test_rule_tdx_policy_exact_td_attributes_and_xfam(vectors: Path) -> None:
    """go-tdx-guest ``exactByteMatch`` TD_ATTRIBUTES / XFAM, with value lists."""
    ev = tdx_evidence(vectors)  # attributes 0000001000000000, xfam e700060000000000
    assert run(
        ev,
        TDX_NOW,
        tdx={"td_attributes": "0000001000000000", "xfam": ["e702060000000000", "e700060000000000"]},
    ).ok
    assert_only_failure(
        run(ev, TDX_NOW, tdx={"td_attributes": "0000000000000000"}), "policy.tdx.td_attributes"
    )
    assert_only_failure(run(ev, TDX_NOW, tdx={"xfam": "e702060000000000"}), "policy.tdx.xfam")


def test_rule_tdx_policy_fixed_bits_hold_on_every_real_quote(vectors: Path) -> None:
    """go-tdx-guest ``validateXfam``/``validateTdAttributes`` with its fixed0/fixed1: every
    real quote passes the default; a narrower fixed0 or a wider fixed1 fails."""
    for quote in sorted((vectors / "tdx" / "quotes").glob("*.quote.bin")):
        ev = Evidence(vendor="tdx", format="tdx-quote", raw=quote.read_bytes())
        verdict = run(ev, TDX_NOW)
        assert outcome(verdict, "policy.tdx.td_attributes_fixed"), quote.name
        assert outcome(verdict, "policy.tdx.xfam_fixed"), quote.name
    ev = tdx_evidence(vectors)
    no_sept = run(ev, TDX_NOW, tdx={"td_attributes_fixed0": "0x8000000040000001"})
    assert_only_failure(no_sept, "policy.tdx.td_attributes_fixed")
    assert "0x10000000" in detail(no_sept, "policy.tdx.td_attributes_fixed")
    assert_only_failure(
        run(ev, TDX_NOW, tdx={"xfam_fixed1": 0x7 | 1 << 9}), "policy.tdx.xfam_fixed"
    )


def test_rule_tdx_policy_fixed_bits_on_simulated_quotes(tmp_path: Path) -> None:
    roots = SimulatedIntelRoots.load("tdx-tests", cache_dir=tmp_path)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    trust = TrustStore().with_root("tdx", roots.root_pem)

    def quote(**report: Any) -> Evidence:
        raw = roots.quote_from_tdreport(roots.build_tdreport(**report))
        return Evidence(vendor="tdx", format="tdx-quote", raw=raw, collateral=roots.collateral(now))

    assert run(quote(), now, trust).ok
    wide = (0x6DBE7 | 1 << 19).to_bytes(8, "little")  # APX-like bit outside xfamFixed0
    assert_only_failure(run(quote(xfam=wide), now, trust), "policy.tdx.xfam_fixed")
    lass = (1 << 28 | 1 << 27).to_bytes(8, "little")  # LASS is outside tdAttributesFixed0
    assert_only_failure(run(quote(attributes=lass), now, trust), "policy.tdx.td_attributes_fixed")
    assert run(
        quote(attributes=lass),
        now,
        trust,
        tdx={"td_attributes_fixed0": 0x1 | 1 << 27 | 1 << 28 | 1 << 30 | 1 << 63},
    ).ok


def test_rule_tdx_policy_qe_vendor_id(vectors: Path) -> None:
    ev = tdx_evidence(vectors)
    assert run(ev, TDX_NOW, tdx={"qe_vendor_id": INTEL_QE_VENDOR_ID}).ok
    assert_only_failure(
        run(ev, TDX_NOW, tdx={"qe_vendor_id": "00" * 16}), "policy.tdx.qe_vendor_id"
    )


def test_rule_tdx_policy_minimum_tee_tcb_svn(vectors: Path) -> None:
    """go-tdx-guest ``minVersionCheck`` (component-wise TEE_TCB_SVN 0801080000...)."""
    ev = tdx_evidence(vectors)
    assert run(ev, TDX_NOW, tdx={"minimum_tee_tcb_svn": "08010800" + "00" * 12}).ok
    bad = run(ev, TDX_NOW, tdx={"minimum_tee_tcb_svn": "08010900" + "00" * 12})
    assert_only_failure(bad, "policy.tdx.minimum_tee_tcb_svn")
    assert "byte 2: 8 < 9" in detail(bad, "policy.tdx.minimum_tee_tcb_svn")


def test_rule_tdx_policy_tcb_evaluation_number_and_date(vectors: Path) -> None:
    """The 2025-09 collateral has tcbEvaluationDataNumber 17; Trustee's min_tcb_date."""
    ev = tdx_evidence(vectors)
    assert run(
        ev,
        TDX_NOW,
        tdx={"minimum_tcb_evaluation_data_number": 17, "minimum_tcb_date": "2024-01-01T00:00:00Z"},
    ).ok
    assert_only_failure(
        run(ev, TDX_NOW, tdx={"minimum_tcb_evaluation_data_number": 18}),
        "policy.tdx.minimum_tcb_evaluation_data_number",
    )
    late = run(ev, TDX_NOW, tdx={"minimum_tcb_date": "2030-01-01T00:00:00Z"})
    assert_only_failure(late, "policy.tdx.minimum_tcb_date")
    no_collateral = Evidence(vendor="tdx", format="tdx-quote", raw=ev.raw)
    verdict = run(no_collateral, TDX_NOW, tdx={"minimum_tcb_evaluation_data_number": 1})
    assert "no TCB info was evaluated" in detail(
        verdict, "policy.tdx.minimum_tcb_evaluation_data_number"
    )


def test_rule_tdx_sept_ve_disable_failure_names_the_policy_key(vectors: Path) -> None:
    ev = tdx_evidence(vectors, "teekit-azure-v4.quote.bin")
    verdict = run(ev, TDX_NOW)
    text = detail(verdict, "tdx.td_attributes.sept_ve_disable")
    assert "waive_checks" in text and "require_sept_ve_disable" not in text
    assert run(
        ev,
        TDX_NOW,
        waive_checks=["tdx.td_attributes.sept_ve_disable"],
        accepted_tcb_status=["UpToDate", "OutOfDate"],
    ).ok


def test_vendor_sections_round_trip_through_json() -> None:
    policy = Policy.model_validate(
        {
            "sev-snp": {"host_data": "11" * 32, "vmpl": [1]},
            "tdx": {"xfam": ["e702060000000000"]},
            "expected_measurements": {"mrtd": "22" * 48},
        }
    )
    again = Policy.model_validate_json(policy.model_dump_json())
    assert again == policy
    assert isinstance(again.section("sev-snp"), SnpPolicy)
    assert isinstance(again.section("tdx"), TdxPolicy)


def test_every_vendor_check_can_be_waived_by_name() -> None:
    """The schemas list every check the plug-ins make (waive_checks is validated against
    them): scan the plug-ins' sources for check names."""
    import re

    import cocopart_sev_snp
    import cocopart_tdx
    from cocopart_sev_snp.policy import SNP_CHECKS
    from cocopart_tdx.policy import TDX_CHECKS

    found: set[str] = set()
    for package in (cocopart_sev_snp, cocopart_tdx):
        for source in Path(package.__file__).parent.glob("*.py"):
            found |= set(re.findall(r'name ?= ?"((?:snp|tdx)\.[a-z_.]+)"', source.read_text()))
    assert found and found <= SNP_CHECKS | TDX_CHECKS, sorted(found - (SNP_CHECKS | TDX_CHECKS))
