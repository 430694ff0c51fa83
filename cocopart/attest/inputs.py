"""Evidence, certificates, collateral and trust roots in the forms people have them.

Every reader here is bounded: a file's size is checked with ``stat`` before it is opened, and
streams (stdin ``-``, pipes, device files) are read to at most :data:`MAX_INPUT_BYTES` + 1
bytes, so a 100 MB input is refused without being read.

Evidence (:func:`load_evidence`, :func:`evidence_from_bytes`) may be

* raw bytes (an SNP report ``.bin``, a TD quote ``.dat``, a TDREPORT, an Azure HCL report,
  a report with trailing zero padding);
* the same as hex text (``0x`` prefix and whitespace allowed) or base64 text (standard or
  URL-safe alphabet, any file name);
* Evidence JSON (``cocopart attest --out``), or any JSON document holding one — e.g. the
  output of ``cocopart attest --json``;
* a JSON wrapper holding the evidence as a base64 or hex string, at any depth (teekit's
  ``{"tdx": {"quote": "..."}}``): every string is tried, and exactly one must be evidence.

The kind of raw evidence is recognised by the installed platform plug-ins
(:mod:`cocopart.attest.plugin`); ``vendor`` and ``fmt`` override the recognition.
Certificates (:func:`load_certificates`) may be PEM bundles, DER (one or concatenated), a
platform's certificate table (the SNP GUID table of configfs-tsm's auxblob), or a directory
of such files. Collateral (:func:`load_collateral`) is ``NAME=FILE`` with a name the vendor's
verifier reads, or one file a platform plug-in splits (dcap-qvl's collateral JSON).

Everything unusable raises :class:`~cocopart.errors.InputError` naming the file.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cocopart.attest.encoding import decode_base64
from cocopart.attest.evidence import Evidence
from cocopart.attest.plugin import (
    CertificateEntry,
    PlatformPlugin,
    Recognition,
    platform_named,
    platforms,
)
from cocopart.errors import EvidenceError, InputError

__all__ = [
    "MAX_INPUT_BYTES",
    "evidence_from_bytes",
    "load_certificates",
    "load_collateral",
    "load_evidence",
    "read_input",
]

#: The largest input file read (1 MiB): configfs-tsm blobs are at most 32 KiB, the largest
#: real quote, collateral or certificate bundle in shared/vectors is under 20 KiB.
MAX_INPUT_BYTES = 1 << 20
STDIN = "-"

_HEX = re.compile(rb"^(0x)?[0-9a-fA-F]+$")
_WRAPPER_DEPTH = 6
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


# --------------------------------------------------------------------------------------------
# Reading


def _too_large(source: str, size: int | None, limit: int, what: str) -> InputError:
    shown = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return InputError(
        f"{what} is {shown}; the limit is {limit} bytes ({limit >> 10} KiB), "
        "far above any real evidence, certificate or collateral",
        source=source,
    )


def _bounded(stream: BinaryIO, source: str, limit: int, what: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(source, None, limit, what)
    return data


def read_input(
    path: str | Path, what: str, *, limit: int = MAX_INPUT_BYTES, stdin: BinaryIO | None = None
) -> bytes:
    """The bytes of ``path`` (``-``: standard input), at most ``limit`` of them.

    A regular file larger than ``limit`` is refused from its ``stat`` size, before it is
    opened; anything else is read to ``limit + 1`` bytes at most.
    """
    source = str(path)
    if source == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _bounded(stream, source, limit, what)
    try:
        info = os.stat(source)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"is a directory, not a file ({what})", source=source)
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise _too_large(source, info.st_size, limit, what)
        with open(source, "rb") as f:
            return _bounded(f, source, limit, what)
    except FileNotFoundError:
        raise InputError(f"no such file ({what})", source=source) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not a file ({what})", source=source) from None
    except OSError as err:
        raise InputError(f"cannot read ({what}): {err.strerror or err}", source=source) from None


# --------------------------------------------------------------------------------------------
# Text forms


def _text(data: bytes) -> str | None:
    """``data`` as text when it is printable ASCII (plus whitespace), else None."""
    if not data or any(b > 0x7E or (b < 0x20 and b not in b"\t\r\n") for b in data[:4096]):
        return None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return None


def decode_text(data: bytes) -> tuple[bytes, str]:
    """Binary behind a hex or base64 text, and which it was (``binary`` when neither)."""
    if _text(data) is None:
        return data, "binary"
    compact = b"".join(data.split())
    if _HEX.match(compact):
        digits = compact[2:] if compact[:2] == b"0x" else compact
        if len(digits) % 2 == 0:
            return bytes.fromhex(digits.decode()), "hex"
    try:
        decoded = decode_base64(compact)
    except (ValueError, binascii.Error):
        return data, "binary"
    return (decoded, "base64") if decoded else (data, "binary")


# --------------------------------------------------------------------------------------------
# Evidence


def _plugins_for(vendor: str | None, fmt: str | None, source: str) -> list[PlatformPlugin]:
    installed = platforms()
    if vendor is not None:
        plugin = platform_named(vendor)
        if plugin is None:
            names = ", ".join(p.name for p in installed) or "none"
            raise InputError(
                f"--vendor {vendor}: no platform plug-in of that name is "
                f"installed (installed: {names})",
                source=source,
                field="vendor",
            )
        chosen = [plugin]
    else:
        chosen = installed
    if fmt is not None:
        chosen = [p for p in chosen if fmt in p.formats]
        if not chosen:
            known = "; ".join(
                f"{p.name}: {', '.join(p.formats)}"
                for p in installed
                if vendor is None or p.name == vendor
            )
            raise InputError(
                f"--format {fmt}: not a known evidence format (known formats — {known or 'none'})",
                source=source,
                field="format",
            )
    return chosen


def _recognise(raw: bytes, plugins: list[PlatformPlugin], fmt: str | None) -> list[Recognition]:
    found = []
    for plugin in plugins:
        rec = plugin.recognise(raw)
        if rec is not None and (fmt is None or rec.format == fmt):
            found.append(rec)
    if not found:
        return []
    best = max(r.strength for r in found)
    return [r for r in found if r.strength == best]


def _describe(kind: str, raw: bytes) -> str:
    how = "" if kind == "binary" else f" (decoded from {kind} text)"
    return f"{len(raw)} bytes{how} starting {raw[:8].hex()}"


def _raw_evidence(
    raw: bytes, kind: str, vendor: str | None, fmt: str | None, source: str
) -> tuple[Evidence, list[str]]:
    plugins = _plugins_for(vendor, fmt, source)
    found = _recognise(raw, plugins, fmt)
    if len(found) > 1:
        names = ", ".join(f"{r.vendor}/{r.format} ({r.detail})" for r in found)
        raise InputError(
            f"the input could be any of: {names}; say which with --vendor and --format",
            source=source,
        )
    if found:
        rec = found[0]
        notes = [
            f"recognised {rec.vendor}/{rec.format}: {rec.detail}"
            + ("" if kind == "binary" else f" (decoded from {kind} text)")
        ]
        return Evidence(vendor=rec.vendor, format=rec.format, raw=rec.raw), notes
    if vendor is not None and fmt is not None:
        return Evidence(vendor=vendor, format=fmt, raw=raw), [
            f"not recognised as {vendor}/{fmt}; verifying it as that, as --vendor/--format say"
        ]
    if vendor is not None or fmt is not None:
        want = "/".join(x for x in (vendor, fmt) if x)
        raise InputError(
            f"not {want} evidence: {_describe(kind, raw)}; none of its formats "
            "matches (give both --vendor and --format to force it)",
            source=source,
        )
    known = "; ".join(f"{p.name}: {', '.join(p.formats)}" for p in plugins) or "none installed"
    raise InputError(
        f"not evidence any installed platform plug-in recognises: "
        f"{_describe(kind, raw)} (formats — {known}); if it is one, say which "
        "with --vendor and --format",
        source=source,
    )


def _strings(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    """Every dict and string of a JSON document with its path (depth-limited)."""
    if depth > _WRAPPER_DEPTH:
        return
    yield path or "$", value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]", depth + 1)


def _is_evidence_json(value: Any) -> bool:
    return isinstance(value, dict) and {"vendor", "format", "raw"} <= set(value)


def _evidence_json(value: dict[str, Any], source: str, where: str) -> Evidence:
    try:
        return Evidence.model_validate_json(json.dumps(value))
    except InputError as err:
        first = err.errors[0] if err.errors else {"msg": err.message}
        raise InputError(
            f"not a valid Evidence JSON{where}: {first['msg']}",
            source=source,
            field=err.field,
            errors=err.errors,
        ) from None


def _json_evidence(
    doc: Any, vendor: str | None, fmt: str | None, source: str
) -> tuple[Evidence, list[str]]:
    if _is_evidence_json(doc):
        return _evidence_json(doc, source, ""), []
    nested = [(p, v) for p, v in _strings(doc, "", 0) if _is_evidence_json(v)]
    if len(nested) == 1:
        where, value = nested[0]
        return _evidence_json(value, source, f" at {where}"), [f"Evidence JSON found at {where}"]
    plugins = _plugins_for(vendor, fmt, source)
    candidates: list[tuple[str, Recognition, str]] = []
    for where, value in _strings(doc, "", 0):
        if not isinstance(value, str) or len(value) < 64:
            continue
        raw, kind = decode_text(value.encode("ascii", "replace"))
        found = _recognise(raw, plugins, fmt) if kind != "binary" else []
        if len(found) == 1:
            candidates.append((where, found[0], kind))
    if len(candidates) == 1:
        where, rec, kind = candidates[0]
        note = (
            f"evidence taken from the {kind} string at {where}: "
            f"{rec.vendor}/{rec.format}, {rec.detail}"
        )
        return Evidence(vendor=rec.vendor, format=rec.format, raw=rec.raw), [note]
    if candidates:
        raise InputError(
            "the JSON document holds several pieces of evidence (at "
            f"{', '.join(w for w, _r, _k in candidates)}); pass one of them",
            source=source,
        )
    raise InputError(
        "a JSON document that is neither Evidence JSON (fields vendor, format, "
        "raw) nor holds evidence as a base64 or hex string",
        source=source,
    )


def evidence_from_bytes(
    data: bytes, *, vendor: str | None = None, fmt: str | None = None, source: str = "<input>"
) -> tuple[Evidence, list[str]]:
    """Evidence in any supported form, and notes saying how it was read.

    ``vendor`` / ``fmt`` override recognition (for Evidence JSON they replace its fields);
    an unknown vendor or format is an :class:`InputError`, as is anything unrecognised (its
    message says so when the bytes are certificates or collateral instead).
    """
    try:
        return _evidence(data, vendor, fmt, source)
    except InputError as err:
        hint = _misplaced(data)
        if hint is None:
            raise
        raise InputError(
            f"{err.message}; {hint}", field=err.field, source=err.source, errors=err.errors
        ) from None


def _misplaced(data: bytes) -> str | None:
    """What unrecognised evidence is instead, if it is an input of another kind."""
    for plugin in platforms():
        try:
            if plugin.collateral_bundle(data) is not None:
                return f"this is {plugin.title} collateral: give it with --collateral"
        except EvidenceError:
            continue
    if looks_like_certificates(data):
        return (
            "these are certificates: give them with --certs or --trust-root, or read them "
            "with `cocopart show`"
        )
    return None


def _evidence(
    data: bytes, vendor: str | None, fmt: str | None, source: str
) -> tuple[Evidence, list[str]]:
    text = _text(data)
    if text is not None and text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise InputError(f"looks like JSON but does not parse: {err}", source=source) from None
        evidence, notes = _json_evidence(doc, vendor, fmt, source)
        if vendor is not None or fmt is not None:
            _plugins_for(vendor or evidence.vendor, fmt, source)
            update = {k: v for k, v in (("vendor", vendor), ("format", fmt)) if v}
            evidence = evidence.model_copy(update=update)
        return evidence, notes
    raw, kind = decode_text(data)
    return _raw_evidence(raw, kind, vendor, fmt, source)


def load_evidence(
    path: str | Path,
    *,
    vendor: str | None = None,
    fmt: str | None = None,
    stdin: BinaryIO | None = None,
) -> tuple[Evidence, list[str]]:
    """Read evidence from a file (``-``: stdin) in any supported form; see the module."""
    data = read_input(path, "evidence", stdin=stdin)
    return evidence_from_bytes(data, vendor=vendor, fmt=fmt, source=str(path))


# --------------------------------------------------------------------------------------------
# Certificates


def load_der_certificate(der: bytes) -> Any:
    """An ``x509.Certificate`` from DER. AMD's KDS issues VCEKs with serial number 0, which
    ``cryptography`` loads with a deprecation warning; that warning is silenced here."""
    import warnings

    from cryptography import x509

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(der)


def _check_der(ders: list[bytes], source: str) -> list[bytes]:
    for index, der in enumerate(ders):
        try:
            load_der_certificate(der)
        except ValueError as err:
            raise InputError(f"certificate {index} does not parse: {err}", source=source) from None
    return ders


def _split_der(data: bytes) -> list[bytes] | None:
    """Back-to-back DER SEQUENCEs covering ``data`` exactly, else None."""
    out, pos = [], 0
    while pos < len(data):
        if data[pos] != 0x30 or pos + 2 > len(data):
            return None
        first = data[pos + 1]
        if first < 0x80:
            size, head = first, 2
        else:
            n = first & 0x7F
            if not 1 <= n <= 4 or pos + 2 + n > len(data):
                return None
            size, head = int.from_bytes(data[pos + 2 : pos + 2 + n], "big"), 2 + n
        end = pos + head + size
        if end > len(data):
            return None
        out.append(data[pos:end])
        pos = end
    return out or None


def looks_like_certificates(data: bytes) -> bool:
    """PEM text starting with a certificate block (after ``#`` comment lines), or DER
    SEQUENCEs covering the bytes exactly."""
    text = _text(data)
    if text is not None:
        lines = (line.strip() for line in text.splitlines())
        first = next((line for line in lines if line and not line.startswith("#")), "")
        return first.startswith("-----BEGIN CERTIFICATE-----")
    return _split_der(data) is not None


def certificate_table(
    data: bytes, source: str = "<input>"
) -> tuple[PlatformPlugin, list[CertificateEntry]] | None:
    """The platform whose certificate table ``data`` is, and its (non-empty) entries."""
    for plugin in platforms():
        try:
            entries = plugin.certificate_table(data)
        except EvidenceError as err:
            raise InputError(
                f"a {plugin.title} certificate table, but broken: {err}", source=source
            ) from None
        if entries is not None:
            if not entries:
                raise InputError(f"an empty {plugin.title} certificate table", source=source)
            return plugin, entries
    return None


def certificates_from_bytes(data: bytes, source: str = "<input>") -> list[bytes]:
    """The DER certificates in one blob: PEM, DER (one or concatenated, or their base64/hex
    text) or a platform's certificate table (leaf first). :class:`InputError` otherwise."""
    table = certificate_table(data, source)
    if table is not None:
        plugin, entries = table
        return _check_der(plugin.leaf_first(entries), source)
    if b"-----BEGIN" in data:
        blocks = _PEM_BLOCK.findall(data)
        if not blocks:
            raise InputError("PEM data without a CERTIFICATE block", source=source)
        try:
            ders = [decode_base64(b"".join(b.split())) for b in blocks]
        except ValueError as err:
            raise InputError(f"bad base64 in a PEM certificate: {err}", source=source) from None
        return _check_der(ders, source)
    found = _split_der(data)
    if found is None:
        raw, kind = decode_text(data)
        found = _split_der(raw) if kind != "binary" else None
    if found is None:
        raise InputError(
            f"not a certificate: neither PEM, DER nor a certificate table "
            f"({len(data)} bytes starting {data[:8].hex()})",
            source=source,
        )
    return _check_der(found, source)


def load_certificates(path: str | Path, *, stdin: BinaryIO | None = None) -> list[bytes]:
    """DER certificates from a file (``-``: stdin) or from every file of a directory (sorted
    by name, hidden files skipped); every file must hold at least one certificate."""
    source = str(path)
    if source != STDIN and Path(source).is_dir():
        files = sorted(
            p for p in Path(source).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise InputError("the directory holds no certificate files", source=source)
        out: list[bytes] = []
        for file in files:
            out += certificates_from_bytes(read_input(file, "certificate"), str(file))
        return list(dict.fromkeys(out))
    return certificates_from_bytes(read_input(path, "certificate", stdin=stdin), source)


# --------------------------------------------------------------------------------------------
# Collateral


def load_collateral(items: list[str], vendor: str) -> dict[str, bytes]:
    """Collateral from ``NAME=FILE`` items and bundle files, checked against what the
    vendor's verifier reads. An unknown name or an unrecognised bundle is an error."""
    plugin = platform_named(vendor)
    names = plugin.collateral_names if plugin is not None else ()
    out: dict[str, bytes] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if sep and name in names:
            out[name] = read_input(file, f"collateral {name}")
            continue
        accepted = ", ".join(names) if names else "none"
        if not Path(item).exists() and item != STDIN:
            if sep and name and file:
                raise InputError(
                    f"--collateral {name}: not a collateral name the {vendor} "
                    f"verifier reads (names: {accepted})",
                    source=file,
                    field=name,
                )
            raise InputError(
                f"--collateral {item}: no such file; give NAME=FILE (names: "
                f"{accepted}) or a collateral bundle file",
                source=item,
            )
        data = read_input(item, "collateral")
        bundle = None
        if plugin is not None:
            try:
                bundle = plugin.collateral_bundle(data)
            except EvidenceError as err:
                raise InputError(f"a collateral bundle, but: {err}", source=item) from None
        if bundle is None:
            raise InputError(
                f"not a collateral bundle the {vendor} plug-in reads; name the "
                f"item instead, as NAME={item} (names: {accepted})",
                source=item,
            )
        out.update(bundle)
    return out
