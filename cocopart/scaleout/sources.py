"""Where evidence files come from: paths, directories, globs and manifests of URLs.

Local paths are walked here (directories recursively, in sorted order, keeping the files
whose names match the patterns); anything with ``://`` is an fsspec URL (``s3://``,
``gs://``, ``https://``, ``memory://``, ``file://``; the protocol's fsspec package must be
installed on the workers) and is read by the worker that verifies it. A manifest is a text
file with one location per line (``#`` comments and blank lines are skipped; relative paths
are relative to the manifest).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cocopart.errors import ConfigError, EvidenceError

#: Names a directory walk keeps by default: Evidence JSON, raw SNP reports and TDX quotes.
DEFAULT_PATTERNS = ("*.json", "*.bin", "*.dat", "*.hex", "*.b64")
#: Largest evidence file read (a report is 1.2 KiB, a quote with its chain ~ 10 KiB, Evidence
#: JSON with collateral ~ 100 KiB): anything bigger is refused before it is read.
MAX_EVIDENCE_BYTES = 16 << 20
_GLOB = frozenset("*?[")


def is_url(location: str) -> bool:
    return "://" in location


def expand_sources(
    paths: Sequence[str],
    *,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    manifests: Sequence[str | Path] = (),
) -> list[str]:
    """Every evidence location named by ``paths`` (files, directories, globs, URLs) and by
    the ``manifests``, in the order given, each once. Raises :class:`ConfigError` for a path
    that names nothing."""
    out: list[str] = []
    for path in paths:
        out += _expand(path, patterns)
    for manifest in manifests:
        out += _manifest(Path(manifest))
    return list(dict.fromkeys(out))


def _expand(path: str, patterns: Sequence[str]) -> list[str]:
    if is_url(path):
        return _expand_url(path) if _GLOB & set(path) else [path]
    p = Path(path)
    if p.is_dir():
        return _walk(p, patterns)
    if p.is_file():
        return [str(p)]
    if _GLOB & set(path):
        found: list[str] = []
        for hit in sorted(glob.glob(path, recursive=True)):
            found += _walk(Path(hit), patterns) if Path(hit).is_dir() else [hit]
        if found:
            return found
        raise ConfigError("the pattern matches no file", source=path)
    raise ConfigError("no such file or directory (evidence)", source=path)


def _walk(root: Path, patterns: Sequence[str]) -> list[str]:
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out += [
            os.path.join(folder, f)
            for f in sorted(files)
            if any(fnmatch.fnmatch(f, pat) for pat in patterns)
        ]
    return out


def _expand_url(url: str) -> list[str]:
    try:
        import fsspec
    except ImportError:
        raise ConfigError(
            "reading URLs needs fsspec: pip install 'cocopart[scale-out]'", source=url
        ) from None
    try:
        files = fsspec.open_files(url)
    except (ImportError, ValueError, OSError) as err:
        raise ConfigError(f"cannot list the URL pattern: {err}", source=url) from None
    found = sorted(f.full_name for f in files)
    if not found:
        raise ConfigError("the pattern matches no object", source=url)
    return found


def _manifest(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"cannot read the manifest: {getattr(err, 'strerror', None) or err}", source=str(path)
        ) from None
    out = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if entry:
            out.append(entry if is_url(entry) or os.path.isabs(entry) else str(path.parent / entry))
    return out


def read_source(location: str, limit: int = MAX_EVIDENCE_BYTES) -> bytes:
    """The bytes at ``location`` (a path or an fsspec URL), refusing more than ``limit``
    before reading them. Raises :class:`EvidenceError`."""
    try:
        if is_url(location):
            import fsspec

            with fsspec.open(location, "rb") as fh:
                size = getattr(fh, "size", None)
                _check_size(location, size, limit)
                data: bytes = fh.read(limit + 1)
        else:
            check_source_size(location, limit)
            with open(location, "rb") as fh:
                data = fh.read(limit + 1)
    except EvidenceError:
        raise
    except (OSError, ImportError, ValueError) as err:
        detail = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise EvidenceError(f"{location}: cannot read: {detail}") from None
    _check_size(location, len(data), limit)
    return data


def check_source_size(location: str, limit: int = MAX_EVIDENCE_BYTES) -> None:
    """Refuse a local file larger than ``limit`` without reading it."""
    if not is_url(location):
        try:
            size = os.stat(location).st_size
        except OSError as err:
            raise EvidenceError(f"{location}: cannot read: {err.strerror}") from None
        _check_size(location, size, limit)


def _check_size(location: str, size: int | None, limit: int) -> None:
    if size is not None and size > limit:
        raise EvidenceError(
            f"{location}: {size:,} bytes; evidence files are at most {limit:,} bytes"
        )
