"""How `cocopart verify-batch` reads one evidence file: exactly as `cocopart verify` does
(Evidence JSON or raw reports and quotes, recognised or named with --vendor/--format), for
local paths and for fsspec URLs. It runs on the Dask workers, which import it by name."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlparse

from cocopart.attest.evidence import Evidence
from cocopart.scaleout.sources import check_source_size, is_url, read_source
from cocopart_cli.commands.verify import load_evidence
from cocopart_cli.errors import CliError


def read_evidence(location: str, vendor: str | None = None, fmt: str | None = None
                  ) -> Evidence:
    """The evidence at ``location``; raises (the batch turns it into an error row)."""
    if not is_url(location):
        check_source_size(location)
        return load_evidence(Path(location), vendor, fmt)
    data = read_source(location)
    with tempfile.TemporaryDirectory(prefix="cocopart-") as folder:
        local = Path(folder) / (Path(urlparse(location).path).name or "evidence")
        local.write_bytes(data)
        try:
            return load_evidence(local, vendor, fmt)
        except CliError as err:
            raise CliError(err.message.replace(str(local), location), err.code) from None
