"""SNP launch digests (cocopart_sev_snp.measure) against sev-snp-measure and virtee/sev.

Expected digests come from the shared vectors (snp/measurement: sev-snp-measure 0.0.13
outputs on synthetic OVMF/SVSM images and virtee/sev's test cases on real OVMF suffixes) and,
where installed, from the sev-snp-measure library itself.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import struct
from pathlib import Path
from typing import Any

import pytest
from cocopart_sev_snp import measure as m

from cocopart.errors import ConfigError

MEAS = Path("snp") / "measurement"
# virtee/sev CpuType names used in its cases -> QEMU model names
VIRTEE_VCPU = {"EpycV4": "EPYC-v4", "EpycMilan": "EPYC-Milan", "EpycGenoa": "EPYC-Genoa"}


def _options(command: str) -> dict[str, str]:
    args = shlex.split(command)[1:]
    return dict(zip(args[::2], args[1::2], strict=True))


def _run(opts: dict[str, str], base: Path) -> bytes:
    """Our digest for one sev-snp-measure command line."""
    sig = 0
    if "--vcpu-type" in opts:
        sig = m.vcpu_signature(opts["--vcpu-type"])
    if "--vcpu-sig" in opts:
        sig = int(opts["--vcpu-sig"], 0)
    ovmf = base / opts["--ovmf"]
    vmm = opts.get("--vmm-type", "qemu").lower()
    kernel = Path(opts["--kernel"]).read_bytes() if "--kernel" in opts else None
    initrd = Path(opts["--initrd"]).read_bytes() if "--initrd" in opts else None
    cmdline = opts.get("--append")
    mode = opts["--mode"]
    if mode == "snp":
        digest = bytes.fromhex(opts["--snp-ovmf-hash"]) if "--snp-ovmf-hash" in opts else None
        return m.snp_launch_digest(
            ovmf,
            int(opts["--vcpus"]),
            sig,
            guest_features=int(opts.get("--guest-features", "0x1"), 0),
            vmm_type=vmm,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            ovmf_digest=digest,
        )
    if mode == "snp:ovmf-hash":
        return m.ovmf_hash(ovmf)
    if mode == "snp:svsm":
        return m.snp_svsm_launch_digest(
            ovmf, base / opts["--svsm"], int(opts["--vcpus"]), sig, int(opts["--vars-size"])
        )
    if mode == "seves":
        return m.seves_launch_digest(
            ovmf,
            int(opts["--vcpus"]),
            sig,
            vmm_type=vmm,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
        )
    assert mode == "sev"
    return m.sev_launch_digest(ovmf, kernel=kernel, initrd=initrd, cmdline=cmdline)


def test_synthetic_images_match_sev_snp_measure(vectors: Path) -> None:
    base = vectors / MEAS
    runs = json.loads((base / "synth-sev-snp-measure-results.json").read_text())["runs"]
    assert len(runs) >= 24
    modes = set()
    for run in runs:
        opts = _options(run["command"])
        modes.add(opts["--mode"])
        assert _run(opts, base).hex() == run["output"], run["command"]
    assert {"snp", "snp:svsm", "snp:ovmf-hash", "seves", "sev"} <= modes


def _virtee_cases(vectors: Path) -> list[dict[str, Any]]:
    data = json.loads((vectors / MEAS / "virtee-sev-measurement-cases.json").read_text())
    cases: list[dict[str, Any]] = data["cases"]
    return cases


def _virtee_digest(case: dict[str, Any], base: Path) -> bytes:
    """Our digest for one virtee/sev test case."""
    ovmf = base / case["ovmf_file"]
    kernel = Path(case["kernel_file"]).read_bytes() if case.get("kernel_file") else None
    initrd = Path(case["initrd_file"]).read_bytes() if case.get("initrd_file") else None
    cmdline = case.get("append")
    if case["mode"] == "sev":
        return m.sev_launch_digest(ovmf, kernel=kernel, initrd=initrd, cmdline=cmdline)
    sig = m.vcpu_signature(VIRTEE_VCPU[case["vcpu_type"]])
    vcpus = int(case["vcpus"])
    vmm = case.get("vmm_type", "QEMU").lower()
    if case["mode"] == "seves":
        return m.seves_launch_digest(
            ovmf, vcpus, sig, vmm_type=vmm, kernel=kernel, initrd=initrd, cmdline=cmdline
        )
    digest = None
    if "exp_hash" in case:
        assert m.ovmf_hash(ovmf).hex() == case["exp_hash"]
        digest = bytes.fromhex(case["exp_hash"])
    elif "ovmf_hash_literal" in case and case["uses_ovmf_hash"]:
        digest = bytes.fromhex(case["ovmf_hash_literal"])
    return m.snp_launch_digest(
        ovmf,
        vcpus,
        sig,
        guest_features=int(case["guest_features"], 0),
        vmm_type=vmm,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        ovmf_digest=digest,
    )


def test_virtee_cases(vectors: Path) -> None:
    base = vectors / MEAS
    cases = _virtee_cases(vectors)
    assert len(cases) == 22
    for case in cases:
        if case["should_fail"]:
            with pytest.raises(ConfigError, match="kernel"):
                _virtee_digest(case, base)
            continue
        got = _virtee_digest(case, base).hex()
        note = case["sev_snp_measure_result"]
        if note.startswith("MISMATCH got="):
            # EC2: virtee/sev uses RDX=0 where sev-snp-measure uses 0x600; we follow the tool.
            assert got == note.split("got=")[1].split()[0], case["name"]
            assert got != case["exp_result"]
        else:
            assert got == case["exp_result"], case["name"]


# --- against the installed tool ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool() -> Any:
    return pytest.importorskip("sevsnpmeasure.guest")


@pytest.mark.parametrize("vcpus", [1, 3, 8])
@pytest.mark.parametrize("vcpu_type", ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"])
@pytest.mark.parametrize("vmm", ["QEMU", "ec2", "gce"])
def test_snp_digest_equals_the_tool(
    vectors: Path, tool: Any, vcpus: int, vcpu_type: str, vmm: str
) -> None:
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vmm_types import VMMType

    ovmf = vectors / MEAS / "synth-ovmf-64k.fd"
    sig = m.vcpu_signature(vcpu_type)
    theirs = tool.calc_launch_digest(
        SevMode.SEV_SNP, vcpus, sig, str(ovmf), None, None, None, 0x21, vmm_type=VMMType[vmm]
    )
    ours = m.snp_launch_digest(ovmf, vcpus, sig, guest_features=0x21, vmm_type=vmm.lower())
    assert ours == theirs


@pytest.mark.parametrize("vcpus,vars_size", [(1, 0), (2, 0x20000), (5, 0x84000)])
def test_svsm_digest_equals_the_tool(vectors: Path, tool: Any, vcpus: int, vars_size: int) -> None:
    from sevsnpmeasure.sev_mode import SevMode

    base = vectors / MEAS
    sig = m.vcpu_signature("EPYC-Genoa")
    theirs = tool.calc_launch_digest(
        SevMode.SEV_SNP_SVSM,
        vcpus,
        sig,
        str(base / "synth-ovmf-64k.fd"),
        None,
        None,
        None,
        0x1,
        svsm_file=str(base / "synth-svsm-64k.bin"),
        ovmf_vars_size=vars_size,
    )
    ours = m.snp_svsm_launch_digest(
        base / "synth-ovmf-64k.fd", base / "synth-svsm-64k.bin", vcpus, sig, vars_size
    )
    assert ours == theirs


def test_kernel_hashes_equal_the_tool(vectors: Path, tool: Any, tmp_path: Path) -> None:
    from sevsnpmeasure.sev_mode import SevMode

    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"kernel" * 1000)
    initrd.write_bytes(b"initrd" * 333)
    ovmf = vectors / MEAS / "ovmf_AmdSev_suffix.bin"
    sig = m.vcpu_signature("EPYC-Milan")
    theirs = tool.calc_launch_digest(
        SevMode.SEV_SNP, 2, sig, str(ovmf), str(kernel), str(initrd), "root=/dev/vda ro", 0x1
    )
    ours = m.snp_launch_digest(
        ovmf,
        2,
        sig,
        kernel=kernel.read_bytes(),
        initrd=initrd.read_bytes(),
        cmdline="root=/dev/vda ro",
    )
    assert ours == theirs


def test_vmsa_pages_equal_the_tools(tool: Any) -> None:
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vmm_types import VMMType
    from sevsnpmeasure.vmsa import VMSA, VMSA_SVSM

    sig = m.vcpu_signature("EPYC-Milan")
    for vmm in VMMType:
        pages = list(VMSA(SevMode.SEV_SNP, 0x80B004, sig, 0x21, vmm).pages(2))
        assert m.reset_vmsa(m.BSP_EIP, 0x21, sig, vmm.name.lower()) == pages[0]
        assert m.reset_vmsa(0x80B004, 0x21, sig, vmm.name.lower()) == pages[1]
    assert m.svsm_vmsa(0xFFBC0000, sig) == next(VMSA_SVSM(0xFFBC0000, sig).pages(1))


# --- units ------------------------------------------------------------------------------------------


def test_page_info_chaining() -> None:
    ld = m.LaunchDigest()
    page = bytes(range(256)) * 16
    ld.add_normal(0x1000, page)
    ld.update(m.PageType.SECRETS, 0x5000)
    contents = hashlib.sha384(page).digest()
    info1 = bytes(48) + contents + struct.pack("<HBBBBBBQ", 0x70, 1, 0, 0, 0, 0, 0, 0x1000)
    step1 = hashlib.sha384(info1).digest()
    info2 = step1 + bytes(48) + struct.pack("<HBBBBBBQ", 0x70, 5, 0, 0, 0, 0, 0, 0x5000)
    assert len(info1) == len(info2) == 0x70
    assert ld.value == hashlib.sha384(info2).digest() and ld.pages == 2
    with pytest.raises(ConfigError, match="4 KiB"):
        ld.add_normal(0, b"x")
    with pytest.raises(ConfigError, match="one 4 KiB page"):
        ld.add_vmsa(b"x")


def test_vmsa_offsets_follow_the_reference() -> None:
    vmsa = m.reset_vmsa(m.BSP_EIP, 0x21, 0xA00F11)

    def u64(off: int) -> int:
        return int.from_bytes(vmsa[off : off + 8], "little")

    # sev-snp.md §5.6: EFER 0x0D0 (SVME bit 12), RIP 0x178, RDX 0x310, sev_features 0x3B0,
    # xcr0 0x3E8, vmpl 0x0CA.
    assert u64(0xD0) == 1 << 12
    assert u64(0x178) == 0xFFF0 and u64(0x310) == 0xA00F11
    assert u64(0x3B0) == 0x21 and u64(0x3E8) == 1 and vmsa[0xCA] == 0
    assert int.from_bytes(vmsa[0x18:0x20], "little") == 0xFFFF0000  # CS base


def test_cpu_signature() -> None:
    assert m.cpu_signature(0x19, 0x01, 0x01) == 0xA00F11  # Milan
    assert m.cpu_signature(0x19, 0x11, 0x00) == 0xA10F10  # Genoa
    assert m.cpu_signature(0x1A, 0x00, 0x00) == 0xB00F00  # Turin
    assert m.cpu_signature(0x17, 0x01, 0x02) == 0x800F12  # EPYC (Naples)
    with pytest.raises(ConfigError, match="vCPU type"):
        m.vcpu_signature("Pentium")


def test_firmware_image_parsing(vectors: Path) -> None:
    fw = m.FirmwareImage.load(vectors / MEAS / "ovmf_AmdSev_suffix.bin")
    assert fw.gpa == (1 << 32) - 4096
    assert fw.ap_reset_eip and fw.hashes_table_gpa
    kinds = {s.type for s in fw.sections}
    assert {
        m.SectionType.SNP_SECRETS,
        m.SectionType.CPUID,
        m.SectionType.SNP_KERNEL_HASHES,
    } <= kinds
    plain = m.FirmwareImage.load(vectors / MEAS / "ovmf_OvmfX64_suffix.bin")
    assert not plain.has_section(m.SectionType.SNP_KERNEL_HASHES)
    svsm = m.FirmwareImage.load(vectors / MEAS / "synth-svsm-64k.bin", end=0xFF000000)
    assert svsm.entry_u32(m.SVSM_INFO_GUID) is not None
    assert m.SectionType.SVSM_CAA in {s.type for s in svsm.sections}
    no_table = m.FirmwareImage.load(bytes(8192))
    assert no_table.table == {} and no_table.sections == ()
    with pytest.raises(ConfigError, match="APs cannot start"):
        m.snp_launch_digest(bytes(8192), 2, 0)
    with pytest.raises(ConfigError, match="whole 4 KiB pages"):
        m.FirmwareImage.load(b"x" * 100)
    with pytest.raises(ConfigError, match="VMM type"):
        m.reset_vmsa(m.BSP_EIP, 1, 0, "xen")
