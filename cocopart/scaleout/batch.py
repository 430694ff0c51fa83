"""Batch verification: every evidence file of an archive against one policy, as Dask tasks.

Each worker builds one :class:`cocopart.attest.verifier.Verifier` per policy and trust store
and keeps it (with the plug-ins' certificate, collateral and signature caches) for every
file it verifies. Every file gets exactly one row: a file that cannot be read or parsed is a
row with verdict ``error`` and the reason, never a crashed batch. All files are verified as
of one instant, so the table does not depend on what ran it or how long it took.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from cocopart.attest.evidence import Claims, Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verdict, Verifier
from cocopart.errors import EvidenceError, InputError
from cocopart.scaleout.engine import Cluster, EngineInfo, Progress, run_chunked
from cocopart.scaleout.sources import read_source

#: Turns one location (a path or URL) into evidence; raises for unusable input. It runs on
#: the workers, so it must be a module-level function (or a functools.partial of one).
EvidenceReader = Callable[[str], Evidence]

BatchVerdict = Literal["accepted", "rejected", "not-authentic", "error"]
VERDICTS: tuple[BatchVerdict, ...] = ("accepted", "rejected", "not-authentic", "error")
#: The claim that names a guest's launch measurement, per vendor family.
_LAUNCH = ("measurement", "mrtd")


def read_evidence_json(location: str) -> Evidence:
    """The default reader: an Evidence JSON file (what ``cocopart attest`` writes)."""
    data = read_source(location)
    if not data.lstrip().startswith(b"{"):
        raise EvidenceError(
            f"{location}: not Evidence JSON (raw reports and quotes need a "
            "reader that recognises them, as `cocopart verify-batch` has)"
        )
    try:
        return Evidence.model_validate_json(data)
    except (ValidationError, InputError) as err:
        errors = err.errors() if isinstance(err, ValidationError) else (err.errors or [])
        first = errors[0] if errors else {"loc": (), "msg": str(err)}
        field = ".".join(str(p) for p in first["loc"])
        raise EvidenceError(
            f"{location}: not an Evidence JSON file: "
            f"{f'field {field!r}: ' if field else ''}{first['msg']}"
        ) from None


class BatchRow(BaseModel):
    """The verdict on one evidence file and its key claims (a table row)."""

    file: str
    vendor: str | None = None
    format: str | None = None
    verdict: BatchVerdict = Field(
        description="accepted; rejected (authentic, but a policy "
        "check failed); not-authentic (a vendor check failed or it "
        "did not parse); error (the file could not be used)."
    )
    failed_checks: list[str] = Field(default_factory=list)
    checks: int = Field(default=0, description="Checks made.")
    detail: str = Field(default="", description="The first failed check's detail, or the error.")
    measurement: str | None = Field(
        default=None, description="Launch measurement (SNP MEASUREMENT, TDX MRTD), hex."
    )
    measurements: dict[str, str] = Field(
        default_factory=dict, description="Every measurement claim, hex."
    )
    tcb: dict[str, int] = Field(default_factory=dict)
    tcb_status: str | None = None
    origin_layer: str | None = None
    vendor_level: str | None = Field(default=None, description="e.g. VMPL1, L2 VM 1.")
    via_privileged_layer: bool | None = None
    report_data: str | None = Field(default=None, description="REPORT_DATA, hex.")
    debug: bool | None = None
    signer: str | None = None
    platform_id: str | None = None
    simulated: bool | None = None


class BatchSummary(BaseModel):
    """Counts over the batch."""

    files: int
    by_verdict: dict[str, int] = Field(description="Files per verdict (every verdict listed).")
    by_failed_check: dict[str, int] = Field(
        description="Files failing each check, most frequent first."
    )
    by_vendor: dict[str, int]


class BatchResult(BaseModel):
    """A verified batch: one row per file in input order, the summary, what ran it."""

    policy: Policy
    now: datetime = Field(description="The instant every file was verified as of.")
    rows: list[BatchRow]
    summary: BatchSummary
    engine: EngineInfo

    @property
    def worst(self) -> BatchVerdict:
        """The worst verdict in the batch (error > not-authentic > rejected > accepted)."""
        present = {r.verdict for r in self.rows}
        return next((v for v in reversed(VERDICTS) if v in present), "accepted")


def classify(verdict: Verdict) -> BatchVerdict:
    """accepted; rejected when only ``policy.*`` checks failed; else not-authentic."""
    if verdict.ok:
        return "accepted"
    authentic = verdict.claims is not None and all(
        c.ok for c in verdict.checks if not c.name.startswith("policy.")
    )
    return "rejected" if authentic else "not-authentic"


def _claims_columns(claims: Claims) -> dict[str, object]:
    measurements = {k: v.hex() for k, v in sorted(claims.measurements.items())}
    return {
        "measurement": next((measurements[k] for k in _LAUNCH if k in measurements), None),
        "measurements": measurements,
        "tcb": dict(sorted(claims.tcb.items())),
        "tcb_status": claims.tcb_status,
        "origin_layer": claims.origin.layer,
        "vendor_level": claims.origin.vendor_level,
        "via_privileged_layer": claims.origin.via_privileged_layer,
        "report_data": claims.report_data.hex(),
        "debug": claims.debug,
        "signer": claims.signer or None,
        "platform_id": claims.platform_id or None,
        "simulated": claims.simulated,
    }


@dataclass(frozen=True)
class _BatchContext:
    """Shipped once to every worker."""

    key: str
    policy: Policy
    trust: TrustStore
    now: datetime
    reader: EvidenceReader


_VERIFIERS: dict[str, Verifier] = {}


def _verifier(ctx: _BatchContext) -> Verifier:
    """This worker's verifier for the batch's policy and trust store (kept across tasks)."""
    verifier = _VERIFIERS.get(ctx.key)
    if verifier is None:
        if len(_VERIFIERS) > 16:
            _VERIFIERS.clear()
        verifier = _VERIFIERS[ctx.key] = Verifier(ctx.policy, ctx.trust)
    return verifier


def verify_one(
    location: str, verifier: Verifier, now: datetime, reader: EvidenceReader = read_evidence_json
) -> BatchRow:
    """Verify one file; every failure is a row, never an exception."""
    try:
        evidence = reader(location)
    except Exception as err:  # noqa: BLE001 - unusable input is a row, whatever the reader
        return BatchRow(file=location, verdict="error", detail=str(err) or type(err).__name__)
    try:
        verdict = verifier.verify(evidence, now)
    except Exception as err:  # noqa: BLE001 - a plug-in that raised: the row says so
        return BatchRow(
            file=location,
            vendor=evidence.vendor,
            format=evidence.format,
            verdict="error",
            detail=f"the {evidence.vendor} verifier failed: {type(err).__name__}: {err}",
        )
    failed = verdict.failed
    return BatchRow(
        file=location,
        vendor=evidence.vendor,
        format=evidence.format,
        verdict=classify(verdict),
        failed_checks=[c.name for c in failed],
        checks=len(verdict.checks),
        detail=failed[0].detail if failed else "",
        **(_claims_columns(verdict.claims) if verdict.claims else {}),
    )


def _verify_files(ctx: _BatchContext, locations: Sequence[str]) -> list[BatchRow]:
    verifier = _verifier(ctx)
    return [verify_one(loc, verifier, ctx.now, ctx.reader) for loc in locations]


def summarize(rows: Sequence[BatchRow]) -> BatchSummary:
    verdicts = Counter(r.verdict for r in rows)
    checks = Counter(name for r in rows for name in r.failed_checks)
    vendors = Counter(r.vendor or "unknown" for r in rows)
    return BatchSummary(
        files=len(rows),
        by_verdict={v: verdicts[v] for v in VERDICTS},
        by_failed_check=dict(sorted(checks.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_vendor=dict(sorted(vendors.items())),
    )


def verify_batch(
    locations: Sequence[str],
    policy: Policy | None = None,
    *,
    trust: TrustStore | None = None,
    now: datetime | None = None,
    reader: EvidenceReader = read_evidence_json,
    cluster: Cluster | None = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Verify every location (see :func:`cocopart.scaleout.expand_sources`) against
    ``policy`` as of ``now`` (default: the moment the batch starts) on ``cluster``.
    Raises only :class:`cocopart.errors.CocopartError`; a bad file is a row."""
    policy = policy or Policy()
    trust = trust or TrustStore()
    now = now or datetime.now(UTC)
    key = hashlib.sha256(
        policy.model_dump_json().encode() + b"\0" + trust.model_dump_json().encode()
    ).hexdigest()
    ctx = _BatchContext(key=key, policy=policy, trust=trust, now=now, reader=reader)
    rows, engine = run_chunked(
        _verify_files, ctx, list(locations), cluster, progress=progress, label="verify-batch"
    )
    return BatchResult(policy=policy, now=now, rows=rows, summary=summarize(rows), engine=engine)
