"""How `cocopart verify-batch` reads one evidence file: exactly as `cocopart verify` does
(every form the installed platform plug-ins recognise, or named with --vendor/--format;
cocopart.attest.inputs), for local paths and for fsspec URLs. It runs on the Dask workers,
which import it by name."""

from __future__ import annotations

from cocopart.attest.evidence import Evidence
from cocopart.attest.inputs import evidence_from_bytes, load_evidence
from cocopart.scaleout.sources import check_source_size, is_url, read_source


def read_evidence(location: str, vendor: str | None = None, fmt: str | None = None) -> Evidence:
    """The evidence at ``location``; raises (the batch turns it into an error row)."""
    if not is_url(location):
        check_source_size(location)
        return load_evidence(location, vendor=vendor, fmt=fmt)[0]
    return evidence_from_bytes(read_source(location), vendor=vendor, fmt=fmt, source=location)[0]
