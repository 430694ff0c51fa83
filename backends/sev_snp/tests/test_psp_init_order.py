"""AMD-SP platform initialisation order: one test per rule, named after the rule.

Rules and their sources are in :mod:`cocopart_sev_snp.psp` (sev-snp.md §8, AMD-ASPFW
sev_mcmd.c, LX sev-dev.c, seed 002)."""

from __future__ import annotations

import json

from cocopart_sev_snp.asids import GuestType
from cocopart_sev_snp.psp import (
    AmdSp,
    Cmd,
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


def fw(hw: Hardware = HW) -> AmdSp:
    """Bare firmware: the tests drive every command by hand."""
    return AmdSp(hw)


def snp_ready(psp: AmdSp) -> None:
    """The driver's SNP sequence done by hand: WBINVD, SNP_INIT_EX, WBINVD, SNP_DF_FLUSH."""
    psp.wbinvd_all_cpus()
    assert psp.snp_init(ex=True, range_list=True).ok
    psp.wbinvd_all_cpus()
    assert psp.df_flush(snp=True).ok


def test_command_ids_match_psp_sev_h() -> None:
    assert (Cmd.SNP_INIT, Cmd.SNP_DF_FLUSH, Cmd.SNP_INIT_EX) == (0x81, 0x84, 0x85)
    assert (Cmd.SNP_DOWNLOAD_FIRMWARE_EX, Cmd.SNP_COMMIT) == (0xCA, 0xCB)
    assert (Cmd.INIT, Cmd.SHUTDOWN, Cmd.FACTORY_RESET, Cmd.PLATFORM_STATUS) == (1, 2, 3, 4)
    assert (Cmd.DF_FLUSH, Cmd.INIT_EX, Cmd.LAUNCH_START, Cmd.SNP_LAUNCH_START) == (
        0x0A,
        0x0D,
        0x30,
        0xA0,
    )


def test_status_codes_match_psp_sev_h() -> None:
    expected = {
        "INVALID_PLATFORM_STATE": 0x01,
        "INVALID_GUEST_STATE": 0x02,
        "DFFLUSH_REQUIRED": 0x0F,
        "INVALID_PARAM": 0x16,
        "SECURE_DATA_INVALID": 0x18,
        "INVALID_PAGE_SIZE": 0x19,
        "INVALID_PAGE_STATE": 0x1A,
        "INVALID_PAGE_OWNER": 0x1C,
        "BAD_VERSION": 0x22,
        "SHUTDOWN_REQUIRED": 0x23,
        "RESTORE_REQUIRED": 0x25,
        "INVALID_KEY": 0x27,
    }
    assert {name: FwStatus[name].value for name in expected} == expected


def test_platform_states_are_uninit_init_working() -> None:
    assert [s.value for s in SevState] == [0, 1, 2]
    assert [s.value for s in SnpState] == [0, 1]


def test_rule_snp_init_before_sev_init_succeeds() -> None:
    psp = fw()
    snp_ready(psp)
    result = psp.init()
    assert result.ok and psp.sev_state is SevState.INIT and psp.snp_state is SnpState.INIT


def test_rule_snp_init_fails_once_sev_init_has_run() -> None:
    psp = fw(HW.model_copy(update={"snp_enabled": True}))
    psp.rmp_initialized = True  # an earlier SNP_INIT + SNP_SHUTDOWN left the RMP set up
    assert psp.init().ok
    result = psp.snp_init(ex=True)
    assert result.fw_status is FwStatus.INVALID_PLATFORM_STATE
    assert "cannot succeed once SEV INIT has run" in result.message
    assert psp.snp_state is SnpState.UNINIT


def test_rule_sev_init_fails_without_snp_init_when_snp_enabled_system_wide() -> None:
    psp = fw()
    result = psp.init()
    assert (result.status, result.code) == ("INVALID_PLATFORM_STATE", 0x01)
    assert "SNP_INIT" in result.message and psp.sev_state is SevState.UNINIT


def test_rule_sev_init_alone_works_when_snp_not_enabled() -> None:
    psp = fw(HW.model_copy(update={"snp_enabled": False}))
    assert psp.init().ok


def test_rule_sev_init_after_snp_shutdown_still_works() -> None:
    psp = fw()
    snp_ready(psp)
    assert psp.snp_shutdown().ok
    assert psp.init().ok  # RMP stays protected until the next SNP_INIT


def test_rule_snp_init_refused_without_snpen() -> None:
    psp = fw(HW.model_copy(update={"snp_enabled": False}))
    assert psp.snp_init().fw_status is FwStatus.INVALID_CONFIG


def test_rule_hsave_pa_must_be_zero_for_snp_init() -> None:
    psp = fw()
    psp.hsave_pa_zero = False
    result = psp.snp_init(ex=True)
    assert result.fw_status is FwStatus.INVALID_CONFIG and "HSAVE_PA" in result.message


def test_rule_legacy_guests_running_block_snp_init() -> None:
    psp = fw(HW.model_copy(update={"snp_enabled": False}))
    assert psp.init().ok
    psp.wbinvd_all_cpus()
    psp.df_flush()
    start = psp.launch_start(GuestType.SEV)
    assert start.handle is not None and psp.activate(start.handle, 8).ok
    assert psp.guest_counts() == {GuestType.SEV: 1, GuestType.SEV_ES: 0, GuestType.SNP: 0}
    result = psp.snp_init()
    assert result.fw_status is FwStatus.INVALID_PLATFORM_STATE
    assert "1 legacy guest(s)" in result.message


def test_rule_plain_vms_running_block_snp_init() -> None:
    host = HostDriver(HW, ModuleParams(psp_init_on_probe=False))
    host.start_plain_vm()
    failed = host.platform_init(probe=False)
    snp = next(e for e in host.log.entries if e.action == "SNP_INIT_EX")
    assert snp.status == "INVALID_CONFIG" and not snp.ok
    # ... and on an SNPEn host the legacy INIT then fails too
    assert failed is not None and failed.fw_status is FwStatus.INVALID_PLATFORM_STATE


def test_rule_snp_needs_api_1_51() -> None:
    old = HW.model_copy(update={"firmware": FwVersion(major=1, minor=49)})
    assert fw(old).snp_init().fw_status is FwStatus.INVALID_COMMAND
    host = HostDriver(old)
    report = host.probe()
    assert "skip SNP_INIT" in host.log.actions() and not report.snp_initialized
    # SNPEn is set, so the legacy INIT that follows fails and KVM disables everything
    assert report.supported == {"sev": False, "sev-es": False, "snp": False}


def test_rule_snp_init_ex_from_1_52_else_snp_init() -> None:
    for minor, cmd in ((51, "SNP_INIT"), (52, "SNP_INIT_EX")):
        host = HostDriver(HW.model_copy(update={"firmware": FwVersion(major=1, minor=minor)}))
        host.probe()
        assert cmd in host.log.actions()
    assert (
        fw(HW.model_copy(update={"firmware": FwVersion(major=1, minor=51)}))
        .snp_init(ex=True, range_list=True)
        .fw_status
        is FwStatus.INVALID_PARAM
    )


def test_rule_driver_sequence_wbinvd_snp_init_wbinvd_snp_df_flush() -> None:
    host = HostDriver(HW)
    host.probe()
    psp_steps = [a for a in host.log.actions() if a not in ("load kvm_amd", "VM types")]
    assert psp_steps == [
        "WRMSR MSR_VM_HSAVE_PA=0",
        "WBINVD",
        "SNP_INIT_EX",
        "WBINVD",
        "SNP_DF_FLUSH",
        "INIT",
        "WBINVD",
        "DF_FLUSH",
    ]


def test_rule_driver_always_tries_snp_first_then_legacy_init_ex() -> None:
    host = HostDriver(HW, ModuleParams(init_ex_path="/var/lib/sev_init_ex"))
    host.probe()
    actions = host.log.actions()
    assert actions.index("SNP_INIT_EX") < actions.index("INIT_EX")


def test_rule_snp_init_failure_does_not_abort_legacy_init() -> None:
    host = HostDriver(HW.model_copy(update={"snp_enabled": False}))
    host.psp.hsave_pa_zero = False
    report = host.probe()
    assert "skip SNP_INIT" in host.log.actions() and report.sev_state == "INIT"


def test_rule_df_flush_requires_wbinvd_on_all_cpus() -> None:
    psp = fw()
    assert psp.snp_init(ex=True).ok
    result = psp.df_flush(snp=True)
    assert result.fw_status is FwStatus.WBINVD_REQUIRED
    psp.wbinvd_all_cpus()
    assert psp.df_flush(snp=True).ok


def test_rule_activate_on_dirty_asid_requires_df_flush() -> None:
    psp = fw()
    psp.wbinvd_all_cpus()
    assert psp.snp_init(ex=True).ok  # every ASID dirty, no flush yet
    handle = psp.snp_gctx_create().handle
    assert handle is not None and psp.snp_launch_start(handle).ok
    assert psp.snp_activate(handle, 1).fw_status is FwStatus.DFFLUSH_REQUIRED
    psp.wbinvd_all_cpus()
    psp.df_flush(snp=True)
    assert psp.snp_activate(handle, 1).ok


def test_rule_reused_asid_needs_wbinvd_and_df_flush() -> None:
    host = HostDriver(HW.model_copy(update={"max_asid": 8, "min_sev_asid": 8}))
    host.probe()
    first = host.launch_guest(GuestType.SEV)
    assert first.ok and first.asid == 8 and first.handle is not None
    host.destroy_guest(first.handle)
    mark = len(host.log.entries)
    second = host.launch_guest(GuestType.SEV)  # only ASID 8 exists: KVM must recycle it
    assert second.ok and second.asid == 8
    recycle = [e.action for e in host.log.since(mark + 1)][:2]
    assert recycle == ["WBINVD", "SNP_DF_FLUSH"]  # the model flushes with SNP_DF_FLUSH once
    # SNP is INIT; ASPFW runs the same code for DF_FLUSH and SNP_DF_FLUSH


def test_rule_asid_bound_to_another_guest_is_owned() -> None:
    psp = fw()
    snp_ready(psp)
    a, b = psp.snp_gctx_create().handle, psp.snp_gctx_create().handle
    assert a is not None and b is not None
    psp.snp_launch_start(a)
    psp.snp_launch_start(b)
    assert psp.snp_activate(a, 3).ok
    assert psp.snp_activate(b, 3).fw_status is FwStatus.ASID_OWNED


def test_rule_factory_reset_requires_uninit() -> None:
    psp = fw()
    snp_ready(psp)
    psp.init()
    assert psp.factory_reset().fw_status is FwStatus.INVALID_PLATFORM_STATE
    psp.shutdown()
    assert psp.factory_reset().ok


def test_rule_factory_reset_ioctl_working_is_ebusy_init_shuts_down_first() -> None:
    host = HostDriver(HW)
    host.probe()
    status, result = host.factory_reset()
    assert status == "SUCCESS" and result is not None
    assert host.log.actions()[-3:] == ["PLATFORM_STATUS", "SHUTDOWN", "FACTORY_RESET"]
    busy = HostDriver(HW)
    busy.probe()
    busy.launch_guest(GuestType.SEV)
    assert busy.factory_reset() == ("EBUSY", None)
    assert "FACTORY_RESET" not in busy.log.actions()


def test_rule_shutdown_from_any_state_leaves_snp_guests() -> None:
    host = HostDriver(HW)
    host.probe()
    host.launch_guest(GuestType.SNP)
    host.launch_guest(GuestType.SEV_ES)
    assert host.psp.snapshot().sev_state == "WORKING"
    assert host.psp.shutdown().ok
    assert host.psp.snapshot().sev_state == "UNINIT"
    assert host.psp.guest_counts() == {GuestType.SEV: 0, GuestType.SEV_ES: 0, GuestType.SNP: 1}


def test_rule_snp_shutdown_refused_while_sev_init() -> None:
    psp = fw()
    snp_ready(psp)
    psp.init()
    assert psp.snp_shutdown().fw_status is FwStatus.INVALID_PLATFORM_STATE


def test_rule_snp_shutdown_needs_clean_asids_and_driver_retries_after_df_flush() -> None:
    host = HostDriver(HW)
    host.probe()
    guest = host.launch_guest(GuestType.SNP)
    assert guest.handle is not None
    host.destroy_guest(guest.handle)  # its ASID is dirty now
    host.psp.shutdown()
    assert host.psp.snp_shutdown().fw_status is FwStatus.DFFLUSH_REQUIRED
    host.shutdown()
    assert host.psp.snp_state is SnpState.UNINIT
    assert host.log.actions()[-3:] == ["SNP_SHUTDOWN_EX", "SNP_DF_FLUSH", "SNP_SHUTDOWN_EX"]


def test_rule_guests_counted_per_type() -> None:
    host = HostDriver(HW)
    host.probe()
    for kind in (GuestType.SNP, GuestType.SNP, GuestType.SEV_ES, GuestType.SEV):
        assert host.launch_guest(kind).ok
    assert host.psp.guest_counts() == {GuestType.SEV: 1, GuestType.SEV_ES: 1, GuestType.SNP: 2}
    assert host.psp.snapshot().guests == {"sev": 1, "sev-es": 1, "snp": 2}


def test_rule_decommissioning_last_legacy_guest_returns_working_to_init() -> None:
    host = HostDriver(HW)
    host.probe()
    guest = host.launch_guest(GuestType.SEV)
    assert guest.handle is not None and host.psp.snapshot().sev_state == "WORKING"
    host.destroy_guest(guest.handle)
    assert host.psp.snapshot().sev_state == "INIT"


def test_rule_launch_start_needs_sev_init() -> None:
    psp = fw()
    snp_ready(psp)
    result = psp.launch_start(GuestType.SEV)
    assert result.fw_status is FwStatus.INVALID_PLATFORM_STATE and "SEV INIT" in result.message


def test_rule_snp_launch_needs_snp_init() -> None:
    psp = fw(HW.model_copy(update={"snp_enabled": False}))
    assert psp.snp_gctx_create().fw_status is FwStatus.INVALID_PLATFORM_STATE


def test_every_refusal_carries_status_name_code_and_sentence() -> None:
    host = HostDriver(HW)
    host.probe()
    host.psp.snp_init()
    host.psp.download_firmware_ex(FirmwareImage(version=FwVersion(major=1, minor=56)))
    refused = [e for e in host.log.entries if e.actor == "psp" and not e.ok]
    assert [e.status for e in refused] == ["INVALID_PLATFORM_STATE"] * 2
    for entry in refused:
        assert entry.code == FwStatus[entry.status].value
        assert entry.message.endswith(".") and len(entry.message.split()) >= 5
        assert entry.source


def test_log_is_ordered_and_serialisable() -> None:
    host = HostDriver(HW)
    host.probe()
    host.launch_guest(GuestType.SEV)
    seqs = [e.seq for e in host.log.entries]
    assert seqs == list(range(1, len(seqs) + 1))
    data = json.loads(host.log.model_dump_json())
    assert data["entries"][0]["action"] == "load kvm_amd"
    assert all(line.strip() for line in host.log.render())
