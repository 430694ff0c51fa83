"""The ``cocopart`` command: the root Typer app, the table of commands and the exit-code mapping.

Commands load lazily. :data:`COMMANDS` names every command with the one-line summary that
``cocopart --help`` lists; a command's module (``cocopart_cli/commands/<name>.py``, ``-``
spelled ``_``, defining ``register(app)``) is imported only when that command runs or shows
its own ``--help``. So ``cocopart --help`` imports no command, and ``cocopart backends`` only
what listing the backends needs (bench/bench_cli.py measures both against a bare Typer app).

Exit codes (cocopart_cli.exit_codes): 0 ok · 1 verification failed or an operation returned
an error · 2 usage or input error · 3 internal error (``--debug`` prints the traceback) · 4
authentic evidence rejected by the policy · 130 interrupted.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from cocopart_cli.exit_codes import EXIT_CODES, EXIT_INTERNAL

#: Every command, in the order ``cocopart --help`` lists them, with the first paragraph of
#: its help (tests/cli/test_cli_lazy.py checks that each matches the command). Adding a
#: command is this one entry plus its module ``cocopart_cli/commands/<name>.py``.
COMMANDS: dict[str, str] = {
    "backends": "List the installed backends, their versions and the capability matrix.",
    "setup": "Validate a guest file, then plan and run its bring-up on one backend.",
    "compare": "Run one scenario on every selected backend and compare them step by step.",
    "layers": "Show a guest's layer graph, the route of each operation kind, each TCB, and "
    "who may restrict whose memory.",
    "explain": "Show the primitive sequence of one operation on each backend side by side.",
    "attest": "Obtain attestation evidence and write it as Evidence JSON.",
    "verify": "Verify evidence against a policy and print every check.",
    "show": "Decode evidence or certificates to a table, without verifying anything.",
    "detect": "Detect the confidential-VM platform, privilege level and attestation providers.",
    "faults": "Compare host fault policies: a buggy guest that forgets to share a DMA page, a "
    "malicious guest converting a page under a host device emulator, and kexec on "
    "the host — guests lost, host processes killed, guest-visible errors, data lost.",
    "schema": "Publish the JSON schema of a command's --json output (pydantic models).",
    "scenario": "Write or check scenario files.",
    "sweep": "Run a scenario at every point of a grid of axes (backends included) as Dask "
    "tasks; write one row per point x step as Parquet and CSV, and a summary plot.",
    "verify-batch": "Verify every evidence file against a policy and trust roots, as Dask "
    "tasks; write one row per file (verdict, failed checks, measurement, TCB, "
    "layer, report data) as Parquet and JSONL, and counts by verdict and failed "
    "check.",
}


def command_module(name: str) -> str:
    """The module that defines command ``name``."""
    return "cocopart_cli.commands." + name.replace("-", "_")


def load_command(name: str) -> Any:
    """Import command ``name``'s module and build its click command (Typer's own way)."""
    module = importlib.import_module(command_module(name))
    holder = typer.Typer(rich_markup_mode="markdown", pretty_exceptions_enable=False)
    module.register(holder)
    command = typer.main.get_group(holder).commands.get(name)
    if command is None:
        raise RuntimeError(f"{module.__name__}.register() defines no command {name!r}")
    return command


class LazyCommands(MutableMapping[str, Any]):
    """The root group's ``commands``: names from :data:`COMMANDS`, each command built on
    first access. Iterating lists names without importing anything."""

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self._loaded: dict[str, Any] = dict(eager)

    def loaded(self, name: str) -> bool:
        return name in self._loaded

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (n for n in self._loaded if n not in COMMANDS)

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))


@functools.cache
def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that carry an exit status already: Typer's own (Typer >= 0.20 vendors
    click and derives click's exceptions from TyperException) or, before, click's."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    typer_exception = getattr(importlib.import_module("typer.exceptions"), "TyperException", None)
    if typer_exception is not None:
        kinds.append(typer_exception)
    if importlib.util.find_spec("typer._click") is None:  # pragma: no cover - older Typer
        import click

        kinds += [click.exceptions.Exit, click.ClickException, click.exceptions.Abort]
    return tuple(kinds)


def _debug_requested(ctx: Any = None) -> bool:
    """``--debug`` on the command line, or ``COCOPART_DEBUG`` set to anything but 0."""
    if os.environ.get("COCOPART_DEBUG", "") not in ("", "0"):
        return True
    if ctx is not None:
        return bool(ctx.find_root().params.get("debug"))
    return "--debug" in sys.argv[1:]


def report_error(exc: BaseException, debug: bool) -> int:
    """Print an error for a person (stderr) and, in --json mode, for an agent (stdout);
    return the exit code. With ``debug`` the traceback comes first."""
    import traceback

    from cocopart_cli.errors import ErrorInfo, ErrorReport, classify
    from cocopart_cli.output import JSON_MODE, emit_json, err_console

    info = classify(exc)
    if info is None:
        info = ErrorInfo(
            kind=type(exc).__name__,
            exit_code=EXIT_INTERNAL,
            message=f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug; please report it with the traceback above"
            if debug
            else "this is a bug; rerun with --debug for the traceback",
        )
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    err = err_console()
    err.print(
        f"[red]error:[/red] {escape(info.message)}", markup=True, highlight=False, soft_wrap=True
    )
    if info.hint:
        err.print(f"hint: {info.hint}", markup=False, soft_wrap=True)
    if JSON_MODE.get():
        emit_json(ErrorReport(error=info))
    return info.exit_code


class CocopartGroup(TyperGroup):
    """The root group: loads commands lazily (:class:`LazyCommands`) and maps exceptions
    raised by any command onto exit codes, without tracebacks unless ``--debug``."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands)
        self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if (
            self._listing
            and cmd_name in COMMANDS
            and isinstance(commands, LazyCommands)
            and not commands.loaded(cmd_name)
        ):
            return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name])
        return commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's .items() would load them all

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The root help lists each command by its summary, importing none."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _passthrough():
            raise
        except BrokenPipeError:
            raise  # the reader went away (`cocopart ... | head`): Typer exits quietly
        except Exception as exc:  # noqa: BLE001 - every failure gets an exit code
            raise typer.Exit(report_error(exc, _debug_requested(ctx))) from None


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
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Print the traceback of an error (also COCOPART_DEBUG=1)."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="With no command: print the overview as JSON.")
    ] = False,
) -> None:
    """Without a command: the installed backends and the default guest's layer graph."""
    if ctx.invoked_subcommand is None:
        from cocopart_cli.commands import overview
        from cocopart_cli.output import begin

        begin(json_output)
        overview.show(json_output)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last safety net outside click
        sys.exit(report_error(exc, _debug_requested()))


if __name__ == "__main__":
    main()
