"""RMPUPDATE racing RMPADJUST on the same RMP entry, as explicit deterministic interleavings.

The host's RMPUPDATE (to take a page back from the guest) and the guest's RMPADJUST (the SVSM
changing a lower VMPL's permissions on that page) can meet on one entry. The model gives every
RMP entry a lock held for a whole instruction and runs the two in one of four orders
(:class:`Interleaving`), each a fixed sequence of steps, so a test can name the order and see
what each side gets:

==================================  =====================================================
order                               what each side sees
==================================  =====================================================
``adjust-then-update``              RMPADJUST succeeds; RMPUPDATE succeeds and wipes the
                                    permission it granted (RULE_RMPUPDATE_RESETS_ENTRY).
``update-then-adjust``              RMPUPDATE succeeds; RMPADJUST finds a page no longer
                                    the guest's: FAIL_INPUT.
``update-while-adjust-holds-lock``  RMPUPDATE: FAIL_INUSE, nothing changed; RMPADJUST
                                    completes; the host retries and succeeds (2 attempts).
``adjust-while-update-holds-lock``  RMPADJUST waits for the lock, then runs on the updated
                                    entry: FAIL_INPUT; RMPUPDATE succeeds.
==================================  =====================================================

The rules are the ``RULE_*`` constants below, each with its source; :data:`UNCONFIRMED` lists
the one the references do not confirm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from cocopart.spi import Access, FaultStep
from cocopart_sev_snp import instructions as ins
from cocopart_sev_snp.rmp import Rmp, page_bytes

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

HOST = "host"
L1 = "l1"

#: Every RMP entry has a lock; an RMP instruction holds it for its whole execution (seed 003,
#: Peter Gonda 2021-11-12: "There is a lock for each RMP Entry so there is a race for these
#: instructions").
RULE_RMP_ENTRY_LOCK = "an RMP instruction holds its entry's lock for its whole execution"

#: RMPUPDATE (and PSMASH) on an entry another processor holds returns FAIL_INUSE and changes
#: nothing; the host retries (Linux v5 "x86/sev: Add helper functions for RMPUPDATE and PSMASH
#: instruction", Brijesh Singh 2021-08-20: "Retry if another processor is modifying the RMP
#: entry"; KVM snp_rmptable_psmash: "PSMASH_FAIL_INUSE indicates another processor is
#: modifying the entry, so retry"; seed 003: "if the guest is running a RMPADJUST on a page it
#: cannot be RMPUPDATED at that time").
RULE_RMPUPDATE_INUSE_WHILE_LOCKED = "RMPUPDATE on a locked entry: FAIL_INUSE, retried"

#: RMPADJUST meeting an entry locked by an in-flight RMPUPDATE waits for the lock and then
#: executes on the updated entry. UNCONFIRMED: RMPADJUST's return codes (sev-snp.md §4.3:
#: 0, 1, 2, 6) have no FAIL_INUSE, so it cannot report the collision; serialising it after the
#: holder is the model's choice.
RULE_RMPADJUST_WAITS_FOR_ENTRY_LOCK = "RMPADJUST on a locked entry waits, then runs after it"

RULES = (
    RULE_RMP_ENTRY_LOCK,
    RULE_RMPUPDATE_INUSE_WHILE_LOCKED,
    RULE_RMPADJUST_WAITS_FOR_ENTRY_LOCK,
)
UNCONFIRMED = (RULE_RMPADJUST_WAITS_FOR_ENTRY_LOCK,)


class Interleaving(str, Enum):
    """The orders the model distinguishes."""

    ADJUST_THEN_UPDATE = "adjust-then-update"
    UPDATE_THEN_ADJUST = "update-then-adjust"
    UPDATE_WHILE_ADJUST_HOLDS_LOCK = "update-while-adjust-holds-lock"
    ADJUST_WHILE_UPDATE_HOLDS_LOCK = "adjust-while-update-holds-lock"


@dataclass(frozen=True)
class PendingAdjust:
    """A guest RMPADJUST in flight on one entry (it holds the entry's lock)."""

    asid: int
    vmpl: int
    gpa: int
    page_2m: bool
    target_vmpl: int
    perms: int

    def execute(self, rmp: Rmp) -> ins.InstrResult:
        return ins.rmpadjust(
            rmp,
            asid=self.asid,
            vmpl=self.vmpl,
            gpa=self.gpa,
            page_2m=self.page_2m,
            count=1,
            target_vmpl=self.target_vmpl,
            perms=self.perms,
        )


@dataclass
class EntryLocks:
    """RMP entries whose lock a guest RMPADJUST holds right now (by the entry's address)."""

    held: dict[int, PendingAdjust] = field(default_factory=dict)

    def hold(self, adjust: PendingAdjust) -> None:
        self.held[adjust.gpa] = adjust

    def holder(self, start: int, end: int) -> int | None:
        """The first locked entry address in ``[start, end)``, or None."""
        inside = [g for g, a in self.held.items() if g < end and g + page_bytes(a.page_2m) > start]
        return min(inside) if inside else None

    def complete(self, rmp: Rmp, gpa: int) -> ins.InstrResult:
        """The RMPADJUST holding ``gpa``'s entry finishes (executes) and releases the lock."""
        return self.held.pop(gpa).execute(rmp)

    def in_use(self, other: ins.InUse | None) -> ins.InUse:
        """An ``in_use`` callback for RMPUPDATE/PSMASH: a running VMSA (``other``) or a
        locked entry."""

        def check(start: int, end: int) -> int | None:
            found = [
                x
                for x in (other(start, end) if other else None, self.holder(start, end))
                if x is not None
            ]
            return min(found) if found else None

        return check


class RaceOutcome(BaseModel):
    """What each side saw in one interleaving."""

    interleaving: Interleaving
    adjust_result: str
    update_result: str  # of the last attempt
    update_attempts: int
    final_state: str  # RMP page state after both
    target_perms: str  # the target VMPL's permissions after both ('rw--', '----')
    grant_survived: bool  # the RMPADJUST's permission is still in the entry
    steps: list[FaultStep]
    rules: list[str]


def _rc(r: ins.InstrResult) -> str:
    return "ok" if r.ok else ins.RmpRc(r.rc).name


def race(
    m: SnpMachine,
    gpa: int,
    order: Interleaving,
    *,
    target_vmpl: int | None = None,
    perms: int = int(Access.RW),
) -> RaceOutcome:
    """Run the SVSM's RMPADJUST (VMPL0, granting ``target_vmpl`` ``perms``) against the host's
    RMPUPDATE of ``gpa`` to shared, in ``order``. ``gpa`` must be a guest page in a 4K RMP
    entry (the host PSMASHes otherwise — that is not this rule)."""
    target = target_vmpl if target_vmpl is not None else min(m.vmpls.values())
    entry = m.rmp.get(gpa)
    adjust = PendingAdjust(m.asid, 0, gpa, entry.page_size_2m, target, perms)
    steps: list[FaultStep] = []
    locks = EntryLocks()
    attempts = 0

    def update() -> ins.InstrResult:
        nonlocal attempts
        attempts += 1
        r = ins.rmpupdate(
            m.rmp,
            gpa=gpa,
            page_2m=False,
            count=1,
            assigned=False,
            asid=0,
            in_use=locks.in_use(m.host.in_use),
        )
        m.trace.record(HOST, "RMPUPDATE.4K", "shared", _rc(r))
        steps.append(
            FaultStep(actor=HOST, action=f"RMPUPDATE(shared) attempt {attempts}", result=_rc(r))
        )
        return r

    def run_adjust(note: str = "") -> ins.InstrResult:
        r = adjust.execute(m.rmp)
        m.trace.record(L1, "RMPADJUST", f"VMPL{target}", _rc(r))
        steps.append(FaultStep(actor=L1, action=f"RMPADJUST(VMPL{target}){note}", result=_rc(r)))
        return r

    def adjust_then_update() -> tuple[ins.InstrResult, ins.InstrResult]:
        a = run_adjust()
        return a, update()

    def update_then_adjust() -> tuple[ins.InstrResult, ins.InstrResult]:
        u = update()
        return run_adjust(), u

    def update_while_adjust_holds() -> tuple[ins.InstrResult, ins.InstrResult]:
        locks.hold(adjust)
        steps.append(FaultStep(actor=L1, action="RMPADJUST starts: holds the entry lock"))
        u = update()  # FAIL_INUSE: RULE_RMPUPDATE_INUSE_WHILE_LOCKED
        a = locks.complete(m.rmp, gpa)
        m.trace.record(L1, "RMPADJUST", f"VMPL{target}", _rc(a))
        steps.append(
            FaultStep(
                actor=L1,
                action=f"RMPADJUST(VMPL{target}) completes, releases the lock",
                result=_rc(a),
            )
        )
        if u.rc == ins.RmpRc.FAIL_INUSE:  # the host retries once the lock is free
            u = update()
        return a, u

    def adjust_while_update_holds() -> tuple[ins.InstrResult, ins.InstrResult]:
        steps.append(FaultStep(actor=HOST, action="RMPUPDATE starts: holds the entry lock"))
        steps.append(
            FaultStep(
                actor=L1,
                action="RMPADJUST waits for the entry lock (RULE_RMPADJUST_WAITS_FOR_ENTRY_LOCK)",
            )
        )
        u = update()
        return run_adjust(" after the lock is released"), u

    sequences: dict[Interleaving, Callable[[], tuple[ins.InstrResult, ins.InstrResult]]] = {
        Interleaving.ADJUST_THEN_UPDATE: adjust_then_update,
        Interleaving.UPDATE_THEN_ADJUST: update_then_adjust,
        Interleaving.UPDATE_WHILE_ADJUST_HOLDS_LOCK: update_while_adjust_holds,
        Interleaving.ADJUST_WHILE_UPDATE_HOLDS_LOCK: adjust_while_update_holds,
    }
    a, u = sequences[order]()
    final = m.rmp.get(gpa)
    granted = final.perm(target)
    return RaceOutcome(
        interleaving=order,
        adjust_result=_rc(a),
        update_result=_rc(u),
        update_attempts=attempts,
        final_state=final.state.value,
        target_perms=Access(granted).short(),
        grant_survived=bool(final.assigned and granted & perms == perms),
        steps=steps,
        rules=list(RULES),
    )
