"""A small JSON-schema checker for the subset pydantic emits (type, properties, required,
additionalProperties, items, prefixItems, enum, const, anyOf/oneOf/allOf, $ref to $defs), so
the tests validate --json output against the *published* schema without extra packages."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
    "number": (int, float),
}


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def errors(
    value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """Every violation of ``schema`` by ``value`` (empty when valid)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return errors(value, root["$defs"][name], root, path)
    out: list[str] = []
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if all(errors(value, s, root, path) for s in schema[key]):
                out.append(f"{path}: matches none of {key}")
            return out
    for sub in schema.get("allOf", []):
        out += errors(value, sub, root, path)
    t = schema.get("type")
    if isinstance(t, str) and not _is(value, t):
        return [f"{path}: {type(value).__name__} is not {t}"]
    if isinstance(t, list) and not any(_is(value, x) for x in t):
        return [f"{path}: {type(value).__name__} is not any of {t}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} != {schema['const']!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                out.append(f"{path}: missing {req}")
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                out.append(f"{path}: unexpected {k}")
            elif isinstance(extra, dict):
                out += errors(v, extra, root, f"{path}.{k}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(value):
            if i < len(prefix):
                out += errors(v, prefix[i], root, f"{path}[{i}]")
            elif isinstance(schema.get("items"), dict):
                out += errors(v, schema["items"], root, f"{path}[{i}]")
    return out
