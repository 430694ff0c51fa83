"""Quick pins: `cocopart verify` flags that add to the policy for a one-off check.

Each flag adds to the policy file's value (or the default policy): ``--measurement`` and
``--host-data`` add an accepted value (repeat them for a list), ``--allow-layer`` and
``--accept-tcb-status`` extend their lists, ``--min-tcb`` and ``--vmpl`` set a minimum or an
accepted VMPL. The result is validated like a policy file: a wrong length or an unknown name
is a usage error naming the flag (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cocopart.attest.evidence_plugins import installed_schemas
from cocopart.attest.policy import Policy
from cocopart.errors import InputError
from cocopart_cli.errors import CliError

#: Policy path (first element) -> the flag that sets it, for error messages.
_FLAGS = {
    "expected_report_data": "--report-data",
    "expected_measurements": "--measurement",
    "allowed_layers": "--allow-layer",
    "minimum_tcb": "--min-tcb",
    "accepted_tcb_status": "--accept-tcb-status",
    "waive_checks": "--waive",
    "host_data": "--host-data",
    "vmpl": "--vmpl",
}


@dataclass
class QuickPins:
    """The values of the quick-pin flags (empty: nothing added)."""

    report_data: str | None = None
    measurements: list[str] = field(default_factory=list)
    host_data: list[str] = field(default_factory=list)
    vmpl: list[int] = field(default_factory=list)
    allow_debug: bool = False
    allow_layers: list[str] = field(default_factory=list)
    min_tcb: list[str] = field(default_factory=list)
    tcb_status: list[str] = field(default_factory=list)
    waive: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.report_data is not None
            or self.measurements
            or self.host_data
            or self.vmpl
            or self.allow_debug
            or self.allow_layers
            or self.min_tcb
            or self.tcb_status
            or self.waive
        )


def _pair(item: str, flag: str, default: str | None) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        if default is None:
            raise CliError(f"{flag} {item}: use NAME=VALUE")
        return default, item
    if not name or not value:
        raise CliError(f"{flag} {item}: use NAME=VALUE")
    return name.strip(), value.strip()


def apply_pins(policy: Policy | None, vendor: str, pins: QuickPins) -> Policy:
    """``policy`` (default: the default policy) with the quick pins added, for evidence of
    ``vendor``; raises :class:`CliError` naming the flag for anything invalid."""
    base = policy or Policy()
    if not pins:
        return base
    data: dict[str, Any] = base.model_dump()
    if pins.report_data is not None:
        data["expected_report_data"] = pins.report_data
    if pins.measurements:
        schema = installed_schemas().get(vendor)
        primary = schema.primary_measurement if schema else None
        measured = data["expected_measurements"]
        for item in pins.measurements:
            name, value = _pair(item, "--measurement", primary)
            measured[name] = [*measured.get(name, []), value]
    if pins.host_data or pins.vmpl:
        if vendor != "sev-snp":
            flag = "--host-data" if pins.host_data else "--vmpl"
            raise CliError(f"{flag} applies to sev-snp evidence, this is {vendor} evidence")
        section = data["vendor"].setdefault("sev-snp", {})
        section["host_data"] = [*section.get("host_data", []), *pins.host_data]
        section["vmpl"] = [*section.get("vmpl", []), *pins.vmpl]
    data["allow_debug"] = data["allow_debug"] or pins.allow_debug
    data["allowed_layers"] = list(dict.fromkeys([*data["allowed_layers"], *pins.allow_layers]))
    for item in pins.min_tcb:
        name, value = _pair(item, "--min-tcb", None)
        try:
            data["minimum_tcb"][name] = int(value, 0)
        except ValueError:
            raise CliError(f"--min-tcb {item}: {value!r} is not a number") from None
    if pins.tcb_status:
        data["accepted_tcb_status"] = list(
            dict.fromkeys([*data["accepted_tcb_status"], *pins.tcb_status])
        )
    data["waive_checks"] = list(dict.fromkeys([*data["waive_checks"], *pins.waive]))
    try:
        return Policy.model_validate(data)
    except InputError as err:
        first = err.errors[0] if err.errors else {"loc": (), "msg": err.message}
        loc = [str(p) for p in first["loc"]]
        message = str(first["msg"]).removeprefix("Value error, ")
        path = [*loc, *message.split(":", 1)[0].split(".")]
        flag = next((_FLAGS[p] for p in path if p in _FLAGS), "a quick-pin flag")
        raise CliError(f"{flag}: {message}") from None
