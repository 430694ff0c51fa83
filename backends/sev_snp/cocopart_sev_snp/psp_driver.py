"""The Linux host driver sequence that drives the AMD-SP: ``ccp`` (sev-dev.c, sev-fw.c) and
``kvm_amd`` (svm/sev.c) as :class:`HostDriver`, with its module parameters
(:class:`ModuleParams`): probe-time init that always tries SNP_INIT(_EX) first, then legacy
INIT/INIT_EX + DF_FLUSH; ``psp_init_on_probe`` and ``ciphertext_hiding_asids``; KVM's ASID
allocator; lazy SEV INIT at the first legacy guest; firmware hot-load and commit;
FACTORY_RESET and shutdown as the ioctl / module exit do them. Sources:
:mod:`cocopart_sev_snp.psp`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cocopart_sev_snp.asids import AsidSpace, GuestType
from cocopart_sev_snp.psp_firmware import (
    SNP_INIT_EX_API,
    SNP_MIN_API,
    SRC_DEV,
    SRC_FW,
    SRC_KVM,
    SRC_MODEL,
    SRC_REF,
    SRC_SEED,
    SRC_SEED_TL,
    Actor,
    AmdSp,
    FirmwareImage,
    FirmwareResult,
    FwStatus,
    Hardware,
    LogEntry,
    SevState,
    SnpState,
)

# --------------------------------------------------------------------------- host driver


class ModuleParams(BaseModel):
    """``ccp`` and ``kvm_amd`` module parameters the init sequence depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ccp.psp_init_on_probe (default true): false defers SEV INIT to the first SEV/SEV-ES
    #: guest (seed 002; LX sev-dev.c _sev_platform_init_locked).
    psp_init_on_probe: bool = True
    #: ccp.init_ex_path: use INIT_EX with an NV file instead of INIT.
    init_ex_path: str | None = None
    #: kvm_amd.sev / sev_es / sev_snp.
    sev: bool = True
    sev_es: bool = True
    sev_snp: bool = True
    #: kvm_amd.ciphertext_hiding_asids (uint, 0 = off; clamped to MIN_SEV_ASID-1).
    ciphertext_hiding_asids: int = Field(default=0, ge=0)


class ProbeReport(BaseModel):
    """What kvm_amd load-time setup ended with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snp_initialized: bool
    sev_state: str
    supported: dict[str, bool]
    asids: list[str]


class GuestLaunch(BaseModel):
    """Outcome of launching one guest through KVM (or with a forced ASID)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: GuestType
    ok: bool
    handle: int | None = None
    asid: int | None = None
    #: The failing step's status name (firmware status or errno), None on success.
    status: str | None = None
    message: str


#: ccp firmware-upload error for each DOWNLOAD_FIRMWARE_EX status (LX sev-fw.c
#: snp_dlfw_ex_err_translate); anything else maps to HW_ERROR.
UPLOAD_ERRORS: dict[FwStatus, str] = {
    FwStatus.RESTORE_REQUIRED: "RW_ERROR",
    FwStatus.SHUTDOWN_REQUIRED: "FW_INVALID",
    FwStatus.BAD_VERSION: "FW_INVALID",
    FwStatus.BAD_SIGNATURE: "FW_INVALID",
    FwStatus.INVALID_PLATFORM_STATE: "BUSY",
    FwStatus.HWSEV_RET_UNSAFE: "HW_ERROR",
    FwStatus.INVALID_PARAM: "RW_ERROR",
    FwStatus.INVALID_ADDRESS: "RW_ERROR",
}


class HostDriver:
    """Linux ``ccp`` + ``kvm_amd`` on one host, driving an :class:`AmdSp`.

    The modelled code is KVM-load-time init: ``sev_hardware_setup`` calls
    ``sev_platform_init(probe=true)``, which tries SNP first and defers SEV INIT when
    ``psp_init_on_probe`` is false (seed 002; LX sev-dev.c, LX kvm sev.c). Not modelled:
    QEMU's own PLATFORM_STATUS check before KVM_SEV_INIT2, which makes the deferred init work
    for SEV but not SEV-ES guests in practice (Ashish Kalra, 2025-02-28, "[PATCH v5 6/7] KVM:
    SVM: Add support to initialize SEV/SNP functionality in KVM"; Sean Christopherson replied
    voting to drop deferred init). Here both trigger it, as seed 002 states."""

    def __init__(self, hw: Hardware | None = None, params: ModuleParams | None = None) -> None:
        self.hw = hw if hw is not None else Hardware()
        self.params = params if params is not None else ModuleParams()
        self.psp = AmdSp(self.hw)
        self.log = self.psp.log
        self.asids = AsidSpace(max_asid=self.hw.max_asid, min_sev_asid=self.hw.min_sev_asid)
        self.supported: dict[GuestType, bool] = {kind: False for kind in GuestType}
        self.kvm_asids: dict[int, int] = {}
        self.reclaim: set[int] = set()
        self.plain_vms = 0
        self.probed = False

    # ---- helpers

    def _drv(
        self,
        actor: Actor,
        action: str,
        ok: bool,
        status: str,
        message: str,
        source: str,
        confirmed: bool = True,
    ) -> LogEntry:
        return self.psp.note(actor, action, ok, status, message, source, confirmed=confirmed)

    def _hiding_supported(self) -> bool:
        return (
            self.hw.ciphertext_hiding_capable
            and self.hw.snp_enabled
            and self.psp.version.at_least(*SNP_INIT_EX_API)
        )

    def _clear_hsave_pa(self) -> None:
        """on_each_cpu(snp_set_hsave_pa): MSR_VM_HSAVE_PA = 0 before SNP_INIT (LX sev-dev.c)."""
        running = (
            self.plain_vms + self.psp.legacy_guest_count() + self.psp.guest_counts()[GuestType.SNP]
        )
        self.psp.hsave_pa_zero = running == 0
        if running:
            self._drv(
                "cpu",
                "WRMSR MSR_VM_HSAVE_PA=0",
                False,
                "not-stuck",
                f"{running} VM(s) are running; their CPUs keep MSR_VM_HSAVE_PA set.",
                f"{SRC_DEV}; {SRC_SEED_TL}; {SRC_MODEL}",
                confirmed=False,
            )
        else:
            self._drv(
                "cpu",
                "WRMSR MSR_VM_HSAVE_PA=0",
                True,
                "done",
                "MSR_VM_HSAVE_PA cleared on every CPU (SNP_INIT requires 0).",
                f"{SRC_DEV}; {SRC_REF}",
            )

    # ---- ccp: the init sequences

    def snp_init_locked(self, max_snp_asid: int = 0) -> FirmwareResult | None:
        """__sev_snp_init_locked: skip when SNP is not enabled system-wide or the firmware
        predates 1.51; else HSAVE_PA=0, WBINVD, SNP_INIT(_EX), WBINVD, SNP_DF_FLUSH.
        Returns the SNP_INIT result, or None when skipped / already done."""
        if not self.hw.snp_enabled:
            self._drv(
                "ccp",
                "skip SNP_INIT",
                True,
                "ENODEV",
                "SNP is not enabled system-wide (CC_ATTR_HOST_SEV_SNP clear): "
                "SNP_INIT(_EX) skipped.",
                f"{SRC_SEED}; {SRC_DEV}",
            )
            return None
        if self.psp.snp_state is SnpState.INIT:
            return None
        if not self.psp.version.at_least(*SNP_MIN_API):
            self._drv(
                "ccp",
                "skip SNP_INIT",
                True,
                "skipped",
                f"SEV-SNP support requires firmware >= 1.51, found {self.psp.version}.",
                f"{SRC_DEV}; {SRC_REF}",
            )
            return None
        self._clear_hsave_pa()
        ex = self.psp.version.at_least(*SNP_INIT_EX_API)
        self.psp.wbinvd_all_cpus()
        hide = ex and max_snp_asid > 0
        result = self.psp.snp_init(
            ex, range_list=ex, ciphertext_hiding=hide, max_snp_asid=max_snp_asid if hide else 0
        )
        if not result.ok:
            return result
        self.psp.wbinvd_all_cpus()
        self.psp.df_flush(snp=True)
        return result

    def sev_init_locked(self) -> FirmwareResult | None:
        """__sev_platform_init_locked: INIT (or INIT_EX with init_ex_path), then WBINVD +
        DF_FLUSH. None when SEV is already INIT/WORKING."""
        if self.psp.sev_state is not SevState.UNINIT:
            return None
        result = self.psp.init(ex=self.params.init_ex_path is not None)
        if result.ok:
            self.psp.wbinvd_all_cpus()
            self.psp.df_flush()
        return result

    def platform_init(self, probe: bool, max_snp_asid: int = 0) -> FirmwareResult | None:
        """_sev_platform_init_locked: SNP first (a failure does not stop the legacy init),
        then SEV INIT unless this is probe time and psp_init_on_probe is false. Returns the
        failing firmware result, or None when nothing failed."""
        if self.psp.sev_state is not SevState.UNINIT:
            return None
        snp = self.snp_init_locked(max_snp_asid)
        if snp is not None and not snp.ok:
            self._drv(
                "ccp",
                "continue after SNP_INIT failure",
                True,
                "continue",
                "SEV-SNP failed to initialise; continuing with legacy SEV init.",
                f'{SRC_DEV} ("Don\'t abort the probe if SNP INIT failed")',
            )
        if probe and not self.params.psp_init_on_probe:
            self._drv(
                "ccp",
                "defer SEV INIT",
                True,
                "skipped",
                "psp_init_on_probe=false: SEV INIT deferred to the first SEV/SEV-ES "
                "guest, which keeps firmware hot-load possible.",
                f"{SRC_SEED}; {SRC_DEV}",
            )
            return None
        sev = self.sev_init_locked()
        return sev if sev is not None and not sev.ok else None

    # ---- kvm_amd: module load

    def probe(self) -> ProbeReport:
        """kvm_amd load (sev_hardware_setup): platform init, then which VM types KVM offers
        and the ASID split (ciphertext hiding only when SNP came up)."""
        p = self.params
        self._drv(
            "kvm_amd",
            "load kvm_amd",
            True,
            "start",
            f"sev_hardware_setup: sev={p.sev} sev_es={p.sev_es} sev_snp={p.sev_snp} "
            f"ciphertext_hiding_asids={p.ciphertext_hiding_asids}; ccp "
            f"psp_init_on_probe={p.psp_init_on_probe}; SNPEn={self.hw.snp_enabled}; "
            f"firmware {self.psp.version}.",
            f"{SRC_KVM}; {SRC_SEED}",
        )
        snp_wanted = p.sev_snp and self.hw.snp_enabled
        max_snp = (
            min(p.ciphertext_hiding_asids, self.hw.min_sev_asid - 1)
            if self._hiding_supported() and p.ciphertext_hiding_asids
            else 0
        )
        if p.ciphertext_hiding_asids and not self._hiding_supported():
            self._drv(
                "kvm_amd",
                "ignore ciphertext_hiding_asids",
                True,
                "skipped",
                "ciphertext_hiding_asids set but ciphertext hiding is not supported.",
                f"{SRC_KVM}; {SRC_MODEL}",
                confirmed=False,
            )
        failed = self.platform_init(probe=True, max_snp_asid=max_snp) if p.sev else None
        snp_up = self.psp.snp_state is SnpState.INIT
        if snp_up and self.psp.ciphertext_hiding_en and snp_wanted:
            self.asids = self.asids.with_hiding(self.psp.max_snp_asid)
            self._drv(
                "kvm_amd",
                "split ASIDs",
                True,
                "done",
                "SEV-SNP ciphertext hiding enabled: " + "; ".join(self.asids.describe()),
                f"{SRC_KVM}; {SRC_REF}",
            )
        ok = p.sev and failed is None
        self.supported = {
            GuestType.SEV: ok and self.asids.usable(GuestType.SEV),
            GuestType.SEV_ES: ok and p.sev_es and self.asids.usable(GuestType.SEV_ES),
            GuestType.SNP: ok and snp_wanted and snp_up,
        }
        if failed is not None:
            self._drv(
                "kvm_amd",
                "disable SEV",
                False,
                failed.status,
                "sev_platform_init failed: KVM disables SEV, SEV-ES and SNP.",
                SRC_KVM,
            )
        offered = [k.value for k, v in self.supported.items() if v] or ["none"]
        self._drv(
            "kvm_amd",
            "VM types",
            True,
            "done",
            f"KVM offers: {', '.join(offered)}. " + "; ".join(self.asids.describe()),
            SRC_KVM,
        )
        self.probed = True
        return ProbeReport(
            snp_initialized=snp_up,
            sev_state=self.psp.sev_state.name,
            supported={k.value: v for k, v in self.supported.items()},
            asids=self.asids.describe(),
        )

    # ---- kvm_amd: guests

    def start_plain_vm(self) -> None:
        """A non-SEV VM starts: KVM enables SVM and sets MSR_VM_HSAVE_PA on its CPUs."""
        self.plain_vms += 1
        self.psp.hsave_pa_zero = False
        self._drv(
            "kvm_amd",
            "start plain VM",
            True,
            "done",
            "A non-SEV VM runs; MSR_VM_HSAVE_PA is set on the CPUs that run it.",
            f"{SRC_SEED_TL}; {SRC_REF}",
        )

    def stop_plain_vm(self) -> None:
        """A non-SEV VM stops."""
        self.plain_vms = max(0, self.plain_vms - 1)
        self._drv("kvm_amd", "stop plain VM", True, "done", "A non-SEV VM exited.", SRC_MODEL)

    def _allocate_asid(self, kind: GuestType) -> tuple[int | None, str]:
        """sev_asid_new: a free ASID in the class; recycle (WBINVD + DF_FLUSH) when only
        reclaimable ones are left; ENOTTY for an empty class, EBUSY when exhausted."""
        rng = self.asids.range_for(kind)
        if rng.empty:
            return None, "ENOTTY"
        for attempt in range(2):
            for asid in range(rng.first, rng.last + 1):
                if asid not in self.kvm_asids and asid not in self.reclaim:
                    return asid, "ok"
            if attempt == 0 and self.reclaim & set(range(rng.first, rng.last + 1)):
                self.psp.wbinvd_all_cpus()
                flush = self.psp.df_flush(snp=self.psp.snp_state is SnpState.INIT)
                if flush.ok:
                    self.reclaim.clear()
        return None, "EBUSY"

    def launch_guest(self, kind: GuestType, asid: int | None = None) -> GuestLaunch:
        """Create and launch one guest the way KVM does (KVM_SEV_INIT2 + LAUNCH_START).

        ``asid`` forces an ASID instead of KVM's allocator (what a hypervisor ignoring the
        class split would do), so the firmware's own check is exercised."""
        if not self.supported.get(kind, False) and asid is None:
            return self._refuse(
                kind, "ENOTTY", f"KVM does not offer {kind.value} VMs on this host.", SRC_KVM
            )
        chosen, why = (asid, "ok") if asid is not None else self._allocate_asid(kind)
        if chosen is None:
            text = (
                "the ASID class is empty (ciphertext hiding gave every joint ASID to SNP)"
                if why == "ENOTTY"
                else "every ASID of the class is in use"
            )
            return self._refuse(kind, why, f"No {kind.value} ASID: {text}.", SRC_KVM)
        if kind is not GuestType.SNP and self.psp.sev_state is SevState.UNINIT:
            self._drv(
                "kvm_amd",
                "lazy SEV INIT",
                True,
                "start",
                "First SEV/SEV-ES guest on a host whose SEV INIT was deferred: "
                "sev_guest_init -> sev_platform_init.",
                SRC_SEED,
            )
            failed = self.platform_init(probe=False)
            if failed is not None:
                return self._refuse(kind, failed.status, failed.message, failed.source, actor="ccp")
        return (
            self._launch_snp(chosen) if kind is GuestType.SNP else self._launch_legacy(kind, chosen)
        )

    def _refuse(
        self, kind: GuestType, status: str, message: str, source: str, actor: Actor = "kvm_amd"
    ) -> GuestLaunch:
        self._drv(actor, f"launch {kind.value} guest", False, status, message, source)
        return GuestLaunch(kind=kind, ok=False, status=status, message=message)

    def _launch_legacy(self, kind: GuestType, asid: int) -> GuestLaunch:
        start = self.psp.launch_start(kind)
        if not start.ok or start.handle is None:
            return GuestLaunch(kind=kind, ok=False, status=start.status, message=start.message)
        bound = self.psp.activate(start.handle, asid)
        if not bound.ok:
            self.psp.decommission(start.handle)
            return GuestLaunch(
                kind=kind,
                ok=False,
                handle=start.handle,
                asid=asid,
                status=bound.status,
                message=bound.message,
            )
        self.kvm_asids[asid] = start.handle
        return GuestLaunch(
            kind=kind, ok=True, handle=start.handle, asid=asid, message=bound.message
        )

    def _launch_snp(self, asid: int) -> GuestLaunch:
        kind = GuestType.SNP
        gctx = self.psp.snp_gctx_create()
        if not gctx.ok or gctx.handle is None:
            return GuestLaunch(kind=kind, ok=False, status=gctx.status, message=gctx.message)
        start = self.psp.snp_launch_start(gctx.handle)
        bound = self.psp.snp_activate(gctx.handle, asid) if start.ok else start
        if not bound.ok:
            self.psp.snp_decommission(gctx.handle)
            return GuestLaunch(
                kind=kind,
                ok=False,
                handle=gctx.handle,
                asid=asid,
                status=bound.status,
                message=bound.message,
            )
        self.kvm_asids[asid] = gctx.handle
        return GuestLaunch(kind=kind, ok=True, handle=gctx.handle, asid=asid, message=bound.message)

    def destroy_guest(self, handle: int) -> bool:
        """sev_vm_destroy: DEACTIVATE + DECOMMISSION (legacy) or SNP_DECOMMISSION; the ASID
        goes to KVM's reclaim set until the next flush."""
        guest = self.psp.guests.get(handle)
        if guest is None:
            return False
        asid = guest.asid
        if guest.kind is GuestType.SNP:
            ok = self.psp.snp_decommission(handle).ok
        else:
            if asid is not None:
                self.psp.deactivate(handle)
            ok = self.psp.decommission(handle).ok
        if asid is not None:
            self.kvm_asids.pop(asid, None)
            self.reclaim.add(asid)
        return ok

    # ---- ccp: firmware update, reset, shutdown

    def hotload_firmware(self, image: FirmwareImage) -> FirmwareResult:
        """sev-fw.c upload: DOWNLOAD_FIRMWARE_EX with commit clear, then WBINVD +
        SNP_DF_FLUSH, then SNP_GUEST_STATUS on every SNP guest context. SNP_COMMIT is a
        separate step (:meth:`commit_firmware`)."""
        result = self.psp.download_firmware_ex(image, commit=False)
        if not result.ok:
            upload = UPLOAD_ERRORS.get(result.fw_status, "HW_ERROR")
            self._drv(
                "ccp",
                "firmware upload",
                False,
                f"FW_UPLOAD_ERR_{upload}",
                f"Upload rejected ({result.status}); nothing was committed.",
                f"{SRC_FW} snp_dlfw_ex_err_translate",
            )
            return result
        self.psp.wbinvd_all_cpus()
        self.psp.df_flush(snp=True)
        for handle in sorted(self.psp.stale_gctx):
            self.psp.snp_guest_status(handle)
        return result

    def commit_firmware(self) -> FirmwareResult:
        """SNP_COMMIT, issued once guest contexts were refreshed (LX sev-fw.c)."""
        return self.psp.snp_commit()

    def factory_reset(self) -> tuple[str, FirmwareResult | None]:
        """sev_ioctl_do_reset: WORKING -> EBUSY without a command; INIT -> SHUTDOWN first;
        then FACTORY_RESET. Returns (errno-or-status, FACTORY_RESET result)."""
        self.psp.platform_status()
        if self.psp.sev_state is SevState.WORKING:
            self._drv(
                "ccp",
                "FACTORY_RESET ioctl",
                False,
                "EBUSY",
                "SEV guests are running (WORKING); the driver refuses the reset.",
                f"{SRC_DEV} sev_ioctl_do_reset; {SRC_REF}",
            )
            return "EBUSY", None
        if self.psp.sev_state is SevState.INIT:
            self.psp.shutdown()
        result = self.psp.factory_reset()
        return result.status, result

    def shutdown(self) -> None:
        """Module exit (__sev_firmware_shutdown): SEV SHUTDOWN, then SNP_SHUTDOWN_EX after a
        WBINVD, retried once after SNP_DF_FLUSH when the firmware asks for it."""
        if self.psp.sev_state is not SevState.UNINIT:
            self.psp.shutdown()
        if self.psp.snp_state is SnpState.INIT:
            self.psp.wbinvd_all_cpus()
            result = self.psp.snp_shutdown(ex=True)
            if result.fw_status is FwStatus.DFFLUSH_REQUIRED:
                self.psp.df_flush(snp=True)
                self.psp.snp_shutdown(ex=True)
