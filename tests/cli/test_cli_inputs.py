"""Issue 16 points 2 and 5: every input form people have reaches `verify` and `show`,
recognised by the platform plug-ins (issue 12), on the real vectors; `show` decodes
without verifying; `attest --raw-out` writes the raw report."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, assert_schema, invoke
from typer.testing import CliRunner

SNP_REPORT = "snp/teekit-gcp-milan-v5.report.bin"
SNP_CERTS = ("snp/teekit-gcp-milan-v5.vcek.pem", "snp/amd-roots/ask_ark_milan.pem")
QUOTE = "tdx/quotes/teekit-gcp-v4.quote.bin"
COLLATERAL = "tdx/dcap-qvl-collateral/2025-09-00806f050000.json"
NOW = "2025-09-30T00:00:00Z"


def certs(vectors: Path) -> list[object]:
    return [x for c in SNP_CERTS for x in ("--certs", vectors / c)]


def verify_json(runner: CliRunner, *args: object) -> dict[str, object]:
    res = invoke(runner, "verify", *args, "--json")
    assert res.exit_code == 0, res.output
    report = assert_schema(runner, "verify", res.stdout)
    assert isinstance(report, dict)
    return report


def tdx(vectors: Path, evidence: object, *more: object) -> list[object]:
    return [evidence, "--collateral", vectors / COLLATERAL, "--now", NOW, *more]


@pytest.mark.parametrize("form", ["hex", "0xhex", "base64", "base64url", "json", "padded"])
def test_snp_report_in_every_form(
    runner: CliRunner, vectors: Path, tmp_path: Path, form: str
) -> None:
    raw = (vectors / SNP_REPORT).read_bytes()
    blob = {
        "hex": raw.hex().encode(),
        "0xhex": b"0x" + raw.hex().encode() + b"\n",
        "base64": base64.b64encode(raw),
        "base64url": base64.urlsafe_b64encode(raw),
        "json": json.dumps({"attestation": {"report": base64.b64encode(raw).decode()}}).encode(),
        "padded": raw + bytes(4000 - len(raw)),
    }[form]
    path = tmp_path / "evidence.txt"  # no telling suffix
    path.write_bytes(blob)
    report = verify_json(runner, path, *certs(vectors))
    assert (report["vendor"], report["format"]) == ("sev-snp", "snp-report")


def test_tdx_quote_as_0x_hex_with_vendor_is_decoded(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    """It used to be parsed as binary ("TEE type 0x32303030")."""
    path = tmp_path / "quote.hex"
    path.write_text("0x" + (vectors / QUOTE).read_bytes().hex())
    report = verify_json(runner, *tdx(vectors, path, "--vendor", "tdx"))
    assert report["format"] == "tdx-quote"


def test_teekit_json_wrapper_and_stdin(runner: CliRunner, vectors: Path) -> None:
    """{"tdx": {"quote": base64, "verifier_nonce": {...}}}: the one string that is evidence
    is found; the same bytes arrive through stdin (-)."""
    wrapped = vectors / "tdx/quotes/teekit-gcp-v4.json"
    report = verify_json(runner, *tdx(vectors, wrapped))
    assert any("tdx.quote" in n for n in report["notes"])  # type: ignore[union-attr]
    from cocopart_cli.main import app

    res = runner.invoke(
        app,
        ["verify", "-", "--collateral", str(vectors / COLLATERAL), "--now", NOW],
        input=wrapped.read_bytes(),
    )
    assert res.exit_code == 0, res.output


def test_dcap_qvl_collateral_json_and_unknown_names(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    report = verify_json(runner, *tdx(vectors, vectors / QUOTE))
    checks = {c["name"]: c["ok"] for c in report["verdict"]["checks"]}  # type: ignore[index]
    assert checks["tdx.collateral.present"] and checks["tdx.tcb_status"]
    res = invoke(
        runner, "verify", vectors / QUOTE, "--collateral", f"tcbinfo={vectors / COLLATERAL}"
    )
    assert res.exit_code == 2 and "not a collateral name" in res.output
    assert "tcb_info" in res.output  # the names it would take
    not_bundle = tmp_path / "x.json"
    not_bundle.write_text("{}")
    res = invoke(runner, "verify", vectors / QUOTE, "--collateral", not_bundle)
    assert res.exit_code == 2 and "not a collateral bundle" in res.output


def test_snp_certificate_table_and_directory_as_certs(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    """What configfs-tsm auxblob and the extended guest request return works as --certs, and
    so does a directory of certificates (snpguest's layout)."""
    from cocopart_sev_snp import cert_table

    from cocopart.attest.inputs import load_certificates

    vcek, ask, ark = load_certificates(vectors / SNP_CERTS[0]) + load_certificates(
        vectors / SNP_CERTS[1]
    )
    table = tmp_path / "auxblob.bin"
    table.write_bytes(cert_table.build([("ARK", ark), ("VCEK", vcek), ("ASK", ask)]))
    verify_json(runner, vectors / SNP_REPORT, "--certs", table)
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "vcek.der").write_bytes(vcek)
    (folder / "ask_ark.pem").write_bytes((vectors / SNP_CERTS[1]).read_bytes())
    verify_json(runner, vectors / SNP_REPORT, "--certs", folder)


def test_azure_tdx_hcl_report_goes_to_the_tdx_parser(runner: CliRunner, vectors: Path) -> None:
    """It used to be sent to the SNP parser. Alone it is unauthenticated (the TDREPORT MAC),
    and says so; with the TD quote made from it, it verifies."""
    hcl = vectors / "tdx/tdreport/trustee-azure.hcl-report.bin"
    res = invoke(runner, "verify", hcl, "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert (report["vendor"], report["format"]) == ("tdx", "azure-hcl-report")
    failed = {c["name"]: c["detail"] for c in report["verdict"]["checks"] if not c["ok"]}
    assert list(failed) == ["tdx.tdreport.mac"] and "td_quote" in failed["tdx.tdreport.mac"]
    claims = report["verdict"]["claims"]
    assert claims["extra"]["runtime_claims"]["keys"][0]["kid"] == "HCLAkPub"


def test_show_decodes_without_verifying(runner: CliRunner, vectors: Path) -> None:
    cases = {
        SNP_REPORT: ("sev-snp", "snp-report", "chip_id"),
        QUOTE: ("tdx", "tdx-quote", "fmspc"),
        "tdx/quotes/gotdx-emr-v5.quote.bin": ("tdx", "tdx-quote", "mrservicetd"),
        "tdx/tdreport/trustee-azure.tdreport.bin": ("tdx", "tdreport", "tee_tcb_info_hash"),
        "tdx/tdreport/trustee-azure.hcl-report.bin": ("tdx", "azure-hcl-report", "HCLAkPub"),
        "snp/trustee-azure-genoa-v3.hcl-report.bin": (
            "sev-snp",
            "azure-hcl-report",
            "vm-configuration",
        ),
        "snp/teekit-gcp-milan-v5.vcek.pem": ("", "x509", "hwid"),
        "tdx/synthetic-intel-sample/pckCert.pem": ("", "x509", "fmspc"),
    }
    for rel, (vendor, fmt, field) in cases.items():
        res = invoke(runner, "show", vectors / rel, "--json")
        assert res.exit_code == 0, (rel, res.output)
        shown = assert_schema(runner, "show", res.stdout)["decoded"]
        assert (shown["vendor"], shown["format"]) == (vendor, fmt), rel
        assert field in res.stdout, rel
        text = invoke(runner, "show", vectors / rel)
        assert text.exit_code == 0 and field in text.output.replace(" ", ""), rel


def test_show_a_certificate_table_and_unknown_input(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    from cocopart_sev_snp import cert_table

    from cocopart.attest.inputs import load_certificates

    vcek, ask, ark = load_certificates(vectors / SNP_CERTS[0]) + load_certificates(
        vectors / SNP_CERTS[1]
    )
    table = tmp_path / "auxblob.bin"
    table.write_bytes(cert_table.build([("VCEK", vcek), ("ASK", ask), ("ARK", ark)]))
    res = invoke(runner, "show", table, "--json")
    assert res.exit_code == 0, res.output
    decoded = json.loads(res.stdout)["decoded"]
    assert decoded["format"] == "certificate-table" and "AMD SEV-SNP extensions" in res.stdout
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x01\x02" * 300)
    res = invoke(runner, "show", junk)
    assert (
        res.exit_code == 2
        and "not evidence any installed platform plug-in recognises" in res.output
    )


def test_a_third_platform_plugin_is_picked_up_by_verify_and_show(
    runner: CliRunner, tmp_path: Path, cca_platform: str
) -> None:
    """Recognition comes from plug-ins: the tests-only Arm CCA sketch (tests/cca_plugin.py),
    installed through entry points, is recognised by verify and decoded by show."""
    token = tmp_path / "token.bin"
    token.write_bytes(b"\xd9\x01\x8f" + b"realm" * 20)
    res = invoke(runner, "verify", token, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert (report["vendor"], report["format"]) == (cca_platform, "cca-token")
    assert "cca.signature" in {c["name"] for c in report["verdict"]["checks"]}
    shown = invoke(runner, "show", token)
    assert shown.exit_code == 0 and "CCA token" in shown.output
    forged = tmp_path / "forged.bin"
    forged.write_bytes(b"\xd9\x01\x8fforged")
    assert invoke(runner, "verify", forged).exit_code == 1


def test_attest_raw_out_writes_the_raw_report(
    runner: CliRunner, real_backends: list[str], tmp_path: Path
) -> None:
    for backend in ("sev-snp", "tdx"):
        if backend not in real_backends:
            continue
        out, raw = tmp_path / f"{backend}.json", tmp_path / f"{backend}.raw"
        res = invoke(
            runner,
            "attest",
            "--simulate",
            EXAMPLES / "guest.toml",
            "-b",
            backend,
            "--report-data",
            "5a",
            "--out",
            out,
            "--raw-out",
            raw,
            "--json",
        )
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["raw_out"] == str(raw)
        document = json.loads(out.read_text())
        # standard base64, as `jq -r .raw | base64 -d` reads it
        assert base64.b64decode(document["raw"], validate=True) == raw.read_bytes()
        shown = invoke(runner, "show", raw, "--json")
        assert json.loads(shown.stdout)["decoded"]["vendor"] == backend
