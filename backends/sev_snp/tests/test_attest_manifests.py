"""Issue 13 point 4: SVSM attestation manifests as COCONUT emits them.

* SVSM_ATTEST_SINGLE_SERVICE binds and returns the service's own manifest — the vTPM's EK
  public key (a TPMT_PUBLIC), not a GUID table (CS kernel/src/protocols/attest.rs
  attest_single_vtpm / attest_single_service; kernel/src/vtpm/mod.rs vtpm_get_manifest).
* SVSM_ATTEST_SERVICES returns the GUID table of the services (CS GuidTable::to_vec), without
  cocopart's requester entry unless the guest opts in (``attest_requester_entry``).
* A verifier written for COCONUT evidence parses ours (a strict spec-layout parser below),
  and ours parses COCONUT-shaped evidence (a fixture built by hand from the layout of the
  SVSM specification 58019, "Attestation Protocol": 24-byte header, 24-byte entries).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cocopart_sev_snp.report import SnpReport
from cocopart_sev_snp.simroots import SimulatedAmdRoots
from cocopart_sev_snp.verify import SnpEvidenceVerifier
from snp_helpers import guest, machine

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import Verifier
from cocopart.ops import Attest
from cocopart.partition import Partition

TABLE_GUID = uuid.UUID("63849ebb-3d92-4670-a1ff-58f9c94b87bb")  # SVSM spec / CS attest.rs
VTPM_GUID = uuid.UUID("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")
UEFI_MM_GUID = uuid.UUID("a4453a59-9e1b-4787-a033-1986d6adbe55")
NONCE = bytes(range(64))
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# -- written from the spec layout, independently of cocopart.protocol.manifest ----------------
def coconut_guid_table(entries: list[tuple[uuid.UUID, bytes]]) -> bytes:
    """A services manifest as CS GuidTable::to_vec writes it: table GUID (little-endian
    bytes), u32 total length, u32 count; per entry GUID, u32 offset from the start, u32
    length; then the blobs in entry order."""
    header = 24 * (1 + len(entries))
    total = header + sum(len(b) for _g, b in entries)
    out = TABLE_GUID.bytes_le + struct.pack("<II", total, len(entries))
    cursor = header
    for g, blob in entries:
        out += g.bytes_le + struct.pack("<II", cursor, len(blob))
        cursor += len(blob)
    return out + b"".join(b for _g, b in entries)


def spec_parse(manifest: bytes) -> dict[uuid.UUID, bytes]:
    """What a verifier written for COCONUT evidence does with a services manifest."""
    assert uuid.UUID(bytes_le=manifest[:16]) == TABLE_GUID
    total, count = struct.unpack_from("<II", manifest, 16)
    assert total == len(manifest) and 24 * (1 + count) <= total
    out = {}
    for i in range(count):
        g, off, length = struct.unpack_from("<16sII", manifest, 24 * (1 + i))
        assert 24 * (1 + count) <= off and off + length <= total
        out[uuid.UUID(bytes_le=g)] = manifest[off : off + length]
    return out


def parse_tpmt_public(blob: bytes) -> dict[str, Any]:
    """TPMT_PUBLIC (TPM 2.0 Library Part 2 §12.2.4) of an ECC or RSA key, all bytes used."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        assert pos + n <= len(blob)
        pos += n
        return blob[pos - n : pos]

    def u16() -> int:
        return int(struct.unpack(">H", take(2))[0])

    kind, name_alg = u16(), u16()
    attributes = struct.unpack(">I", take(4))[0]
    policy = take(u16())
    sym = u16()
    if sym != 0x0010:  # TPM_ALG_NULL
        take(4)  # key bits, mode
    scheme = u16()
    out: dict[str, Any] = {
        "type": kind,
        "nameAlg": name_alg,
        "attributes": attributes,
        "policy": policy,
        "scheme": scheme,
    }
    if kind == 0x0023:  # TPM_ALG_ECC
        out["curve"] = u16()
        take(2)  # kdf
        out["x"], out["y"] = take(u16()), take(u16())
    elif kind == 0x0001:  # TPM_ALG_RSA
        out["keyBits"] = u16()
        take(4)  # exponent
        out["modulus"] = take(u16())
    else:
        raise AssertionError(f"unexpected TPMT_PUBLIC type {kind:#x}")
    assert pos == len(blob)
    return out


def _evidence(p: Partition, **kw: Any) -> Evidence:
    r = p.run(Attest(layer="l2.1", report_data=NONCE, **kw))
    assert r.ok, r.reason
    return Evidence.model_validate(r.data["evidence"])


def _verify(ev: Evidence, policy: Policy | None = None) -> Any:
    trust = SimulatedAmdRoots.load("cocopart", "Milan").trust_store()
    return Verifier(policy or Policy(), trust).verify(ev)


# -- the SVSM's manifests ----------------------------------------------------------------------
def test_rule_single_service_binds_its_own_manifest() -> None:
    """ATTEST_SINGLE_SERVICE(vTPM): the manifest is the EK's TPMT_PUBLIC itself and
    REPORT_DATA = SHA-512(nonce || that blob)."""
    p = guest()
    ev = _evidence(p, service="vtpm")
    ek = machine(p).vtpm().ek_public_area()
    assert ev.manifest == ek and ev.service == str(VTPM_GUID)
    assert SnpReport.parse(ev.raw).report_data == hashlib.sha512(NONCE + ek).digest()
    key = parse_tpmt_public(ev.manifest)
    assert key["type"] == 0x0023 and len(key["x"]) == len(key["y"]) == 32
    verdict = _verify(ev)
    assert verdict.ok, verdict.summary()
    binding = next(c for c in verdict.checks if c.name == "snp.manifest_binding")
    assert "own manifest of service" in binding.detail
    assert verdict.claims.origin.layer == "l1"


def test_rule_requester_entry_opt_in_services_manifest_is_coconuts() -> None:
    """RULE_REQUESTER_ENTRY_OPT_IN: by default ATTEST_SERVICES returns exactly the table
    COCONUT writes for the same services (byte for byte), and the evidence speaks for the
    SVSM (VMPL0, l1)."""
    p = guest()
    ev = _evidence(p)
    ek = machine(p).vtpm().ek_public_area()
    assert ev.service is None
    assert ev.manifest == coconut_guid_table([(VTPM_GUID, ek)])
    assert spec_parse(ev.manifest) == {VTPM_GUID: ek}
    verdict = _verify(ev)
    assert verdict.ok and verdict.claims.origin.layer == "l1"


def test_rule_requester_entry_opt_in_coconut_verifiers_still_parse_it() -> None:
    """Opted in: one more GUID entry names the requester; a COCONUT-minded parser reads the
    table (the entry is just an unknown GUID), ours makes the requester the origin."""
    p = guest(attest_requester_entry=True)
    ev = _evidence(p)
    entries = spec_parse(ev.manifest or b"")
    assert entries[VTPM_GUID] == machine(p).vtpm().ek_public_area()
    assert len(entries) == 2
    verdict = _verify(ev, Policy(allowed_layers=["l2.1"]))
    assert verdict.ok, verdict.summary()
    origin = verdict.claims.origin
    assert (origin.layer, origin.vendor_level, origin.via_privileged_layer) == (
        "l2.1",
        "VMPL2",
        True,
    )
    single = _evidence(p, service="vtpm")  # the single-service manifest is unchanged
    assert single.manifest == machine(p).vtpm().ek_public_area()


# -- COCONUT-shaped evidence through our verifier ---------------------------------------------
@pytest.fixture(scope="module")
def roots() -> SimulatedAmdRoots:
    return SimulatedAmdRoots.load("cocopart", "Milan")


def _coconut_rsa_ek() -> bytes:
    """An RSA-2048 EK TPMT_PUBLIC as a TCG EK template L-1 key looks (a fixture, not a key)."""
    policy = bytes(32)
    return (
        struct.pack(">HHI", 0x0001, 0x000B, 0x000300B2)
        + struct.pack(">H", 32)
        + policy
        + struct.pack(">HHHHHI", 0x0006, 128, 0x0043, 0x0010, 2048, 0)
        + struct.pack(">H", 256)
        + bytes(range(256))
    )


def test_coconut_shaped_services_evidence_verifies(roots: SimulatedAmdRoots) -> None:
    """A services manifest as COCONUT builds it with the vTPM and UEFI MM services (a
    service without a manifest is enumerated with an empty blob, CS attest.rs), bound into a
    VMPL0 report: our verifier accepts it and reads it as the SVSM's own evidence."""
    ek = _coconut_rsa_ek()
    assert parse_tpmt_public(ek)["keyBits"] == 2048
    manifest = coconut_guid_table([(VTPM_GUID, ek), (UEFI_MM_GUID, b"")])
    report = roots.build_report(report_data=hashlib.sha512(NONCE + manifest).digest(), vmpl=0)
    ev = roots.evidence(report, nonce=NONCE, manifest=manifest)
    result = SnpEvidenceVerifier().verify(ev, roots.trust_store(), NOW)
    assert all(c.ok for c in result.checks), [c for c in result.checks if not c.ok]
    assert result.claims is not None and result.claims.origin.layer == "l1"
    # and as COCONUT's single-service answer: the EK blob itself, with the GUID asked for
    single = roots.evidence(
        roots.build_report(report_data=hashlib.sha512(NONCE + ek).digest(), vmpl=0),
        nonce=NONCE,
        manifest=ek,
        service=str(VTPM_GUID),
    )
    result = SnpEvidenceVerifier().verify(single, roots.trust_store(), NOW)
    assert all(c.ok for c in result.checks), [c for c in result.checks if not c.ok]
    # the same blob claimed as a services manifest is named, not raised
    wrong = single.model_copy(update={"service": None})
    result = SnpEvidenceVerifier().verify(wrong, roots.trust_store(), NOW)
    assert {c.name for c in result.checks if not c.ok} == {"snp.manifest_binding"}
