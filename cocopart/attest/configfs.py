"""Attestation on a real confidential VM through Linux configfs-tsm reports.

Linux offers one provider-neutral file ABI for attestation reports: a directory per report
request under ``/sys/kernel/config/tsm/report/``. Userspace creates an entry with ``mkdir``,
writes ``inblob`` (the report data) and any options, reads ``outblob`` (the report, generated
lazily on that read) plus ``auxblob``/``manifestblob``, and removes the entry with ``rmdir``.
``provider`` names the format of ``outblob``. (Sources: LX ``drivers/virt/coco/guest/report.c``
and ``Documentation/ABI/testing/configfs-tsm-report``; summarised in
``shared/reference/sev-snp.md`` §7 and ``anchors.md`` "configfs-tsm".)

Everything here goes through a tiny filesystem interface, :class:`TsmFs`, so that the same
client runs against the kernel (:class:`LocalTsmFs`) and against
:class:`cocopart.attest.faketsm.FakeTsm`, which emulates the kernel's behaviour for tests and
for people without CVM hardware.

This module knows no provider: what a provider accepts (inblob sizes, service providers,
whether a privilege level goes with a service request), how its report maps onto
:class:`~cocopart.attest.evidence.Evidence` and how to read the certificate table in its
``auxblob`` come from the installed platform plug-in that declares the provider
(:class:`cocopart.attest.plugin.TsmProvider`). A provider no plug-in declares is still
usable; only its outblob cannot be mapped onto Evidence.
"""

from __future__ import annotations

import errno as _errno
import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from pydantic import BaseModel, Field

from cocopart.attest.encoding import Base64Bytes
from cocopart.attest.evidence import Evidence
from cocopart.attest.plugin import CertificateEntry, platform_for_provider, platforms
from cocopart.errors import CocopartError

__all__ = [
    "DEFAULT_ROOT",
    "INBLOB_MAX",
    "OUTBLOB_MAX",
    "PRIVLEVEL_MAX",
    "LocalTsmFs",
    "TsmCleanupWarning",
    "TsmConflictError",
    "TsmError",
    "TsmFs",
    "TsmInvalidRequestError",
    "TsmPermissionError",
    "TsmReport",
    "TsmReportClient",
    "TsmUnavailableError",
    "TsmUnsupportedError",
    "attest",
    "request_report",
]

#: Where the kernel mounts the report group (configfs at /sys/kernel/config; LX report.c
#: registers subsystem "tsm" with default group "report").
DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")

#: TSM_REPORT_INBLOB_MAX (LX include/linux/tsm.h): inblob holds at most 64 bytes.
INBLOB_MAX = 64
#: TSM_REPORT_OUTBLOB_MAX (LX include/linux/tsm.h): SZ_32K, larger blobs fail with EFBIG.
OUTBLOB_MAX = 32 * 1024
#: TSM_REPORT_PRIVLEVEL_MAX (LX include/linux/tsm.h): four levels, 0..3.
PRIVLEVEL_MAX = 3

#: Attribute names of a report entry (LX report.c tsm_report_attrs / tsm_report_bin_attrs).
ATTRIBUTES: tuple[str, ...] = (
    "generation",
    "provider",
    "privlevel",
    "privlevel_floor",
    "service_provider",
    "service_guid",
    "service_manifest_version",
)
BIN_ATTRIBUTES: tuple[str, ...] = ("inblob", "outblob", "auxblob", "manifestblob")

_U32_MAX = 0xFFFF_FFFF


# --------------------------------------------------------------------------------------------
# Errors


class TsmError(CocopartError):
    """A configfs-tsm request failed.

    ``reason`` is an errno-like name (``"EINVAL"``, ``"ENOENT"``, ``"EBUSY"`` ...) saying what
    kind of failure it was; ``errno`` is the numeric value when the kernel (or the fake)
    returned one; ``path`` the file or directory involved.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "EIO",
        errno: int | None = None,
        path: Path | None = None,
    ) -> None:
        self.message = message
        self.reason = reason
        self.errno = errno
        self.path = path
        super().__init__(message)


class TsmUnavailableError(TsmError):
    """There is no configfs-tsm report interface here, or no provider is registered."""


class TsmPermissionError(TsmError, PermissionError):
    """The caller may not create or write report entries (configfs needs root by default)."""


class TsmUnsupportedError(TsmError):
    """The provider hides an attribute the request needs (e.g. ``privlevel`` on tdx_guest)."""


class TsmInvalidRequestError(TsmError, ValueError):
    """The request is invalid: refused before writing, or the kernel answered EINVAL."""


class TsmConflictError(TsmError):
    """``generation`` kept changing: another writer shares the entry. ``attempts`` says how
    many complete tries were made."""

    def __init__(self, message: str, *, attempts: int, path: Path | None = None) -> None:
        self.attempts = attempts
        super().__init__(message, reason="EAGAIN", errno=_errno.EAGAIN, path=path)


class TsmCleanupWarning(UserWarning):
    """A report entry this client created could not be removed again."""


# --------------------------------------------------------------------------------------------
# Filesystem interface


@runtime_checkable
class TsmFs(Protocol):
    """The five filesystem operations a configfs-tsm client needs.

    Implementations raise :class:`OSError` with an ``errno`` exactly as the kernel would
    (ENOENT for an absent attribute, EINVAL for a refused value, EEXIST for a taken name...);
    the client turns those into :class:`TsmError` subclasses.
    """

    def exists(self, path: Path) -> bool:
        """True if ``path`` (a directory or an attribute file) exists."""
        ...

    def mkdir(self, path: Path) -> None:
        """Create a report entry (configfs: the kernel populates its attributes)."""
        ...

    def rmdir(self, path: Path) -> None:
        """Remove a report entry."""
        ...

    def read(self, path: Path) -> bytes:
        """Read a whole attribute."""
        ...

    def write(self, path: Path, data: bytes) -> None:
        """Write a whole attribute in one store (one ``write(2)`` for text attributes)."""
        ...


class LocalTsmFs:
    """:class:`TsmFs` over the real filesystem (``os``), i.e. the kernel's configfs.

    Writes open the attribute with ``O_WRONLY | O_TRUNC`` and no ``O_CREAT``, so writing an
    attribute the provider hides fails with ENOENT instead of creating a stray file (which
    matters on a plain-directory snapshot; configfs refuses to create files anyway).
    """

    def exists(self, path: Path) -> bool:
        """True if ``path`` exists."""
        return os.path.lexists(path)

    def mkdir(self, path: Path) -> None:
        """``mkdir(2)``."""
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        """``rmdir(2)``."""
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        """Read the file to its end."""
        with open(path, "rb", buffering=0) as f:
            chunks: list[bytes] = []
            while True:
                chunk = f.read(OUTBLOB_MAX + 1)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data``; configfs stores a text attribute per ``write(2)`` and a binary one
        on ``close(2)`` (errors from either surface as :class:`OSError`)."""
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# The report


class TsmReport(BaseModel):
    """What one configfs-tsm report request returned, plus the request that produced it.

    ``auxblob``/``manifestblob`` are ``None`` when the provider hides the attribute and
    ``b""`` when it is visible but empty. ``generation`` is the entry's write generation the
    blobs belong to; ``attempts`` how many tries it took (more than one after a concurrent
    writer was detected).
    """

    provider: str
    outblob: Base64Bytes
    auxblob: Base64Bytes | None = None
    manifestblob: Base64Bytes | None = None
    generation: int
    privlevel_floor: int | None = None
    report_data: Base64Bytes = Field(description="The inblob written for this report.")
    privlevel: int | None = None
    service_provider: str | None = None
    service_guid: UUID | None = None
    service_manifest_version: int | None = None
    entry: str = Field(default="", description="Name of the report entry that was used.")
    attempts: int = 1

    def certificates(self) -> list[CertificateEntry]:
        """The certificate table in ``auxblob``, read by the provider's platform plug-in
        (empty when there is none)."""
        plugin = platform_for_provider(self.provider)
        if plugin is None or not self.auxblob:
            return []
        return plugin.certificate_table(self.auxblob) or []

    def to_evidence(self) -> Evidence:
        """Map the report onto vendor-neutral :class:`Evidence`, through the platform plug-in
        that declares this provider: its evidence vendor and format, the certificates of its
        certificate table in ``auxblob`` (leaf first; any other non-empty auxblob is kept in
        ``collateral['auxblob']``). With a service provider the manifest is ``manifestblob``
        and the nonce is the report data, because the service binds REPORT_DATA =
        SHA-512(nonce || manifest) (sev-snp.md §3.1, §7).
        """
        plugin = platform_for_provider(self.provider)
        if plugin is None:
            known = ", ".join(sorted(p.tsm.name for p in platforms() if p.tsm)) or "none"
            raise TsmUnsupportedError(
                f"cocopart does not know the report format of configfs-tsm provider "
                f"'{self.provider}': no installed platform plug-in declares it (providers "
                f"declared: {known})",
                reason="EOPNOTSUPP",
            )
        evidence = plugin.evidence_from_tsm(self.outblob, self.auxblob)
        if self.service_provider is None:
            return evidence
        # a service GUID: the manifest is that service's own (issue 13); none: all services
        single = self.service_guid is not None and self.service_guid.int != 0
        return evidence.model_copy(
            update={
                "nonce": self.report_data,
                "manifest": self.manifestblob,
                "service": str(self.service_guid) if single else None,
            }
        )


# --------------------------------------------------------------------------------------------
# The client


_Op = Literal["mkdir", "rmdir", "read", "write"]


def _errno_name(code: int | None) -> str:
    if code is None:
        return "EIO"
    return _errno.errorcode.get(code, f"E{code}")


class TsmReportClient:
    """Requests attestation reports through configfs-tsm.

    ``root`` is the report group directory. ``fs`` the filesystem to use (the real one by
    default; pass a :class:`~cocopart.attest.faketsm.FakeTsm` to run without hardware).

    ``entry`` names an existing report entry to reuse instead of creating (and removing) a
    fresh one per request — e.g. one an administrator created and handed over with ``chown``
    so an unprivileged agent can attest. A reused entry keeps options others wrote to it
    earlier; the client only writes the options it is given.

    ``max_attempts`` bounds how often a request is re-run when ``generation`` shows another
    writer interfered. ``check_write_count`` additionally requires ``generation`` to advance by
    exactly the number of writes this client made, as the ABI document recommends; turn it off
    only for a static snapshot (:meth:`FakeTsm.materialise`), whose generation never moves.
    """

    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        *,
        fs: TsmFs | None = None,
        entry: str | None = None,
        max_attempts: int = 3,
        check_write_count: bool = True,
        name_prefix: str = "cocopart",
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if entry is not None and (not entry or "/" in entry or entry in {".", ".."}):
            raise ValueError(f"entry must be a single directory name, got {entry!r}")
        self.root = Path(root)
        self.fs: TsmFs = fs if fs is not None else LocalTsmFs()
        self.entry = entry
        self.max_attempts = max_attempts
        self.check_write_count = check_write_count
        self.name_prefix = name_prefix

    # -- public ---------------------------------------------------------------------------

    def available(self) -> bool:
        """True if the report group directory exists (the kernel has configfs-tsm)."""
        return self.fs.exists(self.root)

    def provider(self) -> str:
        """The registered provider's name (creates and removes an entry unless reusing one)."""
        with self._entry() as path:
            return self._read_text(path / "provider", "")

    def attest(
        self,
        report_data: bytes,
        *,
        privlevel: int | None = None,
        service_provider: str | None = None,
        service_guid: UUID | None = None,
        service_manifest_version: int | None = None,
    ) -> TsmReport:
        """Request one report binding ``report_data`` (1..64 bytes).

        Validates what it can before touching the filesystem, creates a fresh entry, checks
        the provider shows every attribute the request needs and that ``privlevel`` lies in
        ``privlevel_floor..3``, writes the options and then ``inblob``, reads the blobs and
        compares ``generation`` around them, re-running up to ``max_attempts`` times if another
        writer interfered. The entry is always removed afterwards (unless it was reused).

        ``privlevel=None`` on a provider with a ``privlevel`` attribute and a non-zero
        ``privlevel_floor`` requests the floor (the returned report records it), since the
        kernel default of 0 fails for a guest running above level 0.
        """
        data = bytes(report_data)
        self._validate_request(
            data, privlevel, service_provider, service_guid, service_manifest_version
        )
        with self._entry() as path:
            return self._attest_in(
                path, data, privlevel, service_provider, service_guid, service_manifest_version
            )

    # -- request validation (no filesystem access) ----------------------------------------

    @staticmethod
    def _validate_request(
        data: bytes,
        privlevel: int | None,
        service_provider: str | None,
        service_guid: UUID | None,
        service_manifest_version: int | None,
    ) -> None:
        if not data:
            # LX report.c read_cached_report / tsm_report_read: no inblob -> EINVAL.
            raise TsmInvalidRequestError(
                "report_data is empty; configfs-tsm generates no report without inblob",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if len(data) > INBLOB_MAX:
            raise TsmInvalidRequestError(
                f"report_data is {len(data)} bytes; configfs-tsm inblob holds at most "
                f"{INBLOB_MAX} (TSM_REPORT_INBLOB_MAX)",
                reason="EFBIG",
                errno=_errno.EFBIG,
            )
        if privlevel is not None and not 0 <= privlevel <= PRIVLEVEL_MAX:
            raise TsmInvalidRequestError(
                f"privlevel {privlevel} is outside 0..{PRIVLEVEL_MAX} (TSM_REPORT_PRIVLEVEL_MAX)",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if service_provider is not None and (
            not service_provider or "\n" in service_provider or "\0" in service_provider
        ):
            raise TsmInvalidRequestError(
                f"service_provider {service_provider!r} is not a plain name such as 'svsm'",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if service_provider is None and (
            service_guid is not None or service_manifest_version is not None
        ):
            raise TsmInvalidRequestError(
                "service_guid and service_manifest_version only apply to a service provider "
                "request; pass service_provider (e.g. 'svsm') as well",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if service_manifest_version is not None and not (0 <= service_manifest_version <= _U32_MAX):
            raise TsmInvalidRequestError(
                f"service_manifest_version {service_manifest_version} does not fit an unsigned "
                "32-bit value (kstrtouint in LX report.c)",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )

    @staticmethod
    def _validate_for_provider(
        provider: str,
        data: bytes,
        privlevel: int | None,
        service_provider: str | None,
    ) -> None:
        plugin = platform_for_provider(provider)
        rules = plugin.tsm if plugin is not None else None
        if rules is None:
            return
        if not rules.inblob_min <= len(data) <= rules.inblob_max:
            want = (
                f"exactly {rules.inblob_min}"
                if rules.inblob_min == rules.inblob_max
                else f"{rules.inblob_min}..{rules.inblob_max}"
            )
            raise TsmInvalidRequestError(
                f"provider {provider} needs report_data of {want} bytes, got {len(data)} "
                "(pad it, e.g. with zeros or a hash)",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if service_provider is not None and service_provider not in rules.service_providers:
            allowed = ", ".join(repr(s) for s in sorted(rules.service_providers))
            raise TsmInvalidRequestError(
                f"provider {provider} accepts service_provider {allowed or 'none'} only, not "
                f"{service_provider!r}",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )
        if (
            service_provider is not None
            and privlevel is not None
            and not rules.privlevel_with_service
        ):
            # sev-snp.md §7: on the SVSM path privlevel is not used (the SVSM reports at
            # VMPL0), so accepting it would promise something the report will not say.
            raise TsmInvalidRequestError(
                f"privlevel has no effect on a {provider} service-provider request: the "
                "service requests its report at its own level; drop privlevel or "
                "service_provider",
                reason="EINVAL",
                errno=_errno.EINVAL,
            )

    # -- entry life cycle -------------------------------------------------------------------

    @contextmanager
    def _entry(self) -> Iterator[Path]:
        if not self.fs.exists(self.root):
            raise TsmUnavailableError(
                f"{self.root} does not exist: this kernel has no configfs-tsm report support "
                "(CONFIG_TSM_REPORTS), configfs is not mounted at /sys/kernel/config, or this "
                "is not a confidential VM",
                reason="ENOENT",
                errno=_errno.ENOENT,
                path=self.root,
            )
        if self.entry is not None:
            path = self.root / self.entry
            if not self.fs.exists(path):
                raise TsmUnavailableError(
                    f"report entry {path} does not exist (it was given to reuse; create it "
                    "with mkdir first)",
                    reason="ENOENT",
                    errno=_errno.ENOENT,
                    path=path,
                )
            yield path
            return
        path = self._create_entry()
        try:
            yield path
        except BaseException as exc:
            problem = self._remove_entry(path)
            if problem is not None:
                exc.add_note(problem)
            raise
        else:
            problem = self._remove_entry(path)
            if problem is not None:
                warnings.warn(problem, TsmCleanupWarning, stacklevel=3)

    def _create_entry(self) -> Path:
        last: OSError | None = None
        for _ in range(3):
            name = f"{self.name_prefix}-{os.getpid()}-{secrets.token_hex(6)}"
            path = self.root / name
            try:
                self.fs.mkdir(path)
                return path
            except FileExistsError as exc:  # another process picked the same random name
                last = exc
            except OSError as exc:
                raise self._translate(exc, "mkdir", path) from exc
        assert last is not None
        raise self._translate(last, "mkdir", self.root) from last

    def _remove_entry(self, path: Path) -> str | None:
        try:
            self.fs.rmdir(path)
        except OSError as exc:
            return (
                f"could not remove configfs-tsm report entry {path} "
                f"({_errno_name(exc.errno)}: {exc.strerror}); remove it with rmdir"
            )
        return None

    # -- one request in an entry -------------------------------------------------------------

    def _attest_in(
        self,
        path: Path,
        data: bytes,
        privlevel: int | None,
        service_provider: str | None,
        service_guid: UUID | None,
        service_manifest_version: int | None,
    ) -> TsmReport:
        provider = self._read_text(path / "provider", "")
        self._validate_for_provider(provider, data, privlevel, service_provider)

        # Attributes the provider hides are absent (LX report.c tsm_report_is_visible /
        # tsm_report_is_bin_visible; e.g. tdx_guest shows only generation, provider, inblob,
        # outblob; sev_guest shows service_* and manifestblob only when snp_vmpl != 0).
        options: list[tuple[str, bytes]] = []
        floor: int | None = None
        if self.fs.exists(path / "privlevel_floor"):
            floor = self._read_int(path / "privlevel_floor", provider)
        if (
            privlevel is None
            and service_provider is None
            and floor
            and self.fs.exists(path / "privlevel")
        ):
            # Left unwritten, privlevel stays 0 (LX report.c: the entry is zero-allocated),
            # which a guest above level 0 may not request: its report fails (sev-snp.md §6.2,
            # the VMPL in MSG_REPORT_REQ must be >= the requester's; coconut-svsm#418 in
            # anchors.md). Ask for the lowest level allowed instead.
            privlevel = floor
        if privlevel is not None:
            self._require(path, "privlevel", provider, "a privilege level (privlevel)")
            lowest = floor if floor is not None else 0
            if not lowest <= privlevel <= PRIVLEVEL_MAX:
                # LX report.c tsm_report_privlevel_store: floor > val or val > 3 -> EINVAL.
                raise TsmInvalidRequestError(
                    f"privlevel {privlevel} is not allowed by provider {provider}: it must lie "
                    f"in privlevel_floor..{PRIVLEVEL_MAX} = {lowest}..{PRIVLEVEL_MAX} (a guest "
                    "cannot ask for a report more privileged than its own level)",
                    reason="EINVAL",
                    errno=_errno.EINVAL,
                    path=path / "privlevel",
                )
            options.append(("privlevel", str(privlevel).encode()))
        if service_provider is not None:
            self._require(
                path, "service_provider", provider, "service-provider reports (service_provider)"
            )
            options.append(("service_provider", service_provider.encode()))
        if service_guid is not None:
            self._require(path, "service_guid", provider, "service GUIDs (service_guid)")
            options.append(("service_guid", str(service_guid).encode()))
        if service_manifest_version is not None:
            self._require(
                path,
                "service_manifest_version",
                provider,
                "service manifest versions (service_manifest_version)",
            )
            options.append(("service_manifest_version", str(service_manifest_version).encode()))
        self._require(path, "inblob", provider, "report data (inblob)")
        self._require(path, "outblob", provider, "reports (outblob)")
        has_aux = self.fs.exists(path / "auxblob")
        has_manifest = self.fs.exists(path / "manifestblob")
        if service_provider is not None and not has_manifest:
            raise TsmUnsupportedError(
                f"provider {provider} shows service_provider but no manifestblob, so the "
                "service manifest could not be read",
                reason="ENOENT",
                errno=_errno.ENOENT,
                path=path / "manifestblob",
            )

        writes = len(options) + 1
        conflicts: list[str] = []
        stalled = 0
        for attempt in range(1, self.max_attempts + 1):
            before = self._read_int(path / "generation", provider)
            for name, value in options:
                self._write(path / name, value, provider)
            self._write(path / "inblob", data, provider)
            written = self._read_int(path / "generation", provider)
            # ABI doc (generation): "making sure the number of writes matches expectations
            # after reading @outblob".
            if self.check_write_count and written != before + writes:
                conflicts.append(
                    f"attempt {attempt}: generation went {before} -> {written} "
                    f"over this client's {writes} writes"
                )
                stalled += written == before
                continue
            outblob = self._read(path / "outblob", provider)
            auxblob = self._read(path / "auxblob", provider) if has_aux else None
            manifestblob = self._read(path / "manifestblob", provider) if has_manifest else None
            after = self._read_int(path / "generation", provider)
            if after != written:
                conflicts.append(
                    f"attempt {attempt}: generation changed {written} -> {after} "
                    "while the blobs were read"
                )
                continue
            return TsmReport(
                provider=provider,
                outblob=outblob,
                auxblob=auxblob,
                manifestblob=manifestblob,
                generation=after,
                privlevel_floor=floor,
                report_data=data,
                privlevel=privlevel,
                service_provider=service_provider,
                service_guid=service_guid,
                service_manifest_version=service_manifest_version,
                entry=path.name,
                attempts=attempt,
            )
        if stalled == self.max_attempts:
            raise TsmConflictError(
                f"report entry {path} did not take this client's writes "
                f"({'; '.join(conflicts)}): its generation does not move, as after a "
                "generation wrap (too many writes without a read: the kernel then drops inblob "
                "writes) or on a static snapshot; gave up after "
                f"{self.max_attempts} attempts — use a fresh entry",
                attempts=self.max_attempts,
                path=path,
            )
        raise TsmConflictError(
            f"another writer kept changing report entry {path} ({'; '.join(conflicts)}); "
            f"gave up after {self.max_attempts} attempts — use an entry of your own",
            attempts=self.max_attempts,
            path=path,
        )

    # -- attribute helpers ------------------------------------------------------------------

    def _require(self, path: Path, attr: str, provider: str, what: str) -> None:
        if not self.fs.exists(path / attr):
            raise TsmUnsupportedError(
                f"{what} is not supported by provider {provider}: its report entries have no "
                f"'{attr}' attribute",
                reason="ENOENT",
                errno=_errno.ENOENT,
                path=path / attr,
            )

    def _read(self, path: Path, provider: str) -> bytes:
        try:
            return self.fs.read(path)
        except OSError as exc:
            raise self._translate(exc, "read", path, provider) from exc

    def _write(self, path: Path, data: bytes, provider: str) -> None:
        try:
            self.fs.write(path, data)
        except OSError as exc:
            raise self._translate(exc, "write", path, provider) from exc

    def _read_text(self, path: Path, provider: str) -> str:
        raw = self._read(path, provider)
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise TsmError(
                f"{path} holds non-ASCII bytes {raw[:32]!r}; expected text", reason="EIO", path=path
            ) from exc

    def _read_int(self, path: Path, provider: str) -> int:
        text = self._read_text(path, provider)
        try:
            return int(text, 10)
        except ValueError as exc:
            raise TsmError(
                f"{path} holds {text!r}; expected a decimal number", reason="EIO", path=path
            ) from exc

    @staticmethod
    def _translate(exc: OSError, op: _Op, path: Path, provider: str = "") -> TsmError:
        code = exc.errno
        name = _errno_name(code)
        who = f"provider {provider}" if provider else "the kernel"
        detail = f" ({exc.strerror})" if exc.strerror else ""
        if code == _errno.ENXIO:
            # LX report.c: every handler returns -ENXIO while no provider is registered.
            return TsmUnavailableError(
                f"{op} {path} failed with ENXIO: no configfs-tsm provider is registered (no "
                "confidential-VM guest driver is loaded)",
                reason=name,
                errno=code,
                path=path,
            )
        if code in (_errno.EACCES, _errno.EPERM):
            return TsmPermissionError(
                f"{op} {path} was refused ({name}): creating and writing configfs-tsm report "
                "entries needs root unless an administrator handed you an entry (see entry=)",
                reason=name,
                errno=code,
                path=path,
            )
        if code == _errno.ENOENT:
            return TsmError(
                f"{op} {path} failed with ENOENT: the report entry or attribute disappeared "
                "(someone removed the entry, or the provider was unloaded)",
                reason=name,
                errno=code,
                path=path,
            )
        if code == _errno.EINVAL:
            return TsmInvalidRequestError(
                f"{who} refused the request with EINVAL on {op} of {path}{detail}",
                reason=name,
                errno=code,
                path=path,
            )
        if code == _errno.EFBIG:
            return TsmError(
                f"{op} {path} failed with EFBIG: the blob exceeds configfs-tsm's limit "
                f"({INBLOB_MAX} bytes in, {OUTBLOB_MAX} bytes out)",
                reason=name,
                errno=code,
                path=path,
            )
        if code == _errno.EBUSY:
            return TsmError(
                f"{op} {path} failed with EBUSY: {who} is busy (a previous request is still in "
                "flight, or too many writes happened without a read); try again",
                reason=name,
                errno=code,
                path=path,
            )
        return TsmError(
            f"{op} {path} failed with {name}{detail}", reason=name, errno=code, path=path
        )


def attest(
    report_data: bytes,
    *,
    privlevel: int | None = None,
    service_provider: str | None = None,
    service_guid: UUID | None = None,
    service_manifest_version: int | None = None,
    root: Path = DEFAULT_ROOT,
    fs: TsmFs | None = None,
) -> TsmReport:
    """Request one configfs-tsm report; see :meth:`TsmReportClient.attest`.

    ``report_data`` is at most 64 bytes; the provider's platform plug-in says how many it
    needs (:attr:`cocopart.attest.plugin.TsmProvider.inblob_min`). ``service_provider``
    asks a privileged layer's service for a services report, e.g. ``"svsm"`` under an SVSM
    (``service_guid`` picks one service, the null GUID means all;
    ``service_manifest_version`` the manifest form). Also exported as
    ``cocopart.request_report``.
    """
    return TsmReportClient(root, fs=fs).attest(
        report_data,
        privlevel=privlevel,
        service_provider=service_provider,
        service_guid=service_guid,
        service_manifest_version=service_manifest_version,
    )


#: ``cocopart.request_report``: the name under which :func:`attest` is exported at the top
#: level, where ``attest`` would collide with the :mod:`cocopart.attest` package.
request_report = attest
