"""What confidential-VM platform is this, at which privilege level, and how can it attest?

:func:`detect` reads only files the Linux kernel exposes (sysfs, configfs, ``/proc/cpuinfo``,
device nodes) and never raises for a missing or unreadable file: every gap becomes a note in
:class:`PlatformInfo`. On a machine that is not a confidential VM it answers
``platform="none"`` with the reasons.

Facts used (source per line):

* SEV-SNP guests expose their VMPL at ``/sys/devices/system/cpu/sev/vmpl`` (added 2024, only in
  SNP guests); a 2025 patch series moves it to ``/sys/hypervisor/sev/vmpl`` — sev-snp.md §7.
* Linux treats a non-zero VMPL as "an SVSM is present" (snp_vmpl = svsm_guest_vmpl) —
  sev-snp.md §2.3.
* The SEV-SNP guest driver's device node is ``/dev/sev-guest``; the TDX guest driver's is
  ``/dev/tdx_guest`` (LX sev-guest.c / tdx-guest.c misc devices).
* ``/proc/cpuinfo`` ``flags`` carries ``sev``, ``sev_es``, ``sev_snp`` (CPUID-derived, also on
  hosts), ``tdx_guest`` (set only inside a TD) and ``hypervisor`` (LX cpufeatures.h).
* configfs-tsm lives at ``<configfs>/tsm/report``; its ``provider`` attribute exists only
  inside a report entry (LX report.c), so reading it needs an existing entry or creating one.
* An Arm CCA realm gets a platform device ``arm-cca-dev`` (LX arch/arm64/kernel/rsi.c; a later
  series renames it ``arm-rsi-dev``).
* Inside a TD nothing says whether it runs as the L1 VM or as an L2 VM of TD partitioning:
  an L2's TDCALLs other than TDG.VP.VMCALL exit to the L1, which emulates them, and nothing in
  TDINFO identifies an L2 — tdx.md §2.4 and §7.4.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cocopart.attest.configfs import LocalTsmFs, TsmFs

__all__ = ["AttestationInterface", "Platform", "PlatformInfo", "detect"]

Platform = Literal["sev-snp", "tdx", "cca", "none"]

#: cpuinfo flags that say something about confidential computing.
COCO_FLAGS: tuple[str, ...] = ("hypervisor", "sev", "sev_es", "sev_snp", "tdx_guest")

# configfs-tsm provider / kernel module name -> platform (LX: KBUILD_MODNAME of each driver).
_PROVIDER_PLATFORM: dict[str, Platform] = {
    "sev_guest": "sev-snp",
    "tdx_guest": "tdx",
    "arm_cca_guest": "cca",
}

_TDX_LEVEL_REASON = (
    "a TD cannot tell from inside whether it is the L1 VM or an L2 VM of TD partitioning: an "
    "L2's TDCALLs other than TDG.VP.VMCALL exit to the L1, which emulates them, and nothing "
    "in the TD report identifies an L2 (reference tdx.md §2.4, §7.4)"
)
_CCA_LEVEL_REASON = (
    "cocopart knows no Linux interface that tells a realm which plane it runs in"
)


class AttestationInterface(BaseModel):
    """One way this guest can obtain attestation evidence."""

    kind: Literal["configfs-tsm", "device"]
    path: str
    provider: str | None = Field(
        default=None,
        description="configfs-tsm provider name, or the driver behind a device node.",
    )
    detail: str = ""


class PlatformInfo(BaseModel):
    """What :func:`detect` found. ``notes`` explains every conclusion and every gap."""

    platform: Platform
    privilege_level: int | None = Field(
        default=None, description="SEV-SNP VMPL when the kernel exposes it; else None.")
    privilege_level_name: str = Field(
        default="unknown", description="'VMPL2', 'unknown', or 'not applicable'.")
    privilege_level_source: str | None = Field(
        default=None, description="The file the level was read from.")
    privilege_level_reason: str = Field(
        default="", description="Why the level is unknown or not applicable.")
    svsm_present: bool | None = Field(
        default=None, description="SEV-SNP: VMPL > 0 means an SVSM runs at VMPL0. None if "
        "unknown or not SEV-SNP.")
    cpu_flags: list[str] = Field(
        default_factory=list, description="The confidential-computing flags of cpuinfo.")
    hypervisor: bool | None = Field(
        default=None, description="cpuinfo 'hypervisor' flag; None if cpuinfo was unreadable.")
    tsm_provider: str | None = None
    tsm_privlevel_floor: int | None = None
    attestation: list[AttestationInterface] = Field(default_factory=list)
    signals: dict[str, list[str]] = Field(
        default_factory=dict, description="Per platform, the observations that point to it.")
    notes: list[str] = Field(default_factory=list)


def _read_text(path: Path, notes: list[str]) -> str | None:
    """Read a small text file; None (with a note) if unreadable, None silently if absent."""
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        notes.append(f"could not read {path}: {exc.strerror or exc}")
        return None


def _exists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except OSError:
        return False


def _cpu_flags(cpuinfo: Path, notes: list[str]) -> set[str] | None:
    text = _read_text(cpuinfo, notes)
    if text is None:
        notes.append(f"{cpuinfo} is not readable; CPU flags unknown")
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def _read_vmpl(path: Path, notes: list[str]) -> int | None:
    text = _read_text(path, notes)
    if text is None:
        return None
    try:
        value = int(text.strip(), 10)
    except ValueError:
        notes.append(f"{path} holds {text.strip()!r}, not a VMPL number")
        return None
    if not 0 <= value <= 3:
        notes.append(f"{path} holds VMPL {value}, outside 0..3")
        return None
    return value


def _tsm_from_entries(report: Path, notes: list[str]) -> tuple[str | None, int | None]:
    """Provider and floor from an entry someone already created (reading is harmless)."""
    try:
        names = sorted(e.name for e in os.scandir(report) if e.is_dir(follow_symlinks=False))
    except OSError as exc:
        notes.append(f"could not list {report}: {exc.strerror or exc}")
        return None, None
    for name in names:
        text = _read_text(report / name / "provider", notes)
        if text is None or not text.strip():
            continue
        floor_text = _read_text(report / name / "privlevel_floor", notes)
        floor: int | None = None
        if floor_text is not None and floor_text.strip().isdigit():
            floor = int(floor_text.strip())
        return text.strip(), floor
    return None, None


def _tsm_probe(report: Path, fs: TsmFs, notes: list[str]) -> tuple[str | None, int | None]:
    """Create a scratch entry, read provider/privlevel_floor, remove it."""
    entry = report / f"cocopart-detect-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fs.mkdir(entry)
    except OSError as exc:
        notes.append(f"could not create a configfs-tsm entry to read the provider "
                     f"({exc.strerror or exc}); creating entries needs root")
        return None, None
    provider: str | None = None
    floor: int | None = None
    try:
        provider = fs.read(entry / "provider").decode("ascii", "replace").strip() or None
        if fs.exists(entry / "privlevel_floor"):
            text = fs.read(entry / "privlevel_floor").decode("ascii", "replace").strip()
            floor = int(text) if text.isdigit() else None
    except OSError as exc:
        notes.append(f"could not read the configfs-tsm provider ({exc.strerror or exc})")
    finally:
        try:
            fs.rmdir(entry)
        except OSError as exc:
            notes.append(f"could not remove probe entry {entry} ({exc.strerror or exc}); "
                         "remove it with rmdir")
    return provider, floor


def detect(
    sysfs: Path = Path("/sys"),
    configfs: Path = Path("/sys/kernel/config"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
    *,
    dev: Path = Path("/dev"),
    probe: bool = False,
    tsm_fs: TsmFs | None = None,
) -> PlatformInfo:
    """Describe the confidential-VM platform this Linux guest runs on.

    ``sysfs``, ``configfs``, ``cpuinfo`` and ``dev`` locate the kernel's files (tests point
    them at fake trees). The configfs-tsm provider is read from an existing report entry; with
    ``probe=True`` a scratch entry is created and removed if there is none (needs root;
    ``tsm_fs`` replaces the real filesystem for that, e.g. with a
    :class:`~cocopart.attest.faketsm.FakeTsm`). Never raises for missing or unreadable files.
    """
    notes: list[str] = []
    signals: dict[Platform, list[str]] = {"sev-snp": [], "tdx": [], "cca": []}
    attestation: list[AttestationInterface] = []

    # -- CPU flags ------------------------------------------------------------------------
    flags = _cpu_flags(cpuinfo, notes)
    coco_flags = sorted(f for f in (flags or set()) if f in COCO_FLAGS)
    hypervisor = None if flags is None else "hypervisor" in flags
    if flags is not None:
        if "tdx_guest" in flags:
            signals["tdx"].append("cpuinfo flag tdx_guest")
        if "sev_snp" in flags and not hypervisor:
            notes.append("cpuinfo shows sev_snp without the hypervisor flag: this looks like an "
                         "SEV-SNP capable host, which is not a confidential VM")
        elif "sev_snp" in flags:
            notes.append("cpuinfo shows sev_snp in a VM; on its own that is only a CPUID bit "
                         "the hypervisor passed through, not proof of an SNP guest")

    # -- SEV-SNP VMPL -----------------------------------------------------------------------
    vmpl: int | None = None
    vmpl_source: str | None = None
    for candidate in (sysfs / "devices/system/cpu/sev/vmpl", sysfs / "hypervisor/sev/vmpl"):
        if not _exists(candidate):
            continue
        value = _read_vmpl(candidate, notes)
        if value is None:
            continue
        signals["sev-snp"].append(f"{candidate} exists (VMPL {value})")
        if vmpl is None:
            vmpl, vmpl_source = value, str(candidate)
        elif value != vmpl:
            notes.append(f"{candidate} says VMPL {value} but {vmpl_source} says {vmpl}; "
                         f"using {vmpl_source}")

    # -- device nodes -------------------------------------------------------------------------
    nodes: tuple[tuple[str, str, Platform], ...] = (
        ("sev-guest", "sev_guest", "sev-snp"), ("tdx_guest", "tdx_guest", "tdx"))
    for node, driver, owner in nodes:
        path = dev / node
        if _exists(path):
            signals[owner].append(f"{path} exists")
            attestation.append(AttestationInterface(
                kind="device", path=str(path), provider=driver,
                detail="vendor ioctl interface of the guest driver"))

    # -- loaded guest drivers and the CCA platform device -------------------------------------
    for module, owner in _PROVIDER_PLATFORM.items():
        if _exists(sysfs / "module" / module):
            signals[owner].append(f"kernel module {module} is loaded")
    for name in ("arm-cca-dev", "arm-rsi-dev"):
        path = sysfs / "bus/platform/devices" / name
        if _exists(path):
            signals["cca"].append(f"{path} exists")

    # -- configfs-tsm -------------------------------------------------------------------------
    report = configfs / "tsm" / "report"
    provider: str | None = None
    floor: int | None = None
    fs = tsm_fs if tsm_fs is not None else LocalTsmFs()
    has_report = fs.exists(report) if tsm_fs is not None else _exists(report)
    if has_report:
        if tsm_fs is None:
            provider, floor = _tsm_from_entries(report, notes)
        if provider is None and probe:
            provider, floor = _tsm_probe(report, fs, notes)
        elif provider is None:
            notes.append(f"{report} exists, but the provider can only be read inside a report "
                         "entry; pass probe=True (as root) to create one briefly")
        detail = "provider-neutral report ABI (inblob/outblob)"
        attestation.insert(0, AttestationInterface(
            kind="configfs-tsm", path=str(report), provider=provider, detail=detail))
        if provider is not None:
            mapped = _PROVIDER_PLATFORM.get(provider)
            if mapped is not None:
                signals[mapped].append(f"configfs-tsm provider {provider}")
            else:
                notes.append(f"configfs-tsm provider {provider!r} is not one cocopart knows")
    elif _exists(configfs / "tsm"):
        notes.append(f"{configfs / 'tsm'} exists but has no report group")
    elif _exists(configfs):
        notes.append(f"no configfs-tsm at {report} (kernel without CONFIG_TSM_REPORTS, or no "
                     "confidential-VM guest driver)")
    else:
        notes.append(f"configfs is not mounted at {configfs}, so configfs-tsm is unavailable")

    # -- decide -------------------------------------------------------------------------------
    found: dict[Platform, list[str]] = {name: items for name, items in signals.items() if items}
    platform: Platform = "none"
    if found:
        ranked = sorted(found, key=lambda name: len(found[name]), reverse=True)
        platform = ranked[0]
        if len(found) > 1:
            notes.append("signals point at more than one platform ("
                         + "; ".join(f"{n}: {', '.join(found[n])}" for n in ranked)
                         + f"); chose {platform}, which has the most")
    else:
        notes.append("no SEV-SNP guest interface found (no sev/vmpl in sysfs, no "
                     f"{dev / 'sev-guest'}, no sev_guest driver)")
        notes.append(f"no TDX guest interface found (no tdx_guest cpuinfo flag, no "
                     f"{dev / 'tdx_guest'}, no tdx_guest driver)")
        notes.append("no Arm CCA realm interface found (no arm-cca-dev platform device, no "
                     "arm_cca_guest driver)")
        if hypervisor:
            notes.append("the hypervisor flag is set: this is a virtual machine, but not a "
                         "confidential one as far as the kernel shows")

    # -- privilege level ----------------------------------------------------------------------
    level: int | None = None
    level_name = "unknown"
    level_source: str | None = None
    level_reason = ""
    svsm_present: bool | None = None
    if platform == "sev-snp":
        if vmpl is not None:
            level, level_name, level_source = vmpl, f"VMPL{vmpl}", vmpl_source
            svsm_present = vmpl > 0
            notes.append(f"running at VMPL{vmpl}: "
                         + ("an SVSM runs at VMPL0 and serves this guest"
                            if vmpl else "no SVSM (the guest itself is the privileged layer)"))
        else:
            level_reason = "this kernel does not expose the VMPL (sysfs sev/vmpl appeared in 2024)"
            if floor is not None:
                notes.append(f"configfs-tsm privlevel_floor is {floor}; it equals the VMPL "
                             "unless the sev_guest vmpck_id parameter was changed")
    elif platform == "tdx":
        level_reason = _TDX_LEVEL_REASON
    elif platform == "cca":
        level_reason = _CCA_LEVEL_REASON
    else:
        level_name = "not applicable"
        level_reason = "not a confidential VM"

    info = PlatformInfo(
        platform=platform,
        privilege_level=level,
        privilege_level_name=level_name,
        privilege_level_source=level_source,
        privilege_level_reason=level_reason,
        svsm_present=svsm_present,
        cpu_flags=coco_flags,
        hypervisor=hypervisor,
        tsm_provider=provider,
        tsm_privlevel_floor=floor,
        attestation=attestation,
        signals={name: list(items) for name, items in found.items()},
        notes=notes,
    )
    return info
