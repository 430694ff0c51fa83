"""cocopart.attest.inputs / encoding / hcl: bounded reading, text forms, recognition by the
platform plug-ins, Evidence JSON base64 (issue 16 point 2; issue 12 platform plug-ins)."""

from __future__ import annotations

import base64
import builtins
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cocopart.attest.encoding import decode_base64
from cocopart.attest.evidence import Evidence
from cocopart.attest.hcl import HclReport, hcl_report_type
from cocopart.attest.inputs import (
    MAX_INPUT_BYTES,
    decode_text,
    evidence_from_bytes,
    load_certificates,
    read_input,
)
from cocopart.attest.plugin import platform_for_provider, platforms
from cocopart.errors import CocopartError, EvidenceError, InputError


def test_an_oversized_file_is_refused_before_it_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size comes from stat: a 100 MB file is never read (it used to be read and decoded
    in full, ≈ 290 MB peak, before being refused)."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(100 * 1000 * 1000)  # sparse: costs no disk

    def no_open(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("opened a file that is too large")

    monkeypatch.setattr(builtins, "open", no_open)
    with pytest.raises(InputError, match="100000000 bytes; the limit is") as err:
        read_input(big, "evidence")
    assert err.value.source == str(big)


def test_streams_are_read_bounded() -> None:
    asked: list[int] = []

    class Counting(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            asked.append(-1 if size is None else size)
            return super().read(size)

    stream = Counting(b"\0" * (MAX_INPUT_BYTES + 10))
    with pytest.raises(InputError, match="more than"):
        read_input("-", "evidence", stdin=stream)  # type: ignore[arg-type]
    assert asked == [MAX_INPUT_BYTES + 1]
    assert read_input("-", "evidence", stdin=io.BytesIO(b"abc")) == b"abc"


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_input(tmp_path / "absent", "evidence")
    with pytest.raises(InputError, match="is a directory"):
        read_input(tmp_path, "evidence")


@pytest.mark.parametrize(
    "text,kind",
    [
        (b"0x0102\n", "hex"),
        (b"01 02", "hex"),
        (b"AQI=", "base64"),
        (b"AQI", "base64"),
        (b"-_8", "base64"),
        (b"\x01\x02", "binary"),
        (b"hello world!", "binary"),
    ],
)
def test_text_forms(text: bytes, kind: str) -> None:
    raw, found = decode_text(text)
    assert found == kind
    if kind != "binary":
        assert raw in (b"\x01\x02", b"\xfb\xff")


def test_base64_alphabets_are_not_mixed() -> None:
    assert decode_base64("+/8=") == decode_base64("-_8") == b"\xfb\xff"
    with pytest.raises(ValueError, match="mixes"):
        decode_base64("+_8=")


def test_evidence_json_writes_standard_base64_and_reads_both() -> None:
    """Issue 16 point 5: `jq -r .raw | base64 -d` failed on the URL-safe alphabet."""
    ev = Evidence(
        vendor="x",
        format="y",
        raw=b"\xfb\xff\xbf" * 4,
        certificates=[b"\xff"],
        collateral={"c": b"\xfe"},
        nonce=b"\xfa",
        manifest=b"\xfb",
    )
    doc = json.loads(ev.model_dump_json())
    assert base64.b64decode(doc["raw"], validate=True) == ev.raw
    assert "-" not in doc["raw"] and "_" not in doc["raw"]
    urlsafe = {
        k: (
            base64.urlsafe_b64encode(base64.b64decode(v)).decode().rstrip("=")
            if k in ("raw", "nonce", "manifest")
            else v
        )
        for k, v in doc.items()
    }
    assert Evidence.model_validate_json(json.dumps(urlsafe)) == ev
    assert Evidence.model_validate_json(ev.model_dump_json()) == ev


def test_recognition_comes_from_the_installed_platform_plugins(vectors: Path) -> None:
    names = {p.name for p in platforms()}
    assert {"sev-snp", "tdx"} <= names
    assert platform_for_provider("sev_guest") is not None
    assert platform_for_provider("tdx_guest") is not None
    quote = (vectors / "tdx/quotes/gotdx-emr-v5.quote.bin").read_bytes()
    evidence, notes = evidence_from_bytes(quote)
    assert (evidence.vendor, evidence.format) == ("tdx", "tdx-quote")
    assert notes == ["recognised tdx/tdx-quote: TD quote v5"]


def test_a_padded_snp_report_is_trimmed(vectors: Path) -> None:
    raw = (vectors / "snp/teekit-gcp-milan-v5.report.bin").read_bytes()
    evidence, notes = evidence_from_bytes(raw + bytes(4000 - len(raw)))
    assert evidence.raw == raw and "2816 bytes of zero padding" in notes[0]
    with pytest.raises(InputError, match="not evidence"):  # non-zero data after it
        evidence_from_bytes(raw + b"\x01" * 16)


def test_unknown_vendor_format_and_bytes_are_input_errors(vectors: Path) -> None:
    raw = (vectors / "snp/teekit-gcp-milan-v5.report.bin").read_bytes()
    with pytest.raises(InputError, match="--format foo"):
        evidence_from_bytes(raw, fmt="foo")
    with pytest.raises(InputError, match="--vendor acme"):
        evidence_from_bytes(raw, vendor="acme")
    with pytest.raises(InputError) as err:
        evidence_from_bytes(b"\x07" * 100, source="odd.bin")
    assert isinstance(err.value, CocopartError) and err.value.source == "odd.bin"


def test_a_json_wrapper_with_two_pieces_of_evidence_is_ambiguous(vectors: Path) -> None:
    raw = (vectors / "snp/teekit-gcp-milan-v5.report.bin").read_bytes()
    text = base64.b64encode(raw).decode()
    doc = json.dumps({"a": {"report": text}, "b": [raw.hex()]}).encode()
    with pytest.raises(InputError, match=r"several pieces of evidence \(at a.report, b\[0\]\)"):
        evidence_from_bytes(doc)


def test_certificates_in_every_form(vectors: Path, tmp_path: Path) -> None:
    chain = load_certificates(vectors / "snp/routex-genoa-v5.vcek-chain.pem")  # "#" comments
    assert len(chain) == 3
    der = tmp_path / "all.der"
    der.write_bytes(b"".join(chain))
    assert load_certificates(der) == chain
    b64 = tmp_path / "one.txt"
    b64.write_bytes(base64.b64encode(chain[0]))
    assert load_certificates(b64) == chain[:1]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no certificate files"):
        load_certificates(empty)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match="does not parse"):
        load_certificates(broken)


def test_rule_hcl_report_layout(vectors: Path) -> None:
    """azure-cvm-tooling az-cvm-vtpm/src/hcl/mod.rs: 32-byte header, 1184-byte hardware
    report, IgvmRequestData (report_type 2 = SNP, 4 = TDX; hash_type 1 = SHA-256) and the
    runtime claims it binds, on the three HCL vectors."""
    for rel, rtype in (
        ("snp/trustee-azure-milan-v2.hcl-report.bin", 2),
        ("snp/trustee-azure-genoa-v3.hcl-report.bin", 2),
        ("tdx/tdreport/trustee-azure.hcl-report.bin", 4),
    ):
        raw = (vectors / rel).read_bytes()
        hcl = HclReport.parse(raw)
        assert hcl_report_type(raw) == hcl.report_type == rtype
        assert hcl.hash_name == "sha256" and hcl.runtime_claims() is not None
        offset = 0x50 if rtype == 2 else 128  # REPORT_DATA in the SNP report / TDREPORT
        assert hcl.binding_problem(hcl.hardware[offset : offset + 64]) is None
    with pytest.raises(EvidenceError, match="HCLA"):
        HclReport.parse(b"XXXX" + bytes(2000))
    with pytest.raises(EvidenceError, match="runtime data says"):
        HclReport.parse(raw[: 0x4D4 + 10])
