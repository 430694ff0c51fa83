"""A fake configfs-tsm report tree, for tests and for people without CVM hardware.

:class:`FakeTsm` implements :class:`~cocopart.attest.configfs.TsmFs` and behaves, as far as a
file-based client can see, like the kernel's ``/sys/kernel/config/tsm/report``
(LX ``drivers/virt/coco/guest/report.c``; ABI doc ``configfs-tsm-report``; sev-snp.md §7):

* ``mkdir`` creates an entry whose attributes appear at once; ``rmdir`` removes it.
* ``generation`` starts at 0 and increments on every successful write to ``inblob`` or any
  option (``privlevel``, ``service_provider``, ``service_guid``,
  ``service_manifest_version``).
* At a generation wrap — so many writes without a read that one more would make the write
  generation equal the read generation again (LX report.c try_advance_write_generation) —
  the kernel refuses the write with EBUSY. A text attribute (an option) returns that EBUSY
  from ``write(2)``; ``inblob`` is a binary attribute, which configfs stores only when the
  file is closed and whose store result it ignores (LX fs/configfs/file.c
  configfs_release_bin_file: "result of ->release() is ignored"), so there the write is
  dropped silently: the old inblob and generation stay. A client still notices, because
  ``generation`` did not advance by the number of writes it made.
* ``privlevel`` must lie in ``privlevel_floor..3``; anything else is EINVAL and does not
  advance the generation. Numbers are parsed like the kernel's ``kstrtouint``: not a number
  is EINVAL, a number above 32 bits is ERANGE.
* Attributes a provider hides are absent (ENOENT). Which ones, the floor, the inblob sizes
  and the service providers a provider accepts come from the installed platform plug-in
  that declares the provider (:class:`cocopart.attest.plugin.TsmProvider`); a provider no
  plug-in declares shows every attribute and accepts any request.
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

from pydantic import BaseModel, Field

from cocopart.attest.configfs import (
    ATTRIBUTES,
    BIN_ATTRIBUTES,
    DEFAULT_ROOT,
    INBLOB_MAX,
    OUTBLOB_MAX,
    PRIVLEVEL_MAX,
    TsmReportClient,
)
from cocopart.attest.encoding import Base64Bytes
from cocopart.attest.plugin import TsmProvider, platform_for_provider

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
_READ_ONLY = frozenset(
    {"generation", "provider", "privlevel_floor", "outblob", "auxblob", "manifestblob"}
)
_WRITE_ONLY = frozenset(
    {"inblob", "privlevel", "service_provider", "service_guid", "service_manifest_version"}
)
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

    outblob: Base64Bytes
    auxblob: Base64Bytes = b""
    manifestblob: Base64Bytes = Field(default=b"", description="Service manifest (SVSM path).")


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


def _kstrtouint(text: str) -> int:
    """Parse like the kernel's kstrtouint(buf, 0): optional '+', 0x hex / leading-0 octal /
    decimal, one trailing newline allowed. Returns the value, or minus the errno the kernel
    returns: EINVAL for anything that is not a number, ERANGE for a number that does not fit
    32 bits (LX lib/kstrtox.c kstrtouint -> kstrtoull: -ERANGE on overflow)."""
    text = text.removesuffix("\n")
    text = text.removeprefix("+")
    if not text:
        return -_errno.EINVAL
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif text.startswith("0") and len(text) > 1:
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    allowed = "0123456789abcdefABCDEF"[: base if base <= 10 else base + 6]
    if not digits or any(ch not in allowed for ch in digits):
        return -_errno.EINVAL
    value = int(digits, base)
    return value if value <= _U32_MAX else -_errno.ERANGE


class FakeTsm:
    """An in-memory configfs-tsm report group that behaves like the kernel's.

    ``provider`` is the provider name; the installed platform plug-in that declares it
    (:func:`cocopart.attest.plugin.platform_for_provider`) says which attributes an entry
    shows, what ``privlevel_floor`` is and which requests the provider refuses. ``level`` is
    the guest's privilege level (``vmpl`` is accepted as an alias): a provider whose floor is
    the guest's level reports it as ``privlevel_floor``, one that shows service attributes
    only above level 0 hides them at 0. ``privlevel_floor`` and ``visible`` override the
    profile. ``report`` produces the blobs (default :func:`default_report`). ``root`` is the
    directory the fake pretends to be. ``before_read`` is called before each attribute read
    (a concurrent-writer hook). ``provider_registered=False`` emulates a kernel with
    configfs-tsm but no provider (ENXIO); ``unprivileged=True`` a caller that may not
    mkdir/rmdir (EACCES).
    """

    def __init__(
        self,
        provider: str,
        *,
        level: int = 0,
        vmpl: int | None = None,
        privlevel_floor: int | None = None,
        visible: Iterable[str] | None = None,
        report: ReportFn | None = None,
        root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None,
        provider_registered: bool = True,
        unprivileged: bool = False,
    ) -> None:
        if vmpl is not None:
            level = vmpl
        if not 0 <= level <= PRIVLEVEL_MAX:
            raise ValueError(f"level must be 0..{PRIVLEVEL_MAX}, got {level}")
        self.provider = provider
        self.level = level
        plugin = platform_for_provider(provider)
        #: The provider's rules, from its platform plug-in (None: no plug-in declares it).
        self.rules: TsmProvider | None = plugin.tsm if plugin is not None else None
        self.root = Path(root)
        self.report: ReportFn = report if report is not None else default_report
        self.before_read = before_read
        self.provider_registered = provider_registered
        self.unprivileged = unprivileged
        self.privlevel_floor = (
            privlevel_floor
            if privlevel_floor is not None
            else (level if self.rules is not None and self.rules.floor_is_level else 0)
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

    @property
    def vmpl(self) -> int:
        """Alias of :attr:`level` (the SEV-SNP name of the guest's privilege level)."""
        return self.level

    # -- aliases for the upstream providers ---------------------------------------------

    @classmethod
    def sev_guest(
        cls,
        *,
        vmpl: int = 0,
        report: ReportFn | None = None,
        root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None,
        unprivileged: bool = False,
    ) -> FakeTsm:
        """Alias: ``FakeTsm("sev_guest", level=vmpl, ...)`` (0 = no SVSM; 1..3 = under one)."""
        return cls(
            "sev_guest",
            level=vmpl,
            report=report,
            root=root,
            before_read=before_read,
            unprivileged=unprivileged,
        )

    @classmethod
    def tdx_guest(
        cls,
        *,
        report: ReportFn | None = None,
        root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None,
        unprivileged: bool = False,
    ) -> FakeTsm:
        """Alias: ``FakeTsm("tdx_guest", ...)``."""
        return cls(
            "tdx_guest",
            report=report,
            root=root,
            before_read=before_read,
            unprivileged=unprivileged,
        )

    @classmethod
    def arm_cca_guest(
        cls,
        *,
        report: ReportFn | None = None,
        root: Path = DEFAULT_ROOT,
        before_read: ReadHook | None = None,
        unprivileged: bool = False,
    ) -> FakeTsm:
        """Alias: ``FakeTsm("arm_cca_guest", ...)``."""
        return cls(
            "arm_cca_guest",
            report=report,
            root=root,
            before_read=before_read,
            unprivileged=unprivileged,
        )

    def _profile_visible(self) -> frozenset[str]:
        rules = self.rules
        if rules is None or rules.attributes is None:
            # A provider without visibility hooks shows everything (LX report.c
            # tsm_report_is_visible returns true without report_attr_visible).
            return _ALL
        return rules.attributes | (rules.service_attributes if self.level else frozenset())

    # -- helpers for tests ------------------------------------------------------------------

    def client(
        self,
        *,
        entry: str | None = None,
        max_attempts: int = 3,
        check_write_count: bool = True,
    ) -> TsmReportClient:
        """A :class:`TsmReportClient` wired to this fake."""
        return TsmReportClient(
            self.root,
            fs=self,
            entry=entry,
            max_attempts=max_attempts,
            check_write_count=check_write_count,
        )

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
            raise _os_error(
                _errno.EPERM if split is not None else _errno.ENOENT,
                "report entries can only be created directly under the root",
                path,
            )
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
        """LX report.c try_advance_write_generation: EBUSY once a full wrap without a read
        would make the generations equal again (see the module docstring for who sees it)."""
        if self.at_wrap(entry):
            raise _os_error(_errno.EBUSY, "too many writes without a read", path)
        entry.write_generation = (entry.write_generation + 1) % _ULONG_MOD

    @staticmethod
    def at_wrap(entry: _Entry) -> bool:
        """True when one more write would make the write generation equal the read one."""
        return entry.write_generation == (entry.read_generation - 1) % _ULONG_MOD

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
            if self.at_wrap(entry):
                # The store runs at close and configfs ignores its EBUSY: dropped silently.
                return
            self._advance(entry, path)
            entry.inblob = data
            return
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise _os_error(_errno.EINVAL, "not text", path) from None
        if name == "privlevel":
            value = _kstrtouint(text)
            if value < 0:
                raise _os_error(-value, "not an unsigned 32-bit number", path)
            if self.privlevel_floor > value or value > PRIVLEVEL_MAX:
                raise _os_error(
                    _errno.EINVAL,
                    f"privlevel must be {self.privlevel_floor}..{PRIVLEVEL_MAX}",
                    path,
                )
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
            if value < 0:
                raise _os_error(-value, "not an unsigned 32-bit number", path)
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
                provider=self.provider,
                inblob=entry.inblob,
                privlevel=entry.privlevel,
                service_provider=entry.service_provider,
                service_guid=entry.service_guid,
                service_manifest_version=entry.service_manifest_version,
            )
            self._provider_checks(request, path)
            try:
                produced = self.report(request)
            except ProviderRefused as exc:
                raise _os_error(exc.errno, str(exc), path) from exc
            entry.blobs = (
                produced if isinstance(produced, FakeBlobs) else FakeBlobs(outblob=bytes(produced))
            )
            entry.read_generation = entry.write_generation
            self.reports_generated += 1
        blob: bytes = getattr(entry.blobs, name)
        if len(blob) > OUTBLOB_MAX:  # TSM_REPORT_OUTBLOB_MAX; ABI doc "EFBIG"
            raise _os_error(_errno.EFBIG, f"{name} exceeds {OUTBLOB_MAX} bytes", path)
        return blob

    def _provider_checks(self, request: FakeRequest, path: Path) -> None:
        """The refusals a provider's report_new makes before any firmware call, as its
        platform plug-in declares them (e.g. LX sev-guest.c / tdx-guest.c report_new)."""
        rules = self.rules
        if rules is None:
            return
        size = len(request.inblob)
        if not rules.inblob_min <= size <= rules.inblob_max:
            raise _os_error(
                _errno.EINVAL,
                f"{self.provider} needs a {rules.inblob_min}..{rules.inblob_max}-byte inblob",
                path,
            )
        if request.service_provider is not None:
            if request.service_provider not in rules.service_providers:
                raise _os_error(
                    _errno.EINVAL,
                    f"{self.provider} routes no service provider {request.service_provider!r}",
                    path,
                )
            if rules.service_needs_level and self.level == 0:
                # e.g. the SVSM path refuses when snp_vmpl == 0 (sev-snp.md §3.1)
                raise _os_error(_errno.EINVAL, "no service provider at privilege level 0", path)
        elif rules.below_level_refused and request.privlevel < self.level:
            # e.g. an SNP report's VMPL must be >= the requester's (sev-snp.md §6.2; the
            # firmware rule itself is listed as unconfirmed in §9): the firmware call fails.
            raise _os_error(_errno.EIO, "firmware refused a level below the guest's", path)

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
