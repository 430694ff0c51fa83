"""The core executor's checks around one operation: what is decided before anything runs
(the guest's bounds and the authority rules) and how a result is settled afterwards (exact
progress, and every state change outside the done prefix).

Both are vendor-neutral and run for every backend, so a third backend gets them for free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocopart.authority import (
    AUTHORITY_VENDOR,
    RULE_ACCESS_ON_VALIDATED_PAGES,
    RULE_LOWER_NEVER_ACTS_ON_HIGHER,
    RULE_RANGE_INSIDE_RAM,
    Ownership,
    Refusal,
    bsp_refusal,
)
from cocopart.errors import ConfigError
from cocopart.layers import EdgeKind
from cocopart.model import L1, PartitionConfig, format_size
from cocopart.ops import (
    ArchError,
    ConfigureInterrupts,
    ConvertPages,
    DeleteVcpu,
    Operation,
    OperationResult,
    Progress,
    RescindPages,
    SetAccess,
    StateChange,
    Status,
    ValidatePages,
)
from cocopart.protocol.ids import ResultCode
from cocopart.views import fast_run

if TYPE_CHECKING:
    from cocopart.backend import Machine, MemoryRun
    from cocopart.layers import Route


def check_bounds(op: Operation, config: PartitionConfig) -> None:
    """RULE_RANGE_INSIDE_RAM and page-size tiling: user mistakes, raised as ConfigError."""
    rng = getattr(op, "range", None)
    if rng is None:
        return
    if rng.end > config.memory:
        raise ConfigError(
            f"range {rng} ends beyond guest RAM ({format_size(config.memory)}); "
            f"operations act on guest RAM only ({RULE_RANGE_INSIDE_RAM})",
            field="range",
        )
    forced = getattr(op, "page_size", None)
    if forced is not None and rng.size % forced.bytes:
        raise ConfigError(
            f"range {rng} is not a whole number of {forced.value} pages; drop "
            "page_size to let the backend pick page sizes, or resize the range",
            field="page_size",
        )


def refusal_for(
    op: Operation, machine: Machine, view: list[MemoryRun] | None = None
) -> Refusal | None:
    """The authority rule ``op`` breaks, if any (cocopart.authority). ``view``: the
    machine's memory view of ``op``'s range, when the caller already has it."""
    auth = machine.authority
    if isinstance(op, (ValidatePages, RescindPages, ConvertPages)):
        return auth.check_state(op.layer, op.range.start, op.range.end, op.op)
    if isinstance(op, SetAccess) and (op.target in auth.workloads or op.target == L1):
        refusal = auth.check_set_access(
            op.layer, op.target, op.range.start, op.range.end, op.access
        )
        if refusal is None and op.target in auth.workloads:
            refusal = _not_validated(
                view if view is not None else machine.memory_view(op.range.start, op.range.end)
            )
        return refusal
    if isinstance(op, ConfigureInterrupts):
        return auth.check_guest_wide(op.layer, "switch the guest's interrupt mode")
    if isinstance(op, DeleteVcpu) and op.vcpu == 0:
        return bsp_refusal(op.target, None)
    return None


def _not_validated(view: list[MemoryRun]) -> Refusal | None:
    """RULE_ACCESS_ON_VALIDATED_PAGES: access is set on validated private pages only. A
    permission recorded on a page nobody validated would outlive it: the next layer to
    validate (claim) the page would find another layer already holding access to it."""
    for run in view:
        if not (run.private and run.validated):
            return Refusal(
                RULE_ACCESS_ON_VALIDATED_PAGES,
                ResultCode.INVALID_PARAMETER,
                run.start,
                f"the page at {run.start:#x} is not validated private "
                "memory; access is set only on validated pages (validate first)",
            )
    return None


def authorize(
    op: Operation, machine: Machine, view: list[MemoryRun] | None = None
) -> OperationResult | None:
    """None if ``op`` (already inside the guest's bounds: :func:`check_bounds`) may run;
    else the result of refusing it (nothing has run)."""
    refusal = refusal_for(op, machine, view)
    if refusal is None:
        return None
    name = op.describe()
    if refusal.rule == RULE_LOWER_NEVER_ACTS_ON_HIGHER:
        return OperationResult.not_supported(name, refusal.message + ".")
    return OperationResult(
        operation=name,
        status=Status.ERROR,
        reason=refusal.message + ".",
        error=ArchError(
            vendor=AUTHORITY_VENDOR,
            mnemonic=refusal.rule,
            code=refusal.code,
            message=refusal.message + ".",
        ),
    )


# -- after the operation ---------------------------------------------------------------------
def route_mismatch(
    route: Route | None, switched: set[tuple[str, str]], executed: bool = True
) -> str | None:
    """A sentence if the trace contradicts the route resolved before the operation ran:
    every world-switch hop of the route (requester -> provider) must appear among the
    world switches the operation recorded. Direct routes and routes of call edges only
    (a firmware call) are not checked: their traces may legitimately switch to the host; nor
    is an operation that executed nothing at all (``executed`` False: a mode already set)."""
    if route is None or route.direct or not executed:
        return None
    missing = [
        e
        for e in route.edges
        if e.kind is EdgeKind.WORLD_SWITCH and (e.source, e.dest) not in switched
    ]
    if not missing:
        return None
    hops = ", ".join(f"{e.source} --{e.mechanism}--> {e.dest}" for e in missing)
    return f"the route says {route.describe()} but the trace has no world switch for {hops}"


def state_of(run: MemoryRun) -> str:
    """A compact neutral state string of a run."""
    words = ["private" if run.private else "shared"]
    if run.validated:
        words.append("validated")
    words += [f"{k}={v}" for k, v in sorted(run.access.items())]
    if run.context:
        words.append("context")
    return " ".join(words)


def diff(before: list[MemoryRun], after: list[MemoryRun]) -> list[StateChange]:
    """Sub-ranges whose neutral state differs between two views of the same range."""
    out: list[StateChange] = []
    i = j = 0
    while i < len(before) and j < len(after):
        b, a = before[i], after[j]
        s, e = max(b.start, a.start), min(b.end, a.end)
        if s < e:
            sb, sa = state_of(b), state_of(a)
            if sb != sa:
                last = out[-1] if out else None
                if last is not None and last.end == s and (last.before, last.after) == (sb, sa):
                    last.end = e
                else:
                    out.append(StateChange(start=s, end=e, before=sb, after=sa))
        if b.end <= a.end:
            i += 1
        if a.end <= b.end:
            j += 1
    return out


def settle(
    op: Operation,
    result: OperationResult,
    before: list[MemoryRun] | None,
    after: list[MemoryRun] | None,
    machine: Machine,
) -> OperationResult:
    """Make a partial or failed range operation tell the exact truth: ``progress`` is the
    prefix that has the operation's effect and ``changed`` every state change outside it.
    A successful convert to shared gives unassigned pages back to the pool."""
    rng = getattr(op, "range", None)
    if isinstance(op, ConvertPages) and op.to == "shared" and after is not None:
        for run in after:  # every page now shared goes back to the pool (unless assigned)
            if not run.private:
                machine.ownership.release(run.start, run.end)
    if (
        rng is None
        or before is None
        or after is None
        or result.status not in (Status.PARTIAL, Status.ERROR)
    ):
        return result
    prog = result.progress
    prefix_end = rng.start
    if prog is not None and prog.next_gpa is not None and rng.start <= prog.next_gpa <= rng.end:
        prefix_end = prog.next_gpa
    elif prog is not None and prog.done_bytes:
        prefix_end = min(rng.end, rng.start + prog.done_bytes)
    changes = [c for c in diff(before, after) if c.end > prefix_end]
    for c in changes:  # only what lies outside the done prefix
        if c.start < prefix_end < c.end:
            c.start = prefix_end
    done = prefix_end - rng.start
    progress = None
    if prog is not None or done:
        progress = Progress(
            done_bytes=done, next_gpa=prefix_end, next_index=prog.next_index if prog else None
        )
    status = Status.PARTIAL if done else Status.ERROR
    return result.model_copy(update={"progress": progress, "status": status, "changed": changes})


def with_owners(runs: list[MemoryRun], ownership: Ownership) -> list[MemoryRun]:
    """Fill in ``owner`` / ``assigned`` of a fresh view, splitting runs where the owner
    changes: one sweep over the view and the ownership map together (both in address
    order); a run one owner covers is completed in place."""
    if not runs:
        return []
    owners = ownership.runs(runs[0].start, runs[-1].end)
    out: list[MemoryRun] = []
    _os, oe, ov = next(owners)
    for run in runs:
        while oe <= run.start:
            _os, oe, ov = next(owners)
        if oe >= run.end:  # one owner: no split
            run.__dict__["owner"], run.__dict__["assigned"] = ov.owner, ov.assigned
            out.append(run)
            continue
        start = run.start
        while start < run.end:
            while oe <= start:
                _os, oe, ov = next(owners)
            end = min(run.end, oe)
            out.append(
                fast_run(
                    dict(run.__dict__, start=start, end=end, owner=ov.owner, assigned=ov.assigned)
                )
            )
            start = end
    return out
