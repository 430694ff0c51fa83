"""Exit codes and the mapping of exceptions onto them (docs/errors.md).

0 ok; 1 evidence not authentic, or an operation returned an error; 2 usage or unusable input
(bad option, missing/unreadable/unrecognised file, unparsable evidence, unknown backend, no
configfs-tsm); 3 an internal error (a bug: rerun with ``--debug`` for the traceback); 4
evidence authentic but rejected by the policy; 130 interrupted.
"""

from __future__ import annotations

from pydantic import BaseModel

from cocopart.errors import (
    BackendLoadError,
    BackendNotFound,
    CocopartError,
    ConfigError,
    EvidenceError,
    InternalError,
)
from cocopart_cli.exit_codes import (  # re-exported: commands import them from here
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_POLICY,
    EXIT_USAGE,
    CliError,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_POLICY",
    "EXIT_USAGE",
    "CliError",
    "ErrorInfo",
    "ErrorReport",
    "classify",
]


class ErrorInfo(BaseModel):
    """What went wrong, for ``--json`` consumers."""

    kind: str
    message: str
    exit_code: int
    file: str | None = None
    line: int | None = None
    field: str | None = None
    hint: str | None = None


class ErrorReport(BaseModel):
    """Printed on stdout instead of a command's result when a ``--json`` command fails."""

    error: ErrorInfo


def classify(exc: BaseException) -> ErrorInfo | None:
    """The exit code and message for an expected failure; None for a bug."""
    kind = type(exc).__name__
    if isinstance(exc, CliError):
        return ErrorInfo(
            kind=kind,
            message=exc.message,
            exit_code=exc.code,
            hint=exc.hint,
            file=exc.file,
            field=exc.field,
        )
    if isinstance(exc, ConfigError):
        return ErrorInfo(
            kind=kind,
            message=str(exc),
            exit_code=EXIT_USAGE,
            file=exc.source,
            line=exc.line,
            field=exc.field,
        )
    if isinstance(exc, BackendNotFound):
        return ErrorInfo(
            kind=kind,
            message=str(exc),
            exit_code=EXIT_USAGE,
            hint="run `cocopart backends` to see what is installed",
        )
    if isinstance(exc, BackendLoadError):
        return ErrorInfo(
            kind=kind,
            message=str(exc),
            exit_code=EXIT_USAGE,
            hint="reinstall the backend package; `cocopart backends` shows the load error of each",
        )
    # configfs-tsm errors: imported here, not at start-up (commands that never touch
    # configfs-tsm, like verify, do not pay for it)
    from cocopart.attest.configfs import (
        TsmError,
        TsmInvalidRequestError,
        TsmPermissionError,
        TsmUnavailableError,
        TsmUnsupportedError,
    )

    if isinstance(
        exc, (TsmUnavailableError, TsmPermissionError, TsmInvalidRequestError, TsmUnsupportedError)
    ):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_USAGE)
    if isinstance(exc, TsmError):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_FAILED)
    if isinstance(exc, EvidenceError):
        return ErrorInfo(kind=kind, message=f"bad evidence: {exc}", exit_code=EXIT_USAGE)
    if isinstance(exc, InternalError):
        return None  # a bug: exit 3 with the traceback under --debug
    if isinstance(exc, CocopartError):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_USAGE)
    if isinstance(exc, FileNotFoundError):
        where = exc.filename if exc.filename else ""
        return ErrorInfo(
            kind=kind,
            message=f"{where}: no such file" if where else str(exc),
            exit_code=EXIT_USAGE,
            file=str(where) if where else None,
        )
    if isinstance(exc, (PermissionError, IsADirectoryError)):
        return ErrorInfo(
            kind=kind,
            message=f"{exc.filename}: {exc.strerror}",
            exit_code=EXIT_USAGE,
            file=str(exc.filename),
        )
    return None
