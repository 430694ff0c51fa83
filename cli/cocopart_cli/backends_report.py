"""What ``cocopart backends`` reports (its ``--json`` model), apart from the other output
models so that listing the backends imports none of what those describe."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cocopart.backend import CapabilityAnswer


class BackendInfo(BaseModel):
    """One installed backend: loaded with its capability matrix, or its load error."""

    name: str
    loaded: bool
    title: str = ""
    vendor: str = ""
    version: str = ""
    error: str | None = Field(default=None, description="Why it failed to load.")
    capabilities: dict[str, CapabilityAnswer] = Field(default_factory=dict)


class BackendsReport(BaseModel):
    """`cocopart backends`: installed backends and the capability matrix."""

    backends: list[BackendInfo]
    capabilities: list[str] = Field(description="Every capability any backend answers.")
