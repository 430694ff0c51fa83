"""`cocopart faults`: what happens when the host touches guest-private memory — the seed-003
scenarios under every host fault policy, on every backend, side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from cocopart.host_faults import HostFaultScenario, compare_host_faults
from cocopart_cli.common import resolve_backends
from cocopart_cli.fault_table import fault_table
from cocopart_cli.output import begin, console, emit_json


def register(app: typer.Typer) -> None:
    @app.command("faults")
    def faults_cmd(
        backend: Annotated[
            list[str] | None,
            typer.Option(
                "--backend", "-b", help="Backend to run (repeatable; default: all installed)."
            ),
        ] = None,
        scenario: Annotated[
            list[HostFaultScenario] | None,
            typer.Option(
                "--scenario", "-s", help="Scenario to run (repeatable; default: all three)."
            ),
        ] = None,
        json_output: Annotated[
            bool, typer.Option("--json", help="Print JSON (schema: `cocopart schema faults`).")
        ] = False,
    ) -> None:
        """Compare host fault policies: a buggy guest that forgets to share a DMA page, a
        malicious guest converting a page under a host device emulator, and kexec on the
        host — guests lost, host processes killed, guest-visible errors, data lost.

        **Example:** `cocopart faults --scenario kexec`
        """
        begin(json_output)
        names = [b.name for b in resolve_backends(backend)]
        cmp = compare_host_faults(names, tuple(scenario or HostFaultScenario))
        if json_output:
            emit_json(cmp)
        else:
            console().print(fault_table(cmp))
