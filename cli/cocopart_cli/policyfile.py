"""Policy TOML files: the fields of :class:`cocopart.attest.policy.Policy`, hex for bytes,
and one table per evidence plug-in for its own section::

    allowed_layers = ["l1", "l2.1"]
    allow_debug = false
    accepted_tcb_status = ["UpToDate"]
    max_collateral_age = "P30D"             # ISO 8601 duration, or seconds

    [expected_measurements]
    measurement = ["b07af962...", "..."]     # hex; a list accepts any of its values

    [minimum_tcb]
    snp = 8

    [sev-snp]                               # cocopart_sev_snp.policy.SnpPolicy
    host_data = "..."
    [tdx]                                   # cocopart_tdx.policy.TdxPolicy
    xfam = "e702060000000000"

Every problem — syntax, an unknown key or section, a wrong type, a pin of the wrong length,
a name no installed plug-in knows — is a ConfigError naming the file, the line and the
dotted field (exit 2 in the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cocopart.attest.evidence_plugins import installed_schemas
from cocopart.attest.policy import DEFER_SCHEMA_CHECK, Policy
from cocopart.errors import ConfigError, InputError
from cocopart.toml_text import config_error, line_of, parse_toml


def _section(name: str, data: Any, model: type[BaseModel], text: str, source: str) -> BaseModel:
    if not isinstance(data, dict):
        raise ConfigError(
            f"[{name}] must be a table", field=name, source=source, line=line_of(text, (name,))
        )
    try:
        return model.model_validate(data)
    except (InputError, ValidationError) as err:
        inner = config_error(err, data, text, source)
        path = (name, *(inner.field.split(".") if inner.field else ()))
        raise ConfigError(
            inner.message, field=".".join(path), source=source, line=line_of(text, path)
        ) from None


def loads_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a policy TOML text; every problem is a ConfigError with file, line and field."""
    data = parse_toml(text, source)
    sections: dict[str, BaseModel] = {}
    extra = [k for k in data if k not in Policy.model_fields]
    if extra:
        schemas = {n: s for n, s in installed_schemas().items() if s.section is not None}
        for key in extra:
            schema = schemas.get(key)
            if schema is None or schema.section is None:
                fields = ", ".join(f for f in Policy.model_fields if f != "vendor")
                raise ConfigError(
                    f"unknown policy field or section (fields: {fields}; sections: "
                    f"{', '.join(f'[{n}]' for n in schemas) or 'none'})",
                    field=key,
                    source=source,
                    line=line_of(text, (key,)),
                )
            sections[key] = _section(key, data.pop(key), schema.section, text, source)
    if sections:
        data["vendor"] = {**(data.get("vendor") or {}), **sections}
    try:
        policy = Policy.model_validate(data, context={DEFER_SCHEMA_CHECK: True})
    except (InputError, ValidationError) as err:
        raise config_error(err, data, text, source) from None
    problems = [(line_of(text, p.path) or 0, i, p) for i, p in enumerate(policy.problems())]
    if problems:
        line, _i, first = min(problems)  # the first in the file
        raise ConfigError(
            first.message,
            field=".".join(map(str, first.path)) or None,
            source=source,
            line=line or None,
        )
    return policy


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file (policy)", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the policy: {err}", source=str(path)) from None
    return loads_policy(text, str(path))
