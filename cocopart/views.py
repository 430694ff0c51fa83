"""Neutral views of a machine's state: runs of memory (:class:`MemoryRun`), the outcome of
one access (:class:`AccessOutcome`) and vCPUs (:class:`VcpuView`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from pydantic import BaseModel, Field

#: A run's neutral state: (private, validated, access as sorted (layer, letters) pairs,
#: context).
RunState = tuple[bool, bool, tuple[tuple[str, str], ...], bool]
V = TypeVar("V", bound=Hashable)


class MemoryRun(BaseModel):
    """Neutral view of a run of guest memory with equal state."""

    start: int
    end: int
    private: bool
    validated: bool = Field(description="Validated (SNP) / accepted (TDX) for private use.")
    access: dict[str, str] = Field(
        default_factory=dict, description="Workload layer -> access string ('rwus' letters)."
    )
    context: bool = Field(default=False, description="Holds a vCPU context (VMSA).")
    owner: str = Field(default="l1", description="Who owns the pages (docs/authority.md).")
    assigned: bool = Field(
        default=False,
        description="Assigned to the owner for good (memory "
        "map, protocol pages, l1's own); else a claimed or pool page.",
    )


def merged(runs: Iterable[MemoryRun]) -> list[MemoryRun]:
    """Adjacent runs with equal neutral state joined into one (what ``memory_view``
    returns: never two equal neighbours)."""
    out: list[MemoryRun] = []
    for run in runs:
        last = out[-1] if out else None
        if (
            last is not None
            and last.end == run.start
            and (last.private, last.validated, last.access, last.context)
            == (run.private, run.validated, run.access, run.context)
        ):
            last.end = run.end
        else:
            out.append(run)
    return out


def build_view(
    runs: Iterable[tuple[int, int, V]], state_of: Callable[[V], RunState]
) -> list[MemoryRun]:
    """``memory_view`` from a backend's own runs ``(start, end, value)``: each distinct value
    is translated to its neutral state once, equal neighbours are joined before any object
    is built, and each merged run becomes one MemoryRun (built without re-validation). The
    cost is one tuple comparison per backend run, one object per merged run."""
    cache: dict[V, RunState] = {}
    out: list[MemoryRun] = []
    cur: RunState | None = None
    cur_s = cur_e = 0
    for s, e, v in runs:
        st = cache.get(v)
        if st is None:
            st = cache[v] = state_of(v)
        if s == cur_e and st == cur:
            cur_e = e
            continue
        if cur is not None:
            out.append(_state_run(cur_s, cur_e, cur))
        cur, cur_s, cur_e = st, s, e
    if cur is not None:
        out.append(_state_run(cur_s, cur_e, cur))
    return out


def _state_run(start: int, end: int, st: RunState) -> MemoryRun:
    return fast_run(
        {
            "start": start,
            "end": end,
            "private": st[0],
            "validated": st[1],
            "access": dict(st[2]),
            "context": st[3],
            "owner": "l1",
            "assigned": False,
        }
    )


#: Every field is set on a run built by :func:`fast_run` (shared: pydantic only adds to it).
_ALL_FIELDS = set(MemoryRun.model_fields)


def fast_run(fields: dict[str, object]) -> MemoryRun:
    """A MemoryRun from complete, already valid fields without validation (what
    ``model_construct`` does, minus its per-call bookkeeping; views build 10^5 of them)."""
    run = MemoryRun.__new__(MemoryRun)
    object.__setattr__(run, "__dict__", fields)
    object.__setattr__(run, "__pydantic_fields_set__", _ALL_FIELDS)
    object.__setattr__(run, "__pydantic_extra__", None)
    object.__setattr__(run, "__pydantic_private__", None)
    return run


class AccessOutcome(BaseModel):
    """What happens when a layer touches a page."""

    ok: bool
    fault: str | None = Field(
        default=None, description="e.g. '#VC 0x404', '#NPF', 'L2->L1 EPT violation'."
    )
    handled_by: str | None = Field(default=None, description="Layer that sees the fault.")


class VcpuView(BaseModel):
    layer: str
    vcpu: int
    state: str  # "running" | "stopped"
    context_gpa: int | None = None
    apic_id: int | None = None
