"""Batch verification (library, in this process): where files come from, one row per file
whatever is wrong with it, verdicts and the summary."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore
from cocopart.errors import ConfigError
from cocopart.scaleout import Cluster, expand_sources, verify_batch
from cocopart.scaleout.sources import read_source

SERIAL = Cluster(serial=True)
NOW = datetime.now(UTC)  # simulated TDX collateral is valid for 30 days from today


def _trust(archive: dict[str, Path]) -> TrustStore:
    trust = TrustStore()
    for vendor in ("sev-snp", "tdx"):
        trust = trust.with_root(vendor, archive[vendor].read_bytes())
    return trust


def test_sources_walk_directories_globs_and_manifests(
    archive: dict[str, Path], tmp_path: Path
) -> None:
    root = archive["archive"]
    walked = expand_sources([str(root)])
    names = [Path(p).relative_to(root).as_posix() for p in walked]
    assert names[:2] == ["broken/corrupt.json", "broken/garbage.bin"]
    assert "snp/l2.1-0.json" in names and "tdx/l2.1-2.json" in names
    assert names == sorted(names)  # directories in sorted order, files sorted
    assert expand_sources([str(root)], patterns=["*.bin"]) == [str(root / "broken/garbage.bin")]
    assert expand_sources([f"{root}/**/l2.1-1.json"]) == [
        str(root / "snp/l2.1-1.json"),
        str(root / "tdx/l2.1-1.json"),
    ]
    manifest = tmp_path / "list.txt"
    manifest.write_text(
        f"# evidence to re-verify\n\n{root}/snp/l2.1-0.json\n"
        f"file://{root}/tdx/l2.1-0.json  # by URL\nrelative.json\n"
    )
    assert expand_sources([str(root / "snp/l2.1-0.json")], manifests=[manifest]) == [
        str(root / "snp/l2.1-0.json"),
        f"file://{root}/tdx/l2.1-0.json",
        str(tmp_path / "relative.json"),
    ]
    with pytest.raises(ConfigError, match="no such file or directory"):
        expand_sources([str(tmp_path / "absent")])
    with pytest.raises(ConfigError, match="matches no file"):
        expand_sources([str(tmp_path / "*.nothing")])
    with pytest.raises(ConfigError, match="cannot read the manifest"):
        expand_sources([], manifests=[tmp_path / "no-manifest.txt"])


def test_every_file_is_one_row_whatever_is_wrong(archive: dict[str, Path], tmp_path: Path) -> None:
    root = archive["archive"]
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (17 << 20))
    files = [
        str(root / "snp/l2.1-0.json"),
        str(root / "broken/corrupt.json"),
        str(root / "broken/garbage.bin"),
        str(tmp_path / "vanished.json"),
        str(big),
    ]
    result = verify_batch(
        files, Policy(allowed_layers=["l1", "l2.1"]), trust=_trust(archive), now=NOW, cluster=SERIAL
    )
    assert [r.file for r in result.rows] == files
    assert [r.verdict for r in result.rows] == ["accepted"] + ["error"] * 4
    details = [r.detail for r in result.rows[1:]]
    assert "not an Evidence JSON file" in details[0]
    assert "not Evidence JSON (raw reports" in details[1]
    assert "cannot read" in details[2] and "No such file" in details[2]
    assert "evidence files are at most" in details[3]
    assert result.summary.by_verdict == {
        "accepted": 1,
        "rejected": 0,
        "not-authentic": 0,
        "error": 4,
    }
    assert result.worst == "error" and result.now == NOW


def test_verdicts_accepted_rejected_not_authentic(archive: dict[str, Path]) -> None:
    """Authentic evidence the policy refuses is 'rejected' (as `cocopart verify` exits 4);
    evidence whose chain does not reach a trusted root is 'not-authentic'."""
    files = [str(archive["archive"] / f"{d}/l2.1-0.json") for d in ("snp", "tdx")]
    trust = _trust(archive)
    accepted = verify_batch(
        files, Policy(allowed_layers=["l1", "l2.1"]), trust=trust, now=NOW, cluster=SERIAL
    )
    assert [r.verdict for r in accepted.rows] == ["accepted", "accepted"]
    snp = accepted.rows[0]
    assert (snp.vendor, snp.format, snp.origin_layer, snp.vendor_level) == (
        "sev-snp",
        "snp-report",
        "l1",
        "VMPL0",
    )  # service evidence speaks for l1 (issue 13)
    assert snp.simulated and not snp.debug
    assert snp.measurement == snp.measurements["measurement"] and len(snp.measurement) == 96
    assert snp.tcb and snp.report_data and len(snp.report_data) == 128
    assert accepted.rows[1].measurement == accepted.rows[1].measurements["mrtd"]
    rejected = verify_batch(
        files, Policy(allowed_layers=["l2.2"]), trust=trust, now=NOW, cluster=SERIAL
    )
    assert [r.verdict for r in rejected.rows] == ["rejected", "rejected"]
    assert rejected.rows[0].failed_checks == ["policy.origin_layer"]
    assert rejected.summary.by_failed_check == {"policy.origin_layer": 2}
    untrusted = verify_batch(files, Policy(allowed_layers=["l1", "l2.1"]), now=NOW, cluster=SERIAL)
    assert [r.verdict for r in untrusted.rows] == ["not-authentic", "not-authentic"]
    assert untrusted.summary.by_vendor == {"sev-snp": 1, "tdx": 1}


def test_fsspec_urls_are_read(archive: dict[str, Path]) -> None:
    import fsspec

    data = (archive["archive"] / "snp/l2.1-0.json").read_bytes()
    with fsspec.open("memory://cocopart-test/ev.json", "wb") as fh:
        fh.write(data)
    assert read_source("memory://cocopart-test/ev.json") == data
    result = verify_batch(
        ["memory://cocopart-test/ev.json", "memory://cocopart-test/no.json"],
        Policy(allowed_layers=["l1", "l2.1"]),
        trust=_trust(archive),
        now=NOW,
        cluster=SERIAL,
    )
    assert [r.verdict for r in result.rows] == ["accepted", "error"]


def test_the_cli_reader_reads_raw_evidence_as_verify_does(
    archive: dict[str, Path], vectors: Path
) -> None:
    """The reader `verify-batch` hands the workers: raw SNP reports are recognised."""
    from cocopart_cli.batch_reader import read_evidence

    files = [
        str(vectors / "snp/virtee-milan-v2.report.bin"),
        str(archive["archive"] / "broken/garbage.bin"),
    ]
    result = verify_batch(
        files,
        Policy(),
        now=NOW,
        cluster=SERIAL,
        reader=functools.partial(read_evidence, vendor=None, fmt=None),
    )
    raw, garbage = result.rows
    assert (raw.vendor, raw.format) == ("sev-snp", "snp-report")
    assert raw.verdict == "not-authentic"  # no VCEK given with a bare report
    assert garbage.verdict == "error" and "say which with --vendor" in garbage.detail
