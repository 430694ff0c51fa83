"""`cocopart verify` policy files and quick pins (issue 16 point 6): every key and length is
checked when the policy is loaded (exit 2 naming file, line and field); quick flags pin the
common fields for a one-off check (exit 4 when only the policy rejects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, invoke
from typer.testing import CliRunner

NOW = ["--now", "2025-12-08T00:00:00Z"]
MEASUREMENT = (
    "195b01b74976a1faba13bd85eaf787958f0a46e6dddd45c5bdbf8673522777842b8057ae5d866b7"
    "5416efb62012deaa3"
)


def snp(vectors: Path) -> list[object]:
    """routex-milan-v3 with its VCEK alone (ASK/ARK built in)."""
    return [
        vectors / "snp" / "routex-milan-v3.report.bin",
        "--certs",
        vectors / "snp" / "routex-milan-v3.vcek-chain.pem",
        *NOW,
    ]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            'allowed_layers = ["l1"]\n[minimum_tcb]\nsnp = 3\nsnp_spl = 4\n',
            4,
            "minimum_tcb.snp_spl",
            "unknown TCB component 'snp_spl'",
        ),
        (
            '[expected_measurements]\nmeasurement = ["00"]\n',
            2,
            "expected_measurements.measurement",
            "must be 48 bytes",
        ),
        (
            'allow_debug = false\n\n[sev-snp]\nvmpl = [0]\nhost_data = "0011"\n',
            5,
            "sev-snp.host_data",
            "must be 32 bytes",
        ),
        (
            "[sev-snp]\nplatform_info = { smt = false }\n",
            2,
            "sev-snp.platform_info",
            "unknown PLATFORM_INFO flag 'smt'",
        ),
        ('[tdx]\nxfam = "e702"\n', 2, "tdx.xfam", "must be 8 bytes"),
        ('[tdx]\nqe_vendor = "00"\n', 2, "tdx.qe_vendor", "unknown field"),
        ('waive_checks = ["tdx.sept_ve"]\n', 1, "waive_checks.0", "unknown check"),
        ("[sev_snp]\nvmpl = [0]\n", 1, "sev_snp", "sections: [sev-snp], [tdx]"),
        ('expected_nonce = "xyz"\n', 1, "expected_nonce", "expected hex"),
    ],
)
def test_policy_file_errors_name_file_line_and_field(
    runner: CliRunner, vectors: Path, tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(text)
    res = invoke(runner, "verify", *snp(vectors), "--policy", policy)
    assert res.exit_code == 2, res.output
    assert f"p.toml:{line}" in res.output and f"'{field}'" in res.output, res.output
    assert message in res.output, res.output


def test_policy_file_vendor_sections_pass_and_fail(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        f'[expected_measurements]\nmeasurement = ["{"00" * 48}", "{MEASUREMENT}"]\n'
        '[sev-snp]\nvmpl = [0]\nminimum_version = "1.55"\n'
        "[sev-snp.platform_info]\ntsme_en = false\n"
    )
    res = invoke(runner, "verify", *snp(vectors), "--policy", policy)
    assert res.exit_code == 0, res.output
    assert "policy.sev-snp.platform_info.tsme_en" in res.stdout
    policy.write_text('[sev-snp]\nminimum_version = "1.56"\n')
    res = invoke(runner, "verify", *snp(vectors), "--policy", policy)
    assert res.exit_code == 4 and "policy.sev-snp.firmware" in res.stdout


def test_quick_pins_pass_and_fail(runner: CliRunner, vectors: Path) -> None:
    ok = invoke(
        runner,
        "verify",
        *snp(vectors),
        "--measurement",
        MEASUREMENT,
        "--measurement",
        f"measurement={'11' * 48}",
        "--host-data",
        "00" * 32,
        "--vmpl",
        "0",
        "--min-tcb",
        "snp=24",
        "--report-data",
        "a7ca989b0359ea4e5efc47bdbcad84b2df3f26fd09ee7bda5bb27953abf68992",
    )
    assert ok.exit_code == 0, ok.output
    for flag, value, check in (
        ("--measurement", "11" * 48, "policy.measurement.measurement"),
        ("--host-data", "11" * 32, "policy.sev-snp.host_data"),
        ("--vmpl", "1", "policy.sev-snp.vmpl"),
        ("--min-tcb", "snp=25", "policy.tcb.snp"),
        ("--report-data", "11", "policy.report_data"),
    ):
        res = invoke(runner, "verify", *snp(vectors), flag, value)
        assert res.exit_code == 4, (flag, res.output)
        assert check in res.stdout and "FAIL" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--measurement", "abcd"], "--measurement: expected_measurements.measurement: must be 48"),
        (["--measurement", "mrtd=" + "00" * 48], "no measurement 'mrtd'"),
        (["--min-tcb", "snpp=3"], "--min-tcb: minimum_tcb.snpp: unknown TCB component"),
        (["--min-tcb", "snp"], "--min-tcb snp: use NAME=VALUE"),
        (["--host-data", "00"], "--host-data: sev-snp.host_data: must be 32 bytes"),
        (["--vmpl", "4"], "--vmpl:"),
        (["--waive", "snp.signatur"], "--waive: waive_checks.0: unknown check"),
        (["--allow-layer", "l2-1"], "--allow-layer: allowed_layers.1: unknown layer"),
    ],
)
def test_quick_pin_errors_name_the_flag(
    runner: CliRunner, vectors: Path, args: list[str], message: str
) -> None:
    res = invoke(runner, "verify", *snp(vectors), *args)
    if "no measurement" in message:  # a valid name of another vendor: a policy failure
        assert res.exit_code == 4 and message in res.stdout
        return
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output


def test_quick_pins_for_tdx(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    quote = vectors / "tdx" / "quotes" / "teekit-azure-v4.quote.bin"
    collateral = vectors / "tdx" / "dcap-qvl-collateral" / "2025-09-00806f050000.json"
    split = tmp_path / "c"
    split.mkdir()
    from cocopart_tdx.collateral import collateral_from_dcap_qvl_json

    args: list[object] = [quote, "--now", "2025-09-30T00:00:00Z"]
    for name, data in collateral_from_dcap_qvl_json(collateral.read_bytes()).items():
        (split / name).write_bytes(data)
        args += ["--collateral", f"{name}={split / name}"]
    res = invoke(runner, "verify", *args)
    assert res.exit_code == 1 and "waive_checks" in res.stdout  # SEPT_VE_DISABLE off (Azure)
    res = invoke(
        runner,
        "verify",
        *args,
        "--waive",
        "tdx.td_attributes.sept_ve_disable",
        "--accept-tcb-status",
        "OutOfDate",
    )
    assert res.exit_code == 0, res.output
    assert invoke(runner, "verify", *args, "--host-data", "00" * 32).exit_code == 2


def test_example_policies_load_and_the_full_one_names_every_field() -> None:
    from cocopart_cli.policyfile import load_policy
    from cocopart_sev_snp.policy import SnpPolicy
    from cocopart_tdx.policy import TdxPolicy

    from cocopart.attest.policy import Policy

    assert load_policy(EXAMPLES / "policy.toml").allowed_layers == ["l1", "l2.1", "l2.2"]
    full = load_policy(EXAMPLES / "policy-full.toml")
    assert full.section("sev-snp") is not None and full.section("tdx") is not None
    text = (EXAMPLES / "policy-full.toml").read_text()
    for model in (Policy, SnpPolicy, TdxPolicy):
        for name in model.model_fields:
            if name != "vendor":
                assert f"\n{name} =" in text or f"[{name}]" in text or f".{name}]" in text, name
