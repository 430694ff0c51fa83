"""The initialisation sequences of the seed-002 thread ("Re: [PATCH v2 3/3] x86/sev: Add
SEV-SNP CipherTextHiding support", Ashish Kalra, 2024-12-07, quoting Sean Christopherson and
Tom Lendacky), each as a test named after it, refused ones included, plus every preset."""

from __future__ import annotations

import json

import pytest
from cocopart_sev_snp.asids import GuestType
from cocopart_sev_snp.psp import (
    PRESETS,
    FirmwareImage,
    FwStatus,
    FwVersion,
    Hardware,
    HostDriver,
    ModuleParams,
    SevState,
    SnpState,
    run_preset,
)

HW = Hardware(max_asid=15, min_sev_asid=8, ciphertext_hiding_capable=True)
IMAGE = FirmwareImage(version=FwVersion(major=1, minor=55, build=29))


def psp_actions(host: HostDriver) -> list[str]:
    """Firmware commands only, in order."""
    return [e.action for e in host.log.entries if e.actor == "psp"]


# ---- Kalra's summary, point 1: "if SEV INIT has completed successfully then any subsequent
# SNP_INIT(_EX) will fail"


def test_seq_sev_init_then_snp_init_is_refused() -> None:
    host = HostDriver(HW.model_copy(update={"snp_enabled": False}))
    host.probe()
    assert host.psp.sev_state is SevState.INIT
    result = host.psp.snp_init(ex=True)
    assert result.fw_status is FwStatus.INVALID_PLATFORM_STATE


# ---- point 2: "if SNP is enabled (SNPEn) system-wide ... SNP_INIT_EX has to be done before
# SEV INIT, otherwise SEV INIT will fail"


def test_seq_sev_init_first_on_snpen_host_is_refused() -> None:
    host = HostDriver(HW)
    result = host.psp.init()
    assert result.fw_status is FwStatus.INVALID_PLATFORM_STATE
    assert host.psp.sev_state is SevState.UNINIT


def test_seq_snp_init_ex_then_sev_init_succeeds() -> None:
    host = HostDriver(HW)
    host.probe()
    actions = psp_actions(host)
    assert actions.index("SNP_INIT_EX") < actions.index("INIT")
    assert (host.psp.snp_state, host.psp.sev_state) == (SnpState.INIT, SevState.INIT)


# ---- "if we only want to launch legacy VMs (SEV/SEV-ES), but SNP has been enabled at early
# kernel boot then we still need to do SNP_INIT(_EX) before SEV INIT"


def test_seq_legacy_only_on_snpen_host_still_does_snp_init_first() -> None:
    run = run_preset("legacy-on-snp-host")
    actions = psp_actions(run.host)
    assert actions[:3] == ["SNP_INIT_EX", "SNP_DF_FLUSH", "INIT"]
    assert run.launches[0].ok and run.launches[0].kind is GuestType.SEV


# ---- "If SNP is not enabled system-wide (CC_ATTR_HOST_SEV_SNP is not set), then
# SNP_INIT(_EX) will be skipped"


def test_seq_snp_not_enabled_system_wide_skips_snp_init() -> None:
    run = run_preset("no-snp-host")
    assert "SNP_INIT_EX" not in psp_actions(run.host) and "SNP_INIT" not in psp_actions(run.host)
    skip = next(e for e in run.log.entries if e.action == "skip SNP_INIT")
    assert skip.status == "ENODEV"
    assert run.launches[0].ok and not run.launches[1].ok


# ---- "If we specify KVM module parameter sev_snp=false, but if SNPEn is set system-wide, we
# will still do SNP_INIT(_EX) before SEV INIT ... launching any SNP VMs will fail"


def test_seq_kvm_sev_snp_false_still_snp_inits_and_snp_launch_fails() -> None:
    run = run_preset("legacy-on-snp-host")
    assert run.host.psp.snp_state is SnpState.INIT
    snp = run.launches[1]
    assert snp.kind is GuestType.SNP and not snp.ok and snp.status == "ENOTTY"


# ---- Tom Lendacky: "When we say legacy VMs, that also means non-SEV VMs. So you can't have
# any VM running within a VMRUN instruction."


def test_seq_snp_init_with_non_sev_vm_running_is_refused() -> None:
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))
    host.start_plain_vm()
    host.snp_init_locked()
    snp = next(e for e in host.log.entries if e.action == "SNP_INIT_EX")
    assert snp.status == "INVALID_CONFIG" and host.psp.snp_state is SnpState.UNINIT


def test_seq_snp_init_with_sev_guests_running_is_refused() -> None:
    host = HostDriver(HW.model_copy(update={"snp_enabled": False}))
    host.probe()
    host.launch_guest(GuestType.SEV)
    assert host.psp.snp_init(ex=True).fw_status is FwStatus.INVALID_PLATFORM_STATE


# ---- Tom Lendacky on "init at first SEV VM run": "that would present a problem of having to
# ensure no VMs are active while performing the SNP_INIT"


def test_seq_platform_init_at_first_vm_run_with_vms_active_is_refused() -> None:
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))  # nothing done at load
    host.start_plain_vm()
    failed = host.platform_init(probe=False)  # what "init at first SEV VM" would do
    assert failed is not None and failed.fw_status is FwStatus.INVALID_PLATFORM_STATE
    assert [e.status for e in host.log.failures() if e.actor == "psp"] == [
        "INVALID_CONFIG",
        "INVALID_PLATFORM_STATE",
    ]


# ---- Sean: "SEV_CMD_SNP_INIT{_EX} can be executed before firmware hotload, but
# SEV_CMD_INIT{_EX} cannot." Kalra: "The SNP firmware may be in any state. SEV must be in
# the UNINIT state."


def test_seq_snp_init_then_hotload_succeeds() -> None:
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    assert host.hotload_firmware(IMAGE).ok


def test_seq_sev_init_then_hotload_is_refused() -> None:
    host = HostDriver(HW)
    host.probe()
    assert host.hotload_firmware(IMAGE).fw_status is FwStatus.INVALID_PLATFORM_STATE


# ---- Kalra: "The initial set of patches will initialize SNP and SEV both at kvm-amd.ko
# module load"


def test_seq_kvm_module_load_initializes_snp_and_sev() -> None:
    run = run_preset("snp+sev")
    assert psp_actions(run.host)[:4] == ["SNP_INIT_EX", "SNP_DF_FLUSH", "INIT", "DF_FLUSH"]
    assert all(g.ok for g in run.launches)


# ---- Kalra: "psp_init_on_probe parameter will need to be set to false, which will ensure
# that SEV INIT is not done ... at KVM module probe time and instead it will be done
# implicitly at first SEV/SEV-ES VM launch"


@pytest.mark.parametrize("kind", [GuestType.SEV, GuestType.SEV_ES])
def test_seq_psp_init_on_probe_false_defers_sev_init_to_first_legacy_vm(kind: GuestType) -> None:
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    assert host.psp.sev_state is SevState.UNINIT and "INIT" not in psp_actions(host)
    assert host.launch_guest(GuestType.SNP).ok and host.psp.sev_state is SevState.UNINIT
    assert host.launch_guest(kind).ok
    assert psp_actions(host).count("INIT") == 1
    assert host.launch_guest(kind).ok
    assert psp_actions(host).count("INIT") == 1  # only the first legacy guest initialises


# ---- Sean: "with SEV firmware hotload support how do we do SEV INIT without unloading and
# reloading KVM module?" -> implicitly at the first SEV VM (sev_guest_init -> sev_platform_init)


def test_seq_hotload_then_sev_init_without_module_reload() -> None:
    run = run_preset("firmware-hotload")
    actions = run.log.actions()
    assert actions.count("load kvm_amd") == 1
    assert (
        actions.index("SNP_DOWNLOAD_FIRMWARE_EX")
        < actions.index("SNP_COMMIT")
        < actions.index("lazy SEV INIT")
        < actions.index("INIT")
    )
    assert [g.ok for g in run.launches] == [True, True]
    last = [e for e in run.log.entries if e.action == "SNP_DOWNLOAD_FIRMWARE_EX"][-1]
    assert last.status == "INVALID_PLATFORM_STATE"  # refused once SEV INIT ran


# ---- Sean's summary: "Define CipherTextHiding and ASID params kvm-amd.ko"


def test_seq_ciphertext_hiding_param_in_kvm_amd_splits_asids() -> None:
    host = HostDriver(HW, ModuleParams(ciphertext_hiding_asids=3))
    report = host.probe()
    assert report.asids[:3] == [
        "sev: enabled (ASIDs 8-15)",
        "sev-es: enabled (ASIDs 4-7)",
        "snp: enabled (ASIDs 1-3)",
    ]


# ---- the presets


def test_preset_snp_only() -> None:
    run = run_preset("snp-only")
    snap = run.host.psp.snapshot()
    assert (snap.snp_state, snap.sev_state) == ("INIT", "UNINIT")
    assert snap.guests == {"sev": 0, "sev-es": 0, "snp": 1}


def test_preset_snp_plus_sev() -> None:
    run = run_preset("snp+sev")
    snap = run.host.psp.snapshot()
    assert (snap.snp_state, snap.sev_state) == ("INIT", "WORKING")
    assert snap.guests == {"sev": 1, "sev-es": 1, "snp": 1}


def test_preset_firmware_hotload() -> None:
    run = run_preset("firmware-hotload")
    snap = run.host.psp.snapshot()
    assert (snap.api, snap.committed) == ("1.55.29", "1.55.29")


def test_preset_ciphertext_hiding() -> None:
    run = run_preset("ciphertext-hiding")
    snap = run.host.psp.snapshot()
    assert snap.ciphertext_hiding_en and snap.max_snp_asid == 64
    by_kind = {g.kind: g.asid for g in run.launches[:3]}
    assert by_kind == {GuestType.SEV: 100, GuestType.SEV_ES: 65, GuestType.SNP: 1}
    wrong = run.launches[3]
    assert (wrong.ok, wrong.asid, wrong.status) == (False, 65, "INVALID_ASID")


def test_preset_lazy_sev_init() -> None:
    run = run_preset("lazy-sev-init")
    assert run.log.actions().count("lazy SEV INIT") == 1
    assert [g.asid for g in run.launches] == [100, 101]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_and_reports(name: str) -> None:
    run = run_preset(name)
    report = json.loads(run.report().model_dump_json())
    assert report["name"] == name and report["description"]
    assert [e["seq"] for e in report["log"]] == list(range(1, len(report["log"]) + 1))
    assert len(run.log.render()) == len(report["log"])


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="snp-only"):
        run_preset("nope")
