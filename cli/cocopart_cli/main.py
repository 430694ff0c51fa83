"""The ``cocopart`` command: Typer app, command registration and exit-code mapping.

Exit codes: 0 ok · 1 verification failed or an operation returned an error · 2 usage or
input error · 3 internal error (rerun with --debug for the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cocopart_cli.errors import EXIT_CODES, EXIT_INTERNAL, ErrorInfo, ErrorReport, classify
from cocopart_cli.output import JSON_MODE, emit_json, err_console


def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that carry an exit status already (Typer vendors click; older Typer
    versions use click itself)."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    try:
        from typer.exceptions import TyperException

        kinds.append(TyperException)
    except ImportError:  # pragma: no cover - older Typer
        pass
    try:
        import click

        kinds += [click.exceptions.Exit, click.ClickException, click.exceptions.Abort]
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


_PASSTHROUGH = _passthrough()


def _debug(ctx: Any) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("COCOPART_DEBUG", "") not in ("",
                                                                                        "0")


def report_error(exc: Exception, debug: bool) -> int:
    """Print an error for a person (stderr) and, in --json mode, for an agent (stdout);
    return the exit code. Re-raises unexpected errors when ``debug``."""
    info = classify(exc)
    if info is None:
        if debug:
            raise exc
        info = ErrorInfo(kind=type(exc).__name__, exit_code=EXIT_INTERNAL,
                         message=f"internal error: {type(exc).__name__}: {exc}",
                         hint="this is a bug; rerun with --debug for the traceback")
    elif debug:
        traceback.print_exception(exc, file=sys.stderr)
    err = err_console()
    err.print(f"[red]error:[/red] {info.message}", markup=True, highlight=False, soft_wrap=True)
    if info.hint:
        err.print(f"hint: {info.hint}", markup=False, soft_wrap=True)
    if JSON_MODE.get():
        emit_json(ErrorReport(error=info))
    return info.exit_code


class CocopartGroup(TyperGroup):
    """Maps exceptions raised by any command onto exit codes, without tracebacks."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASSTHROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets an exit code
            raise typer.Exit(report_error(exc, _debug(ctx))) from None


_EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    cls=CocopartGroup,
    name="cocopart",
    help="One vendor-neutral L2<->L1 interface for partitioned confidential VMs: set up a "
    "guest, compare AMD SEV-SNP (VMPLs + SVSM) and Intel TDX partitioning side by side, "
    "explain operations, attest and verify.\n\nRun without a command for an overview. "
    "Every command takes --json (schemas: `cocopart schema`).\n\n"
    "**Example:** `cocopart compare examples/default.toml --plot default.png`",
    epilog=_EPILOG,
    invoke_without_command=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks of internal errors (also COCOPART_DEBUG=1).")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="With no command: print the overview as JSON.")] = False,
) -> None:
    """Without a command: the installed backends and the default guest's layer graph."""
    if ctx.invoked_subcommand is None:
        from cocopart_cli.commands import overview
        from cocopart_cli.output import begin

        begin(json_output)
        overview.show(json_output)


def _register() -> None:
    from cocopart_cli.commands import (
        attest,
        backends,
        compare,
        detect,
        explain,
        faults,
        layers,
        scenario,
        schema,
        setup,
        sweep,
        verify,
        verify_batch,
    )

    for module in (backends, setup, compare, layers, explain, attest, verify, detect, faults,
                   scenario, schema, sweep, verify_batch):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last safety net outside click
        sys.exit(report_error(exc, os.environ.get("COCOPART_DEBUG", "") not in ("", "0")))


if __name__ == "__main__":
    main()
