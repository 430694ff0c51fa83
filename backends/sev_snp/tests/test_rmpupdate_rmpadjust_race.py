"""RMPUPDATE racing RMPADJUST on the same RMP entry (issue 7): each modelled interleaving and
what each side sees (cocopart_sev_snp.rmp_race)."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp import rmp_race as rr
from cocopart_sev_snp.machine import SnpMachine
from cocopart_sev_snp.rmp import PageState
from snp_helpers import MIB, machine, validated

from cocopart.model import Access

PAGE = 0x3000


def _m(policy: str = "sigbus") -> SnpMachine:
    """A guest whose RAM is validated with 4K RMP entries (no PSMASH in the way)."""
    return machine(
        validated(16 * MIB, backend_options={"host_page_size": "4K", "host_fault_policy": policy})
    )


def _race(order: rr.Interleaving) -> rr.RaceOutcome:
    return rr.race(_m(), PAGE, order, perms=int(Access.READ))


def test_adjust_then_update_both_succeed_and_the_update_wipes_the_grant() -> None:
    out = _race(rr.Interleaving.ADJUST_THEN_UPDATE)
    assert (out.adjust_result, out.update_result, out.update_attempts) == ("ok", "ok", 1)
    assert out.final_state == PageState.HYPERVISOR.value and not out.grant_survived


def test_update_then_adjust_the_adjust_finds_a_page_no_longer_the_guests() -> None:
    out = _race(rr.Interleaving.UPDATE_THEN_ADJUST)
    assert (out.update_result, out.adjust_result, out.update_attempts) == ("ok", "FAIL_INPUT", 1)
    assert out.final_state == PageState.HYPERVISOR.value


def test_rule_rmpupdate_inuse_while_locked_then_succeeds_on_retry() -> None:
    out = _race(rr.Interleaving.UPDATE_WHILE_ADJUST_HOLDS_LOCK)
    assert [s.result for s in out.steps] == ["", "FAIL_INUSE", "ok", "ok"]
    assert out.adjust_result == "ok" and out.update_result == "ok"
    assert out.update_attempts == 2 and not out.grant_survived
    assert rr.RULE_RMPUPDATE_INUSE_WHILE_LOCKED in out.rules


def test_rule_rmpadjust_waits_for_entry_lock_then_fails_input() -> None:
    out = _race(rr.Interleaving.ADJUST_WHILE_UPDATE_HOLDS_LOCK)
    assert out.update_result == "ok" and out.update_attempts == 1
    assert out.adjust_result == "FAIL_INPUT"
    assert "waits" in out.steps[1].action


@pytest.mark.parametrize("order", list(rr.Interleaving))
def test_each_interleaving_is_deterministic(order: rr.Interleaving) -> None:
    assert _race(order) == _race(order)


def test_the_host_always_wins_the_entry_in_the_end() -> None:
    assert {_race(o).final_state for o in rr.Interleaving} == {PageState.HYPERVISOR.value}


def test_rule_convert_retries_locked_entry_after_the_guests_rmpadjust() -> None:
    m = _m("convert")
    locks = rr.EntryLocks()
    locks.hold(rr.PendingAdjust(m.asid, 0, PAGE, False, 2, int(Access.READ)))
    w = m.host_write(PAGE, b"x", locks=locks)
    assert w.action is hf.HostAction.CONVERTED and w.conversion is not None
    assert [s.result for s in w.conversion.steps] == ["FAIL_INUSE", "ok", "ok"]
    assert w.conversion.waited_for == [PAGE] and not locks.held
    assert hf.RULE_CONVERT_RETRIES_LOCKED_ENTRY in w.rules


def test_the_lock_wait_of_rmpadjust_is_listed_as_unconfirmed() -> None:
    assert rr.UNCONFIRMED == (rr.RULE_RMPADJUST_WAITS_FOR_ENTRY_LOCK,)
