"""What confidential-VM platform is this, at which privilege level, and how can it attest?

:func:`detect` reads only files the Linux kernel exposes (sysfs, configfs, ``/proc/cpuinfo``,
device nodes) and never raises for a missing or unreadable file: every gap becomes a note in
:class:`PlatformInfo`. On a machine that is not a confidential VM it answers
``platform="none"`` with the reasons.

What points at a platform comes from the installed platform plug-ins
(:class:`cocopart.attest.plugin.PlatformPlugin`): their cpuinfo flags and sysfs files
(:meth:`~cocopart.attest.plugin.PlatformPlugin.signals`), the device nodes and kernel modules
of their guest drivers, and their configfs-tsm provider name. The platform with the most
signals wins (a tie or a disagreement is noted), and its plug-in's privilege-level probe
reads the level. Facts detect itself uses:

* configfs-tsm lives at ``<configfs>/tsm/report``; its ``provider`` attribute exists only
  inside a report entry (LX report.c), so reading it needs an existing entry or creating one;
* ``/proc/cpuinfo`` ``flags`` carries ``hypervisor`` in any VM (LX cpufeatures.h).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cocopart.attest.configfs import LocalTsmFs, TsmFs
from cocopart.attest.plugin import (
    HostView,
    PlatformPlugin,
    PrivilegeLevel,
    platform_errors,
    platforms,
)

__all__ = ["AttestationInterface", "Platform", "PlatformInfo", "detect"]

#: A platform plug-in's name (e.g. ``"sev-snp"``), or ``"none"``.
Platform = str


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

    platform: Platform = Field(
        description="The platform plug-in's name ('sev-snp', 'tdx', ...) or 'none'."
    )
    privilege_level: int | None = Field(
        default=None,
        description="The guest's privilege level when the platform's probe can "
        "read it (e.g. the SEV-SNP VMPL); else None.",
    )
    privilege_level_name: str = Field(
        default="unknown", description="'VMPL2', 'unknown', or 'not applicable'."
    )
    privilege_level_source: str | None = Field(
        default=None, description="The file the level was read from."
    )
    privilege_level_reason: str = Field(
        default="", description="Why the level is unknown or not applicable."
    )
    privileged_layer_present: bool | None = Field(
        default=None,
        description="A privileged layer (an SVSM at VMPL0, a TDX L1) serves "
        "this guest; None if unknown.",
    )
    svsm_present: bool | None = Field(
        default=None, description="Alias of privileged_layer_present, kept for compatibility."
    )
    cpu_flags: list[str] = Field(
        default_factory=list, description="The confidential-computing flags of cpuinfo."
    )
    hypervisor: bool | None = Field(
        default=None, description="cpuinfo 'hypervisor' flag; None if cpuinfo was unreadable."
    )
    tsm_provider: str | None = None
    tsm_privlevel_floor: int | None = None
    attestation: list[AttestationInterface] = Field(default_factory=list)
    signals: dict[str, list[str]] = Field(
        default_factory=dict, description="Per platform, the observations that point to it."
    )
    notes: list[str] = Field(default_factory=list)


def _cpu_flags(cpuinfo: Path, view: HostView) -> set[str] | None:
    text = view.read_text(cpuinfo)
    if text is None:
        view.notes.append(f"{cpuinfo} is not readable; CPU flags unknown")
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def _tsm_from_entries(report: Path, view: HostView) -> tuple[str | None, int | None]:
    """Provider and floor from an entry someone already created (reading is harmless)."""
    try:
        names = sorted(e.name for e in os.scandir(report) if e.is_dir(follow_symlinks=False))
    except OSError as exc:
        view.notes.append(f"could not list {report}: {exc.strerror or exc}")
        return None, None
    for name in names:
        text = view.read_text(report / name / "provider")
        if text is None or not text.strip():
            continue
        floor_text = view.read_text(report / name / "privlevel_floor")
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
        notes.append(
            f"could not create a configfs-tsm entry to read the provider "
            f"({exc.strerror or exc}); creating entries needs root"
        )
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
            notes.append(
                f"could not remove probe entry {entry} ({exc.strerror or exc}); "
                "remove it with rmdir"
            )
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
    plugins = platforms()
    notes += platform_errors()
    signals: dict[str, list[str]] = {p.name: [] for p in plugins}
    attestation: list[AttestationInterface] = []

    # -- CPU flags and each platform's own probes ---------------------------------------------
    view = HostView(sysfs, configfs, dev, None, notes)
    flags = view.flags = _cpu_flags(cpuinfo, view)
    known_flags = {"hypervisor"} | {f for p in plugins for f in p.cpu_flags}
    coco_flags = sorted(f for f in (flags or set()) if f in known_flags)
    hypervisor = view.hypervisor
    for plugin in plugins:
        signals[plugin.name] += plugin.signals(view)

    # -- device nodes, loaded guest drivers ---------------------------------------------------
    for plugin in plugins:
        for node, driver in plugin.device_nodes:
            path = dev / node
            if view.exists(path):
                signals[plugin.name].append(f"{path} exists")
                attestation.append(
                    AttestationInterface(
                        kind="device",
                        path=str(path),
                        provider=driver,
                        detail="vendor ioctl interface of the guest driver",
                    )
                )
    for plugin in plugins:
        for module in plugin.kernel_modules:
            if view.exists(sysfs / "module" / module):
                signals[plugin.name].append(f"kernel module {module} is loaded")

    # -- configfs-tsm -------------------------------------------------------------------------
    report = configfs / "tsm" / "report"
    provider: str | None = None
    floor: int | None = None
    fs = tsm_fs if tsm_fs is not None else LocalTsmFs()
    has_report = fs.exists(report) if tsm_fs is not None else view.exists(report)
    if has_report:
        if tsm_fs is None:
            provider, floor = _tsm_from_entries(report, view)
        if provider is None and probe:
            provider, floor = _tsm_probe(report, fs, notes)
        elif provider is None:
            notes.append(
                f"{report} exists, but the provider can only be read inside a report "
                "entry; pass probe=True (as root) to create one briefly"
            )
        detail = "provider-neutral report ABI (inblob/outblob)"
        attestation.insert(
            0,
            AttestationInterface(
                kind="configfs-tsm", path=str(report), provider=provider, detail=detail
            ),
        )
        if provider is not None:
            owner = next((p for p in plugins if p.tsm is not None and p.tsm.name == provider), None)
            if owner is not None:
                signals[owner.name].append(f"configfs-tsm provider {provider}")
            else:
                notes.append(
                    f"configfs-tsm provider {provider!r} is not one an installed "
                    "platform plug-in declares"
                )
    elif view.exists(configfs / "tsm"):
        notes.append(f"{configfs / 'tsm'} exists but has no report group")
    elif view.exists(configfs):
        notes.append(
            f"no configfs-tsm at {report} (kernel without CONFIG_TSM_REPORTS, or no "
            "confidential-VM guest driver)"
        )
    else:
        notes.append(f"configfs is not mounted at {configfs}, so configfs-tsm is unavailable")

    # -- decide -------------------------------------------------------------------------------
    found = {name: items for name, items in signals.items() if items}
    chosen: PlatformPlugin | None = None
    if found:
        ranked = sorted(found, key=lambda name: len(found[name]), reverse=True)
        chosen = next(p for p in plugins if p.name == ranked[0])
        if len(found) > 1:
            notes.append(
                "signals point at more than one platform ("
                + "; ".join(f"{n}: {', '.join(found[n])}" for n in ranked)
                + f"); chose {chosen.name}, which has the most"
            )
    else:
        notes += [plugin.absent(view) for plugin in plugins]
        if not plugins:
            notes.append("no platform plug-in is installed, so no platform can be recognised")
        if hypervisor:
            notes.append(
                "the hypervisor flag is set: this is a virtual machine, but not a "
                "confidential one as far as the kernel shows"
            )

    # -- privilege level ----------------------------------------------------------------------
    if chosen is not None:
        level = chosen.privilege_level(view, floor)
        notes += level.notes
    else:
        level = PrivilegeLevel(name="not applicable", reason="not a confidential VM")

    info = PlatformInfo(
        platform=chosen.name if chosen is not None else "none",
        privilege_level=level.level,
        privilege_level_name=level.name,
        privilege_level_source=level.source,
        privilege_level_reason=level.reason,
        privileged_layer_present=level.privileged_layer_present,
        svsm_present=level.privileged_layer_present,
        cpu_flags=coco_flags,
        hypervisor=hypervisor,
        tsm_provider=provider,
        tsm_privlevel_floor=floor,
        attestation=attestation,
        signals={name: list(items) for name, items in found.items()},
        notes=list(dict.fromkeys(notes)),
    )
    return info
