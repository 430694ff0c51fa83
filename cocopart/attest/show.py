"""Decode anything :mod:`cocopart.attest.inputs` reads, without verifying it.

:func:`decode_bytes` turns evidence (any vendor, any supported form), Evidence JSON,
certificate tables and X.509 certificates into :class:`~cocopart.attest.plugin.Decoded`
items: the evidence's own fields come from its platform plug-in
(:meth:`~cocopart.attest.plugin.PlatformPlugin.decode`), certificates get their generic X.509
fields here plus every platform's extensions (an AMD VCEK's TCB and hwID, an Intel PCK's
FMSPC and TCB). Nothing is checked: this is what ``cocopart show`` prints.
"""

from __future__ import annotations

from typing import Any

from cocopart.attest.evidence import Evidence
from cocopart.attest.inputs import (
    certificate_table,
    certificates_from_bytes,
    evidence_from_bytes,
    load_der_certificate,
    looks_like_certificates,
)
from cocopart.attest.plugin import Decoded, Section, platform_named, platforms
from cocopart.errors import EvidenceError, InputError

__all__ = ["certificate_section", "decode_bytes", "decode_certificates", "decode_evidence"]


def certificate_section(der: bytes, title: str = "certificate") -> Section:
    """Subject, issuer, serial, validity, key and fingerprints of one DER certificate."""
    import hashlib
    import warnings

    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = load_der_certificate(der)
    with warnings.catch_warnings():  # a KDS VCEK's serial 0 warns when it is parsed
        warnings.simplefilter("ignore")
        serial = cert.serial_number
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_text = f"EC {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        key_text = f"RSA {key.key_size}"
    else:
        key_text = type(key).__name__
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    fields: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{serial:#x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "public_key": key_text,
        "signature_algorithm": cert.signature_algorithm_oid.dotted_string,
        "spki_sha256": hashlib.sha256(spki).hexdigest(),
        "sha256": hashlib.sha256(der).hexdigest(),
        "self_signed": cert.subject == cert.issuer,
    }
    return Section(title=title, fields=fields)


def _extensions(der: bytes) -> list[Section]:
    out = []
    for plugin in platforms():
        try:
            section = plugin.decode_certificate(der)
        except (ValueError, EvidenceError) as err:
            section = Section(
                title=f"{plugin.title} extensions", notes=[f"present but malformed: {err}"]
            )
        if section is not None:
            out.append(section)
    return out


def decode_certificates(ders: list[bytes], source: str = "") -> Decoded:
    """One item for a list of certificates (a PEM bundle, a chain, a certificate table)."""
    sections: list[Section] = []
    for index, der in enumerate(ders):
        title = "certificate" if len(ders) == 1 else f"certificate {index}"
        sections.append(certificate_section(der, title))
        sections += _extensions(der)
    what = "1 certificate" if len(ders) == 1 else f"{len(ders)} certificates"
    return Decoded(
        vendor="",
        format="x509",
        title=f"{what}{' in ' + source if source else ''}",
        sections=sections,
        notes=["decoded only: no chain or signature checked"],
    )


def decode_evidence(evidence: Evidence) -> Decoded:
    """The evidence's fields (by its platform plug-in) and what travels with it."""
    plugin = platform_named(evidence.vendor)
    if plugin is None:
        raise InputError(
            f"no platform plug-in named {evidence.vendor!r} is installed to decode this evidence"
        )
    decoded = plugin.decode(evidence)
    extra: dict[str, Any] = {
        "vendor": evidence.vendor,
        "format": evidence.format,
        "raw_bytes": len(evidence.raw),
        "certificates": len(evidence.certificates),
        "collateral": sorted(evidence.collateral),
    }
    if evidence.nonce is not None:
        extra["nonce"] = evidence.nonce.hex()
    if evidence.manifest is not None:
        extra["manifest_bytes"] = len(evidence.manifest)
    if evidence.layer_map:
        extra["layer_map"] = evidence.layer_map
    sections = [Section(title="evidence", fields=extra), *decoded.sections]
    for index, blob in enumerate(evidence.certificates):
        try:
            ders = certificates_from_bytes(blob, f"certificate {index}")
        except InputError as err:
            sections.append(Section(title=f"certificate {index}", notes=[str(err)]))
            continue
        for der in ders:
            sections.append(certificate_section(der, f"certificate {index}"))
            sections += _extensions(der)
    return decoded.model_copy(update={"sections": sections})


def decode_bytes(
    data: bytes, *, vendor: str | None = None, fmt: str | None = None, source: str = "<input>"
) -> Decoded:
    """Decode one input of any supported kind; :class:`InputError` if it is none of them."""
    if vendor is None and fmt is None:
        if looks_like_certificates(data):
            return decode_certificates(certificates_from_bytes(data, source), source)
        found = certificate_table(data, source)
        if found is not None:
            plugin, entries = found
            decoded = decode_certificates(plugin.leaf_first(entries), source)
            table = Section(
                title=f"{plugin.title} certificate table",
                fields={e.name or e.id: f"{len(e.data)} bytes ({e.id})" for e in entries},
            )
            return decoded.model_copy(
                update={
                    "vendor": plugin.name,
                    "format": "certificate-table",
                    "title": f"{plugin.title} certificate table ({len(entries)} entries)",
                    "sections": [table, *decoded.sections],
                }
            )
    evidence, notes = evidence_from_bytes(data, vendor=vendor, fmt=fmt, source=source)
    try:
        decoded = decode_evidence(evidence)
    except EvidenceError as err:
        raise InputError(
            f"{evidence.vendor}/{evidence.format} that does not decode: {err}", source=source
        ) from None
    return decoded.model_copy(update={"notes": notes + decoded.notes})
