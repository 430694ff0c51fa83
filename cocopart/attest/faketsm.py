"""A fake configfs-tsm report tree, for tests and for people without CVM hardware.

:class:`FakeTsm` implements :class:`~cocopart.attest.configfs.TsmFs` and behaves, as far as a
file-based client can see, like the kernel's ``/sys/kernel/config/tsm/report``
(LX ``drivers/virt/coco/guest/report.c``; ABI doc ``configfs-tsm-report``; sev-snp.md §7):

* ``mkdir`` creates an entry whose attributes appear at once; ``rmdir`` removes it.
* ``generation`` starts at 0 and increments on every successful write to ``inblob`` or any
  option (``privlevel``, ``service_provider``, ``service_guid``,
  ``service_manifest_version``).
* ``privlevel`` must lie in ``privlevel_floor..3``; anything else is EINVAL and does not
  advance the generation.
* Attributes a provider hides are absent (ENOENT): ``tdx_guest`` shows only ``generation``,
  ``provider``, ``inblob``, ``outblob``; ``sev_guest`` shows ``service_*`` and
  ``manifestblob`` only above VMPL0; ``arm_cca_guest`` shows everything.
* ``outblob``/``auxblob``/``manifestblob`` are produced lazily on read by a provider callback
  given at construction, cached until the generation moves, and refused with EINVAL when no
  inblob was written or the provider rejects the request.
* ``before_read`` lets a test act as a concurrent writer between a client's writes and reads.

:meth:`FakeTsm.materialise` writes a static snapshot into a real directory (blobs
pre-rendered), so the real-filesystem implementation can be exercised too.

Like the kernel, the fake does no cryptography: its default reports are labelled byte strings,
not evidence any verifier will accept. Pass ``report=`` to produce something else, e.g. a
simulated backend's signed report.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from cocopart.attest.configfs import (
    ATTRIBUTES,
    BIN_ATTRIBUTES,
    DEFAULT_ROOT,
    INBLOB_MAX,
    OUTBLOB_MAX,
    PRIVLEVEL_MAX,
    TsmReportClient,
)

__all__ = [
    "FakeBlobs",
    "FakeRequest",
    "FakeTsm",
    "ProviderRefused",
    "ReadHook",
    "ReportFn",
    "default_report",
]

_NULL_GUID = UUID(int=0)
_GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_U32_MAX = 0xFFFF_FFFF
_ULONG_MOD = 1 << 64  # generation is an unsigned long (LX report.c tsm_report_state)

# Which attributes are read-only / write-only (LX report.c CONFIGFS_ATTR_RO / _WO and
# CONFIGFS_BIN_ATTR_RO / _WO).
_READ_ONLY = frozenset({"generation", "provider", "privlevel_floor", "outblob", "auxblob",
                        "manifestblob"})
_WRITE_ONLY = frozenset({"inblob", "privlevel", "service_provider", "service_guid",
                         "service_manifest_version"})
_BLOBS = ("outblob", "auxblob", "manifestblob")
_ALL = frozenset(ATTRIBUTES) | frozenset(BIN_ATTRIBUTES)


class FakeRequest(BaseModel):
    """The report descriptor the provider callback sees (LX ``struct tsm_report_desc``)."""

    provider: str
    inblob: bytes
    privlevel: int = 0
    service_provider: str | None = None
    service_guid: UUID = _NULL_GUID
    service_manifest_version: int = 0


class FakeBlobs(BaseModel):
    """What a provider callback may return: the report and its side blobs."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    outblob: bytes
    auxblob: bytes = b""
    manifestblob: bytes = Field(default=b"", description="Service manifest (SVSM path).")


class ProviderRefused(Exception):
    """Raised by a provider callback to fail report generation with an errno (default EIO)."""

    def __init__(self, message: str, errno: int = _errno.EIO) -> None:
        self.errno = errno
        super().__init__(message)


#: A provider callback: turns a request into a report (bytes are taken as ``outblob``).
ReportFn = Callable[[FakeRequest], "bytes | FakeBlobs"]
#: Called before every read of an entry attribute with the fake and the path being read.
ReadHook = Callable[["FakeTsm", Path], None]


def default_report(request: FakeRequest) -> FakeBlobs:
    """A labelled, deterministic stand-in report: header line plus the inblob.

    With a service provider it also returns a stand-in manifest, so the SVSM path has
    something to carry.
    """
    service = request.service_provider or "-"
    header = (
        f"cocopart-faketsm/1 provider={request.provider} privlevel={request.privlevel} "
        f"service={service} guid={request.service_guid} "
        f"manifest_version={request.service_manifest_version}\n"
    ).encode()
    manifest = b""
    if request.service_provider is not None:
        manifest = f"cocopart-faketsm manifest guid={request.service_guid}\n".encode()
    return FakeBlobs(outblob=header + request.inblob, manifestblob=manifest)


@dataclass
class _Entry:
    """Kernel-side state of one report entry (LX report.c struct tsm_report_state)."""

    write_generation: int = 0
    read_generation: int = 0
    inblob: bytes = b""
    privlevel: int = 0
    service_provider: str | None = None
    service_guid: UUID = _NULL_GUID
    service_manifest_version: int = 0
    blobs: FakeBlobs | None = None
    extra: dict[str, bytes] = field(default_factory=dict)


def _os_error(code: int, message: str, path: Path) -> OSError:
    return OSError(code, f"{message} [{os.strerror(code)}]", str(path))


def _kstrtouint(text: str) -> int | None:
    """Parse like the kernel's kstrtouint(buf, 0): optional '+', 0x hex / leading-0 octal /
    decimal, one trailing newline allowed, 32-bit range. None if invalid."""
    text = text.removesuffix("\n")
    text = text.removeprefix("+")
    if not text:
        return None
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif text.startswith("0") and len(text) > 1:
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    allowed = "0123456789abcdefABCDEF"[: base if base <= 10 else base + 6]
    if not digits or any(ch not in allowed for ch in digits):
        return None
    value = int(digits, base)
    return value if value <= _U32_MAX else None


class FakeTsm:
    """An in-memory configfs-tsm report group that behaves like the kernel's.

    ``provider`` is the provider name (``sev_guest``, ``tdx_guest``, ``arm_cca_guest`` or any
    other string, which then shows every attribute). ``vmpl`` is the guest's VMPL for
    ``sev_guest``: above 0 it shows ``service_*`` and ``manifestblob`` and its
    ``privlevel_floor`` defaults to the VMPL (vmpck_id defaults to snp_vmpl; sev-snp.md §6.1).
    ``privlevel_floor`` and ``visible`` override the profile. ``report`` produces the blobs
    (default :func:`default_report`). ``root`` is the directory the fake pretends to be.
    ``before_read`` is called before each attribute read (a concurrent-writer hook).
    ``provider_registered=False`` emulates a kernel with configfs-tsm but no provider
    (ENXIO); ``unprivileged=True`` a caller that may not mkdir/rmdir (EACCES).
    """

    def __init__(
        self,
        provider: str = "sev_guest",
        *,
        vmpl: int = 0,
        privlevel_floor: int | None = None,
        visible: Iterable[str] | None = None,
        report: ReportFn | None = None,
        root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None,
        provider_registered: bool = True,
        unprivileged: bool = False,
    ) -> None:
        if not 0 <= vmpl <= PRIVLEVEL_MAX:
            raise ValueError(f"vmpl must be 0..{PRIVLEVEL_MAX}, got {vmpl}")
        self.provider = provider
        self.vmpl = vmpl
        self.root = Path(root)
        self.report: ReportFn = report if report is not None else default_report
        self.before_read = before_read
        self.provider_registered = provider_registered
        self.unprivileged = unprivileged
        self.privlevel_floor = (
            privlevel_floor if privlevel_floor is not None
            else (vmpl if provider == "sev_guest" else 0)
        )
        self.visible: frozenset[str] = (
            frozenset(visible) if visible is not None else self._profile_visible()
        )
        unknown = self.visible - _ALL
        if unknown:
            raise ValueError(f"unknown configfs-tsm attributes: {', '.join(sorted(unknown))}")
        self.entries: dict[str, _Entry] = {}
        #: Every operation in order, as (operation, path relative to root).
        self.log: list[tuple[str, str]] = []
        self.reports_generated = 0
        self._in_hook = False

    # -- constructors for the three upstream providers ------------------------------------

    @classmethod
    def sev_guest(
        cls, *, vmpl: int = 0, report: ReportFn | None = None, root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None, unprivileged: bool = False,
    ) -> FakeTsm:
        """An SEV-SNP guest at ``vmpl`` (0 = no SVSM; 1..3 = under an SVSM)."""
        return cls("sev_guest", vmpl=vmpl, report=report, root=root, before_read=before_read,
                   unprivileged=unprivileged)

    @classmethod
    def tdx_guest(
        cls, *, report: ReportFn | None = None, root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None, unprivileged: bool = False,
    ) -> FakeTsm:
        """A TDX guest (TD quote provider)."""
        return cls("tdx_guest", report=report, root=root, before_read=before_read,
                   unprivileged=unprivileged)

    @classmethod
    def arm_cca_guest(
        cls, *, report: ReportFn | None = None, root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None, unprivileged: bool = False,
    ) -> FakeTsm:
        """An Arm CCA realm (CCA token provider)."""
        return cls("arm_cca_guest", report=report, root=root, before_read=before_read,
                   unprivileged=unprivileged)

    def _profile_visible(self) -> frozenset[str]:
        if self.provider == "sev_guest":
            # LX sev-guest.c sev_report_attr_visible / sev_report_bin_attr_visible.
            base = {"generation", "provider", "privlevel", "privlevel_floor", "inblob",
                    "outblob", "auxblob"}
            if self.vmpl:
                base |= {"service_provider", "service_guid", "service_manifest_version",
                         "manifestblob"}
            return frozenset(base)
        if self.provider == "tdx_guest":
            # LX tdx-guest.c tdx_report_attr_visible / tdx_report_bin_attr_visible.
            return frozenset({"generation", "provider", "inblob", "outblob"})
        # arm_cca_guest registers no visibility hooks, so everything shows (LX report.c
        # tsm_report_is_visible returns true without report_attr_visible).
        return _ALL

    # -- helpers for tests ------------------------------------------------------------------

    def client(
        self, *, entry: str | None = None, max_attempts: int = 3, check_write_count: bool = True,
    ) -> TsmReportClient:
        """A :class:`TsmReportClient` wired to this fake."""
        return TsmReportClient(self.root, fs=self, entry=entry, max_attempts=max_attempts,
                               check_write_count=check_write_count)

    def create_entry(self, name: str) -> Path:
        """Create entry ``name`` as an administrator would, even when ``unprivileged``."""
        if name in self.entries:
            raise _os_error(_errno.EEXIST, "entry exists", self.root / name)
        self.entries[name] = _Entry()
        return self.root / name

    def generation(self, name: str) -> int:
        """Current write generation of entry ``name``."""
        return self.entries[name].write_generation

    # -- TsmFs ------------------------------------------------------------------------------

    def _split(self, path: Path) -> tuple[str, str] | tuple[str] | tuple[()] | None:
        """Path relative to root as (), (entry,), (entry, attr); None if outside the tree."""
        path = Path(path)
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        parts = rel.parts
        if len(parts) == 0:
            return ()
        if len(parts) == 1:
            return (parts[0],)
        if len(parts) == 2:
            return (parts[0], parts[1])
        return None

    def _rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def exists(self, path: Path) -> bool:
        """True for the root, its ancestors, entries and their visible attributes."""
        path = Path(path)
        if path == self.root or path in self.root.parents:
            return True
        split = self._split(path)
        if split is None or len(split) == 0:
            return False
        if split[0] not in self.entries:
            return False
        return len(split) == 1 or split[1] in self.visible

    def mkdir(self, path: Path) -> None:
        """Create an entry (LX report.c tsm_report_make_item: ENXIO without a provider)."""
        path = Path(path)
        self.log.append(("mkdir", self._rel(path)))
        split = self._split(path)
        if split is None or len(split) != 1:
            if self.exists(path):
                raise _os_error(_errno.EEXIST, "exists", path)
            raise _os_error(_errno.EPERM if split is not None else _errno.ENOENT,
                            "report entries can only be created directly under the root", path)
        if self.unprivileged:
            raise _os_error(_errno.EACCES, "mkdir needs root", path)
        name = split[0]
        if name in self.entries:
            raise _os_error(_errno.EEXIST, "entry exists", path)
        if not self.provider_registered:
            raise _os_error(_errno.ENXIO, "no TSM provider registered", path)
        self.entries[name] = _Entry()

    def rmdir(self, path: Path) -> None:
        """Remove an entry."""
        path = Path(path)
        self.log.append(("rmdir", self._rel(path)))
        split = self._split(path)
        if split is None or len(split) != 1 or split[0] not in self.entries:
            raise _os_error(_errno.ENOENT, "no such report entry", path)
        if self.unprivileged:
            raise _os_error(_errno.EACCES, "rmdir needs root", path)
        del self.entries[split[0]]

    def _attr(self, path: Path) -> tuple[_Entry, str]:
        split = self._split(Path(path))
        if split is None or len(split) != 2 or split[0] not in self.entries:
            raise _os_error(_errno.ENOENT, "no such report entry", path)
        name = split[1]
        if name not in self.visible:
            raise _os_error(_errno.ENOENT, f"provider {self.provider} has no {name}", path)
        return self.entries[split[0]], name

    def _advance(self, entry: _Entry, path: Path) -> None:
        # LX report.c try_advance_write_generation: refuse once a full wrap without a read
        # would make the generations equal again.
        if entry.write_generation == (entry.read_generation - 1) % _ULONG_MOD:
            raise _os_error(_errno.EBUSY, "too many writes without a read", path)
        entry.write_generation = (entry.write_generation + 1) % _ULONG_MOD

    def write(self, path: Path, data: bytes) -> None:
        """Store an attribute the way LX report.c's store handlers do."""
        path = Path(path)
        self.log.append(("write", self._rel(path)))
        entry, name = self._attr(path)
        if name in _READ_ONLY:
            raise _os_error(_errno.EACCES, f"{name} is read-only", path)
        if not self.provider_registered:
            raise _os_error(_errno.ENXIO, "no TSM provider registered", path)
        data = bytes(data)
        if name == "inblob":
            if len(data) > INBLOB_MAX:  # configfs bin attribute limit TSM_REPORT_INBLOB_MAX
                raise _os_error(_errno.EFBIG, f"inblob holds at most {INBLOB_MAX} bytes", path)
            self._advance(entry, path)
            entry.inblob = data
            return
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise _os_error(_errno.EINVAL, "not text", path) from None
        if name == "privlevel":
            value = _kstrtouint(text)
            if value is None:
                raise _os_error(_errno.EINVAL, "not an unsigned number", path)
            if self.privlevel_floor > value or value > PRIVLEVEL_MAX:
                raise _os_error(
                    _errno.EINVAL,
                    f"privlevel must be {self.privlevel_floor}..{PRIVLEVEL_MAX}", path)
            self._advance(entry, path)
            entry.privlevel = value
        elif name == "service_provider":
            self._advance(entry, path)
            entry.service_provider = text.removesuffix("\n")
        elif name == "service_guid":
            # The generation advances before the GUID is parsed, and a bad GUID leaves the
            # null GUID behind (LX report.c tsm_report_service_guid_store).
            self._advance(entry, path)
            entry.service_guid = _NULL_GUID
            if not _GUID_RE.match(text):
                raise _os_error(_errno.EINVAL, "not a GUID", path)
            entry.service_guid = UUID(text[:36])
        elif name == "service_manifest_version":
            value = _kstrtouint(text)
            if value is None:
                raise _os_error(_errno.EINVAL, "not an unsigned number", path)
            self._advance(entry, path)
            entry.service_manifest_version = value

    def read(self, path: Path) -> bytes:
        """Show an attribute; blobs are generated on demand (LX report.c tsm_report_read)."""
        path = Path(path)
        if self.before_read is not None and not self._in_hook:
            self._in_hook = True
            try:
                self.before_read(self, path)
            finally:
                self._in_hook = False
        self.log.append(("read", self._rel(path)))
        entry, name = self._attr(path)
        if name in _WRITE_ONLY:
            raise _os_error(_errno.EACCES, f"{name} is write-only", path)
        if name == "generation":
            return f"{entry.write_generation}\n".encode()
        if not self.provider_registered:
            raise _os_error(_errno.ENXIO, "no TSM provider registered", path)
        if name == "provider":
            return f"{self.provider}\n".encode()
        if name == "privlevel_floor":
            return f"{self.privlevel_floor}\n".encode()
        return self._read_blob(entry, name, path)

    def _read_blob(self, entry: _Entry, name: str, path: Path) -> bytes:
        if not entry.inblob:
            raise _os_error(_errno.EINVAL, "no inblob written", path)
        if entry.blobs is None or entry.read_generation != entry.write_generation:
            entry.blobs = None
            request = FakeRequest(
                provider=self.provider, inblob=entry.inblob, privlevel=entry.privlevel,
                service_provider=entry.service_provider, service_guid=entry.service_guid,
                service_manifest_version=entry.service_manifest_version,
            )
            self._provider_checks(request, path)
            try:
                produced = self.report(request)
            except ProviderRefused as exc:
                raise _os_error(exc.errno, str(exc), path) from exc
            entry.blobs = produced if isinstance(produced, FakeBlobs) else FakeBlobs(
                outblob=bytes(produced))
            entry.read_generation = entry.write_generation
            self.reports_generated += 1
        blob: bytes = getattr(entry.blobs, name)
        if len(blob) > OUTBLOB_MAX:  # TSM_REPORT_OUTBLOB_MAX; ABI doc "EFBIG"
            raise _os_error(_errno.EFBIG, f"{name} exceeds {OUTBLOB_MAX} bytes", path)
        return blob

    def _provider_checks(self, request: FakeRequest, path: Path) -> None:
        """The refusals the upstream providers' report_new make before any firmware call."""
        size = len(request.inblob)
        if self.provider in ("sev_guest", "tdx_guest") and size != 64:
            # LX sev-guest.c sev_report_new; tdx-guest.c tdx_report_new.
            raise _os_error(_errno.EINVAL, f"{self.provider} needs a 64-byte inblob", path)
        if self.provider == "arm_cca_guest" and not 32 <= size <= 64:
            # LX arm-cca-guest.c arm_cca_report_new.
            raise _os_error(_errno.EINVAL, "arm_cca_guest needs a 32..64-byte inblob", path)
        if self.provider != "sev_guest":
            return
        if request.service_provider is not None:
            if request.service_provider != "svsm":  # LX sev-guest.c sev_report_new
                raise _os_error(_errno.EINVAL, "only service provider 'svsm' exists", path)
            if self.vmpl == 0:  # the SVSM path refuses when snp_vmpl == 0 (sev-snp.md §3.1)
                raise _os_error(_errno.EINVAL, "no SVSM at VMPL0", path)
        elif request.privlevel < self.vmpl:
            # The report's VMPL must be >= the requester's (sev-snp.md §6.2; the firmware rule
            # itself is listed as unconfirmed in §9): the firmware call fails.
            raise _os_error(_errno.EIO, "firmware refused a VMPL below the guest's", path)

    # -- static snapshot --------------------------------------------------------------------

    def materialise(
        self,
        dest: Path,
        report_data: bytes,
        *,
        privlevel: int | None = None,
        service_provider: str | None = None,
        service_guid: UUID | None = None,
        service_manifest_version: int | None = None,
        entry: str = "snapshot",
    ) -> Path:
        """Write a static snapshot of one report entry under ``dest`` and return its path.

        ``dest`` plays the report group directory (pass it as the client's ``root``).
        The request is run through this fake, so the options are validated as the kernel
        would; then every visible attribute becomes a file: read-only ones hold their final
        text or pre-rendered blob, write-only ones are empty. The snapshot cannot react to
        writes, so a client must reuse the entry (``entry=``) and skip the write-count check
        (``check_write_count=False``) against it.
        """
        dest = Path(dest)
        scratch = self.root / f".materialise-{entry}"
        self.mkdir(scratch)
        hooked, self._in_hook = self._in_hook, True  # a test's read hook must not interfere
        try:
            options: list[tuple[str, str]] = []
            if privlevel is not None:
                options.append(("privlevel", str(privlevel)))
            if service_provider is not None:
                options.append(("service_provider", service_provider))
            if service_guid is not None:
                options.append(("service_guid", str(service_guid)))
            if service_manifest_version is not None:
                options.append(("service_manifest_version", str(service_manifest_version)))
            for name, value in options:
                self.write(scratch / name, value.encode())
            self.write(scratch / "inblob", bytes(report_data))
            contents: dict[str, bytes] = {}
            for name in sorted(self.visible):
                if name in _WRITE_ONLY:
                    contents[name] = b""
                else:
                    contents[name] = self.read(scratch / name)
        finally:
            self._in_hook = hooked
            self.rmdir(scratch)
        target = dest / entry
        target.mkdir(parents=True, exist_ok=False)
        for name, blob in contents.items():
            (target / name).write_bytes(blob)
        return target
