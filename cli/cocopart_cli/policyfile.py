"""Policy TOML files: the fields of :class:`cocopart.attest.policy.Policy`, hex for bytes.

    allowed_layers = ["l1", "l2.1"]
    allow_via_privileged_layer = true
    allow_debug = false
    expected_report_data = "00ff..."        # hex
    accepted_tcb_status = ["UpToDate"]
    max_collateral_age = "P30D"             # ISO 8601 duration, or seconds

    [expected_measurements]
    measurement = "b07af962..."             # hex

    [minimum_tcb]
    snp = 8
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cocopart.attest.policy import Policy
from cocopart.errors import ConfigError, InputError
from cocopart.scenario import line_of, parse_toml

_HEX_FIELDS = ("expected_report_data", "expected_nonce")
_HEX_MAPS = ("expected_measurements",)


def _hex(value: Any, path: tuple[str, ...], text: str, source: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ConfigError("expected a hex string", field=".".join(path), source=source,
                          line=line_of(text, path)) from None


def loads_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a policy TOML text; every problem is a ConfigError with file, line and field."""
    data = parse_toml(text, source)
    for name in _HEX_FIELDS:
        if name in data:
            data[name] = _hex(data[name], (name,), text, source)
    for name in _HEX_MAPS:
        if isinstance(data.get(name), dict):
            data[name] = {k: _hex(v, (name, k), text, source) for k, v in data[name].items()}
    unknown = sorted(set(data) - set(Policy.model_fields))
    if unknown:
        raise ConfigError(f"unknown policy field (fields: {', '.join(Policy.model_fields)})",
                          field=unknown[0], source=source, line=line_of(text, (unknown[0],)))
    try:
        return Policy.model_validate(data)
    except InputError as err:
        from cocopart.scenario import config_error

        raise config_error(err, data, text, source) from None


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file (policy)", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the policy: {err}", source=str(path)) from None
    return loads_policy(text, str(path))
