"""SNP_DOWNLOAD_FIRMWARE_EX (firmware hot-load) and SNP_COMMIT.

Rules: SEV must be UNINIT, SNP may be INIT (ASPFW snp_mcmd_download_firmware_ex; seed 002);
the driver follows with WBINVD + SNP_DF_FLUSH and refreshes SNP guest contexts, leaving the
commit bit clear; SNP_COMMIT is separate (LX sev-fw.c; sev-snp.md §8)."""

from __future__ import annotations

from cocopart_sev_snp.asids import GuestType
from cocopart_sev_snp.psp import (
    FirmwareImage,
    FwStatus,
    FwVersion,
    Hardware,
    HostDriver,
    ModuleParams,
    SevState,
    SnpState,
)

HW = Hardware(max_asid=15, min_sev_asid=8)
NEW = FirmwareImage(version=FwVersion(major=1, minor=55, build=29))


def deferred_host() -> HostDriver:
    """SNP initialised at load, SEV INIT deferred (psp_init_on_probe=false)."""
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    return host


def test_hotload_allowed_with_snp_init_and_sev_uninit() -> None:
    host = deferred_host()
    assert host.psp.snp_state is SnpState.INIT and host.psp.sev_state is SevState.UNINIT
    result = host.hotload_firmware(NEW)
    assert result.ok and str(host.psp.version) == "1.55.29"
    assert host.psp.snp_state is SnpState.INIT


def test_hotload_allowed_with_snp_uninit() -> None:
    host = HostDriver(
        HW.model_copy(update={"snp_enabled": False}), ModuleParams(psp_init_on_probe=False)
    )
    host.probe()
    assert host.psp.download_firmware_ex(NEW).ok


def test_hotload_refused_after_sev_init() -> None:
    host = HostDriver(HW)
    host.probe()
    result = host.hotload_firmware(NEW)
    assert (result.status, result.code) == ("INVALID_PLATFORM_STATE", 0x01)
    assert "SEV is UNINIT" in result.message and str(host.psp.version) == "1.55.25"
    assert host.log.entries[-1].status == "FW_UPLOAD_ERR_BUSY"


def test_hotload_refused_with_legacy_guests_running() -> None:
    host = deferred_host()
    host.launch_guest(GuestType.SEV_ES)
    assert host.psp.sev_state is SevState.WORKING
    assert host.hotload_firmware(NEW).fw_status is FwStatus.INVALID_PLATFORM_STATE


def test_driver_follows_hotload_with_wbinvd_snp_df_flush_and_guest_status() -> None:
    host = deferred_host()
    guests = [host.launch_guest(GuestType.SNP) for _ in range(2)]
    mark = len(host.log.entries)
    host.hotload_firmware(NEW)
    assert [e.action for e in host.log.since(mark + 1)] == [
        "SNP_DOWNLOAD_FIRMWARE_EX",
        "WBINVD",
        "SNP_DF_FLUSH",
        "SNP_GUEST_STATUS",
        "SNP_GUEST_STATUS",
    ]
    assert not host.psp.stale_gctx
    assert host.psp.guest_counts()[GuestType.SNP] == 2 and all(g.ok for g in guests)


def test_commit_is_separate_and_explicit() -> None:
    host = deferred_host()
    host.hotload_firmware(NEW)
    snap = host.psp.snapshot()
    assert (snap.api, snap.committed) == ("1.55.29", "1.55.25")
    download = next(e for e in host.log.entries if e.action == "SNP_DOWNLOAD_FIRMWARE_EX")
    assert "not committed" in download.message
    assert host.commit_firmware().ok
    assert host.psp.snapshot().committed == "1.55.29"


def test_download_with_commit_bit_commits_at_once() -> None:
    host = deferred_host()
    assert host.psp.download_firmware_ex(NEW, commit=True).ok
    assert host.psp.snapshot().committed == "1.55.29"


def test_without_df_flush_next_snp_activation_needs_df_flush() -> None:
    host = deferred_host()
    assert host.psp.download_firmware_ex(NEW).ok  # no WBINVD / SNP_DF_FLUSH afterwards
    launch = host.launch_guest(GuestType.SNP)
    assert not launch.ok and launch.status == "DFFLUSH_REQUIRED"
    refusal = next(e for e in host.log.entries if e.action == "SNP_ACTIVATE")
    assert not refusal.confirmed
    host.psp.wbinvd_all_cpus()
    host.psp.df_flush(snp=True)
    assert host.launch_guest(GuestType.SNP).ok


def test_bad_signature_changes_nothing() -> None:
    host = deferred_host()
    result = host.hotload_firmware(NEW.model_copy(update={"signature_ok": False}))
    assert result.fw_status is FwStatus.BAD_SIGNATURE and str(host.psp.version) == "1.55.25"
    assert host.log.entries[-1].status == "FW_UPLOAD_ERR_FW_INVALID"


def test_malformed_image_is_bad_version() -> None:
    host = deferred_host()
    result = host.hotload_firmware(NEW.model_copy(update={"well_formed": False}))
    assert result.fw_status is FwStatus.BAD_VERSION


def test_image_that_cannot_live_update_needs_snp_shutdown() -> None:
    host = deferred_host()
    image = NEW.model_copy(update={"live_updatable": False})
    assert host.hotload_firmware(image).fw_status is FwStatus.SHUTDOWN_REQUIRED
    host.shutdown()
    assert host.psp.snp_state is SnpState.UNINIT
    assert host.psp.download_firmware_ex(image).ok


def test_rejected_platform_state_rolls_back() -> None:
    host = deferred_host()
    result = host.hotload_firmware(NEW.model_copy(update={"accepts_platform_state": False}))
    assert result.fw_status is FwStatus.UPDATE_FAILED and str(host.psp.version) == "1.55.25"
    assert "rolled back" in result.message


def test_sev_init_after_hotload_happens_at_first_legacy_guest_without_reload() -> None:
    host = deferred_host()
    host.hotload_firmware(NEW)
    host.commit_firmware()
    launch = host.launch_guest(GuestType.SEV)
    assert launch.ok and host.psp.sev_state is SevState.WORKING
    actions = host.log.actions()
    assert actions.index("lazy SEV INIT") < actions.index("INIT") < actions.index("LAUNCH_START")
    assert actions.count("load kvm_amd") == 1  # kvm_amd was not reloaded


def test_second_hotload_refused_once_lazy_sev_init_ran() -> None:
    host = deferred_host()
    assert host.hotload_firmware(NEW).ok
    host.launch_guest(GuestType.SEV)
    again = host.hotload_firmware(
        NEW.model_copy(update={"version": FwVersion(major=1, minor=55, build=31)})
    )
    assert again.fw_status is FwStatus.INVALID_PLATFORM_STATE


def test_hotload_needs_snp_capable_firmware() -> None:
    host = HostDriver(
        HW.model_copy(update={"snp_enabled": False, "firmware": FwVersion(major=0, minor=24)}),
        ModuleParams(psp_init_on_probe=False),
    )
    assert host.psp.download_firmware_ex(NEW).fw_status is FwStatus.INVALID_COMMAND
