"""Host-side AMD-SP (PSP) platform firmware for SEV / SEV-ES / SEV-SNP, and the Linux host
driver sequence that drives it.

Three layers, all writing into one ordered :class:`StepLog` (pydantic, printable by a CLI):

* :class:`AmdSp` — the firmware state machine. Legacy SEV platform state UNINIT / INIT /
  WORKING, SNP platform state UNINIT / INIT, firmware API version, per-type guest counts, the
  ASID cache state (:class:`~cocopart_sev_snp.asids.AsidCache`). Every command is a method
  that returns a :class:`FirmwareResult`: status name + code + a sentence a person
  understands + the source of the rule.
* :class:`HostDriver` — ``ccp`` (sev-dev.c, sev-fw.c) and ``kvm_amd`` (svm/sev.c) on the
  host: probe-time init that always tries SNP_INIT(_EX) first, then legacy INIT/INIT_EX +
  DF_FLUSH; the ``psp_init_on_probe`` and ``ciphertext_hiding_asids`` module parameters; KVM's
  ASID allocator; lazy SEV INIT at the first legacy guest; firmware hot-load and commit;
  FACTORY_RESET and shutdown as the ioctl / module exit do them.
* Presets — the configurations of the seed-002 thread as runnable functions returning the
  configured host plus its log (:data:`PRESETS`, :func:`run_preset`).

Sources (tags used in the ``source`` field of every result):

* ``sev-snp.md §8`` — /work/shared/reference/sev-snp.md section 8.
* ``ASPFW`` — amd/AMD-ASPFW 3ca6650 "Initial Publication", Genoa SEV FW 1.55.25:
  ``fw/psp_bl_uapps/sev_uapp/src/{sev_mcmd.c, sev_plat.c, sev_guest.c, sev_dispatch.c}``.
* ``LX psp-sev.h`` — torvalds/linux include/linux/psp-sev.h (command ids, state enum) and
  include/uapi/linux/psp-sev.h (status codes, incl. the 0x19..0x27 explicit-value fix).
* ``LX sev-dev.c`` — torvalds/linux drivers/crypto/ccp/sev-dev.c (__sev_snp_init_locked,
  __sev_platform_init_locked, _sev_platform_init_locked, sev_ioctl_do_reset,
  __sev_snp_shutdown_locked).
* ``LX sev-fw.c`` — Dionna Glaze, "[PATCH v5] crypto: ccp: SNP_DOWNLOAD_FIRMWARE_EX"
  series, 2024-11 (merge status unconfirmed, sev-snp.md §9.9).
* ``LX kvm sev.c`` — arch/x86/kvm/svm/sev.c sev_hardware_setup / sev_asid_new and Ashish
  Kalra's CipherTextHiding series (2025).
* ``seed 002`` — "Re: [PATCH v2 3/3] x86/sev: Add SEV-SNP CipherTextHiding support",
  Ashish Kalra, 2024-12-07, quoting Sean Christopherson and Tom Lendacky (2024-11-21/12-06).

Results whose rule is a modelling decision rather than a confirmed fact carry
``confirmed=False``; the module-level list :data:`UNCONFIRMED` names each one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    ("SNP_ACTIVATE of an ASID above max_snp_asid (ciphertext hiding) or at/above MIN_SEV_ASID "
     "returns INVALID_ASID: the range is implied by LX sev-fw.c ('snp_activate ... successful, "
     "meaning the asid is in the acceptable range 1..last_snp_asid'), the status code is the "
     "one ASPFW uses for asid 0 / asid > MAX."),
    ("ACTIVATE of a legacy SEV guest below MIN_SEV_ASID, or of an SEV-ES guest at/above it, "
     "returns INVALID_ASID: ASPFW 1.55.25 ACTIVATE checks only 0 < asid <= MAX; the class is "
     "otherwise enforced by KVM's allocator and the CPU at VMRUN."),
    ("After SNP_DOWNLOAD_FIRMWARE_EX the next guest activation returns DFFLUSH_REQUIRED until "
     "an SNP_DF_FLUSH: LX sev-fw.c only says 'Need to do a DF_FLUSH after live firmware update'."),
    ("SNP_DOWNLOAD_FIRMWARE_EX outcomes per image property (BAD_SIGNATURE, BAD_VERSION, "
     "SHUTDOWN_REQUIRED when SNP is INIT and the image cannot be live-updated, UPDATE_FAILED "
     "with rollback): names from LX sev-fw.c / ASPFW, triggers modelled."),
    ("SNP commands on firmware below API 1.51 return INVALID_COMMAND (ASPFW dispatch rejects "
     "unknown ids; 1.51 is LX SNP_MIN_API)."),
    ("SNP_INIT_EX with ciphertext hiding on hardware without it, or with max_snp_asid outside "
     "1..MIN_SEV_ASID-1, returns INVALID_PARAM; SNP_INIT_EX with a range list below API 1.52 "
     "returns INVALID_PARAM."),
    ("KVM treats ciphertext hiding as supported when the hardware has it, SNP is enabled and "
     "the firmware is >= 1.52 (SNP_INIT_EX carries the fields)."),
    ("With plain (non-SEV) VMs running, clearing MSR_VM_HSAVE_PA does not stick, so SNP_INIT "
     "sees it non-zero and returns INVALID_CONFIG."),
    ("Default hardware numbers (max ASID 509, MIN_SEV_ASID 100, FW 1.55.25) and the hot-load "
     "target version are illustrative."),
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
            lines.append(f"{e.seq:3d} {e.actor:<7} {e.action}{cid}: {e.status}{code} - "
                         f"{e.message} [{e.source}]{mark}")
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

    def note(self, actor: Actor, action: str, ok: bool, status: str, message: str,
             source: str, *, confirmed: bool = True, command_id: int | None = None,
             code: int | None = None) -> LogEntry:
        """Append one entry to the shared log (used by every layer)."""
        entry = LogEntry(seq=len(self.log.entries) + 1, actor=actor, action=action,
                         command_id=command_id, ok=ok, status=status, code=code,
                         message=message, source=source, confirmed=confirmed,
                         sev_state=self.sev_state.name, snp_state=self.snp_state.name)
        self.log.entries.append(entry)
        return entry

    def _done(self, cmd: Cmd, status: FwStatus, message: str, source: str,
              confirmed: bool = True, handle: int | None = None) -> FirmwareResult:
        result = FirmwareResult(command=cmd.name, command_id=int(cmd), status=status.name,
                                code=int(status), message=message, source=source,
                                confirmed=confirmed, handle=handle)
        self.note("psp", cmd.name, result.ok, status.name, message, source,
                  confirmed=confirmed, command_id=int(cmd), code=int(status))
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
            sev_state=self.sev_state.name, snp_state=self.snp_state.name,
            api=str(self.version), committed=str(self.committed),
            rmp_initialized=self.rmp_initialized,
            ciphertext_hiding_cap=self.hw.ciphertext_hiding_capable,
            ciphertext_hiding_en=self.ciphertext_hiding_en, max_snp_asid=self.max_snp_asid,
            guests={kind.value: n for kind, n in self.guest_counts().items()})

    def asid_space(self) -> AsidSpace:
        """The ASID classes the firmware enforces now."""
        return AsidSpace(max_asid=self.hw.max_asid, min_sev_asid=self.hw.min_sev_asid,
                         max_snp_asid=self.max_snp_asid if self.ciphertext_hiding_en else 0)

    def _snp_missing(self, cmd: Cmd) -> FirmwareResult | None:
        if self.version.at_least(*SNP_MIN_API):
            return None
        return self._done(cmd, FwStatus.INVALID_COMMAND,
                          f"Firmware {self.version} predates SNP (API 1.51), so it does not "
                          "know this command.", f"{SRC_ASPFW} dispatch; {SRC_REF}",
                          confirmed=False)

    # ---- CPU side effects the firmware observes

    def wbinvd_all_cpus(self) -> None:
        """WBINVD on every CPU: sets the WBINVD_DONE flags DF_FLUSH checks."""
        self.cache.wbinvd_all_cpus()
        self.note("cpu", "WBINVD", True, "done", "Write-back and invalidate caches on all "
                  "CPUs.", f"{SRC_REF}; {SRC_ASPFW} mcmd_df_flush_common")

    # ---- legacy SEV platform commands

    def platform_status(self) -> FirmwareResult:
        """PLATFORM_STATUS (0x04): always succeeds and reports state and guest count."""
        return self._done(Cmd.PLATFORM_STATUS, FwStatus.SUCCESS,
                          f"SEV state {self.sev_state.name}, API {self.version}, "
                          f"{self.legacy_guest_count()} SEV/SEV-ES guest(s).", SRC_HDR)

    def init(self, ex: bool = False) -> FirmwareResult:
        """SEV INIT (0x01) or INIT_EX (0x0D): UNINIT -> INIT.

        Refused with INVALID_PLATFORM_STATE when SEV is not UNINIT, and when SNP is enabled
        system-wide but the RMP was never initialised by SNP_INIT (ASPFW
        sev_mcmd_init_common; seed 002 point 2)."""
        cmd = Cmd.INIT_EX if ex else Cmd.INIT
        if self.sev_state is not SevState.UNINIT:
            return self._done(cmd, FwStatus.INVALID_PLATFORM_STATE,
                              f"SEV is already {self.sev_state.name}; INIT only runs from "
                              "UNINIT.", f"{SRC_ASPFW} sev_mcmd_init_common")
        if self.hw.snp_enabled and not self.rmp_initialized:
            return self._done(cmd, FwStatus.INVALID_PLATFORM_STATE,
                              "SNP is enabled system-wide (SYSCFG.SNPEn) but SNP_INIT has not "
                              "set up the RMP, so SEV INIT fails; run SNP_INIT(_EX) first.",
                              f"{SRC_ASPFW} sev_mcmd_init_common; {SRC_SEED}")
        if self.snp_state is SnpState.UNINIT:
            self.cache.mark_all_dirty(self.hw.max_asid)
        self.sev_state = SevState.INIT
        return self._done(cmd, FwStatus.SUCCESS,
                          "Legacy SEV platform initialised (UNINIT -> INIT); a WBINVD and "
                          "DF_FLUSH must follow before the first SEV guest.",
                          f"{SRC_ASPFW} sev_mcmd_init_common; {SRC_DEV}")

    def shutdown(self) -> FirmwareResult:
        """SEV SHUTDOWN (0x02): any state -> UNINIT; SEV/SEV-ES guests are decommissioned,
        SNP guests are untouched (ASPFW sev_mcmd_shutdown, state_tbl_sev)."""
        gone = [g for g in self.guests.values() if g.kind is not GuestType.SNP]
        for guest in gone:
            if guest.asid is not None:
                self.cache.release(guest.asid)
            del self.guests[guest.handle]
        self.sev_state = SevState.UNINIT
        return self._done(Cmd.SHUTDOWN, FwStatus.SUCCESS,
                          f"Legacy SEV platform shut down to UNINIT; {len(gone)} SEV/SEV-ES "
                          "guest(s) decommissioned, SNP guests unaffected.",
                          f"{SRC_ASPFW} sev_mcmd_shutdown")

    def factory_reset(self) -> FirmwareResult:
        """FACTORY_RESET (0x03): only from UNINIT (ASPFW sev_mcmd_platform_reset;
        sev-snp.md §8)."""
        if self.sev_state is not SevState.UNINIT:
            return self._done(Cmd.FACTORY_RESET, FwStatus.INVALID_PLATFORM_STATE,
                              f"FACTORY_RESET needs SEV UNINIT, the platform is "
                              f"{self.sev_state.name}; SHUTDOWN first.",
                              f"{SRC_ASPFW} sev_mcmd_platform_reset; {SRC_REF}")
        return self._done(Cmd.FACTORY_RESET, FwStatus.SUCCESS,
                          "Persistent SEV state (PEK/PDH/OCA) deleted.",
                          f"{SRC_ASPFW} sev_mcmd_platform_reset")

    def df_flush(self, snp: bool = False) -> FirmwareResult:
        """DF_FLUSH (0x0A) / SNP_DF_FLUSH (0x84): dirty ASIDs become clean; WBINVD_REQUIRED
        unless WBINVD ran on every CPU since the flags were cleared (ASPFW
        mcmd_df_flush_common, shared by both commands, no platform-state check)."""
        cmd = Cmd.SNP_DF_FLUSH if snp else Cmd.DF_FLUSH
        if snp and (missing := self._snp_missing(cmd)):
            return missing
        if not self.cache.df_flush():
            return self._done(cmd, FwStatus.WBINVD_REQUIRED,
                              "Not every CPU has done a WBINVD since ASIDs were last marked "
                              "dirty; issue WBINVD on all CPUs, then flush.",
                              f"{SRC_ASPFW} mcmd_df_flush_common")
        self.flush_after_update = False
        return self._done(cmd, FwStatus.SUCCESS,
                          "Data-fabric write buffers flushed; all dirty ASIDs are clean again.",
                          f"{SRC_ASPFW} mcmd_df_flush_common")

    # ---- SNP platform commands

    def snp_init(self, ex: bool = False, *, range_list: bool = False,
                 ciphertext_hiding: bool = False, max_snp_asid: int = 0) -> FirmwareResult:
        """SNP_INIT (0x81) / SNP_INIT_EX (0x85): SNP UNINIT -> INIT, RMP initialised.

        Refused with INVALID_PLATFORM_STATE when SNP is not UNINIT or legacy SEV is not UNINIT
        (so it cannot follow SEV INIT, nor run with SEV guests), with INVALID_CONFIG when
        SNPEn is clear or MSR_VM_HSAVE_PA is not 0 on every CPU (ASPFW snp_mcmd_init_common;
        seed 002 point 1)."""
        cmd = Cmd.SNP_INIT_EX if ex else Cmd.SNP_INIT
        if missing := self._snp_missing(cmd):
            return missing
        if self.snp_state is not SnpState.UNINIT or self.sev_state is not SevState.UNINIT:
            why = ("SNP is already INIT; SNP_INIT(_EX) only runs from UNINIT" if self.snp_state is not SnpState.UNINIT else
                   f"legacy SEV is {self.sev_state.name} ({self.legacy_guest_count()} legacy "
                   "guest(s)); SNP_INIT(_EX) cannot succeed once SEV INIT has run")
            return self._done(cmd, FwStatus.INVALID_PLATFORM_STATE, f"{why}.",
                              f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_SEED}")
        if not self.hw.snp_enabled:
            return self._done(cmd, FwStatus.INVALID_CONFIG,
                              "SYSCFG.SNPEn is not set on every core (SNP not enabled by BIOS / "
                              "early boot).", f"{SRC_ASPFW} snp_mcmd_init_common")
        if not self.hsave_pa_zero:
            return self._done(cmd, FwStatus.INVALID_CONFIG,
                              "MSR_VM_HSAVE_PA is not 0 on every CPU: a VM may be running "
                              "(any VM, SEV or not), so the RMP cannot be initialised.",
                              f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_REF}; {SRC_SEED_TL}")
        if ex and range_list and not self.version.at_least(*SNP_INIT_EX_API):
            return self._done(cmd, FwStatus.INVALID_PARAM,
                              f"Firmware {self.version} cannot take an HV-fixed range list "
                              "(needs 1.52).", f"{SRC_DEV}; {SRC_MODEL}", confirmed=False)
        if ciphertext_hiding:
            if not ex or not self.hw.ciphertext_hiding_capable:
                return self._done(cmd, FwStatus.INVALID_PARAM,
                                  "Ciphertext hiding requested but not available (needs "
                                  "SNP_INIT_EX on capable hardware).", SRC_MODEL,
                                  confirmed=False)
            if not 1 <= max_snp_asid <= self.hw.min_sev_asid - 1:
                return self._done(cmd, FwStatus.INVALID_PARAM,
                                  f"max_snp_asid {max_snp_asid} is outside 1.."
                                  f"{self.hw.min_sev_asid - 1} (MIN_SEV_ASID-1).", SRC_MODEL,
                                  confirmed=False)
        self.snp_state = SnpState.INIT
        self.rmp_initialized = True
        self.ciphertext_hiding_en = ciphertext_hiding
        self.max_snp_asid = max_snp_asid if ciphertext_hiding else 0
        self.cache.mark_all_dirty(self.hw.max_asid)
        hiding = (f" Ciphertext hiding on: SNP ASIDs 1..{max_snp_asid}."
                  if ciphertext_hiding else "")
        return self._done(cmd, FwStatus.SUCCESS,
                          "SNP platform initialised (RMP set up, every ASID dirty; WBINVD + "
                          f"SNP_DF_FLUSH must follow).{hiding}",
                          f"{SRC_ASPFW} snp_mcmd_init_common; {SRC_REF}")

    def snp_shutdown(self, ex: bool = True) -> FirmwareResult:
        """SNP_SHUTDOWN (0x82) / SNP_SHUTDOWN_EX (0x86): refused while SEV is not UNINIT, needs
        every ASID clean; the RMP stays protected until the next SNP_INIT (ASPFW
        snp_mcmd_shutdown_common)."""
        cmd = Cmd.SNP_SHUTDOWN_EX if ex else Cmd.SNP_SHUTDOWN
        if missing := self._snp_missing(cmd):
            return missing
        if self.sev_state is not SevState.UNINIT:
            return self._done(cmd, FwStatus.INVALID_PLATFORM_STATE,
                              "SNP cannot be shut down while legacy SEV is initialised.",
                              f"{SRC_ASPFW} snp_mcmd_shutdown_common")
        if self.snp_state is SnpState.UNINIT:
            return self._done(cmd, FwStatus.SUCCESS, "SNP already UNINIT; nothing to do.",
                              f"{SRC_ASPFW} snp_mcmd_shutdown_common")
        if not self.cache.all_clean():
            return self._done(cmd, FwStatus.DFFLUSH_REQUIRED,
                              "Some ASIDs are dirty or still bound to guests; decommission "
                              "guests, WBINVD and SNP_DF_FLUSH first.",
                              f"{SRC_ASPFW} snp_mcmd_shutdown_common; {SRC_DEV}")
        self.snp_state = SnpState.UNINIT
        self.ciphertext_hiding_en = False
        self.max_snp_asid = 0
        return self._done(cmd, FwStatus.SUCCESS, "SNP platform shut down to UNINIT.",
                          f"{SRC_ASPFW} snp_mcmd_shutdown_common")

    def snp_platform_status(self) -> FirmwareResult:
        """SNP_PLATFORM_STATUS (0x83): state, API, ciphertext-hiding cap/en, guest count."""
        if missing := self._snp_missing(Cmd.SNP_PLATFORM_STATUS):
            return missing
        hiding = "on" if self.ciphertext_hiding_en else "off"
        return self._done(Cmd.SNP_PLATFORM_STATUS, FwStatus.SUCCESS,
                          f"SNP state {self.snp_state.name}, API {self.version}, ciphertext "
                          f"hiding {hiding}, {self.guest_counts()[GuestType.SNP]} SNP "
                          "guest(s).", f"{SRC_HDR} sev_user_data_snp_status")

    # ---- firmware update

    def download_firmware_ex(self, image: FirmwareImage, commit: bool = False) -> FirmwareResult:
        """SNP_DOWNLOAD_FIRMWARE_EX (0xCA): live update. Legacy SEV must be UNINIT; SNP may be
        in any state (ASPFW snp_mcmd_download_firmware_ex; seed 002)."""
        cmd = Cmd.SNP_DOWNLOAD_FIRMWARE_EX
        if missing := self._snp_missing(cmd):
            return missing
        if self.sev_state is not SevState.UNINIT:
            return self._done(cmd, FwStatus.INVALID_PLATFORM_STATE,
                              f"Legacy SEV is {self.sev_state.name}; firmware can only be "
                              "hot-loaded while SEV is UNINIT (SNP may be INIT).",
                              f"{SRC_ASPFW} snp_mcmd_download_firmware_ex; {SRC_SEED}")
        refusal = self._image_refusal(image)
        if refusal is not None:
            return self._done(cmd, refusal[0], refusal[1], f"{SRC_FW}; {SRC_ASPFW}",
                              confirmed=False)
        old = self.version
        self.version = image.version
        if commit:
            self.committed = image.version
        self.flush_after_update = True
        self.stale_gctx = {g.handle for g in self.guests.values() if g.kind is GuestType.SNP}
        kept = "committed" if commit else "not committed (SNP_COMMIT is separate)"
        return self._done(cmd, FwStatus.SUCCESS,
                          f"Firmware {old} -> {image.version}, {kept}; SNP state "
                          f"{self.snp_state.name} and its guests kept. WBINVD + SNP_DF_FLUSH "
                          "must follow.", f"{SRC_ASPFW} snp_mcmd_download_firmware_ex; {SRC_FW}")

    def _image_refusal(self, image: FirmwareImage) -> tuple[FwStatus, str] | None:
        if not image.signature_ok:
            return FwStatus.BAD_SIGNATURE, "The image signature is bad; nothing changed."
        if not image.well_formed:
            return FwStatus.BAD_VERSION, "The image is not well formed; nothing changed."
        if self.snp_state is SnpState.INIT and not image.live_updatable:
            return (FwStatus.SHUTDOWN_REQUIRED, ("This image cannot be live-updated while SNP "
                    "is INIT; shut SNP down first. Nothing changed."))
        if not image.accepts_platform_state:
            return (FwStatus.UPDATE_FAILED, ("The new firmware rejected the platform state; "
                    f"the PSP rolled back to {self.version}."))
        return None

    def snp_commit(self) -> FirmwareResult:
        """SNP_COMMIT (0xCB): make the running firmware the committed (anti-rollback) one."""
        if missing := self._snp_missing(Cmd.SNP_COMMIT):
            return missing
        self.committed = self.version
        return self._done(Cmd.SNP_COMMIT, FwStatus.SUCCESS,
                          f"Firmware {self.version} committed; older images are now refused "
                          "as rollback targets.", f"{SRC_ASPFW} snp_mcmd_commit; {SRC_REF}")

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
            return self._done(Cmd.LAUNCH_START, FwStatus.INVALID_PLATFORM_STATE,
                              "Legacy SEV is UNINIT; SEV INIT must run before the first SEV "
                              "or SEV-ES guest.", f"{SRC_ASPFW} sev_mcmd_launch_start")
        guest = self._new_guest(kind)
        guest.launched = True
        self.sev_state = SevState.WORKING
        return self._done(Cmd.LAUNCH_START, FwStatus.SUCCESS,
                          f"{kind.value} guest {guest.handle} created; platform WORKING.",
                          f"{SRC_ASPFW} sev_mcmd_launch_start", handle=guest.handle)

    def snp_gctx_create(self) -> FirmwareResult:
        """SNP_GCTX_CREATE (0x93): a guest context page; needs SNP INIT."""
        if missing := self._snp_missing(Cmd.SNP_GCTX_CREATE):
            return missing
        if self.snp_state is not SnpState.INIT:
            return self._done(Cmd.SNP_GCTX_CREATE, FwStatus.INVALID_PLATFORM_STATE,
                              "SNP is UNINIT; SNP_INIT(_EX) must run first.",
                              f"{SRC_ASPFW} snp_mcmd_gctx_create")
        guest = self._new_guest(GuestType.SNP)
        return self._done(Cmd.SNP_GCTX_CREATE, FwStatus.SUCCESS,
                          f"SNP guest context {guest.handle} created.",
                          f"{SRC_ASPFW} snp_mcmd_gctx_create", handle=guest.handle)

    def snp_launch_start(self, handle: int) -> FirmwareResult:
        """SNP_LAUNCH_START (0xA0): needs SNP INIT and a fresh guest context."""
        if self.snp_state is not SnpState.INIT:
            return self._done(Cmd.SNP_LAUNCH_START, FwStatus.INVALID_PLATFORM_STATE,
                              "SNP is UNINIT.", f"{SRC_ASPFW} snp_mcmd_launch_start")
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(Cmd.SNP_LAUNCH_START, FwStatus.INVALID_GUEST,
                              f"No SNP guest context {handle}.",
                              f"{SRC_ASPFW} snp_mcmd_launch_start")
        if guest.launched:
            return self._done(Cmd.SNP_LAUNCH_START, FwStatus.INVALID_GUEST_STATE,
                              f"SNP guest {handle} was already launched.",
                              f"{SRC_ASPFW} snp_mcmd_launch_start")
        guest.launched = True
        return self._done(Cmd.SNP_LAUNCH_START, FwStatus.SUCCESS,
                          f"SNP guest {handle} in LAUNCH state.",
                          f"{SRC_ASPFW} snp_mcmd_launch_start", handle=handle)

    def activate(self, handle: int, asid: int) -> FirmwareResult:
        """ACTIVATE (0x21): bind a legacy guest to an ASID (needs SEV WORKING)."""
        if self.sev_state is not SevState.WORKING:
            return self._done(Cmd.ACTIVATE, FwStatus.INVALID_PLATFORM_STATE,
                              f"Legacy SEV is {self.sev_state.name}, not WORKING.",
                              f"{SRC_ASPFW} sev_mcmd_activate")
        return self._bind(Cmd.ACTIVATE, handle, asid, snp=False)

    def snp_activate(self, handle: int, asid: int) -> FirmwareResult:
        """SNP_ACTIVATE (0x91): bind a launched SNP guest to an ASID (needs SNP INIT)."""
        if self.snp_state is not SnpState.INIT:
            return self._done(Cmd.SNP_ACTIVATE, FwStatus.INVALID_PLATFORM_STATE,
                              "SNP is UNINIT.", f"{SRC_ASPFW} snp_mcmd_activate")
        return self._bind(Cmd.SNP_ACTIVATE, handle, asid, snp=True)

    def _bind(self, cmd: Cmd, handle: int, asid: int, snp: bool) -> FirmwareResult:
        guest = self.guests.get(handle)
        if guest is None or (guest.kind is GuestType.SNP) != snp:
            return self._done(cmd, FwStatus.INVALID_GUEST, f"No such guest {handle}.",
                              f"{SRC_ASPFW} sev_mcmd_activate / snp_mcmd_activate")
        if snp and not guest.launched:
            return self._done(cmd, FwStatus.INVALID_GUEST_STATE,
                              f"SNP guest {handle} is not in LAUNCH or RUNNING state.",
                              f"{SRC_ASPFW} snp_mcmd_activate")
        if not 1 <= asid <= self.hw.max_asid:
            return self._done(cmd, FwStatus.INVALID_ASID,
                              f"ASID {asid} is outside 1..{self.hw.max_asid}.",
                              f"{SRC_ASPFW} mcmd_activate_common")
        space = self.asid_space()
        if not space.allows(guest.kind, asid):
            return self._done(cmd, FwStatus.INVALID_ASID,
                              f"ASID {asid} is not in the {guest.kind.value} class "
                              f"({space.range_for(guest.kind)}); guest {handle} not activated.",
                              f"{SRC_REF}; {SRC_FW}; {SRC_MODEL}", confirmed=False)
        owner = self.cache.bound.get(asid)
        if owner is not None and owner != handle:
            return self._done(cmd, FwStatus.ASID_OWNED,
                              f"ASID {asid} is bound to guest {owner}.",
                              f"{SRC_ASPFW} mcmd_activate_common")
        if guest.asid is not None:
            return self._done(cmd, FwStatus.ACTIVE, f"Guest {handle} is already active.",
                              f"{SRC_ASPFW} mcmd_activate_common")
        if snp and self.flush_after_update:
            return self._done(cmd, FwStatus.DFFLUSH_REQUIRED,
                              "Firmware was hot-loaded and no DF_FLUSH followed yet.",
                              f"{SRC_FW}; {SRC_MODEL}", confirmed=False)
        if self.cache.bind(asid, handle) == "dirty":
            return self._done(cmd, FwStatus.DFFLUSH_REQUIRED,
                              f"ASID {asid} may still have another guest's lines in the "
                              "caches; WBINVD on all CPUs + DF_FLUSH first.",
                              f"{SRC_ASPFW} activate_common")
        guest.asid = asid
        return self._done(cmd, FwStatus.SUCCESS,
                          f"{guest.kind.value} guest {handle} bound to ASID {asid}.",
                          f"{SRC_ASPFW} activate_common", handle=handle)

    def deactivate(self, handle: int) -> FirmwareResult:
        """DEACTIVATE (0x22): unbind a legacy guest's ASID, which becomes dirty."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is GuestType.SNP:
            return self._done(Cmd.DEACTIVATE, FwStatus.INVALID_GUEST,
                              f"No legacy guest {handle}.", f"{SRC_ASPFW} sev_mcmd_deactivate")
        if guest.asid is None:
            return self._done(Cmd.DEACTIVATE, FwStatus.INACTIVE,
                              f"Guest {handle} has no ASID.", f"{SRC_ASPFW} sev_mcmd_deactivate")
        self.cache.release(guest.asid)
        asid, guest.asid = guest.asid, None
        return self._done(Cmd.DEACTIVATE, FwStatus.SUCCESS,
                          f"Guest {handle} unbound; ASID {asid} is dirty until WBINVD + "
                          "DF_FLUSH.", f"{SRC_ASPFW} sev_mcmd_deactivate; sev_guest.c")

    def decommission(self, handle: int) -> FirmwareResult:
        """DECOMMISSION (0x20): delete a deactivated legacy guest; WORKING -> INIT with none
        left."""
        guest = self.guests.get(handle)
        if self.sev_state is not SevState.WORKING:
            return self._done(Cmd.DECOMMISSION, FwStatus.INVALID_PLATFORM_STATE,
                              "Legacy SEV is not WORKING.", f"{SRC_ASPFW} sev_mcmd_decommission")
        if guest is None or guest.kind is GuestType.SNP:
            return self._done(Cmd.DECOMMISSION, FwStatus.INVALID_GUEST,
                              f"No legacy guest {handle}.",
                              f"{SRC_ASPFW} sev_mcmd_decommission")
        if guest.asid is not None:
            return self._done(Cmd.DECOMMISSION, FwStatus.ACTIVE,
                              f"Guest {handle} still holds ASID {guest.asid}; DEACTIVATE first.",
                              f"{SRC_ASPFW} mcmd_decommission_common")
        del self.guests[handle]
        if self.legacy_guest_count() == 0:
            self.sev_state = SevState.INIT
        return self._done(Cmd.DECOMMISSION, FwStatus.SUCCESS,
                          f"Guest {handle} deleted; SEV state {self.sev_state.name}.",
                          f"{SRC_ASPFW} sev_mcmd_decommission")

    def snp_decommission(self, handle: int) -> FirmwareResult:
        """SNP_DECOMMISSION (0x90): deactivates (ASID dirty) and deletes an SNP guest."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(Cmd.SNP_DECOMMISSION, FwStatus.INVALID_GUEST,
                              f"No SNP guest {handle}.", f"{SRC_ASPFW} snp_mcmd_decommission")
        if guest.asid is not None:
            self.cache.release(guest.asid)
        del self.guests[handle]
        self.stale_gctx.discard(handle)
        return self._done(Cmd.SNP_DECOMMISSION, FwStatus.SUCCESS,
                          f"SNP guest {handle} deactivated and deleted.",
                          f"{SRC_ASPFW} snp_decommission_common")

    def snp_guest_status(self, handle: int) -> FirmwareResult:
        """SNP_GUEST_STATUS (0x92); after a hot-load it also refreshes the guest context page
        for the new firmware (LX sev-fw.c snp_update_guest_statuses)."""
        guest = self.guests.get(handle)
        if guest is None or guest.kind is not GuestType.SNP:
            return self._done(Cmd.SNP_GUEST_STATUS, FwStatus.INVALID_GUEST,
                              f"No SNP guest {handle}.", f"{SRC_ASPFW}; {SRC_FW}")
        self.stale_gctx.discard(handle)
        return self._done(Cmd.SNP_GUEST_STATUS, FwStatus.SUCCESS,
                          f"SNP guest {handle}: ASID {guest.asid}, context page current.",
                          SRC_FW, handle=handle)


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

    def _drv(self, actor: Actor, action: str, ok: bool, status: str, message: str,
             source: str, confirmed: bool = True) -> LogEntry:
        return self.psp.note(actor, action, ok, status, message, source, confirmed=confirmed)

    def _hiding_supported(self) -> bool:
        return (self.hw.ciphertext_hiding_capable and self.hw.snp_enabled
                and self.psp.version.at_least(*SNP_INIT_EX_API))

    def _clear_hsave_pa(self) -> None:
        """on_each_cpu(snp_set_hsave_pa): MSR_VM_HSAVE_PA = 0 before SNP_INIT (LX sev-dev.c)."""
        running = self.plain_vms + self.psp.legacy_guest_count() + \
            self.psp.guest_counts()[GuestType.SNP]
        self.psp.hsave_pa_zero = running == 0
        if running:
            self._drv("cpu", "WRMSR MSR_VM_HSAVE_PA=0", False, "not-stuck",
                      f"{running} VM(s) are running; their CPUs keep MSR_VM_HSAVE_PA set.",
                      f"{SRC_DEV}; {SRC_SEED_TL}; {SRC_MODEL}", confirmed=False)
        else:
            self._drv("cpu", "WRMSR MSR_VM_HSAVE_PA=0", True, "done",
                      "MSR_VM_HSAVE_PA cleared on every CPU (SNP_INIT requires 0).",
                      f"{SRC_DEV}; {SRC_REF}")

    # ---- ccp: the init sequences

    def snp_init_locked(self, max_snp_asid: int = 0) -> FirmwareResult | None:
        """__sev_snp_init_locked: skip when SNP is not enabled system-wide or the firmware
        predates 1.51; else HSAVE_PA=0, WBINVD, SNP_INIT(_EX), WBINVD, SNP_DF_FLUSH.
        Returns the SNP_INIT result, or None when skipped / already done."""
        if not self.hw.snp_enabled:
            self._drv("ccp", "skip SNP_INIT", True, "ENODEV",
                      "SNP is not enabled system-wide (CC_ATTR_HOST_SEV_SNP clear): "
                      "SNP_INIT(_EX) skipped.", f"{SRC_SEED}; {SRC_DEV}")
            return None
        if self.psp.snp_state is SnpState.INIT:
            return None
        if not self.psp.version.at_least(*SNP_MIN_API):
            self._drv("ccp", "skip SNP_INIT", True, "skipped",
                      f"SEV-SNP support requires firmware >= 1.51, found {self.psp.version}.",
                      f"{SRC_DEV}; {SRC_REF}")
            return None
        self._clear_hsave_pa()
        ex = self.psp.version.at_least(*SNP_INIT_EX_API)
        self.psp.wbinvd_all_cpus()
        hide = ex and max_snp_asid > 0
        result = self.psp.snp_init(ex, range_list=ex, ciphertext_hiding=hide,
                                   max_snp_asid=max_snp_asid if hide else 0)
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
            self._drv("ccp", "continue after SNP_INIT failure", True, "continue",
                      "SEV-SNP failed to initialise; continuing with legacy SEV init.",
                      f"{SRC_DEV} (\"Don't abort the probe if SNP INIT failed\")")
        if probe and not self.params.psp_init_on_probe:
            self._drv("ccp", "defer SEV INIT", True, "skipped",
                      "psp_init_on_probe=false: SEV INIT deferred to the first SEV/SEV-ES "
                      "guest, which keeps firmware hot-load possible.", f"{SRC_SEED}; {SRC_DEV}")
            return None
        sev = self.sev_init_locked()
        return sev if sev is not None and not sev.ok else None

    # ---- kvm_amd: module load

    def probe(self) -> ProbeReport:
        """kvm_amd load (sev_hardware_setup): platform init, then which VM types KVM offers
        and the ASID split (ciphertext hiding only when SNP came up)."""
        p = self.params
        self._drv("kvm_amd", "load kvm_amd", True, "start",
                  f"sev_hardware_setup: sev={p.sev} sev_es={p.sev_es} sev_snp={p.sev_snp} "
                  f"ciphertext_hiding_asids={p.ciphertext_hiding_asids}; ccp "
                  f"psp_init_on_probe={p.psp_init_on_probe}; SNPEn={self.hw.snp_enabled}; "
                  f"firmware {self.psp.version}.", f"{SRC_KVM}; {SRC_SEED}")
        snp_wanted = p.sev_snp and self.hw.snp_enabled
        max_snp = (min(p.ciphertext_hiding_asids, self.hw.min_sev_asid - 1)
                   if self._hiding_supported() and p.ciphertext_hiding_asids else 0)
        if p.ciphertext_hiding_asids and not self._hiding_supported():
            self._drv("kvm_amd", "ignore ciphertext_hiding_asids", True, "skipped",
                      "ciphertext_hiding_asids set but ciphertext hiding is not supported.",
                      f"{SRC_KVM}; {SRC_MODEL}", confirmed=False)
        failed = self.platform_init(probe=True, max_snp_asid=max_snp) if p.sev else None
        snp_up = self.psp.snp_state is SnpState.INIT
        if snp_up and self.psp.ciphertext_hiding_en and snp_wanted:
            self.asids = self.asids.with_hiding(self.psp.max_snp_asid)
            self._drv("kvm_amd", "split ASIDs", True, "done",
                      "SEV-SNP ciphertext hiding enabled: " + "; ".join(self.asids.describe()),
                      f"{SRC_KVM}; {SRC_REF}")
        ok = p.sev and failed is None
        self.supported = {
            GuestType.SEV: ok and self.asids.usable(GuestType.SEV),
            GuestType.SEV_ES: ok and p.sev_es and self.asids.usable(GuestType.SEV_ES),
            GuestType.SNP: ok and snp_wanted and snp_up,
        }
        if failed is not None:
            self._drv("kvm_amd", "disable SEV", False, failed.status,
                      "sev_platform_init failed: KVM disables SEV, SEV-ES and SNP.", SRC_KVM)
        offered = [k.value for k, v in self.supported.items() if v] or ["none"]
        self._drv("kvm_amd", "VM types", True, "done",
                  f"KVM offers: {', '.join(offered)}. " + "; ".join(self.asids.describe()),
                  SRC_KVM)
        self.probed = True
        return ProbeReport(snp_initialized=snp_up, sev_state=self.psp.sev_state.name,
                           supported={k.value: v for k, v in self.supported.items()},
                           asids=self.asids.describe())

    # ---- kvm_amd: guests

    def start_plain_vm(self) -> None:
        """A non-SEV VM starts: KVM enables SVM and sets MSR_VM_HSAVE_PA on its CPUs."""
        self.plain_vms += 1
        self.psp.hsave_pa_zero = False
        self._drv("kvm_amd", "start plain VM", True, "done",
                  "A non-SEV VM runs; MSR_VM_HSAVE_PA is set on the CPUs that run it.",
                  f"{SRC_SEED_TL}; {SRC_REF}")

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
            return self._refuse(kind, "ENOTTY",
                                f"KVM does not offer {kind.value} VMs on this host.", SRC_KVM)
        chosen, why = (asid, "ok") if asid is not None else self._allocate_asid(kind)
        if chosen is None:
            text = ("the ASID class is empty (ciphertext hiding gave every joint ASID to SNP)"
                    if why == "ENOTTY" else "every ASID of the class is in use")
            return self._refuse(kind, why, f"No {kind.value} ASID: {text}.", SRC_KVM)
        if kind is not GuestType.SNP and self.psp.sev_state is SevState.UNINIT:
            self._drv("kvm_amd", "lazy SEV INIT", True, "start",
                      "First SEV/SEV-ES guest on a host whose SEV INIT was deferred: "
                      "sev_guest_init -> sev_platform_init.", SRC_SEED)
            failed = self.platform_init(probe=False)
            if failed is not None:
                return self._refuse(kind, failed.status, failed.message, failed.source,
                                    actor="ccp")
        return self._launch_snp(chosen) if kind is GuestType.SNP else \
            self._launch_legacy(kind, chosen)

    def _refuse(self, kind: GuestType, status: str, message: str, source: str,
                actor: Actor = "kvm_amd") -> GuestLaunch:
        self._drv(actor, f"launch {kind.value} guest", False, status, message, source)
        return GuestLaunch(kind=kind, ok=False, status=status, message=message)

    def _launch_legacy(self, kind: GuestType, asid: int) -> GuestLaunch:
        start = self.psp.launch_start(kind)
        if not start.ok or start.handle is None:
            return GuestLaunch(kind=kind, ok=False, status=start.status, message=start.message)
        bound = self.psp.activate(start.handle, asid)
        if not bound.ok:
            self.psp.decommission(start.handle)
            return GuestLaunch(kind=kind, ok=False, handle=start.handle, asid=asid,
                               status=bound.status, message=bound.message)
        self.kvm_asids[asid] = start.handle
        return GuestLaunch(kind=kind, ok=True, handle=start.handle, asid=asid,
                           message=bound.message)

    def _launch_snp(self, asid: int) -> GuestLaunch:
        kind = GuestType.SNP
        gctx = self.psp.snp_gctx_create()
        if not gctx.ok or gctx.handle is None:
            return GuestLaunch(kind=kind, ok=False, status=gctx.status, message=gctx.message)
        start = self.psp.snp_launch_start(gctx.handle)
        bound = self.psp.snp_activate(gctx.handle, asid) if start.ok else start
        if not bound.ok:
            self.psp.snp_decommission(gctx.handle)
            return GuestLaunch(kind=kind, ok=False, handle=gctx.handle, asid=asid,
                               status=bound.status, message=bound.message)
        self.kvm_asids[asid] = gctx.handle
        return GuestLaunch(kind=kind, ok=True, handle=gctx.handle, asid=asid,
                           message=bound.message)

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
            self._drv("ccp", "firmware upload", False, f"FW_UPLOAD_ERR_{upload}",
                      f"Upload rejected ({result.status}); nothing was committed.",
                      f"{SRC_FW} snp_dlfw_ex_err_translate")
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
            self._drv("ccp", "FACTORY_RESET ioctl", False, "EBUSY",
                      "SEV guests are running (WORKING); the driver refuses the reset.",
                      f"{SRC_DEV} sev_ioctl_do_reset; {SRC_REF}")
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
        return PresetReport(name=self.name, description=self.description,
                            platform=self.host.psp.snapshot(), asids=self.host.asids.describe(),
                            launches=list(self.launches), log=self.log.entries)


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
PRESET_HW = Hardware(snp_enabled=True, max_asid=509, min_sev_asid=100,
                     ciphertext_hiding_capable=True, firmware=FwVersion(major=1, minor=55,
                                                                       build=25))
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
    launches = tuple(host.launch_guest(kind) for kind in
                     (GuestType.SNP, GuestType.SEV_ES, GuestType.SEV))
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
    return PresetRun("firmware-hotload", _doc(preset_firmware_hotload), host,
                     (first, legacy))


def preset_ciphertext_hiding(asids: int = 64) -> PresetRun:
    """kvm_amd.ciphertext_hiding_asids=N: SNP_INIT_EX carries max_snp_asid=N, SNP gets ASIDs
    1..N and SEV-ES N+1..MIN_SEV_ASID-1; an SNP guest forced onto an SEV-ES ASID is refused
    by the firmware (sev-snp.md §8; seed 002: "put the CipherText and SNP ASID params in
    KVM")."""
    host = HostDriver(PRESET_HW, ModuleParams(ciphertext_hiding_asids=asids))
    host.probe()
    launches = tuple(host.launch_guest(kind) for kind in GuestType)
    wrong = host.launch_guest(GuestType.SNP, asid=host.asids.range_for(GuestType.SEV_ES).first)
    return PresetRun("ciphertext-hiding", _doc(preset_ciphertext_hiding), host,
                     (*launches, wrong))


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
    return PresetRun("legacy-on-snp-host", _doc(preset_legacy_on_snp_host), host,
                     launches)


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
