"""The output model of `cocopart verify`, apart from the other commands' models so that the
verify command imports nothing of partitions, scenarios or backends."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cocopart.attest.verifier import Verdict


class VerifyReport(BaseModel):
    """`cocopart verify`: every check of one piece of evidence and the verdict."""

    evidence_file: str
    vendor: str
    format: str
    verdict: Verdict
    ok: bool
    notes: list[str] = Field(
        default_factory=list,
        description="How the inputs were read: what was recognised, decoded or added.",
    )
