"""Platform plug-ins: what cocopart knows about a confidential-computing platform's evidence
and guest interfaces, outside its machine model.

A platform plug-in is registered in the entry-point group ``cocopart.platforms`` under the
same name as its backend and evidence verifier (``cocopart.backends``, ``cocopart.evidence``)
and points at a :class:`PlatformPlugin` subclass (or instance). It declares:

* an **evidence recogniser** (:meth:`PlatformPlugin.recognise`): sizes and magic numbers
  -> vendor, format and the exact bytes to verify;
* its **configfs-tsm provider** (:class:`TsmProvider`): the kernel's provider name, the
  inblob sizes it accepts, its service providers, which attributes it shows, and the format
  of its ``outblob``; and the **certificate-table parser** for its ``auxblob``;
* the **guest probes** :func:`cocopart.attest.detect.detect` runs: cpuinfo flags, device
  nodes, kernel modules, and a **privilege-level probe** reading sysfs;
* **decoders** that turn evidence and certificates into fields without verifying anything
  (``cocopart show``), the collateral names its verifier accepts and the collateral bundles
  it can split.

The group is separate from ``cocopart.backends`` on purpose: recognising evidence and probing
a guest must not import a backend's machine model or any cryptography, so a plug-in module
imports only the standard library and this module at its top and loads the rest inside the
methods that need it. :mod:`cocopart.attest.configfs`, :mod:`cocopart.attest.detect`,
:mod:`cocopart.attest.inputs` and the CLI iterate :func:`platforms` and name no vendor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from cocopart.attest.encoding import Base64Bytes
from cocopart.errors import EvidenceError

if TYPE_CHECKING:
    from cocopart.attest.evidence import Evidence
    from cocopart.registry import PluginStatus

__all__ = [
    "PLATFORM_GROUP",
    "CertificateEntry",
    "Decoded",
    "HostView",
    "PlatformPlugin",
    "PrivilegeLevel",
    "Recognition",
    "Section",
    "TsmProvider",
    "platform_errors",
    "platform_for_provider",
    "platform_named",
    "platforms",
]

PLATFORM_GROUP = "cocopart.platforms"

#: Recognition strengths: a size alone, or a size plus header fields / a magic number.
BY_SIZE = 1
BY_MAGIC = 2


class Recognition(NamedTuple):
    """What a recogniser made of raw bytes."""

    vendor: str
    format: str
    #: The evidence bytes to verify (e.g. with trailing padding removed).
    raw: bytes
    strength: int = BY_MAGIC
    #: What was recognised, for people ("SNP attestation report v5, 2816 bytes of zero
    #: padding dropped").
    detail: str = ""


class TsmProvider(BaseModel):
    """A configfs-tsm provider as the kernel presents it (LX drivers/virt/coco/guest/report.c
    and the provider driver named ``name``)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(
        description="The provider attribute's text, the driver's "
        "KBUILD_MODNAME (e.g. the guest driver module name)."
    )
    evidence_format: str = Field(description="Evidence format of its outblob.")
    inblob_min: int = Field(default=1, description="Smallest report data it accepts.")
    inblob_max: int = Field(default=64, description="Largest report data it accepts.")
    service_providers: frozenset[str] = Field(
        default=frozenset(), description="service_provider values it routes (empty: none)."
    )
    attributes: frozenset[str] | None = Field(
        default=None, description="Attributes an entry shows at privilege level 0; None: all."
    )
    service_attributes: frozenset[str] = Field(
        default=frozenset(), description="Attributes it shows in addition above level 0."
    )
    floor_is_level: bool = Field(
        default=False, description="privlevel_floor is the guest's own privilege level."
    )
    privlevel_with_service: bool = Field(
        default=True,
        description="A privlevel makes sense together with a service "
        "provider (False: the service reports at its own level, so the client refuses it).",
    )
    service_needs_level: bool = Field(
        default=False, description="Service-provider requests fail at privilege level 0."
    )
    below_level_refused: bool = Field(
        default=False, description="A report for a level below the guest's own fails (EIO)."
    )
    has_cert_table: bool = Field(
        default=False, description="auxblob carries the plug-in's certificate table."
    )


class CertificateEntry(BaseModel):
    """One certificate of a vendor certificate table (e.g. a configfs-tsm auxblob)."""

    id: str = Field(description="The table's key for it, e.g. a GUID.")
    name: str | None = Field(default=None, description="What the vendor calls it.")
    data: Base64Bytes


class Section(BaseModel):
    """A titled group of decoded fields (values are JSON-ready: text, numbers, lists)."""

    title: str
    fields: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Decoded(BaseModel):
    """Evidence or a certificate decoded for reading, not verified."""

    vendor: str
    format: str
    title: str
    sections: list[Section] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class PrivilegeLevel(BaseModel):
    """What a platform's privilege-level probe found."""

    level: int | None = None
    name: str = "unknown"
    source: str | None = Field(default=None, description="The file the level was read from.")
    reason: str = Field(default="", description="Why the level is unknown.")
    privileged_layer_present: bool | None = Field(
        default=None, description="A privileged layer serves this guest (None: unknown)."
    )
    notes: list[str] = Field(default_factory=list)


class HostView:
    """The Linux files :func:`~cocopart.attest.detect.detect` reads, for a plug-in's probes.

    Reading never raises: an absent file is ``None``, an unreadable one ``None`` plus a note.
    """

    def __init__(
        self, sysfs: Path, configfs: Path, dev: Path, flags: set[str] | None, notes: list[str]
    ) -> None:
        self.sysfs = sysfs
        self.configfs = configfs
        self.dev = dev
        #: cpuinfo flags; None when cpuinfo was unreadable.
        self.flags = flags
        self.notes = notes

    @property
    def hypervisor(self) -> bool | None:
        return None if self.flags is None else "hypervisor" in self.flags

    def exists(self, path: Path) -> bool:
        try:
            return os.path.lexists(path)
        except OSError:
            return False

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.notes.append(f"could not read {path}: {exc.strerror or exc}")
            return None

    def read_int(self, path: Path, low: int, high: int, what: str) -> int | None:
        """A decimal number in ``low..high`` from ``path``; None (with a note) otherwise."""
        text = self.read_text(path)
        if text is None:
            return None
        try:
            value = int(text.strip(), 10)
        except ValueError:
            self.notes.append(f"{path} holds {text.strip()!r}, not a {what} number")
            return None
        if not low <= value <= high:
            self.notes.append(f"{path} holds {what} {value}, outside {low}..{high}")
            return None
        return value


class PlatformPlugin:
    """Base class of ``cocopart.platforms`` plug-ins; every hook has a neutral default.

    ``name`` is the plug-in's entry-point name and the evidence vendor (``Evidence.vendor``)
    its verifier handles.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    #: The configfs-tsm provider that produces this platform's evidence, if any.
    tsm: ClassVar[TsmProvider | None] = None
    #: Evidence formats the verifier takes (``Evidence.format``).
    formats: ClassVar[tuple[str, ...]] = ()
    #: Collateral names its verifier reads (``Evidence.collateral`` keys).
    collateral_names: ClassVar[tuple[str, ...]] = ()
    #: cpuinfo flags that concern this platform (shown by detect).
    cpu_flags: ClassVar[tuple[str, ...]] = ()
    #: Device nodes under /dev of its guest driver: (node, driver).
    device_nodes: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Kernel modules (/sys/module/NAME) of its guest driver.
    kernel_modules: ClassVar[tuple[str, ...]] = ()
    #: Azure HCL report ``report_type`` of the hardware report it wraps (None: none).
    hcl_report_type: ClassVar[int | None] = None
    #: Module with ``decode(evidence)`` and ``decode_certificate(der)``, imported only when
    #: something is decoded (it may load parsers and cryptography).
    decoder_module: ClassVar[str | None] = None

    # -- evidence -------------------------------------------------------------------------

    def recognise(self, raw: bytes) -> Recognition | None:
        """This platform's evidence in ``raw``, or None."""
        return None

    def certificate_table(self, blob: bytes) -> list[CertificateEntry] | None:
        """The entries of this platform's certificate table in ``blob`` (table order); None
        when ``blob`` is not one; :class:`EvidenceError` when it is one but malformed."""
        return None

    def leaf_first(self, entries: list[CertificateEntry]) -> list[bytes]:
        """Certificates of a table, leaf first (as :class:`Evidence` wants them)."""
        return [e.data for e in entries]

    def collateral_bundle(self, data: bytes) -> dict[str, bytes] | None:
        """Split a collateral file holding several named items (None: not one)."""
        return None

    def _decoder(self) -> Any:
        import importlib

        return importlib.import_module(self.decoder_module) if self.decoder_module else None

    def decode(self, evidence: Evidence) -> Decoded:
        """Every field of ``evidence``, without verifying it (EvidenceError if it does not
        parse). Default: :attr:`decoder_module`'s ``decode``."""
        module = self._decoder()
        if module is None:
            raise EvidenceError(f"the {self.name} plug-in cannot decode {evidence.format!r}")
        decoded: Decoded = module.decode(evidence)
        return decoded

    def decode_certificate(self, der: bytes) -> Section | None:
        """This platform's extensions of an X.509 certificate (None: none of its own).
        Default: :attr:`decoder_module`'s ``decode_certificate``."""
        module = self._decoder()
        if module is None:
            return None
        section: Section | None = module.decode_certificate(der)
        return section

    def evidence_from_tsm(self, outblob: bytes, auxblob: bytes | None) -> Evidence:
        """Evidence from a configfs-tsm report of this platform's provider."""
        from cocopart.attest.evidence import Evidence

        fmt = self.tsm.evidence_format if self.tsm is not None else "raw"
        certificates: list[bytes] = []
        collateral: dict[str, bytes] = {}
        entries = self.certificate_table(auxblob) if auxblob else None
        if entries is not None:
            certificates = self.leaf_first(entries)
        elif auxblob:
            collateral["auxblob"] = auxblob
        return Evidence(
            vendor=self.name,
            format=fmt,
            raw=outblob,
            certificates=certificates,
            collateral=collateral,
        )

    # -- the guest ----------------------------------------------------------------------

    def signals(self, view: HostView) -> list[str]:
        """Observations that say a guest runs on this platform (device nodes, modules and
        the configfs-tsm provider are added by detect itself); notes go to ``view.notes``."""
        flags = view.flags or set()
        return [f"cpuinfo flag {f}" for f in self.cpu_flags if f in flags]

    def privilege_level(self, view: HostView, tsm_floor: int | None) -> PrivilegeLevel:
        """The guest's privilege level on this platform (default: not knowable)."""
        return PrivilegeLevel(
            reason=f"cocopart knows no Linux interface that tells a "
            f"{self.title} guest its privilege level"
        )

    def absent(self, view: HostView) -> str:
        """Why detect found nothing of this platform."""
        return f"no {self.title} guest interface found"


# --------------------------------------------------------------------------------------------
# The installed plug-ins

_CACHE: dict[tuple[str, ...], tuple[list[PlatformPlugin], list[PluginStatus]]] = {}


def _load() -> tuple[list[PlatformPlugin], list[PluginStatus]]:
    key = tuple(sys.path)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    from cocopart.registry import load_group

    ok: list[PlatformPlugin] = []
    statuses = load_group(PLATFORM_GROUP)
    for status in statuses:
        obj = status.plugin
        if status.ok and isinstance(obj, type) and issubclass(obj, PlatformPlugin):
            obj = obj()
        if status.ok and isinstance(obj, PlatformPlugin):
            ok.append(obj)
        elif status.ok:
            status.error = TypeError(f"{obj!r} is not a cocopart PlatformPlugin")
    _CACHE.clear()
    _CACHE[key] = (ok, statuses)
    return ok, statuses


def platforms() -> list[PlatformPlugin]:
    """Every installed platform plug-in that loads, by name."""
    return list(_load()[0])


def platform_errors() -> list[str]:
    """One sentence per installed platform plug-in that failed to load."""
    return [
        f"platform plug-in '{s.name}' failed to load: {type(s.error).__name__}: {s.error}"
        for s in _load()[1]
        if s.error is not None
    ]


def platform_named(name: str) -> PlatformPlugin | None:
    """The plug-in for evidence vendor ``name``."""
    return next((p for p in platforms() if p.name == name), None)


def platform_for_provider(provider: str) -> PlatformPlugin | None:
    """The plug-in whose configfs-tsm provider is ``provider``."""
    return next((p for p in platforms() if p.tsm is not None and p.tsm.name == provider), None)


def forget_platforms() -> None:
    """Drop the cached plug-ins (after installing one into a running process)."""
    _CACHE.clear()
