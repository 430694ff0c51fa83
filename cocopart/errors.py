"""One exception hierarchy for everything cocopart raises.

Every exception carries a sentence a person understands. Architectural failures
(an instruction or firmware call that returned an error code) are normally *results*
(:class:`cocopart.ops.OperationResult`), not exceptions; exceptions are for misuse of
the library, bad configuration and broken plug-ins.
"""

from __future__ import annotations

from typing import Any


class CocopartError(Exception):
    """Root of every error cocopart raises on purpose."""


class ConfigError(CocopartError, ValueError):
    """A configuration value is invalid. ``field`` names it (dotted path), ``source`` the file."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.field = field
        self.source = source
        self.line = line
        where = []
        if source:
            where.append(source + (f":{line}" if line else ""))
        if field:
            where.append(f"field '{field}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.message = message


class BackendNotFound(CocopartError, LookupError):
    """No backend of that name is installed."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        listing = ", ".join(installed) if installed else "none"
        super().__init__(f"no backend named '{name}' is installed (installed: {listing})")


class BackendLoadError(CocopartError, ImportError):
    """A backend plug-in is installed but failed to import or initialise."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        self.cause = cause
        super().__init__(f"backend '{name}' failed to load: {type(cause).__name__}: {cause}")


class NotSupportedError(CocopartError):
    """The backend cannot do this at all; ``reason`` says why."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what} is not supported: {reason}")


class ProtocolError(CocopartError):
    """A protocol buffer could not be encoded or decoded; ``code`` is the protocol's result code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"{message} (result code {code:#010x})")


class EvidenceError(CocopartError, ValueError):
    """Evidence bytes could not be parsed (wrong size, version or layout)."""


class InputError(ConfigError):
    """Input the library was handed is unusable: a file that cannot be read or is too
    large, bytes that are no known evidence, certificate or collateral, or a value a public
    model refuses. ``source`` names the file (or ``-`` for stdin), ``field`` the value.

    Pydantic's ``ValidationError`` never escapes the public API: the models that cross it
    raise this instead, with ``errors`` holding every problem pydantic found.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        line: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.errors = errors or []
        super().__init__(message, field=field, source=source, line=line)


class ArchitectureFault(CocopartError):
    """An architectural fault the model raises into the faulting context (#VC, #NPF, #PF, #GP).

    ``vector`` names the exception (e.g. ``"#VC"``), ``code`` its error code.
    """

    def __init__(self, vector: str, code: int, message: str) -> None:
        self.vector = vector
        self.code = code
        super().__init__(f"{vector} error code {code:#x}: {message}")


class InternalError(CocopartError):
    """The model hit a state it should never reach: a bug in cocopart or a backend, not a
    mistake of the caller. ``cause`` is the original exception (the CLI shows it with
    ``--debug``)."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(
            f"internal error while {what}: {type(cause).__name__}: {cause} "
            "(this is a bug; please report it)"
        )


class ClusterError(CocopartError):
    """Scale-out work could not run: the Dask scheduler is unreachable, a worker kept dying,
    or the scale-out packages (dask, distributed, pyarrow) are missing."""
