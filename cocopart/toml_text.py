"""TOML files with errors that name file, line and field: :func:`parse_toml` turns syntax
errors into a :class:`ConfigError` with the line, :func:`config_error` a pydantic error
with its dotted field and line. tomllib gives no positions, so the line of the offending key
or table is found by scanning the text (:func:`line_of`). Used by scenario and policy files;
imports nothing but the standard library, pydantic's error type and cocopart.errors."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cocopart.errors import ConfigError, InputError

if TYPE_CHECKING:
    from pydantic import ValidationError

# --------------------------------------------------------------------------------------------
# Line numbers for fields (tomllib gives none)

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_dotted(key: str) -> list[str] | None:
    """Split a TOML dotted key (``a."b.c".d``) into its parts; None if it is not one."""
    parts: list[str] = []
    i, n = 0, len(key)
    while i < n:
        while i < n and key[i] in " \t":
            i += 1
        if i < n and key[i] in "\"'":
            q = key[i]
            j = key.find(q, i + 1)
            if j < 0:
                return None
            parts.append(key[i + 1 : j])
            i = j + 1
        else:
            m = _BARE.match(key, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < n and key[i] in " \t":
            i += 1
        if i < n:
            if key[i] != ".":
                return None
            i += 1
    return parts or None


def _scan(line: str) -> tuple[str, int, str | None]:
    """Strip a comment; return (code, bracket balance outside strings, an unterminated
    multi-line string delimiter if one opens on this line)."""
    out: list[str] = []
    depth = 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            q = line[i : i + 3]
            j = line.find(q, i + 3)
            if j < 0:
                out.append(line[i:])
                return "".join(out), depth, q
            out.append(line[i : j + 3])
            i = j + 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if (c == '"' and line[j] == "\\") else 1
            out.append(line[i : j + 1])
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        out.append(c)
        i += 1
    return "".join(out), depth, None


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map every table, array-of-tables element and key of a TOML text to its line (1-based).

    Paths use the data's shape: ``("steps", 2, "range")`` is the ``range`` key of the third
    ``[[steps]]``. Keys inside a multi-line value map to the line where the value starts.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str | int, ...], int] = {}
    current: tuple[str | int, ...] = ()
    in_string: str | None = None
    depth = 0

    def resolve(parts: list[str]) -> tuple[str | int, ...]:
        path: tuple[str | int, ...] = ()
        for p in parts:
            path += (p,)
            if path in counts:  # an array of tables: refer to its last element
                path += (counts[path] - 1,)
        return path

    def note(path: tuple[str | int, ...], no: int) -> None:
        for k in range(1, len(path) + 1):
            lines.setdefault(path[:k], no)

    for no, raw in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if in_string in raw:
                rest = raw.split(in_string, 1)[1]
                in_string = None
                depth += _scan(rest)[1]
            continue
        code, balance, opened = _scan(raw)
        if depth > 0:
            depth += balance
            in_string = opened
            continue
        s = code.strip()
        if not s:
            continue
        if s.startswith("[["):
            parts = _split_dotted(s[2 : s.rfind("]]")])
            if parts:
                parent = resolve(parts[:-1]) + (parts[-1],)
                counts[parent] = counts.get(parent, 0) + 1
                current = parent + (counts[parent] - 1,)
                note(current, no)
                lines[current] = no
            continue
        if s.startswith("["):
            parts = _split_dotted(s[1 : s.rfind("]")])
            if parts:
                current = resolve(parts)
                note(current, no)
                lines[current] = no
            continue
        eq = _find_eq(s)
        if eq > 0:
            parts = _split_dotted(s[:eq])
            if parts:
                path = current + tuple(parts)
                note(path, no)
                lines[path] = no
                for sub in re.finditer(r"([A-Za-z0-9_-]+)\s*=", s[eq + 1 :]):
                    lines.setdefault(path + (sub.group(1),), no)
        depth = max(balance, 0)
        in_string = opened
    return lines


def _find_eq(s: str) -> int:
    """Index of the ``=`` that ends the key of a key/value line (outside quotes), or -1."""
    quote: str | None = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "=":
            return i
    return -1


def line_of(text: str, path: Sequence[str | int]) -> int | None:
    """Line of the key or table at ``path`` (or of its nearest enclosing one) in TOML text."""
    table = key_lines(text)
    p = tuple(path)
    while p:
        if p in table:
            return table[p]
        p = p[:-1]
    return None


def _data_path(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """The part of a pydantic error location that exists in the input data.

    Pydantic locations carry union tags (``op``, ``validate``) and wrapper fields
    (``operation``) that are not keys of the file; a tag may also be a key (``op``). This
    picks the reading that follows the data furthest, keeping a final missing key."""

    def walk(cur: Any, rest: Sequence[str | int]) -> list[str | int]:
        if not rest:
            return []
        part, tail = rest[0], rest[1:]
        options: list[list[str | int]] = []
        if part in _TAGS or part == "operation":  # on a tie, read it as a tag
            options.append(walk(cur, tail))
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        )
        if present:
            options.append([part, *walk(cur[part], tail)])
        elif (
            isinstance(cur, dict)
            and isinstance(part, str)
            and not tail
            and part not in _TAGS
            and part != "operation"
        ):
            options.append([part])  # a missing key
        if not options:
            options.append(walk(cur, tail))
        return max(options, key=len)

    return walk(data, list(loc))


_TAGS = frozenset(
    {
        "op",
        "macro",
        "validate",
        "rescind",
        "convert",
        "set-access",
        "create-vcpu",
        "delete-vcpu",
        "attest",
        "inject-interrupt",
        "eoi",
        "configure-interrupts",
        "extend-measurement",
        "bring-up",
        "share-round",
        "attest-each-layer",
        "interrupts",
        "function-after",
        "function-before",
        "function-wrap",
    }
)


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _clean_message(msg: str) -> str:
    if msg == "Field required":
        return "this required field is missing"
    if msg == "Extra inputs are not permitted":
        return "unknown field (not allowed here)"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """``tomllib.loads`` whose syntax errors become a :class:`ConfigError` with the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        if "end of document" in msg:
            line = len(text.splitlines()) or 1
        detail = re.sub(r" \(at .*\)$", "", msg)
        raise ConfigError(f"TOML syntax error: {detail}", source=source, line=line) from None


def config_error(
    err: ValidationError | InputError, data: Any, text: str, source: str
) -> ConfigError:
    """The first error of a pydantic validation of TOML ``data`` (raised by pydantic, or by
    an :class:`~cocopart.inputmodel.InputModel` as InputError), with its dotted field and
    the line of that field in ``text``."""
    from pydantic import ValidationError

    first = err.errors()[0] if isinstance(err, ValidationError) else err.errors[0]
    path = _data_path(data, first["loc"])
    return ConfigError(
        _clean_message(first["msg"]),
        field=_dotted(path) or None,
        source=source,
        line=line_of(text, path),
    )
