"""Exit codes of the ``cocopart`` command and :class:`CliError`, without heavy imports.

``cocopart --help`` prints :data:`EXIT_CODES`, so this module imports nothing but the standard
library; the mapping of exceptions onto the codes is :func:`cocopart_cli.errors.classify`.
"""

from __future__ import annotations

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
    EXIT_USAGE: "usage or input error (unusable input): bad option or --format/--vendor, bad, "
    "missing or too large file (the message names file, line and field), evidence no platform "
    "plug-in recognises or that does not parse, a --certs/--trust-root file without "
    "certificates, an unknown --collateral name, unknown backend (the message lists the "
    "installed ones), no configfs-tsm on this machine",
    EXIT_INTERNAL: "internal error (a bug in cocopart or a backend); rerun with --debug for the "
    "traceback",
    EXIT_POLICY: "verify: the evidence is authentic (every vendor check passed) but the policy "
    "rejects it (only policy.* checks failed); verify-batch: the only failures are such "
    "rejections",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class CliError(Exception):
    """A failure the CLI reports with a sentence and an exit code, never a traceback; the
    ``file`` (and ``field``) it concerns, if any, also go to ``--json`` consumers."""

    def __init__(
        self,
        message: str,
        code: int = EXIT_USAGE,
        *,
        hint: str | None = None,
        file: object = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.file = None if file is None else str(file)
        self.field = field
