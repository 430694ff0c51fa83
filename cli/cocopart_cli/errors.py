"""Exit codes and the mapping of exceptions onto them.

0 ok; 1 verification failed or an operation returned an error; 2 usage or input error (bad
file, bad option, unknown backend, missing file, no configfs-tsm); 3 an internal error (a bug:
rerun with ``--debug`` for the traceback).
"""

from __future__ import annotations

from pydantic import BaseModel

from cocopart.attest.configfs import (
    TsmError,
    TsmInvalidRequestError,
    TsmPermissionError,
    TsmUnavailableError,
    TsmUnsupportedError,
)
from cocopart.errors import (
    BackendLoadError,
    BackendNotFound,
    CocopartError,
    ConfigError,
    EvidenceError,
    InternalError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_POLICY = 4
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "verification failed (the evidence is not authentic: a vendor check failed), "
    "or an operation returned an error (status error or partial)",
    EXIT_USAGE: "usage or input error: bad option, bad or missing file (the message names "
    "file, line and field), unknown backend (the message lists the installed ones), no "
    "configfs-tsm on this machine",
    EXIT_INTERNAL: "internal error (a bug in cocopart or a backend); rerun with --debug for the "
    "traceback",
    EXIT_POLICY: "verify: the evidence is authentic (every vendor check passed) but the policy "
    "rejects it (only policy.* checks failed); verify-batch: the only failures are such "
    "rejections",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class CliError(Exception):
    """A failure the CLI reports with a sentence and an exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE, *, hint: str | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


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
        return ErrorInfo(kind=kind, message=exc.message, exit_code=exc.code, hint=exc.hint)
    if isinstance(exc, ConfigError):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_USAGE, file=exc.source,
                         line=exc.line, field=exc.field)
    if isinstance(exc, BackendNotFound):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_USAGE,
                         hint="run `cocopart backends` to see what is installed")
    if isinstance(exc, BackendLoadError):
        return ErrorInfo(kind=kind, message=str(exc), exit_code=EXIT_USAGE,
                         hint="reinstall the backend package; `cocopart backends` shows the "
                         "load error of each")
    if isinstance(exc, (TsmUnavailableError, TsmPermissionError, TsmInvalidRequestError,
                        TsmUnsupportedError)):
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
        return ErrorInfo(kind=kind, message=f"{where}: no such file" if where else str(exc),
                         exit_code=EXIT_USAGE, file=str(where) if where else None)
    if isinstance(exc, (PermissionError, IsADirectoryError)):
        return ErrorInfo(kind=kind, message=f"{exc.filename}: {exc.strerror}",
                         exit_code=EXIT_USAGE, file=str(exc.filename))
    return None
