"""`cocopart attest` and `cocopart verify`, on real vectors and simulated evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, assert_schema, invoke
from typer.testing import CliRunner

from cocopart.attest.evidence import Evidence
from cocopart.attest.faketsm import FakeTsm

SNP_REPORT = "snp/virtee-milan-v2.report.bin"
SNP_CERTS = ("snp/virtee-milan-v2.vcek.der", "snp/virtee-milan.cert_chain.pem")


def snp_args(vectors: Path, report: Path | None = None) -> list[object]:
    args: list[object] = [report or vectors / SNP_REPORT, "--vendor", "sev-snp"]
    for c in SNP_CERTS:
        args += ["--certs", vectors / c]
    return args


# -- attest -----------------------------------------------------------------------------------


def test_attest_without_configfs_suggests_simulate(runner: CliRunner, tmp_path: Path) -> None:
    res = invoke(runner, "attest", "--configfs", tmp_path / "no" / "tsm" / "report")
    assert res.exit_code == 2
    assert "configfs-tsm" in res.output and "--simulate" in res.output
    assert "Traceback" not in res.output
    res = invoke(runner, "attest", "--configfs", tmp_path / "absent", "--json")
    assert res.exit_code == 2
    assert assert_schema(runner, "error", res.stdout)["error"]["exit_code"] == 2


def test_attest_bad_report_data(runner: CliRunner) -> None:
    res = invoke(runner, "attest", "--report-data", "xyz")
    assert res.exit_code == 2 and "hex" in res.output
    res = invoke(runner, "attest", "--report-data", "00" * 65)
    assert res.exit_code == 2 and "65 bytes" in res.output


def test_attest_through_a_configfs_tsm_tree(runner: CliRunner, tmp_path: Path) -> None:
    data = bytes(range(64))
    FakeTsm.sev_guest(vmpl=0).materialise(tmp_path, data)
    out = tmp_path / "ev.json"
    res = invoke(
        runner,
        "attest",
        "--configfs",
        tmp_path,
        "--entry",
        "snapshot",
        "--static-snapshot",
        "--report-data",
        data.hex(),
        "--out",
        out,
        "--json",
    )
    assert res.exit_code == 0, res.output
    report = assert_schema(runner, "attest", res.stdout)
    assert report["source"] == "configfs-tsm" and report["provider"] == "sev_guest"
    ev = Evidence.model_validate_json(out.read_text())
    assert ev.vendor == "sev-snp" and data in ev.raw


def test_attest_simulate_needs_evidence(
    runner: CliRunner, fakes: list[str], small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend whose attestation succeeds without Evidence: a clear error, exit 1."""
    from cocopart.ops import Attest, Operation, OperationResult
    from cocopart.testing.fake import FakeMachine

    original = FakeMachine.execute

    def no_evidence(self: FakeMachine, op: Operation) -> OperationResult:
        if isinstance(op, Attest):
            return OperationResult.success(op.describe())
        return original(self, op)

    monkeypatch.setattr(FakeMachine, "execute", no_evidence)
    res = invoke(runner, "attest", "--simulate", small)
    assert res.exit_code == 1 and "no evidence" in res.output


def test_attest_simulate_bad_layer(runner: CliRunner, fakes: list[str], small: Path) -> None:
    res = invoke(runner, "attest", "--simulate", small, "--layer", "l2.3")
    assert res.exit_code == 2 and "l2.3" in res.output


@pytest.mark.parametrize("source", ["service", "hardware"])
@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_attest_simulate_then_verify(
    runner: CliRunner, real_backends: list[str], tmp_path: Path, backend: str, source: str
) -> None:
    if backend not in real_backends:
        pytest.skip(f"backend {backend} does not import yet")
    out = tmp_path / "ev.json"
    res = invoke(
        runner,
        "attest",
        "--simulate",
        EXAMPLES / "guest.toml",
        "-b",
        backend,
        "--source",
        source,
        "--report-data",
        "ab" * 64,
        "--out",
        out,
    )
    if res.exit_code == 1 and "not-supported" in res.output:
        assert source == "hardware"  # e.g. TDX: an L2 cannot get a hardware report itself
        return
    assert res.exit_code == 0, res.output
    evidence = Evidence.model_validate_json(out.read_text())
    assert evidence.vendor == backend
    if backend == "tdx" and not evidence.collateral:
        pytest.skip("simulated TDX evidence carries no TCB collateral yet")
    root = out.with_name("ev.root.pem")
    assert root.read_text().startswith("-----BEGIN CERTIFICATE-----")
    policy = tmp_path / "policy.toml"
    text = 'allowed_layers = ["l1", "l2.1", "l2.2"]\n'
    if source == "hardware":  # a service report binds SHA-512(nonce || manifest) instead
        text += f'expected_report_data = "{"ab" * 64}"\n'
    policy.write_text(text)
    ok = invoke(runner, "verify", out, "--trust-root", root, "--policy", policy)
    assert ok.exit_code == 0, ok.output
    # without trusting the simulated root it is rejected
    assert invoke(runner, "verify", out, "--policy", policy).exit_code == 1


# -- verify -----------------------------------------------------------------------------------


def test_verify_real_snp_vector(runner: CliRunner, vectors: Path) -> None:
    res = invoke(runner, "verify", *snp_args(vectors))
    assert res.exit_code == 0, res.output
    assert "snp.signature" in res.stdout and "verified" in res.stdout
    res = invoke(runner, "verify", *snp_args(vectors), "--json")
    data = assert_schema(runner, "verify", res.stdout)
    assert data["ok"] is True and all(c["ok"] for c in data["verdict"]["checks"])


def test_verify_tampered_snp_copy(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    raw = bytearray((vectors / SNP_REPORT).read_bytes())
    raw[0x50] ^= 0x01  # a byte of REPORT_DATA, inside the signed area
    copy = tmp_path / "tampered.report.bin"
    copy.write_bytes(bytes(raw))
    res = invoke(runner, "verify", *snp_args(vectors, copy), "--json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    failed = {c["name"] for c in data["verdict"]["checks"] if not c["ok"]}
    assert "snp.signature" in failed
    text = invoke(runner, "verify", *snp_args(vectors, copy))
    assert text.exit_code == 1 and "rejected" in text.stdout and "FAIL" in text.stdout


def test_verify_evidence_json_and_policy(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    ev = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / SNP_REPORT).read_bytes(),
        certificates=[(vectors / c).read_bytes() for c in SNP_CERTS],
    )
    path = tmp_path / "ev.json"
    path.write_text(ev.model_dump_json())
    measurement = (
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c"
        "60bd95b9c480cd81841f"
    )
    good = tmp_path / "good.toml"
    good.write_text(
        f'allowed_layers = ["l1"]\n[expected_measurements]\nmeasurement = "{measurement}"\n'
    )
    assert invoke(runner, "verify", path, "--policy", good).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'allowed_layers = ["l1"]\n[expected_measurements]\nmeasurement = "{"00" * 48}"\n'
    )
    res = invoke(runner, "verify", path, "--policy", bad)
    assert res.exit_code == 4 and "policy.measurement.measurement" in res.stdout  # policy
    # Issue 16 point 6 changed this case: a pin of the wrong length is refused when the
    # policy is loaded (exit 2, file, line and field), no longer a mismatch at verify time.
    bad.write_text('allowed_layers = ["l1"]\n[expected_measurements]\nmeasurement = "00"\n')
    res = invoke(runner, "verify", path, "--policy", bad)
    assert res.exit_code == 2 and "bad.toml:3" in res.output
    assert "expected_measurements.measurement" in res.output and "48 bytes" in res.output
    # the example policy file loads and accepts this VMPL0 report
    assert invoke(runner, "verify", path, "--policy", EXAMPLES / "policy.toml").exit_code == 0


def test_verify_as_of_a_time(runner: CliRunner, vectors: Path) -> None:
    res = invoke(runner, "verify", *snp_args(vectors), "--now", "2040-01-01T00:00:00Z")
    assert res.exit_code == 1 and "snp.chain.validity" in res.stdout
    assert invoke(runner, "verify", *snp_args(vectors), "--now", "yesterday").exit_code == 2


def test_verify_tdx_quote_with_collateral(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    tdx = vectors / "tdx"
    quote = tdx / "quotes" / "gotdx-spr-v4.quote.bin"
    coll = tdx / "collateral"
    args: list[object] = [
        "--vendor",
        "tdx",
        "--now",
        "2023-06-20T00:00:00Z",
        "--json",
        "--collateral",
        f"tcb_info={coll / 'gotdx-2023-06.tcbinfo.50806f000000.json'}",
        "--collateral",
        f"qe_identity={coll / 'gotdx-2023-06.qeidentity.json'}",
        "--collateral",
        f"tcb_info_issuer_chain={coll / 'intel-tcb-signing-chain-2018.pem'}",
    ]
    res = invoke(runner, "verify", quote, *args)
    checks = {c["name"]: c["ok"] for c in json.loads(res.stdout)["verdict"]["checks"]}
    assert checks["tdx.quote.signature"] and checks["tdx.pck.chain"]
    raw = bytearray(quote.read_bytes())
    raw[200] ^= 0xFF  # inside the TD quote body
    copy = tmp_path / "tampered.dat"
    copy.write_bytes(bytes(raw))
    res = invoke(runner, "verify", copy, *args)
    assert res.exit_code == 1
    checks = {c["name"]: c["ok"] for c in json.loads(res.stdout)["verdict"]["checks"]}
    assert checks["tdx.quote.signature"] is False


@pytest.mark.parametrize(
    "policy,needle",
    [
        ('allowed_layers = ["l1"\n', ":1"),  # TOML syntax
        ('allowed_layers = ["l1"]\nexpected_report_data = "zz"\n', ":2"),  # bad hex
        ('allowed_layers = ["l1"]\nallow_debugging = true\n', ":2"),  # unknown field
        ('allowed_layers = "l1"\n', "allowed_layers"),  # wrong type
    ],
)
def test_verify_bad_policy_is_exit_2(
    runner: CliRunner, vectors: Path, tmp_path: Path, policy: str, needle: str
) -> None:
    p = tmp_path / "p.toml"
    p.write_text(policy)
    res = invoke(runner, "verify", *snp_args(vectors), "--policy", p)
    assert res.exit_code == 2, res.output
    assert str(p) in res.output and needle in res.output


def test_verify_input_errors(runner: CliRunner, tmp_path: Path) -> None:
    res = invoke(runner, "verify", tmp_path / "absent.bin")
    assert res.exit_code == 2 and "no such file" in res.output
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x07" * 100)
    res = invoke(runner, "verify", odd)
    assert res.exit_code == 2 and "--vendor" in res.output
    res = invoke(runner, "verify", odd, "--vendor", "arm-cca")
    assert res.exit_code == 2 and "installed" in res.output
    notjson = tmp_path / "e.json"
    notjson.write_text('{"vendor": "sev-snp"}')
    res = invoke(runner, "verify", notjson)
    assert res.exit_code == 2 and "Evidence JSON" in res.output
    report = bytearray(0x4A0)
    report[0], report[0x34] = 2, 1  # an SNP report's version and signature algorithm
    shaped = tmp_path / "report.bin"
    shaped.write_bytes(bytes(report))
    res = invoke(runner, "verify", shaped, "--collateral", "novalue")
    assert res.exit_code == 2 and "NAME=FILE" in res.output


@pytest.mark.parametrize("source", ["service", "hardware"])
@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_freshness_expected_nonce_works_for_both_sources(
    runner: CliRunner, real_backends: list[str], tmp_path: Path, backend: str, source: str
) -> None:
    """Issue 16 point 1: `attest --report-data N` then a policy `expected_nonce = N` (or
    `verify --nonce N`) accepts the evidence — service evidence binds
    SHA-512(nonce || manifest) (sev-snp.md §3.1), hardware evidence the nonce itself; another
    nonce is rejected; `expected_report_data = N` on service evidence fails and says why."""
    if backend not in real_backends:
        pytest.skip(f"backend {backend} does not import yet")
    nonce = "5a" * 32
    out = tmp_path / "ev.json"
    res = invoke(
        runner,
        "attest",
        "--simulate",
        EXAMPLES / "guest.toml",
        "-b",
        backend,
        "--source",
        source,
        "--report-data",
        nonce,
        "--out",
        out,
    )
    if res.exit_code == 1 and "not-supported" in res.output:
        assert (backend, source) == ("tdx", "hardware")  # an L2 gets no hardware report
        return
    assert res.exit_code == 0, res.output
    root = out.with_name("ev.root.pem")
    policy = tmp_path / "policy.toml"
    base = 'allowed_layers = ["l1", "l2.1", "l2.2"]\nwaive_checks = ["policy.tcb_status"]\n'
    policy.write_text(base + f'expected_nonce = "{nonce}"\n')
    ok = invoke(runner, "verify", out, "--trust-root", root, "--policy", policy, "--json")
    checks = {c["name"]: c for c in json.loads(ok.stdout)["verdict"]["checks"]}
    assert checks["policy.nonce"]["ok"], checks["policy.nonce"]
    flag = invoke(
        runner,
        "verify",
        out,
        "--trust-root",
        root,
        "--nonce",
        "0x" + nonce,
        "--policy",
        policy,
        "--json",
    )
    assert {c["name"]: c["ok"] for c in json.loads(flag.stdout)["verdict"]["checks"]}[
        "policy.nonce"
    ]
    stale = invoke(
        runner,
        "verify",
        out,
        "--trust-root",
        root,
        "--policy",
        policy,
        "--nonce",
        "11" * 32,
        "--json",
    )
    assert stale.exit_code == 4  # authentic, rejected by the policy
    assert not {c["name"]: c["ok"] for c in json.loads(stale.stdout)["verdict"]["checks"]}[
        "policy.nonce"
    ]
    policy.write_text(base + f'expected_report_data = "{nonce}"\n')
    raw = invoke(runner, "verify", out, "--trust-root", root, "--policy", policy, "--json")
    check = {c["name"]: c for c in json.loads(raw.stdout)["verdict"]["checks"]}[
        "policy.report_data"
    ]
    if source == "service":
        assert not check["ok"] and "expected_nonce" in check["detail"]
        assert "SHA-512(nonce || services manifest)" in check["detail"]
    else:
        assert check["ok"]


def test_freshness_bad_nonce_flag_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    ev = tmp_path / "ev.json"
    ev.write_text("{}")
    for bad, words in (("xyz", "not hex"), ("00" * 65, "at most 64")):
        res = invoke(runner, "verify", ev, "--nonce", bad)
        assert res.exit_code == 2 and words in res.output, res.output
