"""Shared by the scale-out tests: a small base scenario, sweep files, an evidence archive
(simulated evidence from both backends, a real SNP report with its certificates, a corrupt
file) and a CLI runner."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner, Result

from cocopart.attest.evidence import Evidence

REPO = Path(__file__).resolve().parents[2]

#: A 1 GiB guest: each run takes a few tens of milliseconds on either backend.
BASE = """\
name = "base"

[guest]
memory = "1GiB"
vcpus = 2
workload_layers = 2
interrupt_mode = "restricted"

[[steps]]
macro = "bring-up"

[[steps]]
macro = "share-round"
layer = "l2.1"

[[steps]]
macro = "attest-each-layer"

[[steps]]
macro = "interrupts"
"""

#: 2 x 2 x 2 parameter points x 2 backends = 16 points; the TDX hardware-source points are
#: not supported (only L1 may call TDG.MR.REPORT).
SWEEP = """\
name = "small"
scenario = "base.toml"

[axes]
"guest.memory" = { start = "1GiB", stop = "2GiB", factor = 2 }
guest.vcpus = [1, 2]
"steps.2.source" = ["service", "hardware"]
"""

SNP_REPORT = "snp/virtee-milan-v2.report.bin"
SNP_CERTS = ("snp/virtee-milan-v2.vcek.der", "snp/virtee-milan.cert_chain.pem")


def invoke(runner: CliRunner, *args: object) -> Result:
    """Run ``cocopart ARGS`` in-process."""
    from cocopart_cli.main import app

    return runner.invoke(app, [str(a) for a in args])


def write_sweep(folder: Path, sweep: str = SWEEP, base: str = BASE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.toml").write_text(base)
    path = folder / "sweep.toml"
    path.write_text(sweep)
    return path


def real_snp_evidence(vectors: Path) -> Evidence:
    """A real Milan SNP report with its VCEK and AMD chain, as one Evidence JSON."""
    return Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(vectors / SNP_REPORT).read_bytes(),
        certificates=[(vectors / c).read_bytes() for c in SNP_CERTS],
    )


def build_archive(
    folder: Path, runner: CliRunner, guest: Path, vectors: Path | None, copies: int = 3
) -> dict[str, Path]:
    """An archive of evidence files under ``folder/archive`` and the simulated roots:

    - ``snp/l2.1-N.json`` and ``tdx/l2.1-N.json``: simulated service evidence from l2.1;
    - ``snp/real.json``: the real Milan report (when the vectors are present);
    - ``broken/corrupt.json`` (truncated JSON) and ``broken/garbage.bin`` (unknown raw).
    """
    archive = folder / "archive"
    roots: dict[str, Path] = {}
    for backend in ("sev-snp", "tdx"):
        sub = archive / ("snp" if backend == "sev-snp" else "tdx")
        sub.mkdir(parents=True, exist_ok=True)
        first = sub / "l2.1-0.json"
        root = folder / f"{backend}.root.pem"
        res = invoke(
            runner,
            "attest",
            "--simulate",
            guest,
            "--backend",
            backend,
            "--layer",
            "l2.1",
            "--report-data",
            "ab" * 32,
            "--out",
            first,
            "--root-out",
            root,
        )
        assert res.exit_code == 0, res.output
        roots[backend] = root
        for i in range(1, copies):
            shutil.copy(first, sub / f"l2.1-{i}.json")
    if vectors is not None:
        (archive / "snp" / "real.json").write_text(real_snp_evidence(vectors).model_dump_json())
    broken = archive / "broken"
    broken.mkdir()
    (broken / "corrupt.json").write_text('{"vendor": "sev-snp", "format"')
    (broken / "garbage.bin").write_bytes(b"\x01\x02\x03" * 10)
    return {"archive": archive, **roots}
