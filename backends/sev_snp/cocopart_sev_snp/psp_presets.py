"""The configurations of the seed-002 thread as runnable presets: each returns the configured
host (:class:`~cocopart_sev_snp.psp_driver.HostDriver`) plus its log (:data:`PRESETS`,
:func:`run_preset`). Sources: :mod:`cocopart_sev_snp.psp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from cocopart_sev_snp.asids import GuestType
from cocopart_sev_snp.psp_driver import (
    GuestLaunch,
    HostDriver,
    ModuleParams,
)
from cocopart_sev_snp.psp_firmware import (
    FirmwareImage,
    FwVersion,
    Hardware,
    LogEntry,
    PlatformSnapshot,
    StepLog,
)

# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class PresetRun:
    """A configured host and the ordered log of every step its preset ran."""

    name: str
    description: str
    host: HostDriver
    launches: tuple[GuestLaunch, ...]

    @property
    def log(self) -> StepLog:
        """The host's step log."""
        return self.host.log

    def report(self) -> PresetReport:
        """A serialisable summary for the CLI."""
        return PresetReport(
            name=self.name,
            description=self.description,
            platform=self.host.psp.snapshot(),
            asids=self.host.asids.describe(),
            launches=list(self.launches),
            log=self.log.entries,
        )


class PresetReport(BaseModel):
    """JSON-friendly view of a :class:`PresetRun`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    platform: PlatformSnapshot
    asids: list[str]
    launches: list[GuestLaunch]
    log: list[LogEntry]


#: Illustrative host for the presets: a Milan/Genoa-class part, MIN_SEV_ASID set to 100.
PRESET_HW = Hardware(
    snp_enabled=True,
    max_asid=509,
    min_sev_asid=100,
    ciphertext_hiding_capable=True,
    firmware=FwVersion(major=1, minor=55, build=25),
)
#: Illustrative hot-load target.
HOTLOAD_IMAGE = FirmwareImage(version=FwVersion(major=1, minor=55, build=29))


def _doc(fn: Callable[..., PresetRun]) -> str:
    return " ".join((fn.__doc__ or "").split())


def preset_snp_only() -> PresetRun:
    """SNP initialised at kvm_amd load, SEV INIT skipped (psp_init_on_probe=false); only SNP
    guests run, so SEV stays UNINIT (seed 002: "SNP_INIT is always done first and then SEV
    INIT is skipped")."""
    host = HostDriver(PRESET_HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    launches = (host.launch_guest(GuestType.SNP),)
    return PresetRun("snp-only", _doc(preset_snp_only), host, launches)


def preset_snp_plus_sev() -> PresetRun:
    """Default load-time init: SNP_INIT_EX, WBINVD, SNP_DF_FLUSH, then SEV INIT, WBINVD,
    DF_FLUSH; SNP, SEV-ES and SEV guests run side by side (seed 002: "initialize SNP and SEV
    both at kvm-amd.ko module load")."""
    host = HostDriver(PRESET_HW, ModuleParams())
    host.probe()
    launches = tuple(
        host.launch_guest(kind) for kind in (GuestType.SNP, GuestType.SEV_ES, GuestType.SEV)
    )
    return PresetRun("snp+sev", _doc(preset_snp_plus_sev), host, launches)


def preset_firmware_hotload() -> PresetRun:
    """psp_init_on_probe=false keeps SEV UNINIT, so firmware can be hot-loaded with SNP INIT
    and an SNP guest running; WBINVD + SNP_DF_FLUSH follow, SNP_COMMIT is separate; the first
    SEV guest then does SEV INIT lazily, after which a second hot-load is refused (seed 002:
    "SNP firmware may be in any state. SEV must be in the UNINIT state")."""
    host = HostDriver(PRESET_HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    first = host.launch_guest(GuestType.SNP)
    host.hotload_firmware(HOTLOAD_IMAGE)
    host.commit_firmware()
    legacy = host.launch_guest(GuestType.SEV)
    host.hotload_firmware(FirmwareImage(version=FwVersion(major=1, minor=55, build=31)))
    return PresetRun("firmware-hotload", _doc(preset_firmware_hotload), host, (first, legacy))


def preset_ciphertext_hiding(asids: int = 64) -> PresetRun:
    """kvm_amd.ciphertext_hiding_asids=N: SNP_INIT_EX carries max_snp_asid=N, SNP gets ASIDs
    1..N and SEV-ES N+1..MIN_SEV_ASID-1; an SNP guest forced onto an SEV-ES ASID is refused
    by the firmware (sev-snp.md §8; seed 002: "put the CipherText and SNP ASID params in
    KVM")."""
    host = HostDriver(PRESET_HW, ModuleParams(ciphertext_hiding_asids=asids))
    host.probe()
    launches = tuple(host.launch_guest(kind) for kind in GuestType)
    wrong = host.launch_guest(GuestType.SNP, asid=host.asids.range_for(GuestType.SEV_ES).first)
    return PresetRun("ciphertext-hiding", _doc(preset_ciphertext_hiding), host, (*launches, wrong))


def preset_lazy_sev_init() -> PresetRun:
    """psp_init_on_probe=false: probe initialises SNP only; the first SEV guest triggers SEV
    INIT + DF_FLUSH, the second finds SEV already initialised (seed 002: "it will be done
    implicitly at first SEV/SEV-ES VM launch")."""
    host = HostDriver(PRESET_HW, ModuleParams(psp_init_on_probe=False))
    host.probe()
    launches = (host.launch_guest(GuestType.SEV), host.launch_guest(GuestType.SEV))
    return PresetRun("lazy-sev-init", _doc(preset_lazy_sev_init), host, launches)


def preset_legacy_on_snp_host() -> PresetRun:
    """kvm_amd.sev_snp=false on an SNPEn host: SNP_INIT(_EX) still runs first so SEV INIT can
    succeed; legacy guests work, SNP guests are refused (seed 002: "in this configuration
    launching any SNP VMs will fail")."""
    host = HostDriver(PRESET_HW, ModuleParams(sev_snp=False))
    host.probe()
    launches = (host.launch_guest(GuestType.SEV), host.launch_guest(GuestType.SNP))
    return PresetRun("legacy-on-snp-host", _doc(preset_legacy_on_snp_host), host, launches)


def preset_no_snp_host() -> PresetRun:
    """SNP not enabled system-wide: SNP_INIT(_EX) is skipped and legacy SEV INIT works on its
    own (seed 002: "If SNP is not enabled system-wide ... SNP_INIT(_EX) will be skipped")."""
    host = HostDriver(PRESET_HW.model_copy(update={"snp_enabled": False}), ModuleParams())
    host.probe()
    launches = (host.launch_guest(GuestType.SEV_ES), host.launch_guest(GuestType.SNP))
    return PresetRun("no-snp-host", _doc(preset_no_snp_host), host, launches)


PRESETS: dict[str, Callable[[], PresetRun]] = {
    "snp-only": preset_snp_only,
    "snp+sev": preset_snp_plus_sev,
    "firmware-hotload": preset_firmware_hotload,
    "ciphertext-hiding": preset_ciphertext_hiding,
    "lazy-sev-init": preset_lazy_sev_init,
    "legacy-on-snp-host": preset_legacy_on_snp_host,
    "no-snp-host": preset_no_snp_host,
}


def run_preset(name: str) -> PresetRun:
    """Run the preset called ``name`` (see :data:`PRESETS`)."""
    try:
        builder = PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return builder()
