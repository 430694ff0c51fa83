"""Neutral views of a machine's state: runs of memory (:class:`MemoryRun`), the outcome of
one access (:class:`AccessOutcome`) and vCPUs (:class:`VcpuView`)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field


class MemoryRun(BaseModel):
    """Neutral view of a run of guest memory with equal state."""

    start: int
    end: int
    private: bool
    validated: bool = Field(description="Validated (SNP) / accepted (TDX) for private use.")
    access: dict[str, str] = Field(
        default_factory=dict, description="Workload layer -> access string ('rwus' letters).")
    context: bool = Field(default=False, description="Holds a vCPU context (VMSA).")
    owner: str = Field(default="l1", description="Who owns the pages (docs/authority.md).")
    assigned: bool = Field(default=False, description="Assigned to the owner for good (memory "
                           "map, protocol pages, l1's own); else a claimed or pool page.")


def merged(runs: Iterable[MemoryRun]) -> list[MemoryRun]:
    """Adjacent runs with equal neutral state joined into one (what ``memory_view``
    returns: never two equal neighbours)."""
    out: list[MemoryRun] = []
    for run in runs:
        last = out[-1] if out else None
        if last is not None and last.end == run.start and (
                last.private, last.validated, last.access, last.context) == (
                run.private, run.validated, run.access, run.context):
            last.end = run.end
        else:
            out.append(run)
    return out


class AccessOutcome(BaseModel):
    """What happens when a layer touches a page."""

    ok: bool
    fault: str | None = Field(default=None, description="e.g. '#VC 0x404', '#NPF', 'L2->L1 "
                              "EPT violation'.")
    handled_by: str | None = Field(default=None, description="Layer that sees the fault.")


class VcpuView(BaseModel):
    layer: str
    vcpu: int
    state: str  # "running" | "stopped"
    context_gpa: int | None = None
    apic_id: int | None = None
