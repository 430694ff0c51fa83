"""AMD-SP (PSP) platform firmware for SEV / SEV-ES / SEV-SNP: :class:`AmdSp`, the firmware
state machine, and the types every layer shares (platform states, command ids, status codes,
:class:`FirmwareResult`, the ordered :class:`StepLog`, hardware and image descriptions).

Legacy SEV platform state UNINIT / INIT / WORKING, SNP platform state UNINIT / INIT, firmware
API version, per-type guest counts, the ASID cache state
(:class:`~cocopart_sev_snp.asids.AsidCache`). Every command is a method that returns a
:class:`FirmwareResult`: status name + code + a sentence a person understands + the source of
the rule. :mod:`cocopart_sev_snp.psp` explains the sources and re-exports everything.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cocopart_sev_snp.asids import AsidCache, AsidSpace, GuestType

# --------------------------------------------------------------------------- sources

SRC_REF = "sev-snp.md §8"
SRC_ASPFW = "ASPFW sev_mcmd.c"
SRC_HDR = "LX psp-sev.h"
SRC_DEV = "LX sev-dev.c"
SRC_FW = "LX sev-fw.c (Glaze v5, 2024-11)"
SRC_KVM = "LX kvm sev.c"
SRC_SEED = "seed 002 (Ashish Kalra, 2024-12-07)"
SRC_SEED_TL = "seed 002 (Tom Lendacky, quoted 2024-11-21)"
SRC_MODEL = "model decision"

#: Every rule the model applies without a confirming source (see each result's text).
UNCONFIRMED: tuple[str, ...] = (
    (
        "SNP_ACTIVATE of an ASID above max_snp_asid (ciphertext hiding) or at/above MIN_SEV_ASID "
        "returns INVALID_ASID: the range is implied by LX sev-fw.c ('snp_activate ... successful, "
        "meaning the asid is in the acceptable range 1..last_snp_asid'), the status code is the "
        "one ASPFW uses for asid 0 / asid > MAX."
    ),
    (
        "ACTIVATE of a legacy SEV guest below MIN_SEV_ASID, or of an SEV-ES guest at/above it, "
        "returns INVALID_ASID: ASPFW 1.55.25 ACTIVATE checks only 0 < asid <= MAX; the class is "
        "otherwise enforced by KVM's allocator and the CPU at VMRUN."
    ),
    (
        "After SNP_DOWNLOAD_FIRMWARE_EX the next guest activation returns DFFLUSH_REQUIRED until "
        "an SNP_DF_FLUSH: LX sev-fw.c only says 'Need to do a DF_FLUSH after live firmware update'."
    ),
    (
        "SNP_DOWNLOAD_FIRMWARE_EX outcomes per image property (BAD_SIGNATURE, BAD_VERSION, "
        "SHUTDOWN_REQUIRED when SNP is INIT and the image cannot be live-updated, UPDATE_FAILED "
        "with rollback): names from LX sev-fw.c / ASPFW, triggers modelled."
    ),
    (
        "SNP commands on firmware below API 1.51 return INVALID_COMMAND (ASPFW dispatch rejects "
        "unknown ids; 1.51 is LX SNP_MIN_API)."
    ),
    (
        "SNP_INIT_EX with ciphertext hiding on hardware without it, or with max_snp_asid outside "
        "1..MIN_SEV_ASID-1, returns INVALID_PARAM; SNP_INIT_EX with a range list below API 1.52 "
        "returns INVALID_PARAM."
    ),
    (
        "KVM treats ciphertext hiding as supported when the hardware has it, SNP is enabled and "
        "the firmware is >= 1.52 (SNP_INIT_EX carries the fields)."
    ),
    (
        "With plain (non-SEV) VMs running, clearing MSR_VM_HSAVE_PA does not stick, so SNP_INIT "
        "sees it non-zero and returns INVALID_CONFIG."
    ),
    (
        "Default hardware numbers (max ASID 509, MIN_SEV_ASID 100, FW 1.55.25) and the hot-load "
        "target version are illustrative."
    ),
)

# --------------------------------------------------------------------------- enums


class SevState(IntEnum):
    """Legacy SEV platform state (LX psp-sev.h enum sev_state; sev-snp.md §8)."""

    UNINIT = 0
    INIT = 1
    WORKING = 2


class SnpState(IntEnum):
    """SNP platform state (ASPFW sev_plat.c state_tbl_snp)."""

    UNINIT = 0
    INIT = 1


class Cmd(IntEnum):
    """PSP command ids (LX include/linux/psp-sev.h enum sev_cmd; sev-snp.md §8 for the SNP
    ones). Note the uapi ``SEV_FACTORY_RESET = 0`` is the /dev/sev *ioctl* number; the
    firmware command is 0x003."""

    INIT = 0x001
    SHUTDOWN = 0x002
    FACTORY_RESET = 0x003
    PLATFORM_STATUS = 0x004
    DF_FLUSH = 0x00A
    INIT_EX = 0x00D
    DECOMMISSION = 0x020
    ACTIVATE = 0x021
    DEACTIVATE = 0x022
    LAUNCH_START = 0x030
    SNP_INIT = 0x081
    SNP_SHUTDOWN = 0x082
    SNP_PLATFORM_STATUS = 0x083
    SNP_DF_FLUSH = 0x084
    SNP_INIT_EX = 0x085
    SNP_SHUTDOWN_EX = 0x086
    SNP_DECOMMISSION = 0x090
    SNP_ACTIVATE = 0x091
    SNP_GUEST_STATUS = 0x092
    SNP_GCTX_CREATE = 0x093
    SNP_LAUNCH_START = 0x0A0
    SNP_DOWNLOAD_FIRMWARE_EX = 0x0CA
    SNP_COMMIT = 0x0CB


class FwStatus(IntEnum):
    """Firmware status codes (LX include/uapi/linux/psp-sev.h sev_ret_code; sev-snp.md §8)."""

    SUCCESS = 0x00
    INVALID_PLATFORM_STATE = 0x01
    INVALID_GUEST_STATE = 0x02
    INVALID_CONFIG = 0x03
    INVALID_LEN = 0x04
    ALREADY_OWNED = 0x05
    INVALID_CERTIFICATE = 0x06
    POLICY_FAILURE = 0x07
    INACTIVE = 0x08
    INVALID_ADDRESS = 0x09
    BAD_SIGNATURE = 0x0A
    BAD_MEASUREMENT = 0x0B
    ASID_OWNED = 0x0C
    INVALID_ASID = 0x0D
    WBINVD_REQUIRED = 0x0E
    DFFLUSH_REQUIRED = 0x0F
    INVALID_GUEST = 0x10
    INVALID_COMMAND = 0x11
    ACTIVE = 0x12
    HWSEV_RET_PLATFORM = 0x13
    HWSEV_RET_UNSAFE = 0x14
    UNSUPPORTED = 0x15
    INVALID_PARAM = 0x16
    RESOURCE_LIMIT = 0x17
    SECURE_DATA_INVALID = 0x18
    INVALID_PAGE_SIZE = 0x19
    INVALID_PAGE_STATE = 0x1A
    INVALID_MDATA_ENTRY = 0x1B
    INVALID_PAGE_OWNER = 0x1C
    AEAD_OFLOW = 0x1D
    EXIT_RING_BUFFER = 0x1F
    RMP_INIT_REQUIRED = 0x20
    BAD_SVN = 0x21
    BAD_VERSION = 0x22
    SHUTDOWN_REQUIRED = 0x23
    UPDATE_FAILED = 0x24
    RESTORE_REQUIRED = 0x25
    RMP_INITIALIZATION_FAILED = 0x26
    INVALID_KEY = 0x27


Actor = Literal["psp", "cpu", "ccp", "kvm_amd"]

# --------------------------------------------------------------------------- versions


class FwVersion(BaseModel):
    """Firmware API version ``major.minor`` plus build id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    major: int
    minor: int
    build: int = 0

    def at_least(self, major: int, minor: int) -> bool:
        """LX sev_version_greater_or_equal: compares major.minor only."""
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


#: SNP needs API >= 1.51; SNP_INIT_EX with an HV-fixed range list from 1.52 (sev-snp.md §8).
SNP_MIN_API = (1, 51)
SNP_INIT_EX_API = (1, 52)

# --------------------------------------------------------------------------- results & log


class FirmwareResult(BaseModel):
    """The answer of one PSP command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    command_id: int
    status: str
    code: int
    message: str
    source: str
    confirmed: bool = True
    handle: int | None = None

    @property
    def ok(self) -> bool:
        """True for SUCCESS."""
        return self.code == FwStatus.SUCCESS

    @property
    def fw_status(self) -> FwStatus:
        """The status as an enum member."""
        return FwStatus(self.code)


class LogEntry(BaseModel):
    """One step: a firmware command, a CPU operation or a host-driver decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    actor: Actor
    action: str
    command_id: int | None = None
    ok: bool
    #: Firmware status name, an errno name (driver refusals) or "done" / "skipped".
    status: str
    code: int | None = None
    message: str
    source: str
    confirmed: bool = True
    sev_state: str
    snp_state: str


class StepLog(BaseModel):
    """The ordered log shared by firmware, CPUs and host driver."""

    model_config = ConfigDict(extra="forbid")

    entries: list[LogEntry] = Field(default_factory=list)

    def actions(self) -> list[str]:
        """The action names in order (handy for sequence assertions)."""
        return [e.action for e in self.entries]

    def failures(self) -> list[LogEntry]:
        """Entries that did not succeed."""
        return [e for e in self.entries if not e.ok]

    def since(self, seq: int) -> list[LogEntry]:
        """Entries with ``seq >= seq``."""
        return [e for e in self.entries if e.seq >= seq]

    def render(self) -> list[str]:
        """One text line per entry, for a CLI."""
        lines = []
        for e in self.entries:
            cid = f" ({e.command_id:#04x})" if e.command_id is not None else ""
            code = f" ({e.code:#04x})" if e.code is not None else ""
            mark = "" if e.confirmed else " [unconfirmed]"
            lines.append(
                f"{e.seq:3d} {e.actor:<7} {e.action}{cid}: {e.status}{code} - "
                f"{e.message} [{e.source}]{mark}"
            )
        return lines


# --------------------------------------------------------------------------- inputs


class Hardware(BaseModel):
    """What the BIOS / CPU give the host before any driver runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: SYSCFG.SNPEn set system-wide at early boot (BIOS SNP + RMP, RMP checks, IOMMU SNP);
    #: Linux's CC_ATTR_HOST_SEV_SNP (seed 002).
    snp_enabled: bool = True
    #: CPUID 0x8000_001F ECX / EDX.
    max_asid: int = 509
    min_sev_asid: int = 100
    ciphertext_hiding_capable: bool = False
    firmware: FwVersion = FwVersion(major=1, minor=55, build=25)


class FirmwareImage(BaseModel):
    """A firmware image offered to SNP_DOWNLOAD_FIRMWARE_EX and what the PSP makes of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: FwVersion
    signature_ok: bool = True
    well_formed: bool = True
    live_updatable: bool = True
    accepts_platform_state: bool = True


class Guest(BaseModel):
    """Firmware guest context (legacy handle or SNP guest context page)."""

    model_config = ConfigDict(extra="forbid")

    handle: int
    kind: GuestType
    asid: int | None = None
    launched: bool = False


class PlatformSnapshot(BaseModel):
    """PLATFORM_STATUS + SNP_PLATFORM_STATUS in one picture."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sev_state: str
    snp_state: str
    api: str
    committed: str
    rmp_initialized: bool
    ciphertext_hiding_cap: bool
    ciphertext_hiding_en: bool
    max_snp_asid: int
    guests: dict[str, int]


# --------------------------------------------------------------------------- firmware


class AmdSp:
    """The AMD Secure Processor's SEV/SNP firmware: state, guests and the command set."""

    def __init__(self, hw: Hardware, log: StepLog | None = None) -> None:
        self.hw = hw
        self.log = log if log is not None else StepLog()
        self.version = hw.firmware
        self.committed = hw.firmware
        self.sev_state = SevState.UNINIT
        self.snp_state = SnpState.UNINIT
        self.rmp_initialized = False
        self.ciphertext_hiding_en = False
        self.max_snp_asid = 0
        #: MSR_VM_HSAVE_PA is 0 on every CPU (reset value; KVM sets it when enabling SVM).
        self.hsave_pa_zero = True
        self.cache = AsidCache()
        self.guests: dict[int, Guest] = {}
        self.flush_after_update = False
        self.stale_gctx: set[int] = set()
        self._next_handle = 1

    # ---- bookkeeping

    def note(
        self,
        actor: Actor,
        action: str,
        ok: bool,
        status: str,
        message: str,
        source: str,
        *,
        confirmed: bool = True,
        command_id: int | None = None,
        code: int | None = None,
    ) -> LogEntry:
        """Append one entry to the shared log (used by every layer)."""
        entry = LogEntry(
            seq=len(self.log.entries) + 1,
            actor=actor,
            action=action,
            command_id=command_id,
            ok=ok,
            status=status,
            code=code,
            message=message,
            source=source,
            confirmed=confirmed,
            sev_state=self.sev_state.name,
            snp_state=self.snp_state.name,
        )
        self.log.entries.append(entry)
        return entry

    def _done(
        self,
        cmd: Cmd,
        status: FwStatus,
        message: str,
        source: str,
        confirmed: bool = True,
        handle: int | None = None,
    ) -> FirmwareResult:
        result = FirmwareResult(
            command=cmd.name,
            command_id=int(cmd),
            status=status.name,
            code=int(status),
            message=message,
            source=source,
            confirmed=confirmed,
            handle=handle,
        )
        self.note(
            "psp",
            cmd.name,
            result.ok,
            status.name,
            message,
            source,
            confirmed=confirmed,
            command_id=int(cmd),
            code=int(status),
        )
        return result

    def guest_counts(self) -> dict[GuestType, int]:
        """Launched guests per type (LAUNCH_START / SNP_LAUNCH_START done, not decommissioned)."""
        counts = {kind: 0 for kind in GuestType}
        for guest in self.guests.values():
            if guest.launched:
                counts[guest.kind] += 1
        return counts

    def legacy_guest_count(self) -> int:
        """SEV + SEV-ES guests (the firmware's sev.guest_count)."""
        counts = self.guest_counts()
        return counts[GuestType.SEV] + counts[GuestType.SEV_ES]

    def snapshot(self) -> PlatformSnapshot:
        """The platform as the two STATUS commands would report it."""
        return PlatformSnapshot(
            sev_state=self.sev_state.name,
            snp_state=self.snp_state.name,
            api=str(self.version),
            committed=str(self.committed),
            rmp_initialized=self.rmp_initialized,
            ciphertext_hiding_cap=self.hw.ciphertext_hiding_capable,
            ciphertext_hiding_en=self.ciphertext_hiding_en,
            max_snp_asid=self.max_snp_asid,
            guests={kind.value: n for kind, n in self.guest_counts().items()},
        )

    def asid_space(self) -> AsidSpace:
        """The ASID classes the firmware enforces now."""
        return AsidSpace(
            max_asid=self.hw.max_asid,
            min_sev_asid=self.hw.min_sev_asid,
            max_snp_asid=self.max_snp_asid if self.ciphertext_hiding_en else 0,
        )

    def _snp_missing(self, cmd: Cmd) -> FirmwareResult | None:
        if self.version.at_least(*SNP_MIN_API):
            return None
        return self._done(
            cmd,
            FwStatus.INVALID_COMMAND,
            f"Firmware {self.version} predates SNP (API 1.51), so it does not know this command.",
            f"{SRC_ASPFW} dispatch; {SRC_REF}",
            confirmed=False,
        )

    # ---- CPU side effects the firmware observes

    def wbinvd_all_cpus(self) -> None:
        """WBINVD on every CPU: sets the WBINVD_DONE flags DF_FLUSH checks."""
        self.cache.wbinvd_all_cpus()
        self.note(
            "cpu",
            "WBINVD",
            True,
            "done",
            "Write-back and invalidate caches on all CPUs.",
            f"{SRC_REF}; {SRC_ASPFW} mcmd_df_flush_common",
        )

    # ---- legacy SEV platform commands

    def platform_status(self) -> FirmwareResult:
        """PLATFORM_STATUS (0x04): always succeeds and reports state and guest count."""
        return self._done(
            Cmd.PLATFORM_STATUS,
            FwStatus.SUCCESS,
            f"SEV state {self.sev_state.name}, API {self.version}, "
            f"{self.legacy_guest_count()} SEV/SEV-ES guest(s).",
            SRC_HDR,
        )

    def init(self, ex: bool = False) -> FirmwareResult:
        """SEV INIT (0x01) or INIT_EX (0x0D): UNINIT -> INIT.

        Refused with INVALID_PLATFORM_STATE when SEV is not UNINIT, and when SNP is enabled
        system-wide but the RMP was never initialised by SNP_INIT (ASPFW
        sev_mcmd_init_common; seed 002 point 2)."""
        cmd = Cmd.INIT_EX if ex else Cmd.INIT
        if self.sev_state is not SevState.UNINIT:
            return self._done(
                cmd,
                FwStatus.INVALID_PLATFORM_STATE,
                f"SEV is already {self.sev_state.name}; INIT only runs from UNINIT.",
                f"{SRC_ASPFW} sev_mcmd_init_common",
            )
        if self.hw.snp_enabled and not self.rmp_initialized:
            return self._done(
                cmd,
                FwStatus.INVALID_PLATFORM_STATE,
                "SNP is enabled system-wide (SYSCFG.SNPEn) but SNP_INIT has not "
                "set up the RMP, so SEV INIT fails; run SNP_INIT(_EX) first.",
                f"{SRC_ASPFW} sev_mcmd_init_common; {SRC_SEED}",
            )
        if self.snp_state is SnpState.UNINIT:
            self.cache.mark_all_dirty(self.hw.max_asid)
        self.sev_state = SevState.INIT
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            "Legacy SEV platform initialised (UNINIT -> INIT); a WBINVD and "
            "DF_FLUSH must follow before the first SEV guest.",
            f"{SRC_ASPFW} sev_mcmd_init_common; {SRC_DEV}",
        )

    def shutdown(self) -> FirmwareResult:
        """SEV SHUTDOWN (0x02): any state -> UNINIT; SEV/SEV-ES guests are decommissioned,
        SNP guests are untouched (ASPFW sev_mcmd_shutdown, state_tbl_sev)."""
        gone = [g for g in self.guests.values() if g.kind is not GuestType.SNP]
        for guest in gone:
            if guest.asid is not None:
                self.cache.release(guest.asid)
            del self.guests[guest.handle]
        self.sev_state = SevState.UNINIT
        return self._done(
            Cmd.SHUTDOWN,
            FwStatus.SUCCESS,
            f"Legacy SEV platform shut down to UNINIT; {len(gone)} SEV/SEV-ES "
            "guest(s) decommissioned, SNP guests unaffected.",
            f"{SRC_ASPFW} sev_mcmd_shutdown",
        )

    def factory_reset(self) -> FirmwareResult:
        """FACTORY_RESET (0x03): only from UNINIT (ASPFW sev_mcmd_platform_reset;
        sev-snp.md §8)."""
        if self.sev_state is not SevState.UNINIT:
            return self._done(
                Cmd.FACTORY_RESET,
                FwStatus.INVALID_PLATFORM_STATE,
                f"FACTORY_RESET needs SEV UNINIT, the platform is "
                f"{self.sev_state.name}; SHUTDOWN first.",
                f"{SRC_ASPFW} sev_mcmd_platform_reset; {SRC_REF}",
            )
        return self._done(
            Cmd.FACTORY_RESET,
            FwStatus.SUCCESS,
            "Persistent SEV state (PEK/PDH/OCA) deleted.",
            f"{SRC_ASPFW} sev_mcmd_platform_reset",
        )

    def df_flush(self, snp: bool = False) -> FirmwareResult:
        """DF_FLUSH (0x0A) / SNP_DF_FLUSH (0x84): dirty ASIDs become clean; WBINVD_REQUIRED
        unless WBINVD ran on every CPU since the flags were cleared (ASPFW
        mcmd_df_flush_common, shared by both commands, no platform-state check)."""
        cmd = Cmd.SNP_DF_FLUSH if snp else Cmd.DF_FLUSH
        if snp and (missing := self._snp_missing(cmd)):
            return missing
        if not self.cache.df_flush():
            return self._done(
                cmd,
                FwStatus.WBINVD_REQUIRED,
                "Not every CPU has done a WBINVD since ASIDs were last marked "
                "dirty; issue WBINVD on all CPUs, then flush.",
                f"{SRC_ASPFW} mcmd_df_flush_common",
            )
        self.flush_after_update = False
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            "Data-fabric write buffers flushed; all dirty ASIDs are clean again.",
            f"{SRC_ASPFW} mcmd_df_flush_common",
        )

    # ---- SNP platform commands

    def snp_init(
        self,
        ex: bool = False,
        *,
        range_list: bool = False,
        ciphertext_hiding: bool = False,
        max_snp_asid: int = 0,
    ) -> FirmwareResult:
        """SNP_INIT (0x81) / SNP_INIT_EX (0x85): SNP UNINIT -> INIT, RMP initialised.

        Refused with INVALID_PLATFORM_STATE when SNP is not UNINIT or legacy SEV is not UNINIT
        (so it cannot follow SEV INIT, nor run with SEV guests), with INVALID_CONFIG when
        SNPEn is clear or MSR_VM_HSAVE_PA is not 0 on every CPU (ASPFW snp_mcmd_init_common;
        seed 002 point 1)."""
        cmd = Cmd.SNP_INIT_EX if ex else Cmd.SNP_INIT
        if missing := self._snp_missing(cmd):
            return missing
        if self.snp_state is not SnpState.UNINIT or self.sev_state is not SevState.UNINIT:
            why = (
                "SNP is already INIT; SNP_INIT(_EX) only runs from UNINIT"
                if self.snp_state is not SnpState.UNINIT
                else f"legacy SEV is {self.sev_state.name} ({self.legacy_guest_count()} legacy "
                "guest(s)); SNP_INIT(_EX) cannot succeed once SEV INIT has run"
            )
            return self._done(
                cmd,
                FwStatus.INVALID_PLATFORM_STATE,
                f"{why}.",
                f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_SEED}",
            )
        if not self.hw.snp_enabled:
            return self._done(
                cmd,
                FwStatus.INVALID_CONFIG,
                "SYSCFG.SNPEn is not set on every core (SNP not enabled by BIOS / early boot).",
                f"{SRC_ASPFW} snp_mcmd_init_common",
            )
        if not self.hsave_pa_zero:
            return self._done(
                cmd,
                FwStatus.INVALID_CONFIG,
                "MSR_VM_HSAVE_PA is not 0 on every CPU: a VM may be running "
                "(any VM, SEV or not), so the RMP cannot be initialised.",
                f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_REF}; {SRC_SEED_TL}",
            )
        if ex and range_list and not self.version.at_least(*SNP_INIT_EX_API):
            return self._done(
                cmd,
                FwStatus.INVALID_PARAM,
                f"Firmware {self.version} cannot take an HV-fixed range list (needs 1.52).",
                f"{SRC_DEV}; {SRC_MODEL}",
                confirmed=False,
            )
        if ciphertext_hiding:
            if not ex or not self.hw.ciphertext_hiding_capable:
                return self._done(
                    cmd,
                    FwStatus.INVALID_PARAM,
                    "Ciphertext hiding requested but not available (needs "
                    "SNP_INIT_EX on capable hardware).",
                    SRC_MODEL,
                    confirmed=False,
                )
            if not 1 <= max_snp_asid <= self.hw.min_sev_asid - 1:
                return self._done(
                    cmd,
                    FwStatus.INVALID_PARAM,
                    f"max_snp_asid {max_snp_asid} is outside 1.."
                    f"{self.hw.min_sev_asid - 1} (MIN_SEV_ASID-1).",
                    SRC_MODEL,
                    confirmed=False,
                )
        self.snp_state = SnpState.INIT
        self.rmp_initialized = True
        self.ciphertext_hiding_en = ciphertext_hiding
        self.max_snp_asid = max_snp_asid if ciphertext_hiding else 0
        self.cache.mark_all_dirty(self.hw.max_asid)
        hiding = f" Ciphertext hiding on: SNP ASIDs 1..{max_snp_asid}." if ciphertext_hiding else ""
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            "SNP platform initialised (RMP set up, every ASID dirty; WBINVD + "
            f"SNP_DF_FLUSH must follow).{hiding}",
            f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_REF}",
        )

    def snp_shutdown(self, ex: bool = True) -> FirmwareResult:
        """SNP_SHUTDOWN (0x82) / SNP_SHUTDOWN_EX (0x86): refused while SEV is not UNINIT, needs
        every ASID clean; the RMP stays protected until the next SNP_INIT (ASPFW
        snp_mcmd_shutdown_common)."""
        cmd = Cmd.SNP_SHUTDOWN_EX if ex else Cmd.SNP_SHUTDOWN
        if missing := self._snp_missing(cmd):
            return missing
        if self.sev_state is not SevState.UNINIT:
            return self._done(
                cmd,
                FwStatus.INVALID_PLATFORM_STATE,
                "SNP cannot be shut down while legacy SEV is initialised.",
                f"{SRC_ASPFW} snp_mcmd_shutdown_common",
            )
        if self.snp_state is SnpState.UNINIT:
            return self._done(
                cmd,
                FwStatus.SUCCESS,
                "SNP already UNINIT; nothing to do.",
                f"{SRC_ASPFW} snp_mcmd_shutdown_common",
            )
        if not self.cache.all_clean():
            return self._done(
                cmd,
                FwStatus.DFFLUSH_REQUIRED,
                "Some ASIDs are dirty or still bound to guests; decommission "
                "guests, WBINVD and SNP_DF_FLUSH first.",
                f"{SRC_ASPFW} snp_mcmd_shutdown_common; {SRC_DEV}",
            )
        self.snp_state = SnpState.UNINIT
        self.ciphertext_hiding_en = False
        self.max_snp_asid = 0
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            "SNP platform shut down to UNINIT.",
            f"{SRC_ASPFW} snp_mcmd_shutdown_common",
        )

    def snp_platform_status(self) -> FirmwareResult:
        """SNP_PLATFORM_STATUS (0x83): state, API, ciphertext-hiding cap/en, guest count."""
        if missing := self._snp_missing(Cmd.SNP_PLATFORM_STATUS):
            return missing
        hiding = "on" if self.ciphertext_hiding_en else "off"
        return self._done(
            Cmd.SNP_PLATFORM_STATUS,
            FwStatus.SUCCESS,
            f"SNP state {self.snp_state.name}, API {self.version}, ciphertext "
            f"hiding {hiding}, {self.guest_counts()[GuestType.SNP]} SNP "
            "guest(s).",
            f"{SRC_HDR} sev_user_data_snp_status",
        )

    # ---- firmware update

    def download_firmware_ex(self, image: FirmwareImage, commit: bool = False) -> FirmwareResult:
        """SNP_DOWNLOAD_FIRMWARE_EX (0xCA): live update. Legacy SEV must be UNINIT; SNP may be
        in any state (ASPFW snp_mcmd_download_firmware_ex; seed 002)."""
        cmd = Cmd.SNP_DOWNLOAD_FIRMWARE_EX
        if missing := self._snp_missing(cmd):
            return missing
        if self.sev_state is not SevState.UNINIT:
            return self._done(
                cmd,
                FwStatus.INVALID_PLATFORM_STATE,
                f"Legacy SEV is {self.sev_state.name}; firmware can only be "
                "hot-loaded while SEV is UNINIT (SNP may be INIT).",
                f"{SRC_ASPFW} snp_mcmd_download_firmware_ex; {SRC_SEED}",
            )
        refusal = self._image_refusal(image)
        if refusal is not None:
            return self._done(
                cmd, refusal[0], refusal[1], f"{SRC_FW}; {SRC_ASPFW}", confirmed=False
            )
        old = self.version
        self.version = image.version
        if commit:
            self.committed = image.version
        self.flush_after_update = True
        self.stale_gctx = {g.handle for g in self.guests.values() if g.kind is GuestType.SNP}
        kept = "committed" if commit else "not committed (SNP_COMMIT is separate)"
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            f"Firmware {old} -> {image.version}, {kept}; SNP state "
            f"{self.snp_state.name} and its guests kept. WBINVD + SNP_DF_FLUSH "
            "must follow.",
            f"{SRC_ASPFW} snp_mcmd_download_firmware_ex; {SRC_FW}",
        )

    def _image_refusal(self, image: FirmwareImage) -> tuple[FwStatus, str] | None:
        if not image.signature_ok:
            return FwStatus.BAD_SIGNATURE, "The image signature is bad; nothing changed."
        if not image.well_formed:
            return FwStatus.BAD_VERSION, "The image is not well formed; nothing changed."
        if self.snp_state is SnpState.INIT and not image.live_updatable:
            return (
                FwStatus.SHUTDOWN_REQUIRED,
                (
                    "This image cannot be live-updated while SNP "
                    "is INIT; shut SNP down first. Nothing changed."
                ),
            )
        if not image.accepts_platform_state:
            return (
                FwStatus.UPDATE_FAILED,
                (
                    "The new firmware rejected the platform state; "
                    f"the PSP rolled back to {self.version}."
                ),
            )
        return None

    def snp_commit(self) -> FirmwareResult:
        """SNP_COMMIT (0xCB): make the running firmware the committed (anti-rollback) one."""
        if missing := self._snp_missing(Cmd.SNP_COMMIT):
            return missing
        self.committed = self.version
        return self._done(
            Cmd.SNP_COMMIT,
            FwStatus.SUCCESS,
            f"Firmware {self.version} committed; older images are now refused as rollback targets.",
            f"{SRC_ASPFW} snp_mcmd_commit; {SRC_REF}",
        )

    # ---- guests

    def _new_guest(self, kind: GuestType) -> Guest:
        guest = Guest(handle=self._next_handle, kind=kind)
        self._next_handle += 1
        self.guests[guest.handle] = guest
        return guest

    def launch_start(self, kind: GuestType) -> FirmwareResult:
        """LAUNCH_START (0x30) for a legacy SEV or SEV-ES guest: needs SEV INIT or WORKING;
        INIT -> WORKING (ASPFW sev_mcmd_launch_start, state_tbl_sev)."""
        if kind is GuestType.SNP:
            raise ValueError("SNP guests use SNP_GCTX_CREATE + SNP_LAUNCH_START")
        if self.sev_state is SevState.UNINIT:
            return self._done(
                Cmd.LAUNCH_START,
                FwStatus.INVALID_PLATFORM_STATE,
                "Legacy SEV is UNINIT; SEV INIT must run before the first SEV or SEV-ES guest.",
                f"{SRC_ASPFW} sev_mcmd_launch_start",
            )
        guest = self._new_guest(kind)
        guest.launched = True
        self.sev_state = SevState.WORKING
        return self._done(
            Cmd.LAUNCH_START,
            FwStatus.SUCCESS,
            f"{kind.value} guest {guest.handle} created; platform WORKING.",
            f"{SRC_ASPFW} sev_mcmd_launch_start",
            handle=guest.handle,
        )

    def snp_gctx_create(self) -> FirmwareResult:
        """SNP_GCTX_CREATE (0x93): a guest context page; needs SNP INIT."""
        if missing := self._snp_missing(Cmd.SNP_GCTX_CREATE):
            return missing
        if self.snp_state is not SnpState.INIT:
            return self._done(
                Cmd.SNP_GCTX_CREATE,
                FwStatus.INVALID_PLATFORM_STATE,
                "SNP is UNINIT; SNP_INIT(_EX) must run first.",
                f"{SRC_ASPFW} snp_mcmd_gctx_create",
            )
        guest = self._new_guest(GuestType.SNP)
        return self._done(
            Cmd.SNP_GCTX_CREATE,
            FwStatus.SUCCESS,
            f"SNP guest context {guest.handle} created.",
            f"{SRC_ASPFW} snp_mcmd_gctx_create",
            handle=guest.handle,
        )

    def snp_launch_start(self, handle: int) -> FirmwareResult:
        """SNP_LAUNCH_START (0xA0): needs SNP INIT and a fresh guest context."""
        if self.snp_state is not SnpState.INIT:
            return self._done(
                Cmd.SNP_LAUNCH_START,
                FwStatus.INVALID_PLATFORM_STATE,
                "SNP is UNINIT.",
                f"{SRC_ASPFW} snp_mcmd_launch_start",
            )
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(
                Cmd.SNP_LAUNCH_START,
                FwStatus.INVALID_GUEST,
                f"No SNP guest context {handle}.",
                f"{SRC_ASPFW} snp_mcmd_launch_start",
            )
        if guest.launched:
            return self._done(
                Cmd.SNP_LAUNCH_START,
                FwStatus.INVALID_GUEST_STATE,
                f"SNP guest {handle} was already launched.",
                f"{SRC_ASPFW} snp_mcmd_launch_start",
            )
        guest.launched = True
        return self._done(
            Cmd.SNP_LAUNCH_START,
            FwStatus.SUCCESS,
            f"SNP guest {handle} in LAUNCH state.",
            f"{SRC_ASPFW} snp_mcmd_launch_start",
            handle=handle,
        )

    def activate(self, handle: int, asid: int) -> FirmwareResult:
        """ACTIVATE (0x21): bind a legacy guest to an ASID (needs SEV WORKING)."""
        if self.sev_state is not SevState.WORKING:
            return self._done(
                Cmd.ACTIVATE,
                FwStatus.INVALID_PLATFORM_STATE,
                f"Legacy SEV is {self.sev_state.name}, not WORKING.",
                f"{SRC_ASPFW} sev_mcmd_activate",
            )
        return self._bind(Cmd.ACTIVATE, handle, asid, snp=False)

    def snp_activate(self, handle: int, asid: int) -> FirmwareResult:
        """SNP_ACTIVATE (0x91): bind a launched SNP guest to an ASID (needs SNP INIT)."""
        if self.snp_state is not SnpState.INIT:
            return self._done(
                Cmd.SNP_ACTIVATE,
                FwStatus.INVALID_PLATFORM_STATE,
                "SNP is UNINIT.",
                f"{SRC_ASPFW} snp_mcmd_activate",
            )
        return self._bind(Cmd.SNP_ACTIVATE, handle, asid, snp=True)

    def _bind(self, cmd: Cmd, handle: int, asid: int, snp: bool) -> FirmwareResult:
        guest = self.guests.get(handle)
        if guest is None or (guest.kind is GuestType.SNP) != snp:
            return self._done(
                cmd,
                FwStatus.INVALID_GUEST,
                f"No such guest {handle}.",
                f"{SRC_ASPFW} sev_mcmd_activate / snp_mcmd_activate",
            )
        if snp and not guest.launched:
            return self._done(
                cmd,
                FwStatus.INVALID_GUEST_STATE,
                f"SNP guest {handle} is not in LAUNCH or RUNNING state.",
                f"{SRC_ASPFW} snp_mcmd_activate",
            )
        if not 1 <= asid <= self.hw.max_asid:
            return self._done(
                cmd,
                FwStatus.INVALID_ASID,
                f"ASID {asid} is outside 1..{self.hw.max_asid}.",
                f"{SRC_ASPFW} mcmd_activate_common",
            )
        space = self.asid_space()
        if not space.allows(guest.kind, asid):
            return self._done(
                cmd,
                FwStatus.INVALID_ASID,
                f"ASID {asid} is not in the {guest.kind.value} class "
                f"({space.range_for(guest.kind)}); guest {handle} not activated.",
                f"{SRC_REF}; {SRC_FW}; {SRC_MODEL}",
                confirmed=False,
            )
        owner = self.cache.bound.get(asid)
        if owner is not None and owner != handle:
            return self._done(
                cmd,
                FwStatus.ASID_OWNED,
                f"ASID {asid} is bound to guest {owner}.",
                f"{SRC_ASPFW} mcmd_activate_common",
            )
        if guest.asid is not None:
            return self._done(
                cmd,
                FwStatus.ACTIVE,
                f"Guest {handle} is already active.",
                f"{SRC_ASPFW} mcmd_activate_common",
            )
        if snp and self.flush_after_update:
            return self._done(
                cmd,
                FwStatus.DFFLUSH_REQUIRED,
                "Firmware was hot-loaded and no DF_FLUSH followed yet.",
                f"{SRC_FW}; {SRC_MODEL}",
                confirmed=False,
            )
        if self.cache.bind(asid, handle) == "dirty":
            return self._done(
                cmd,
                FwStatus.DFFLUSH_REQUIRED,
                f"ASID {asid} may still have another guest's lines in the "
                "caches; WBINVD on all CPUs + DF_FLUSH first.",
                f"{SRC_ASPFW} activate_common",
            )
        guest.asid = asid
        return self._done(
            cmd,
            FwStatus.SUCCESS,
            f"{guest.kind.value} guest {handle} bound to ASID {asid}.",
            f"{SRC_ASPFW} activate_common",
            handle=handle,
        )

    def deactivate(self, handle: int) -> FirmwareResult:
        """DEACTIVATE (0x22): unbind a legacy guest's ASID, which becomes dirty."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is GuestType.SNP:
            return self._done(
                Cmd.DEACTIVATE,
                FwStatus.INVALID_GUEST,
                f"No legacy guest {handle}.",
                f"{SRC_ASPFW} sev_mcmd_deactivate",
            )
        if guest.asid is None:
            return self._done(
                Cmd.DEACTIVATE,
                FwStatus.INACTIVE,
                f"Guest {handle} has no ASID.",
                f"{SRC_ASPFW} sev_mcmd_deactivate",
            )
        self.cache.release(guest.asid)
        asid, guest.asid = guest.asid, None
        return self._done(
            Cmd.DEACTIVATE,
            FwStatus.SUCCESS,
            f"Guest {handle} unbound; ASID {asid} is dirty until WBINVD + DF_FLUSH.",
            f"{SRC_ASPFW} sev_mcmd_deactivate; sev_guest.c",
        )

    def decommission(self, handle: int) -> FirmwareResult:
        """DECOMMISSION (0x20): delete a deactivated legacy guest; WORKING -> INIT with none
        left."""
        guest = self.guests.get(handle)
        if self.sev_state is not SevState.WORKING:
            return self._done(
                Cmd.DECOMMISSION,
                FwStatus.INVALID_PLATFORM_STATE,
                "Legacy SEV is not WORKING.",
                f"{SRC_ASPFW} sev_mcmd_decommission",
            )
        if guest is None or guest.kind is GuestType.SNP:
            return self._done(
                Cmd.DECOMMISSION,
                FwStatus.INVALID_GUEST,
                f"No legacy guest {handle}.",
                f"{SRC_ASPFW} sev_mcmd_decommission",
            )
        if guest.asid is not None:
            return self._done(
                Cmd.DECOMMISSION,
                FwStatus.ACTIVE,
                f"Guest {handle} still holds ASID {guest.asid}; DEACTIVATE first.",
                f"{SRC_ASPFW} mcmd_decommission_common",
            )
        del self.guests[handle]
        if self.legacy_guest_count() == 0:
            self.sev_state = SevState.INIT
        return self._done(
            Cmd.DECOMMISSION,
            FwStatus.SUCCESS,
            f"Guest {handle} deleted; SEV state {self.sev_state.name}.",
            f"{SRC_ASPFW} sev_mcmd_decommission",
        )

    def snp_decommission(self, handle: int) -> FirmwareResult:
        """SNP_DECOMMISSION (0x90): deactivates (ASID dirty) and deletes an SNP guest."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(
                Cmd.SNP_DECOMMISSION,
                FwStatus.INVALID_GUEST,
                f"No SNP guest {handle}.",
                f"{SRC_ASPFW} snp_mcmd_decommission",
            )
        if guest.asid is not None:
            self.cache.release(guest.asid)
        del self.guests[handle]
        self.stale_gctx.discard(handle)
        return self._done(
            Cmd.SNP_DECOMMISSION,
            FwStatus.SUCCESS,
            f"SNP guest {handle} deactivated and deleted.",
            f"{SRC_ASPFW} snp_decommission_common",
        )

    def snp_guest_status(self, handle: int) -> FirmwareResult:
        """SNP_GUEST_STATUS (0x92); after a hot-load it also refreshes the guest context page
        for the new firmware (LX sev-fw.c snp_update_guest_statuses)."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(
                Cmd.SNP_GUEST_STATUS,
                FwStatus.INVALID_GUEST,
                f"No SNP guest {handle}.",
                f"{SRC_ASPFW}; {SRC_FW}",
            )
        self.stale_gctx.discard(handle)
        return self._done(
            Cmd.SNP_GUEST_STATUS,
            FwStatus.SUCCESS,
            f"SNP guest {handle}: ASID {guest.asid}, context page current.",
            SRC_FW,
            handle=handle,
        )
