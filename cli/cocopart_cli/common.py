"""Helpers shared by the commands: choosing backends, loading files, reading evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocopart.errors import BackendNotFound, ConfigError
from cocopart.registry import PluginStatus, installed, load_all_backends, load_backend
from cocopart_cli.exit_codes import CliError
from cocopart_cli.output import err_console

if TYPE_CHECKING:  # each imported where it is used: `cocopart backends` needs none of them
    from cocopart.attest.evidence import Evidence
    from cocopart.backend import Backend
    from cocopart.ops import OperationResult
    from cocopart.scenario import Scenario


def installed_backends() -> list[str]:
    """Names of the installed backends (entry points), without importing them."""
    return installed()


def load_named(name: str) -> Backend:
    """Import and instantiate one backend (BackendNotFound / BackendLoadError on failure)."""
    return load_backend(name)


def load_all() -> list[PluginStatus]:
    """Every installed backend, loaded or with its load error."""
    return load_all_backends()


def resolve_backends(names: list[str] | None) -> list[Backend]:
    """Load the named backends. Without names: every installed backend that loads (those
    that fail are reported on stderr and skipped; an explicitly named one that fails is an
    error)."""
    available = installed_backends()
    if names:
        chosen = list(dict.fromkeys(names))
        for name in chosen:
            if name not in available:
                raise BackendNotFound(name, available)
        return [load_named(n) for n in chosen]
    loaded: list[Backend] = []
    failures: list[str] = []
    for status in load_all():
        if status.ok:
            loaded.append(status.plugin)
        else:
            failures.append(str(status.error))
    for failure in failures:
        err_console().print(f"[red]warning:[/red] skipping {failure}", soft_wrap=True)
    if not loaded:
        detail = f" ({'; '.join(failures)})" if failures else ""
        raise CliError(
            "no backend could be loaded" + detail + "; install cocopart-sev-snp or cocopart-tdx"
        )
    return loaded


def backend_for(scenario: Scenario | None, name: str | None) -> Backend:
    """``--backend``, else the file's ``backend``, else the first installed backend that
    loads."""
    chosen = name or (scenario.backend if scenario is not None else None)
    if chosen is None:
        return resolve_backends(None)[0]
    return resolve_backends([chosen])[0]


def load_guest(path: Path) -> Scenario:
    """A guest/scenario file; every problem becomes a ConfigError naming file and line."""
    from cocopart.scenario import load_scenario

    return load_scenario(path)


def hex_64(text: str, option: str) -> bytes:
    """A 1..64-byte hex option value (``0x`` prefix allowed): report data, nonces."""
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise CliError(f"{option} {text!r} is not hex (give 1 to 64 bytes)") from None
    if not 1 <= len(data) <= 64:
        raise CliError(f"{option} is {len(data)} bytes; give 1 to 64 (at most 64)")
    return data


def evidence_from(data: Any) -> Evidence | None:
    """Evidence in an operation result's ``data["evidence"]``, in any of its forms (an
    Evidence, a python dict with bytes, or a JSON-mode dict)."""
    from cocopart.attest.evidence import Evidence

    if data is None:
        return None
    if isinstance(data, Evidence):
        return data
    if isinstance(data, dict):
        try:
            if isinstance(data.get("raw"), (bytes, bytearray)):
                return Evidence.model_validate(data)
            return Evidence.model_validate_json(json.dumps(data))
        except ValueError:
            return None
    return None


def result_evidence(result: OperationResult) -> Evidence | None:
    return evidence_from(result.data.get("evidence"))


def write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise CliError(f"{path}: cannot write: {err.strerror}", file=path) from None


def write_bytes(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as err:
        raise CliError(f"{path}: cannot write: {err.strerror}", file=path) from None


def to_pem(cert: bytes) -> str:
    """A certificate as PEM text (DER is converted)."""
    if cert.lstrip().startswith(b"-----BEGIN"):
        return cert.decode()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return x509.load_der_x509_certificate(cert).public_bytes(Encoding.PEM).decode()
    except ValueError as err:
        raise ConfigError(f"not a certificate: {err}") from None
