"""TD quotes v4/v5 and PCK certificates: bit-exact round trips and field values on real data."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cocopart_tdx.pck import (
    INTEL_SGX_ROOT_CA_SPKI_SHA256,
    SGX_EXTENSIONS_OID,
    SgxExtensions,
    common_name,
    load_certificates,
    order_chain,
    signature_problems,
    spki_sha256,
)
from cocopart_tdx.quote import (
    BODY_TYPE_TD15,
    CERT_TYPE_PCK_CHAIN,
    QuoteLayout,
    QuoteSignatureData,
    TdQuote,
)
from cryptography import x509

from cocopart.errors import EvidenceError

QUOTES = sorted(
    [
        "gotdx-spr-v4.quote.bin",
        "gotdx-emr-v5.quote.bin",
        "gotdx-cos113-v4.quote.bin",
        "trustee-spr-debug-v4.quote.bin",
        "trustee-emr-v5.quote.bin",
        "trustee-gnr-v4.quote.bin",
        "trustee-azure-v4.quote.bin",
        "phala-emr-v4.quote.bin",
        "phala-emr-outdated-v5.quote.bin",
        "phala-emr-sample2-v4.quote.hex",
        "phala-tappd-v4.quote.hex",
        "teekit-moemahhouk-v4.quote.bin",
        "teekit-edgeless-v4.quote.bin",
        "teekit-zkdcap-v4.quote.bin",
        "teekit-azure-v4.quote.bin",
        "teekit-gcp-v4.quote.bin",
    ]
)


def read_quote(vectors: Path, name: str) -> bytes:
    """Quote bytes from a .bin file or a ("0x"-prefixed) hex text file."""
    data = (vectors / "tdx/quotes" / name).read_bytes()
    if name.endswith(".hex"):
        text = data.decode().strip()
        return bytes.fromhex(text.removeprefix("0x"))
    return data


@pytest.fixture(scope="module")
def manifest(vectors: Path) -> dict[str, dict[str, Any]]:
    """manifest.json verification records of the TDX quotes, by file name."""
    files = json.loads((vectors / "manifest.json").read_text())["files"]
    return {
        Path(f["file"]).name: f["verification"][0]
        for f in files
        if f["file"].startswith("tdx/quotes/") and f["verification"]
    }


def test_the_quote_list_covers_every_verified_quote_in_the_manifest(
    manifest: dict[str, dict[str, Any]],
) -> None:
    assert sorted(manifest) == QUOTES


@pytest.mark.parametrize("name", QUOTES)
def test_real_quote_round_trips_bit_exact(vectors: Path, name: str) -> None:
    raw = read_quote(vectors, name)
    quote = TdQuote.from_bytes(raw)
    assert quote.to_bytes() == raw
    assert quote.signed_bytes() == raw[: quote.signed_length]
    rebuilt = TdQuote(
        quote.header,
        quote.body,
        QuoteSignatureData.from_bytes(quote.signature_data.to_bytes()),
        quote.trailing,
    )
    assert rebuilt.to_bytes() == raw


@pytest.mark.parametrize("name", QUOTES)
def test_real_quote_fields_match_the_manifest(
    vectors: Path, name: str, manifest: dict[str, dict[str, Any]]
) -> None:
    want = manifest[name]
    quote = TdQuote.from_bytes(read_quote(vectors, name))
    body, qe = quote.body, quote.signature_data.qe
    assert qe is not None
    assert quote.version == want["version"] and quote.body_type == want["body_type"]
    assert quote.header.qe_vendor_id.hex() == want["qe_vendor_id"]
    assert len(quote.trailing) == want["trailing_bytes"]  # padding kept for exact round trips
    assert qe.qe_report.isvsvn == want["qe_isvsvn"]
    fields = {
        "tee_tcb_svn": body.tee_tcb_svn,
        "td_attributes": body.td_attributes,
        "xfam": body.xfam,
        "report_data": body.report_data,
        **body.measurements(),
    }
    for key, value in fields.items():
        if key in want:
            assert value.hex() == want[key], key
    if quote.body_type == BODY_TYPE_TD15:
        assert body.tee_tcb_svn2 is not None and body.tee_tcb_svn2.hex() == want["tee_tcb_svn2"]
        assert body.mrservicetd is not None and body.mrservicetd.hex() == want["mrservicetd"]
    else:
        assert body.tee_tcb_svn2 is None and "mrservicetd" not in body.measurements()


@pytest.mark.parametrize("name", QUOTES)
def test_pck_chain_and_sgx_extensions(
    vectors: Path, name: str, manifest: dict[str, dict[str, Any]]
) -> None:
    quote = TdQuote.from_bytes(read_quote(vectors, name))
    data = quote.signature_data.pck_chain_data
    assert data is not None
    chain = order_chain(load_certificates(data))
    assert [common_name(c) for c in chain] == manifest[name]["pck_chain"]
    assert signature_problems(chain) == []
    assert spki_sha256(chain[-1]) == INTEL_SGX_ROOT_CA_SPKI_SHA256
    ext = SgxExtensions.from_certificate(chain[0])
    assert ext.fmspc.hex() == manifest[name]["fmspc"]
    assert len(ext.ppid) == 16 and len(ext.tcb.cpusvn) == 16 and len(ext.tcb.comp_svns) == 16
    assert ext.pce_id == bytes(2)
    # our DER writer reproduces Intel's extension byte for byte
    raw_ext = chain[0].extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    assert isinstance(raw_ext.value, x509.UnrecognizedExtension)
    assert ext.to_der() == raw_ext.value.value


def test_sgx_extensions_agree_with_dcap_qvl(vectors: Path) -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    raw = read_quote(vectors, "gotdx-emr-v5.quote.bin")
    theirs = dcap_qvl.parse_quote(raw).pck_extension()
    data = TdQuote.from_bytes(raw).signature_data.pck_chain_data
    assert data is not None
    ours = SgxExtensions.from_certificate(order_chain(load_certificates(data))[0])
    assert (
        ours.ppid,
        ours.fmspc,
        ours.pce_id,
        ours.tcb.cpusvn,
        ours.tcb.pcesvn,
        ours.sgx_type,
        ours.platform_instance_id,
    ) == (
        theirs.ppid,
        theirs.fmspc,
        theirs.pce_id,
        theirs.cpu_svn,
        theirs.pce_svn,
        theirs.sgx_type,
        theirs.platform_instance_id,
    )


def test_synthetic_sample_carries_a_der_chain_root_first(vectors: Path) -> None:
    raw = (vectors / "tdx/synthetic-intel-sample/quote.dat").read_bytes()
    quote = TdQuote.from_bytes(raw)
    assert quote.to_bytes() == raw
    data = quote.signature_data.pck_chain_data
    assert data is not None and data[:1] == b"\x30"
    certs = load_certificates(data)
    assert common_name(certs[0]) == "Intel SGX Root CA"  # root first, as the README says
    chain = order_chain(certs)
    assert [common_name(c) for c in chain] == [
        "Intel SGX PCK Certificate",
        "Intel SGX PCK Processor CA",
        "Intel SGX Root CA",
    ]
    assert signature_problems(chain) == []
    assert spki_sha256(chain[-1]) != INTEL_SGX_ROOT_CA_SPKI_SHA256


def test_v5_layout_fields(vectors: Path) -> None:
    raw = read_quote(vectors, "trustee-emr-v5.quote.bin")
    assert struct.unpack_from("<HHI", raw, 0) == (5, 2, 0x81)
    assert struct.unpack_from("<HI", raw, 48) == (3, 648)  # body type 3 = TDX 1.5, 648 bytes
    layout = QuoteLayout.parse(raw)
    assert layout.signed_length == 48 + 6 + 648 and layout.sig_start == 48 + 6 + 648 + 4
    assert layout.sig_end == len(raw)
    quote = TdQuote.from_bytes(raw)
    qe = quote.signature_data.qe
    assert qe is not None and qe.certification.cert_type == CERT_TYPE_PCK_CHAIN
    assert quote.body.mrservicetd is not None and quote.body.mrservicetd.hex().startswith(
        "383c87d3"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:40], "48-byte header"),
        (lambda b: struct.pack("<H", 3) + b[2:], "quote version 3 is not supported"),
        (lambda b: b[:2] + struct.pack("<H", 3) + b[4:], "attestation key type 3"),
        (lambda b: b[:4] + struct.pack("<I", 0) + b[8:], "TEE type is 0x0"),
        (lambda b: b[:700], "signature data says"),
        (lambda b: b[:632], "ends before its signature data"),
        (lambda b: b[:632] + struct.pack("<I", 200) + b[636:], "says 4166 bytes, only 66 remain"),
        (lambda b: b[:632] + struct.pack("<I", 100) + b[636:], "100 bytes, too short"),
    ],
)
def test_malformed_v4_quotes_are_rejected_with_the_reason(
    vectors: Path, mutate: Any, message: str
) -> None:
    raw = read_quote(vectors, "teekit-edgeless-v4.quote.bin")
    with pytest.raises(EvidenceError, match=message):
        TdQuote.from_bytes(mutate(raw))


@pytest.mark.parametrize(
    ("body_type", "size", "message"),
    [
        (1, 384, "v5 body type 1 is not a TD report"),
        (3, 584, "must be 648 bytes"),
    ],
)
def test_malformed_v5_bodies_are_rejected(
    vectors: Path, body_type: int, size: int, message: str
) -> None:
    raw = read_quote(vectors, "gotdx-emr-v5.quote.bin")
    with pytest.raises(EvidenceError, match=message):
        TdQuote.from_bytes(raw[:48] + struct.pack("<HI", body_type, size) + raw[54:])


def test_inner_certification_data_overrun_is_rejected(vectors: Path) -> None:
    raw = bytearray(read_quote(vectors, "teekit-edgeless-v4.quote.bin"))
    layout = QuoteLayout.parse(bytes(raw))
    auth_len_off = layout.sig_start + 128 + 6 + 384 + 64
    struct.pack_into("<H", raw, auth_len_off, 0xFFFF)
    with pytest.raises(EvidenceError, match="QE authentication data"):
        TdQuote.from_bytes(bytes(raw))


def test_der_ending_in_whitespace_or_nul_bytes_still_parses() -> None:
    """DER is binary: a CRL or certificate whose last signature byte happens to be 0x20, 0x0a
    or 0x00 must not be stripped (a real flake: about 1 simulated CRL in 40 failed to parse).
    Parsing does not check the signature, so the last byte is set directly."""
    from datetime import UTC, datetime, timedelta

    from cocopart_tdx.pck import load_certificates, load_crl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(12345, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    cder = cert.public_bytes(serialization.Encoding.DER)
    for last in (b" ", b"\n", b"\0"):
        edited = der[:-1] + last
        assert load_crl(edited).public_bytes(serialization.Encoding.DER) == edited
        c2 = cder[:-1] + last
        got = load_certificates(c2 + c2 + b"\0\0")  # DCAP pads the chain with NULs
        assert [c.public_bytes(serialization.Encoding.DER) for c in got] == [c2, c2]
