"""The trace's ordered log is bounded and keeps the most recent history (issue 11): when it
reaches ``log_limit`` entries the oldest half is discarded, counters stay exact, marks keep
absolute positions across discards."""

from __future__ import annotations

import copy
import threading

import pytest

from cocopart.trace import DEFAULT_LOG_LIMIT, Trace


def _alternate(t: Trace, n: int) -> None:
    """``n`` records alternating between two keys: every record is a new log entry."""
    for i in range(n):
        t.record("l1", "A" if i % 2 == 0 else "B", count=i + 1)


def test_default_limit_costs_at_most_a_few_mib() -> None:
    t = Trace()
    assert t.log_limit == DEFAULT_LOG_LIMIT
    assert DEFAULT_LOG_LIMIT * (t._log_key.itemsize + t._log_count.itemsize) <= 4 << 20


def test_log_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="log_limit"):
        Trace(log_limit=0)


def test_log_never_exceeds_its_limit() -> None:
    t = Trace(log_limit=100)
    peak = 0
    for i in range(10_000):
        t.record("l1", "A" if i % 2 == 0 else "B")
        t.switch("l2.1", "l1", "SW")
        peak = max(peak, t.log_length)
    assert peak == 100 and 50 <= t.log_length <= 100
    assert t.log_length + t.dropped_events == 20_000


def test_counters_stay_exact_when_the_log_is_discarded() -> None:
    t = Trace(log_limit=64)
    _alternate(t, 5_000)
    t.switch("l2.1", "l1", "SW", 7)
    assert t.dropped_events > 0
    assert t.count("A") == sum(i + 1 for i in range(0, 5_000, 2))
    assert t.count("B") == sum(i + 1 for i in range(1, 5_000, 2))
    assert t.total_primitives == 5_000 * 5_001 // 2 and t.total_switches == 7


def test_events_are_the_most_recent_entries_in_order() -> None:
    t = Trace(log_limit=10)
    _alternate(t, 1_000)
    ev = t.events()
    assert len(ev) == t.log_length
    expected = [("A" if i % 2 == 0 else "B", i + 1) for i in range(1_000)][-len(ev) :]
    assert [(e.mnemonic, e.count) for e in ev] == expected


def test_run_length_merging_continues_across_a_discard() -> None:
    t = Trace(log_limit=4)
    _alternate(t, 5)  # A B A B | A: the fifth entry discards the oldest two
    t.record("l1", "A", count=100)  # merges into the last entry
    assert [(e.mnemonic, e.count) for e in t.events()] == [("A", 3), ("B", 4), ("A", 105)]
    assert t.dropped_events == 2


def test_since_a_mark_inside_the_surviving_log_is_exact_and_not_truncated() -> None:
    t = Trace(log_limit=100)
    _alternate(t, 250)  # discards happened before the mark
    t.record("l1", "B", count=1000)  # the entry the mark ends in ...
    m = t.mark()
    t.record("l1", "B", count=5)  # ... grows after the mark
    t.switch("l2.1", "l1", "SW")
    d = t.since(m)
    assert not d.truncated
    assert [(e.mnemonic, e.count) for e in d.events] == [("B", 5), ("SW", 1)]
    assert d.total_primitives == 5 and d.total_switches == 1


def test_since_a_mark_in_discarded_entries_has_exact_totals_and_recent_entries() -> None:
    t = Trace(log_limit=10)
    t.record("l1", "A", count=3)
    m = t.mark()
    t.record("l1", "A", count=4)  # grows the mark's entry: lost with it
    for i in range(100):
        t.record("l1", "B" if i % 2 == 0 else "C", count=i + 1)
        t.switch("l2.1", "l1", "SW")
    d = t.since(m)
    assert d.truncated
    assert d.primitives[next(k for k in d.primitives if k.mnemonic == "A")] == 4
    assert d.total_primitives == 4 + 100 * 101 // 2 and d.total_switches == 100
    assert [(e.mnemonic, e.count) for e in d.events] == [(e.mnemonic, e.count) for e in t.events()]
    assert d.events[-2:][0].mnemonic == "C" and d.events[-1].mnemonic == "SW"


def test_since_is_not_truncated_when_only_entries_before_the_mark_were_discarded() -> None:
    t = Trace(log_limit=4)
    _alternate(t, 4)  # A B A B: full
    m = t.mark()
    t.switch("l2.1", "l1", "SW")  # discards A B (positions 0, 1); the mark's B survives
    t.record("l1", "C")
    d = t.since(m)
    assert not d.truncated and [e.mnemonic for e in d.events] == ["SW", "C"]
    t2 = Trace(log_limit=2)
    t2.record("l1", "A")
    t2.record("l1", "B")
    m2 = t2.mark()
    t2.record("l1", "C")  # discards A
    t2.record("l1", "D")  # discards B, the entry the mark ends in; it did not grow
    d2 = t2.since(m2)
    assert not d2.truncated and [e.mnemonic for e in d2.events] == ["C", "D"]


def test_since_a_mark_on_an_empty_log_after_discards() -> None:
    t = Trace(log_limit=4)
    m = t.mark()
    _alternate(t, 9)
    d = t.since(m)
    assert d.truncated and d.total_primitives == 45
    assert [e.count for e in d.events] == [e.count for e in t.events()]


def test_copy_keeps_limit_log_offset_and_counters() -> None:
    t = Trace(log_limit=8)
    _alternate(t, 21)
    m = t.mark()
    for c in (t.copy(), copy.deepcopy(t)):
        assert c.log_limit == 8 and c.dropped_events == t.dropped_events
        assert c.events() == t.events() and c.primitives == t.primitives
        c.record("l1", "Z")
        assert [e.mnemonic for e in c.since(m).events] == ["Z"]
        assert t.since(m).events == []  # the original is independent
        _alternate(c, 50)
        assert c.log_length <= 8 and t.log_length <= 8


def test_bounded_log_is_thread_safe() -> None:
    t = Trace(log_limit=50)

    def work() -> None:
        for i in range(2_000):
            t.record("l1", "A" if i % 2 else "B")
            t.switch("a", "b", "S")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.total_primitives == 8_000 and t.total_switches == 8_000
    assert t.log_length <= 50
    assert t.log_length + t.dropped_events <= 16_000
