"""Bytes in JSON: standard base64 out, standard or URL-safe base64 in.

Evidence, trust stores and configfs-tsm reports carry raw bytes. In JSON they are written
as *standard* base64 (RFC 4648 §4, ``+/`` and ``=`` padding), which ``base64 -d`` and
``jq -r .raw | base64 -d`` read, and accepted in either alphabet (§4 or the URL-safe §5,
which cocopart wrote before), with or without padding. A ``str`` is read as base64 in
Python mode too (a JSON-mode dict, e.g. ``model_dump(mode="json")``, validates back); a
``bytes`` value is taken as it is.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import PlainSerializer, WithJsonSchema, WrapValidator

__all__ = ["Base64Bytes", "decode_base64", "encode_base64"]

_B64_TEXT = re.compile(r"^[A-Za-z0-9+/_\-]*={0,2}$")


def encode_base64(data: bytes) -> str:
    """Standard base64 (``+/``, padded)."""
    return base64.b64encode(data).decode("ascii")


def decode_base64(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace ignored.

    Raises :class:`ValueError` (``binascii.Error``) for anything else, including a mix of
    both alphabets.
    """
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    compact = "".join(raw.split())
    if not _B64_TEXT.match(compact):
        raise binascii.Error("not base64 text")
    if ("-" in compact or "_" in compact) and ("+" in compact or "/" in compact):
        raise binascii.Error("mixes the standard and the URL-safe base64 alphabets")
    body = compact.rstrip("=")
    if len(body) % 4 == 1:
        raise binascii.Error("base64 text has an impossible length")
    padded = body + "=" * (-len(body) % 4)
    if "-" in body or "_" in body:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def _validate(value: Any, handler: Any) -> Any:
    if isinstance(value, str):
        try:
            return decode_base64(value)
        except ValueError as exc:
            raise ValueError(f"not base64: {exc}") from None
    return handler(value)


#: ``bytes`` that travel through JSON as standard base64 (URL-safe accepted on input).
Base64Bytes = Annotated[
    bytes,
    WrapValidator(_validate),
    PlainSerializer(encode_base64, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
