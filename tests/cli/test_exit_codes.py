"""Issue 16 point 4: `cocopart verify` exits exactly as documented (docs/errors.md):
0 accepted, 1 not authentic, 2 unusable input or usage, 3 internal error, 4 authentic but
rejected by the policy — one test per code, on real vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import invoke
from cocopart_cli.errors import EXIT_CODES
from typer.testing import CliRunner

REPORT = "snp/teekit-gcp-milan-v5.report.bin"
VCEK = "snp/teekit-gcp-milan-v5.vcek.pem"
ASK_ARK = "snp/amd-roots/ask_ark_milan.pem"


def snp(vectors: Path, *more: object) -> list[object]:
    return [
        "verify",
        vectors / REPORT,
        "--certs",
        vectors / VCEK,
        "--certs",
        vectors / ASK_ARK,
        *more,
    ]


def test_every_verify_exit_code_is_documented() -> None:
    assert {0, 1, 2, 3, 4} <= set(EXIT_CODES)


def test_exit_0_accepted(runner: CliRunner, vectors: Path) -> None:
    res = invoke(runner, *snp(vectors))
    assert res.exit_code == 0, res.output
    assert "verified: all" in res.output


def test_exit_1_not_authentic(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    raw = bytearray((vectors / REPORT).read_bytes())
    raw[0x90] ^= 1  # the measurement, inside the signed bytes
    forged = tmp_path / "forged.bin"
    forged.write_bytes(bytes(raw))
    res = invoke(runner, "verify", forged, "--certs", vectors / VCEK, "--certs", vectors / ASK_ARK)
    assert res.exit_code == 1, res.output
    assert "snp.signature" in res.output


def test_exit_4_authentic_but_rejected_by_policy(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[expected_measurements]\nmeasurement = "' + "00" * 48 + '"\n')
    res = invoke(runner, *snp(vectors, "--policy", policy))
    assert res.exit_code == 4, res.output
    assert "policy.measurement.measurement" in res.output


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--format", "foo"], "--format foo: not a known evidence format"),
        (["--vendor", "acme"], "--vendor acme: no platform plug-in"),
        (["--format", "tdx-quote"], "not tdx-quote evidence"),
    ],
)
def test_exit_2_usage(runner: CliRunner, vectors: Path, extra: list[str], needle: str) -> None:
    res = invoke(runner, *snp(vectors, *extra))
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_exit_2_garbage_certs_never_replace_the_evidence_certificates(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    """A --certs file without a certificate used to be appended and break the chain the
    evidence carried; it is now refused, naming the file."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    res = invoke(runner, *snp(vectors, "--certs", garbage))
    assert res.exit_code == 2, res.output
    assert str(garbage) in res.output and "not a certificate" in res.output


def test_exit_2_garbage_trust_root(runner: CliRunner, vectors: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "root.pem"
    garbage.write_bytes(b"\x00" * 40)
    res = invoke(runner, *snp(vectors, "--trust-root", garbage))
    assert res.exit_code == 2, res.output
    assert str(garbage) in res.output


def test_exit_2_unparsable_evidence_even_when_forced(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    """With --vendor and --format the bytes are verified as that evidence; when nothing can
    be read from them it is unusable input (2), not a rejection (1)."""
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x07" * 100)
    res = invoke(runner, "verify", odd, "--vendor", "sev-snp", "--format", "snp-report")
    assert res.exit_code == 2, res.output
    assert "snp.report.parse" in res.output


def test_exit_3_internal_error(runner: CliRunner, tmp_path: Path, cca_platform: str) -> None:
    """An evidence plug-in that raises instead of failing a check is a bug: exit 3, with the
    exception named and no traceback unless --debug."""
    token = tmp_path / "token.cbor"
    token.write_bytes(b"\xd9\x01\x8fexplode")
    res = invoke(runner, "verify", token)
    assert res.exit_code == 3, res.output
    assert "internal error" in res.output and "toy verifier bug" in res.output
    assert "Traceback" not in res.output
