"""Platform detection from fake /sys, /proc/cpuinfo, configfs and /dev trees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cocopart.attest.detect import PlatformInfo, detect
from cocopart.attest.faketsm import FakeTsm

X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge"


@dataclass
class Tree:
    """A fake machine under tmp_path."""

    base: Path

    @property
    def sysfs(self) -> Path:
        return self.base / "sys"

    @property
    def configfs(self) -> Path:
        return self.base / "sys/kernel/config"

    @property
    def cpuinfo(self) -> Path:
        return self.base / "proc/cpuinfo"

    @property
    def dev(self) -> Path:
        return self.base / "dev"

    def file(self, rel: str, text: str = "") -> Path:
        path = self.base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def dir(self, rel: str) -> Path:
        path = self.base / rel
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cpu(self, *extra: str, cpus: int = 2) -> None:
        flags = " ".join([X86_FLAGS, *extra])
        blocks = [f"processor\t: {n}\nvendor_id\t: Test\nflags\t\t: {flags}\n" for n in range(cpus)]
        self.file("proc/cpuinfo", "\n".join(blocks))

    def detect(self, **kwargs: object) -> PlatformInfo:
        return detect(self.sysfs, self.configfs, self.cpuinfo, dev=self.dev, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    t = Tree(tmp_path)
    t.dir("sys/kernel")
    t.dir("dev")
    return t


def test_snp_vmpl0(tree: Tree) -> None:
    tree.cpu("hypervisor", "sev", "sev_es", "sev_snp")
    tree.file("sys/devices/system/cpu/sev/vmpl", "0\n")
    tree.file("dev/sev-guest")
    tree.file("sys/kernel/config/tsm/report/someone/provider", "sev_guest\n")
    tree.file("sys/kernel/config/tsm/report/someone/privlevel_floor", "0\n")
    info = tree.detect()
    assert info.platform == "sev-snp"
    assert info.privilege_level == 0 and info.privilege_level_name == "VMPL0"
    assert info.privilege_level_source == str(tree.sysfs / "devices/system/cpu/sev/vmpl")
    assert info.svsm_present is False
    assert info.cpu_flags == ["hypervisor", "sev", "sev_es", "sev_snp"]
    assert info.hypervisor is True
    assert info.tsm_provider == "sev_guest" and info.tsm_privlevel_floor == 0
    kinds = [(a.kind, a.provider) for a in info.attestation]
    assert kinds == [("configfs-tsm", "sev_guest"), ("device", "sev_guest")]
    assert any("no SVSM" in n for n in info.notes)
    assert len(info.signals["sev-snp"]) == 3


def test_snp_vmpl2_under_svsm_with_probe(tree: Tree) -> None:
    tree.cpu("hypervisor", "sev", "sev_es", "sev_snp")
    tree.file("sys/devices/system/cpu/sev/vmpl", "2\n")
    tree.file("sys/hypervisor/sev/vmpl", "2\n")
    tree.dir("sys/module/sev_guest")
    tree.file("dev/sev-guest")
    report_root = tree.dir("sys/kernel/config/tsm/report")
    fake = FakeTsm.sev_guest(vmpl=2, root=report_root)
    info = tree.detect(probe=True, tsm_fs=fake)
    assert info.platform == "sev-snp"
    assert info.privilege_level == 2 and info.privilege_level_name == "VMPL2"
    assert info.svsm_present is True
    assert info.tsm_provider == "sev_guest" and info.tsm_privlevel_floor == 2
    assert fake.entries == {}  # the probe entry was removed
    assert [op for op, _ in fake.log] == ["mkdir", "read", "read", "rmdir"]
    assert any("an SVSM runs at VMPL0" in n for n in info.notes)
    assert any("kernel module sev_guest" in s for s in info.signals["sev-snp"])


def test_snp_vmpl_paths_disagree(tree: Tree) -> None:
    tree.file("sys/devices/system/cpu/sev/vmpl", "1\n")
    tree.file("sys/hypervisor/sev/vmpl", "3\n")
    info = tree.detect()
    assert info.platform == "sev-snp" and info.privilege_level == 1
    assert any("says VMPL 3" in n for n in info.notes)


def test_snp_without_vmpl_sysfs_uses_floor_as_a_hint(tree: Tree) -> None:
    tree.file("dev/sev-guest")
    tree.file("sys/kernel/config/tsm/report/e/provider", "sev_guest\n")
    tree.file("sys/kernel/config/tsm/report/e/privlevel_floor", "2\n")
    info = tree.detect()
    assert info.platform == "sev-snp"
    assert info.privilege_level is None and info.privilege_level_name == "unknown"
    assert "does not expose the VMPL" in info.privilege_level_reason
    assert info.svsm_present is None
    assert any("privlevel_floor is 2" in n for n in info.notes)
    assert any("not readable" in n for n in info.notes)  # no cpuinfo in this tree
    assert info.hypervisor is None


def test_tdx(tree: Tree) -> None:
    tree.cpu("hypervisor", "tdx_guest")
    tree.file("dev/tdx_guest")
    tree.dir("sys/kernel/config/tsm/report")
    info = tree.detect()
    assert info.platform == "tdx"
    assert info.privilege_level is None and info.privilege_level_name == "unknown"
    assert "L1" in info.privilege_level_reason and "L2" in info.privilege_level_reason
    assert info.svsm_present is None
    assert info.cpu_flags == ["hypervisor", "tdx_guest"]
    assert info.tsm_provider is None
    assert any("probe=True" in n for n in info.notes)
    assert [a.kind for a in info.attestation] == ["configfs-tsm", "device"]


def test_tdx_probe_reads_provider(tree: Tree) -> None:
    tree.cpu("hypervisor", "tdx_guest")
    root = tree.dir("sys/kernel/config/tsm/report")
    fake = FakeTsm.tdx_guest(root=root)
    info = tree.detect(probe=True, tsm_fs=fake)
    assert info.platform == "tdx" and info.tsm_provider == "tdx_guest"
    assert info.tsm_privlevel_floor is None  # tdx_guest hides privlevel_floor


def test_probe_without_root_is_a_note(tree: Tree) -> None:
    tree.cpu("hypervisor", "tdx_guest")
    root = tree.dir("sys/kernel/config/tsm/report")
    fake = FakeTsm.tdx_guest(root=root, unprivileged=True)
    info = tree.detect(probe=True, tsm_fs=fake)
    assert info.platform == "tdx" and info.tsm_provider is None
    assert any("needs root" in n for n in info.notes)


def test_third_platform_plugin_is_detected(tree: Tree, cca_platform: str) -> None:
    """detect() names no vendor: a platform plug-in installed through an entry point (the
    tests-only Arm CCA sketch, tests/cca_plugin.py) is recognised from its own probes."""
    tree.file("proc/cpuinfo", "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n")
    tree.dir("sys/bus/platform/devices/arm-cca-dev")
    tree.dir("sys/module/arm_cca_guest")
    info = tree.detect()
    assert info.platform == cca_platform
    assert info.signals["cca"] == [
        f"{tree.sysfs / 'bus/platform/devices/arm-cca-dev'} exists",
        "kernel module arm_cca_guest is loaded",
    ]
    assert info.privilege_level_name == "unknown" and "plane" in info.privilege_level_reason
    assert info.cpu_flags == [] and info.hypervisor is False


def test_without_its_plugin_a_platform_is_not_recognised(tree: Tree) -> None:
    tree.dir("sys/bus/platform/devices/arm-cca-dev")
    tree.dir("sys/module/arm_cca_guest")
    assert tree.detect().platform == "none"


def test_none_plain_vm(tree: Tree) -> None:
    tree.cpu("hypervisor")
    info = tree.detect()
    assert info.platform == "none"
    assert info.privilege_level is None
    assert info.privilege_level_name == "not applicable"
    assert info.svsm_present is None
    assert info.attestation == [] and info.signals == {}
    text = " ".join(info.notes)
    assert "configfs is not mounted" in text
    assert "no SEV-SNP guest interface" in text and "no TDX guest interface" in text
    assert "not a confidential one" in text


def test_none_on_an_snp_host(tree: Tree) -> None:
    tree.cpu("sev", "sev_es", "sev_snp")
    tree.dir("sys/kernel/config")
    info = tree.detect()
    assert info.platform == "none" and info.hypervisor is False
    assert any("SEV-SNP capable host" in n for n in info.notes)
    assert any("CONFIG_TSM_REPORTS" in n for n in info.notes)


def test_conflicting_signals_pick_the_strongest_and_say_so(tree: Tree) -> None:
    tree.cpu("hypervisor", "tdx_guest")
    tree.file("dev/tdx_guest")
    tree.file("sys/devices/system/cpu/sev/vmpl", "0\n")
    info = tree.detect()
    assert info.platform == "tdx"
    assert any("more than one platform" in n for n in info.notes)


def test_garbage_is_noted_not_raised(tree: Tree) -> None:
    tree.cpu("hypervisor")
    tree.file("sys/devices/system/cpu/sev/vmpl", "banana\n")
    tree.file("sys/hypervisor/sev/vmpl", "9\n")
    tree.file("sys/kernel/config/tsm/report/e/provider", "acme_guest\n")
    info = tree.detect()
    assert info.platform == "none"
    text = " ".join(info.notes)
    assert "not a VMPL number" in text and "outside 0..3" in text
    assert "not one an installed platform plug-in declares" in text
    assert info.tsm_provider == "acme_guest"


def test_result_serialises(tree: Tree) -> None:
    tree.cpu("hypervisor", "tdx_guest")
    info = tree.detect()
    assert PlatformInfo.model_validate_json(info.model_dump_json()) == info


def test_this_machine_never_raises() -> None:
    info = detect()
    assert info.platform in ("sev-snp", "tdx", "none")
    if info.platform == "none":
        assert info.notes and info.privilege_level_name == "not applicable"
