"""`cocopart verify-batch`: verify every evidence file of an archive against one policy."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart.attest.policy import Policy
from cocopart.attest.verifier import EVIDENCE_GROUP, TrustStore
from cocopart.registry import installed
from cocopart.scaleout.sources import DEFAULT_PATTERNS
from cocopart_cli.cluster_options import (
    ChunkSize,
    Scheduler,
    Serial,
    Workers,
    cluster_from,
    describe_engine,
    progress_bar,
)
from cocopart_cli.common import hex_64, write_text
from cocopart_cli.errors import EXIT_FAILED, EXIT_POLICY, CliError
from cocopart_cli.models import VerifyBatchReport
from cocopart_cli.output import begin, console, emit_json, fmt_count
from cocopart_cli.policyfile import load_policy

_VERDICT_STYLE = {"accepted": "green", "rejected": "yellow", "not-authentic": "red", "error": "red"}
#: Failed checks listed on the console (the summary file has all).
TOP_CHECKS = 15


def exit_code(report: VerifyBatchReport) -> int:
    """0 every file accepted; 4 the only failures are policy rejections of authentic
    evidence; 1 some evidence is not authentic or could not be used."""
    counts = report.summary.by_verdict
    if counts.get("not-authentic", 0) or counts.get("error", 0):
        return EXIT_FAILED
    return EXIT_POLICY if counts.get("rejected", 0) else 0


def trust_store(roots: list[Path], vendor_roots: bool) -> TrustStore:
    """Each extra root trusted for every installed evidence vendor (a root only chains the
    evidence it signed)."""
    from cocopart.attest.inputs import load_certificates

    trust = TrustStore(trust_vendor_roots=vendor_roots)
    for path in roots:
        for der in load_certificates(str(path)):
            for vendor in installed(EVIDENCE_GROUP):
                trust = trust.with_root(vendor, der)
    return trust


def render(report: VerifyBatchReport) -> None:
    out = console()
    s = report.summary
    out.print(f"verified {fmt_count(s.files)} file(s) as of {report.now.isoformat()}")
    t = Table(title="by verdict", title_justify="left")
    t.add_column("verdict")
    t.add_column("files", justify="right")
    for verdict, n in s.by_verdict.items():
        style = _VERDICT_STYLE[verdict] if n else "dim"
        t.add_row(f"[{style}]{verdict}[/{style}]", fmt_count(n))
    out.print(t)
    if s.by_failed_check:
        c = Table(title="by failed check", title_justify="left")
        c.add_column("check")
        c.add_column("files", justify="right")
        for name, n in list(s.by_failed_check.items())[:TOP_CHECKS]:
            c.add_row(escape(name), fmt_count(n))
        out.print(c)
        if len(s.by_failed_check) > TOP_CHECKS:
            out.print(
                f"... and {len(s.by_failed_check) - TOP_CHECKS} more checks (see "
                f"{escape(report.summary_file)})"
            )
    out.print(escape(describe_engine(report.engine)))
    out.print(
        escape(
            f"tables: {report.files.parquet}, {report.files.jsonl}; summary: {report.summary_file}"
        )
    )


def register(app: typer.Typer) -> None:
    @app.command("verify-batch")
    def verify_batch_cmd(
        paths: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="PATHS...",
                help="Evidence files, directories (walked recursively), "
                "globs ('archive/**/*.json') or fsspec URLs (s3://bucket/x.json).",
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(
                metavar="POLICY.toml",
                help="Policy file (as for `cocopart verify`); default: the strict default policy.",
            ),
        ] = None,
        manifest: Annotated[
            list[Path] | None,
            typer.Option(
                metavar="FILE",
                help="A text file listing one location (path or URL) per line; repeatable.",
            ),
        ] = None,
        pattern: Annotated[
            list[str] | None,
            typer.Option(
                metavar="GLOB",
                help="File names kept when walking a directory; repeatable. "
                f"Default: {' '.join(DEFAULT_PATTERNS)}.",
            ),
        ] = None,
        trust_root: Annotated[
            list[Path] | None,
            typer.Option(
                metavar="FILE", help="Extra root to trust (e.g. a simulated root); repeatable."
            ),
        ] = None,
        vendor_roots: Annotated[
            bool, typer.Option(help="Trust the vendors' real roots (AMD ARKs, Intel SGX Root CA).")
        ] = True,
        now: Annotated[
            str | None,
            typer.Option(
                metavar="ISO",
                help="Verify every file as of this time; default: when the batch starts.",
            ),
        ] = None,
        nonce: Annotated[
            str | None,
            typer.Option(
                metavar="HEX", help="Expected freshness nonce (the policy's expected_nonce)."
            ),
        ] = None,
        vendor: Annotated[
            str | None,
            typer.Option(help="sev-snp or tdx, for raw evidence that is not recognised."),
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format", help="Evidence format of raw files, e.g. snp-report, tdx-quote."
            ),
        ] = None,
        out: Annotated[
            Path,
            typer.Option(
                metavar="DIR", help="Where to write verify.parquet, verify.jsonl and summary.json."
            ),
        ] = Path("verify-batch"),
        scheduler: Scheduler = None,
        workers: Workers = None,
        serial: Serial = False,
        chunk_size: ChunkSize = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Print the summary as JSON (schema: `cocopart schema verify-batch`)."
            ),
        ] = False,
    ) -> None:
        """Verify every evidence file against a policy and trust roots, as Dask tasks;
        write one row per file (verdict, failed checks, measurement, TCB, layer, report
        data) as Parquet and JSONL, and counts by verdict and failed check.

        A file that cannot be read or parsed is a row with verdict `error`, never a failed
        batch. Exit 0 when every file is accepted, 4 when the only failures are policy
        rejections of authentic evidence, 1 when some evidence is not authentic or could
        not be used, 2 for a bad option, policy or path.

        **Example:** `cocopart verify-batch archive/ --policy examples/policy.toml`
        """
        begin(json_output)
        from cocopart.scaleout import expand_sources, verify_batch, write_batch_tables
        from cocopart_cli.batch_reader import read_evidence
        from cocopart_cli.commands.verify import parse_now

        cluster = cluster_from(scheduler, workers, serial, chunk_size)
        chosen = load_policy(policy) if policy else Policy()
        if nonce is not None:
            chosen = chosen.model_copy(update={"expected_nonce": hex_64(nonce, "--nonce")})
        if not paths and not manifest:
            raise CliError("name evidence to verify: PATHS... or --manifest FILE")
        locations = expand_sources(
            paths or [], patterns=pattern or DEFAULT_PATTERNS, manifests=manifest or []
        )
        if not locations:
            raise CliError(
                "no evidence file found (directories keep "
                f"{' '.join(pattern or DEFAULT_PATTERNS)}; see --pattern)"
            )
        trust = trust_store(trust_root or [], vendor_roots)
        reader = functools.partial(read_evidence, vendor=vendor, fmt=fmt)
        with progress_bar("verify-batch") as progress:
            result = verify_batch(
                locations,
                chosen,
                trust=trust,
                now=parse_now(now),
                reader=reader,
                cluster=cluster,
                progress=progress,
            )
        files = write_batch_tables(result, out)
        summary_file = out / "summary.json"
        write_text(summary_file, result.summary.model_dump_json(indent=2) + "\n")
        report = VerifyBatchReport(
            now=result.now,
            summary=result.summary,
            files=files,
            summary_file=str(summary_file),
            engine=result.engine,
            ok=result.worst == "accepted",
        )
        if json_output:
            emit_json(report)
        else:
            render(report)
        code = exit_code(report)
        if code:
            raise typer.Exit(code)
