"""configfs-tsm client, fake kernel tree and evidence mapping (cocopart.attest.configfs/faketsm)."""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from uuid import UUID

import pytest
from cocopart_sev_snp import cert_table as snp_table

from cocopart.attest.configfs import (
    DEFAULT_ROOT,
    LocalTsmFs,
    TsmCleanupWarning,
    TsmConflictError,
    TsmError,
    TsmFs,
    TsmInvalidRequestError,
    TsmPermissionError,
    TsmReport,
    TsmReportClient,
    TsmUnavailableError,
    TsmUnsupportedError,
    attest,
)
from cocopart.attest.faketsm import (
    FakeBlobs,
    FakeRequest,
    FakeTsm,
    ProviderRefused,
    default_report,
)
from cocopart.errors import CocopartError, EvidenceError

DATA = bytes(range(64))
VTPM = UUID("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")  # sev-snp.md §3.1
GUID_BY_NAME = snp_table.CERT_GUIDS


def entry_path(fake: FakeTsm, name: str = "e") -> Path:
    fake.mkdir(fake.root / name)
    return fake.root / name


def cert_table(entries: list[tuple[UUID, bytes]], *, terminate: bool = True) -> bytes:
    """Build an SNP cert table: {GUID, u32 offset, u32 len}..., zero entry, data."""
    header_len = 24 * (len(entries) + (1 if terminate else 0))
    head, body = b"", b""
    for guid, data in entries:
        head += guid.bytes + struct.pack("<II", header_len + len(body), len(data))
        body += data
    if terminate:
        head += bytes(24)
    return head + body


# ------------------------------------------------------------------------------------------
# The fake kernel tree


def test_fake_protocol_and_defaults() -> None:
    fake = FakeTsm.sev_guest()
    assert isinstance(fake, TsmFs)
    assert isinstance(LocalTsmFs(), TsmFs)
    assert fake.root == DEFAULT_ROOT
    assert fake.exists(DEFAULT_ROOT) and fake.exists(DEFAULT_ROOT.parent)
    assert not fake.exists(DEFAULT_ROOT / "nothing")


def test_generation_starts_at_zero_and_increments_on_every_write() -> None:
    fake = FakeTsm("sev_guest", vmpl=1)
    e = entry_path(fake)
    assert fake.read(e / "generation") == b"0\n"
    fake.write(e / "inblob", DATA)
    assert fake.generation("e") == 1
    fake.write(e / "privlevel", b"2")
    fake.write(e / "service_provider", b"svsm\n")
    fake.write(e / "service_guid", str(VTPM).encode())
    fake.write(e / "service_manifest_version", b"0")
    assert fake.read(e / "generation") == b"5\n"
    fake.read(e / "outblob")  # reads do not advance it
    assert fake.generation("e") == 5


def test_privlevel_below_floor_is_einval_and_does_not_advance() -> None:
    fake = FakeTsm.sev_guest(vmpl=2)
    e = entry_path(fake)
    assert fake.read(e / "privlevel_floor") == b"2\n"
    for bad in (b"1", b"4", b"abc", b""):
        with pytest.raises(OSError) as info:
            fake.write(e / "privlevel", bad)
        assert info.value.errno == errno.EINVAL
    assert fake.generation("e") == 0
    fake.write(e / "privlevel", b"0x3\n")  # kstrtouint base 0 with a trailing newline
    assert fake.generation("e") == 1


def test_attribute_visibility_per_provider() -> None:
    tdx = FakeTsm.tdx_guest()
    e = entry_path(tdx)
    present = {
        a
        for a in (
            "generation",
            "provider",
            "inblob",
            "outblob",
            "auxblob",
            "manifestblob",
            "privlevel",
            "privlevel_floor",
            "service_provider",
            "service_guid",
            "service_manifest_version",
        )
        if tdx.exists(e / a)
    }
    assert present == {"generation", "provider", "inblob", "outblob"}
    with pytest.raises(OSError) as info:
        tdx.write(e / "privlevel", b"0")
    assert info.value.errno == errno.ENOENT

    snp0 = FakeTsm.sev_guest(vmpl=0)
    e0 = entry_path(snp0)
    assert snp0.exists(e0 / "privlevel") and snp0.exists(e0 / "auxblob")
    for hidden in ("manifestblob", "service_provider", "service_guid", "service_manifest_version"):
        assert not snp0.exists(e0 / hidden)

    snp2 = FakeTsm.sev_guest(vmpl=2)
    e2 = entry_path(snp2)
    assert all(
        snp2.exists(e2 / a)
        for a in ("manifestblob", "service_provider", "service_guid", "service_manifest_version")
    )

    cca = FakeTsm.arm_cca_guest()
    ec = entry_path(cca)
    assert cca.exists(ec / "service_guid") and cca.read(ec / "privlevel_floor") == b"0\n"

    with pytest.raises(ValueError, match="unknown configfs-tsm attributes"):
        FakeTsm("x", visible={"inblob", "bogus"})


def test_fake_read_write_rules() -> None:
    fake = FakeTsm.sev_guest()
    e = entry_path(fake)
    with pytest.raises(OSError) as info:
        fake.read(e / "outblob")  # no inblob yet
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        fake.read(e / "inblob")
    assert info.value.errno == errno.EACCES
    with pytest.raises(OSError) as info:
        fake.write(e / "generation", b"7")
    assert info.value.errno == errno.EACCES
    with pytest.raises(OSError) as info:
        fake.write(e / "inblob", bytes(65))
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        fake.mkdir(e)
    assert info.value.errno == errno.EEXIST
    with pytest.raises(OSError) as info:
        fake.rmdir(fake.root / "missing")
    assert info.value.errno == errno.ENOENT


def test_fake_bad_guid_advances_generation_then_fails() -> None:
    # LX report.c tsm_report_service_guid_store advances before parsing.
    fake = FakeTsm.sev_guest(vmpl=2)
    e = entry_path(fake)
    with pytest.raises(OSError) as info:
        fake.write(e / "service_guid", b"not-a-guid")
    assert info.value.errno == errno.EINVAL
    assert fake.generation("e") == 1


def test_fake_outblob_generated_lazily_and_cached_per_generation() -> None:
    seen: list[FakeRequest] = []

    def report(request: FakeRequest) -> bytes:
        seen.append(request)
        return b"R" + request.inblob

    fake = FakeTsm.sev_guest(report=report)
    e = entry_path(fake)
    fake.write(e / "inblob", DATA)
    assert fake.reports_generated == 0
    assert fake.read(e / "outblob") == b"R" + DATA
    assert fake.read(e / "auxblob") == b""
    assert fake.reports_generated == 1  # cached: same generation
    fake.write(e / "inblob", bytes(64))
    assert fake.read(e / "outblob") == b"R" + bytes(64)
    assert fake.reports_generated == 2
    assert seen[0].provider == "sev_guest" and seen[0].privlevel == 0


def test_fake_provider_refusals() -> None:
    fake = FakeTsm.sev_guest()
    e = entry_path(fake)
    fake.write(e / "inblob", bytes(32))
    with pytest.raises(OSError) as info:
        fake.read(e / "outblob")
    assert info.value.errno == errno.EINVAL

    def refuse(request: FakeRequest) -> bytes:
        raise ProviderRefused("host said no", errno.EIO)

    fake = FakeTsm.tdx_guest(report=refuse)
    e = entry_path(fake)
    fake.write(e / "inblob", DATA)
    with pytest.raises(OSError) as info:
        fake.read(e / "outblob")
    assert info.value.errno == errno.EIO


def test_default_report_is_labelled_and_carries_inblob() -> None:
    blobs = default_report(FakeRequest(provider="tdx_guest", inblob=DATA))
    assert blobs.outblob.startswith(b"cocopart-faketsm/1 provider=tdx_guest")
    assert blobs.outblob.endswith(DATA)
    assert blobs.manifestblob == b""


# ------------------------------------------------------------------------------------------
# The client against the fake


def test_attest_sev_guest_vmpl0() -> None:
    fake = FakeTsm.sev_guest()
    report = fake.client().attest(DATA)
    assert report.provider == "sev_guest"
    assert report.outblob == default_report(FakeRequest(provider="sev_guest", inblob=DATA)).outblob
    assert report.auxblob == b""
    assert report.manifestblob is None  # hidden at VMPL0
    assert report.generation == 1 and report.attempts == 1
    assert report.privlevel is None and report.privlevel_floor == 0
    assert report.report_data == DATA
    assert fake.entries == {}  # the entry was removed
    ops = [op for op, _ in fake.log]
    assert ops[0] == "mkdir" and ops[-1] == "rmdir"
    assert fake.log[0][1] == report.entry == fake.log[-1][1]
    assert report.entry.startswith("cocopart-")


def test_attest_entries_are_unique() -> None:
    fake = FakeTsm.tdx_guest()
    client = fake.client()
    names = {client.attest(DATA).entry for _ in range(5)}
    assert len(names) == 5


def test_attest_privlevel_written_and_passed_to_provider() -> None:
    seen: list[FakeRequest] = []

    def report(request: FakeRequest) -> bytes:
        seen.append(request)
        return b"ok"

    fake = FakeTsm.sev_guest(vmpl=1, report=report)
    result = fake.client().attest(DATA, privlevel=3)
    assert result.privlevel == 3 and result.generation == 2
    assert seen[-1].privlevel == 3


def test_attest_defaults_privlevel_to_floor_above_vmpl0() -> None:
    seen: list[FakeRequest] = []

    def report(request: FakeRequest) -> bytes:
        seen.append(request)
        return b"ok"

    fake = FakeTsm.sev_guest(vmpl=2, report=report)
    result = fake.client().attest(DATA)
    assert result.privlevel == 2 and result.privlevel_floor == 2
    assert seen[-1].privlevel == 2


def test_privlevel_below_floor_refused_before_writing() -> None:
    fake = FakeTsm.sev_guest(vmpl=2)
    with pytest.raises(TsmInvalidRequestError, match=r"privlevel_floor\.\.3 = 2\.\.3") as info:
        fake.client().attest(DATA, privlevel=1)
    assert info.value.reason == "EINVAL"
    assert info.value.path is not None and info.value.path.name == "privlevel"
    assert not [p for op, p in fake.log if op == "write"]
    assert fake.entries == {}


def test_privlevel_above_max_refused_before_any_filesystem_access() -> None:
    fake = FakeTsm.sev_guest()
    with pytest.raises(TsmInvalidRequestError, match="outside 0..3"):
        fake.client().attest(DATA, privlevel=4)
    assert fake.log == []


def test_absent_attributes_are_not_supported_errors() -> None:
    tdx = FakeTsm.tdx_guest()
    with pytest.raises(TsmUnsupportedError, match="not supported by provider tdx_guest") as info:
        tdx.client().attest(DATA, privlevel=0)
    assert info.value.reason == "ENOENT"
    assert tdx.entries == {}

    snp0 = FakeTsm.sev_guest(vmpl=0)
    with pytest.raises(TsmUnsupportedError, match="not supported by provider sev_guest"):
        snp0.client().attest(DATA, service_provider="svsm")
    assert not [p for op, p in snp0.log if op == "write"]


def test_svsm_service_path_with_manifest() -> None:
    seen: list[FakeRequest] = []

    def report(request: FakeRequest) -> FakeBlobs:
        seen.append(request)
        return FakeBlobs(outblob=b"SNP-REPORT", auxblob=b"", manifestblob=b"EK-PUB")

    fake = FakeTsm.sev_guest(vmpl=2, report=report)
    result = fake.client().attest(
        DATA, service_provider="svsm", service_guid=VTPM, service_manifest_version=0
    )
    assert result.manifestblob == b"EK-PUB"
    assert result.privlevel is None  # not used on the SVSM path
    assert result.generation == 4  # service_provider, service_guid, manifest_version, inblob
    assert seen[-1].service_provider == "svsm" and seen[-1].service_guid == VTPM
    evidence = result.to_evidence()
    assert (evidence.vendor, evidence.format) == ("sev-snp", "snp-report")
    assert evidence.raw == b"SNP-REPORT"
    assert evidence.manifest == b"EK-PUB" and evidence.nonce == DATA
    # the SVSM bound the vTPM's own manifest: the evidence says which service (issue 13)
    assert evidence.service == str(VTPM)


def test_svsm_all_services_with_default_options() -> None:
    fake = FakeTsm.sev_guest(vmpl=1)
    result = fake.client().attest(DATA, service_provider="svsm")
    assert result.manifestblob is not None and b"guid=00000000-" in result.manifestblob
    assert result.to_evidence().service is None  # the services manifest (all services)


def test_svsm_request_rejects_privlevel_and_unknown_service_provider() -> None:
    fake = FakeTsm.sev_guest(vmpl=2)
    with pytest.raises(TsmInvalidRequestError, match="no effect"):
        fake.client().attest(DATA, service_provider="svsm", privlevel=2)
    with pytest.raises(TsmInvalidRequestError, match="'svsm' only"):
        fake.client().attest(DATA, service_provider="paravisor")
    with pytest.raises(TsmInvalidRequestError, match="pass service_provider"):
        fake.client().attest(DATA, service_guid=VTPM)
    assert fake.entries == {}


def test_report_data_size_rules() -> None:
    with pytest.raises(TsmInvalidRequestError, match="empty"):
        FakeTsm.sev_guest().client().attest(b"")
    with pytest.raises(TsmInvalidRequestError, match="at most 64") as info:
        FakeTsm.sev_guest().client().attest(bytes(65))
    assert info.value.reason == "EFBIG"
    with pytest.raises(TsmInvalidRequestError, match="exactly 64"):
        FakeTsm.sev_guest().client().attest(bytes(32))
    with pytest.raises(TsmInvalidRequestError, match="exactly 64"):
        FakeTsm.tdx_guest().client().attest(bytes(48))


def test_report_data_size_rules_come_from_the_platform_plugin(cca_platform: str) -> None:
    with pytest.raises(TsmInvalidRequestError, match="32..64"):
        FakeTsm.arm_cca_guest().client().attest(bytes(31))
    assert FakeTsm.arm_cca_guest().client().attest(bytes(32)).outblob.endswith(bytes(32))


def test_a_provider_no_plugin_declares_takes_any_report_data() -> None:
    assert FakeTsm("acme_guest").client().attest(bytes(31)).outblob.endswith(bytes(31))


def test_concurrent_writer_detected_during_read_and_retried() -> None:
    state = {"fired": False}

    def intruder(fake: FakeTsm, path: Path) -> None:
        if path.name == "outblob" and not state["fired"]:
            state["fired"] = True
            fake.write(path.parent / "inblob", b"\xee" * 64)  # another process's request

    fake = FakeTsm.sev_guest(before_read=intruder)
    report = fake.client().attest(DATA)
    assert state["fired"]
    assert report.attempts == 2
    assert report.outblob.endswith(DATA)  # our data, not the intruder's
    assert fake.entries == {}


def test_concurrent_writer_between_write_and_generation_read_is_caught() -> None:
    reads = {"generation": 0}

    def intruder(fake: FakeTsm, path: Path) -> None:
        if path.name == "generation":
            reads["generation"] += 1
            if reads["generation"] == 2:  # right after the client's writes
                fake.write(path.parent / "inblob", b"\xee" * 64)

    fake = FakeTsm.tdx_guest(before_read=intruder)
    report = fake.client().attest(DATA)
    assert report.attempts == 2 and report.outblob.endswith(DATA)


def test_concurrent_writer_that_never_stops_fails_clearly() -> None:
    def intruder(fake: FakeTsm, path: Path) -> None:
        if path.name == "outblob":
            fake.write(path.parent / "inblob", b"\xee" * 64)

    fake = FakeTsm.sev_guest(before_read=intruder)
    with pytest.raises(TsmConflictError, match="gave up after 3 attempts") as info:
        fake.client().attest(DATA)
    assert info.value.attempts == 3 and info.value.reason == "EAGAIN"
    assert fake.entries == {}
    with pytest.raises(TsmConflictError, match="after 1 attempts"):
        fake.client(max_attempts=1).attest(DATA)


def test_provider_refusal_and_oversized_report_map_to_typed_errors() -> None:
    # The fake's sev_guest firmware refuses a report VMPL below the guest's (sev-snp.md §6.2).
    fake = FakeTsm("sev_guest", vmpl=2, privlevel_floor=0)
    with pytest.raises(TsmError) as info:
        fake.client().attest(DATA, privlevel=0)
    assert info.value.reason == "EIO" and "EIO" in str(info.value)

    big = FakeTsm.tdx_guest(report=lambda request: bytes(40 * 1024))
    with pytest.raises(TsmError, match="EFBIG") as info:
        big.client().attest(DATA)
    assert info.value.reason == "EFBIG"
    assert big.entries == {}


def test_no_provider_registered_is_unavailable() -> None:
    fake = FakeTsm("sev_guest", provider_registered=False)
    with pytest.raises(TsmUnavailableError, match="ENXIO") as info:
        fake.client().attest(DATA)
    assert info.value.reason == "ENXIO"
    assert isinstance(info.value, CocopartError)


def test_missing_root_is_unavailable(tmp_path: Path) -> None:
    client = TsmReportClient(tmp_path / "no" / "tsm" / "report")
    assert not client.available()
    with pytest.raises(TsmUnavailableError, match="does not exist") as info:
        client.attest(DATA)
    assert info.value.reason == "ENOENT"
    with pytest.raises(TsmUnavailableError):
        attest(DATA, root=tmp_path / "missing")


def test_unprivileged_mkdir_is_permission_error_and_entry_reuse_works() -> None:
    fake = FakeTsm.sev_guest(unprivileged=True)
    with pytest.raises(TsmPermissionError, match="needs root"):
        fake.client().attest(DATA)
    # An administrator created an entry and handed it over.
    fake.create_entry("agent")
    report = fake.client(entry="agent").attest(DATA)
    assert report.entry == "agent" and "agent" in fake.entries
    assert not [op for op, rel in fake.log if op in ("mkdir", "rmdir") and rel == "agent"]
    with pytest.raises(TsmUnavailableError, match="does not exist"):
        fake.client(entry="other").attest(DATA)
    with pytest.raises(ValueError):
        fake.client(entry="a/b")


def test_cleanup_failure_warns_and_error_gets_a_note() -> None:
    fake = FakeTsm.tdx_guest()

    def broken_rmdir(path: Path) -> None:
        raise OSError(errno.EBUSY, "busy", str(path))

    fake.rmdir = broken_rmdir  # type: ignore[method-assign]
    with pytest.warns(TsmCleanupWarning, match="could not remove"):
        report = fake.client().attest(DATA)
    assert report.outblob.endswith(DATA)
    with pytest.raises(TsmInvalidRequestError) as info:
        fake.client().attest(bytes(10))
    assert any("could not remove" in note for note in info.value.__notes__)


def test_provider_method_and_module_level_attest() -> None:
    fake = FakeTsm.arm_cca_guest()
    assert fake.client().provider() == "arm_cca_guest"
    report = attest(DATA, root=fake.root, fs=fake)
    assert report.provider == "arm_cca_guest"
    assert fake.entries == {}


def test_report_round_trips_through_json() -> None:
    fake = FakeTsm.sev_guest(vmpl=2)
    report = fake.client().attest(DATA, service_provider="svsm", service_guid=VTPM)
    again = TsmReport.model_validate_json(report.model_dump_json())
    assert again == report


# ------------------------------------------------------------------------------------------
# Evidence mapping and the SNP certificate table


def test_to_evidence_sev_guest_orders_certificates_leaf_first() -> None:
    unknown = UUID("11111111-2222-3333-4444-555555555555")
    table = cert_table(
        [
            (GUID_BY_NAME["ARK"], b"ark-der"),
            (unknown, b"other"),
            (GUID_BY_NAME["VCEK"], b"vcek-der"),
            (GUID_BY_NAME["ASK"], b"ask-der"),
        ]
    )
    fake = FakeTsm.sev_guest(report=lambda r: FakeBlobs(outblob=b"RPT", auxblob=table))
    report = fake.client().attest(DATA)
    names = [(e.name, e.data) for e in report.certificates()]
    assert names == [
        ("ARK", b"ark-der"),
        (None, b"other"),
        ("VCEK", b"vcek-der"),
        ("ASK", b"ask-der"),
    ]
    evidence = report.to_evidence()
    assert (evidence.vendor, evidence.format, evidence.raw) == ("sev-snp", "snp-report", b"RPT")
    assert evidence.certificates == [b"vcek-der", b"ask-der", b"ark-der", b"other"]
    assert evidence.nonce is None and evidence.manifest is None


def test_to_evidence_tdx_and_a_third_platform(cca_platform: str) -> None:
    """The provider -> evidence mapping comes from platform plug-ins: the tests-only Arm CCA
    sketch (tests/cca_plugin.py) maps its provider without any core change."""
    tdx = FakeTsm.tdx_guest().client().attest(DATA).to_evidence()
    assert (tdx.vendor, tdx.format) == ("tdx", "tdx-quote")
    assert tdx.certificates == [] and tdx.nonce is None
    cca_fake = FakeTsm.arm_cca_guest(report=lambda r: FakeBlobs(outblob=b"TOK", auxblob=b"x"))
    cca = cca_fake.client().attest(DATA).to_evidence()
    assert (cca.vendor, cca.format, cca.raw) == ("cca", "cca-token", b"TOK")
    assert cca.collateral == {"auxblob": b"x"}


def test_to_evidence_unknown_provider() -> None:
    report = FakeTsm("acme_guest").client().attest(DATA)
    assert report.provider == "acme_guest"
    with pytest.raises(TsmUnsupportedError, match="acme_guest"):
        report.to_evidence()


def test_parse_snp_cert_table_edge_cases() -> None:
    """The one SNP certificate-table parser (cocopart_sev_snp.cert_table) is strict."""
    parse_snp_cert_table = snp_table.parse
    assert parse_snp_cert_table(b"") == []
    assert parse_snp_cert_table(bytes(24)) == []
    vlek = GUID_BY_NAME["VLEK"]
    skipped = cert_table([(vlek, b""), (GUID_BY_NAME["ARK"], b"a")])
    assert [(e.name, e.data) for e in parse_snp_cert_table(skipped)] == [("ARK", b"a")]
    assert parse_snp_cert_table(cert_table([(vlek, b"v")]) + bytes(100))[0].name == "VLEK"
    with pytest.raises(EvidenceError, match="terminating"):
        parse_snp_cert_table(cert_table([(vlek, b"v")], terminate=False)[:24])
    past_end = vlek.bytes + struct.pack("<II", 48, 100) + bytes(24)
    with pytest.raises(EvidenceError, match="past the end"):
        parse_snp_cert_table(past_end)
    inside = vlek.bytes + struct.pack("<II", 8, 4) + bytes(24)
    with pytest.raises(EvidenceError, match="inside the table"):
        parse_snp_cert_table(inside)


# ------------------------------------------------------------------------------------------
# The real-filesystem implementation against a materialised snapshot


def test_materialised_snapshot_with_local_fs(tmp_path: Path) -> None:
    fake = FakeTsm.sev_guest(vmpl=2)
    root = tmp_path / "tsm" / "report"
    path = fake.materialise(root, DATA, service_provider="svsm", service_guid=VTPM)
    assert path == root / "snapshot"
    assert fake.entries == {}
    files = sorted(p.name for p in path.iterdir())
    assert files == sorted(
        [
            "generation",
            "provider",
            "privlevel",
            "privlevel_floor",
            "inblob",
            "outblob",
            "auxblob",
            "manifestblob",
            "service_provider",
            "service_guid",
            "service_manifest_version",
        ]
    )
    assert (path / "provider").read_text() == "sev_guest\n"
    assert (path / "generation").read_text() == "3\n"

    client = TsmReportClient(root, entry="snapshot", check_write_count=False)
    assert client.available()
    report = client.attest(DATA, service_provider="svsm", service_guid=VTPM)
    expected = fake.client().attest(DATA, service_provider="svsm", service_guid=VTPM)
    assert report.outblob == expected.outblob
    assert report.manifestblob == expected.manifestblob
    assert report.generation == 3 and report.entry == "snapshot"
    assert (path / "inblob").read_bytes() == DATA  # the client really wrote the file
    assert (path / "service_guid").read_text() == str(VTPM)
    assert path.exists()  # a reused entry is left in place
    evidence = report.to_evidence()
    assert evidence.manifest == expected.manifestblob and evidence.nonce == DATA


def test_static_snapshot_fails_the_write_count_check(tmp_path: Path) -> None:
    fake = FakeTsm.tdx_guest()
    fake.materialise(tmp_path, DATA)
    with pytest.raises(TsmConflictError, match="generation went 1 -> 1"):
        TsmReportClient(tmp_path, entry="snapshot").attest(DATA)


def test_local_fs_absent_attribute_on_snapshot(tmp_path: Path) -> None:
    fake = FakeTsm.tdx_guest()
    path = fake.materialise(tmp_path, DATA, entry="td")
    assert sorted(p.name for p in path.iterdir()) == ["generation", "inblob", "outblob", "provider"]
    client = TsmReportClient(tmp_path, entry="td", check_write_count=False)
    with pytest.raises(TsmUnsupportedError, match="not supported by provider tdx_guest"):
        client.attest(DATA, privlevel=0)
    with pytest.raises(FileNotFoundError):  # no O_CREAT: an absent attribute stays absent
        LocalTsmFs().write(path / "privlevel", b"0")
    assert not (path / "privlevel").exists()
    assert client.attest(DATA).outblob.endswith(DATA)


def test_local_fs_mkdir_rmdir_and_error_translation(tmp_path: Path) -> None:
    fs = LocalTsmFs()
    fs.mkdir(tmp_path / "e")
    assert fs.exists(tmp_path / "e")
    fs.rmdir(tmp_path / "e")
    assert not fs.exists(tmp_path / "e")
    # A plain directory: mkdir works but the entry has no attributes, like a kernel whose
    # provider shows nothing; the client reports the read failure as a typed error.
    with pytest.raises(TsmError, match="ENOENT"):
        TsmReportClient(tmp_path).attest(DATA)
    assert list(tmp_path.iterdir()) == []  # and removed its entry


# ------------------------------------------------------------------------------------------
# Kernel corner cases the fake reproduces (issue 16 point 9)


def _at_wrap(fake: FakeTsm, name: str = "e") -> Path:
    """An entry with so many writes since its last read that one more would wrap."""
    path = entry_path(fake, name)
    fake.entries[name].read_generation = 5
    fake.entries[name].write_generation = 4
    return path


def test_rule_generation_wrap_drops_inblob_silently_and_refuses_options() -> None:
    """LX report.c try_advance_write_generation refuses the write with EBUSY; for a text
    attribute write(2) returns it, for the binary inblob configfs ignores the store's result
    (LX fs/configfs/file.c configfs_release_bin_file), so the write is dropped silently."""
    fake = FakeTsm.sev_guest(vmpl=1)
    e = _at_wrap(fake)
    fake.write(e / "inblob", DATA)  # no error, as on the kernel
    assert fake.generation("e") == 4 and fake.entries["e"].inblob == b""
    with pytest.raises(OSError) as err:
        fake.write(e / "privlevel", b"1")
    assert err.value.errno == errno.EBUSY and fake.generation("e") == 4


def test_client_detects_a_dropped_inblob_write() -> None:
    fake = FakeTsm.tdx_guest()
    _at_wrap(fake)
    with pytest.raises(TsmConflictError, match="did not take this client's writes") as err:
        fake.client(entry="e").attest(DATA)
    assert "generation went 4 -> 4" in str(err.value) and err.value.attempts == 3


def test_rule_privlevel_overflow_is_erange_and_garbage_einval() -> None:
    """LX lib/kstrtox.c: kstrtouint returns -ERANGE for a number above 32 bits and -EINVAL
    for text that is not a number; neither advances the generation."""
    fake = FakeTsm.sev_guest(vmpl=1)
    e = entry_path(fake)
    for attr in ("privlevel", "service_manifest_version"):
        with pytest.raises(OSError) as err:
            fake.write(e / attr, b"4294967296\n")
        assert err.value.errno == errno.ERANGE, attr
        with pytest.raises(OSError) as err:
            fake.write(e / attr, b"three")
        assert err.value.errno == errno.EINVAL, attr
    assert fake.generation("e") == 0
    fake.write(e / "service_manifest_version", b"0xffffffff")
    assert fake.generation("e") == 1
