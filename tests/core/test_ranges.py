"""The range map against a naive per-page reference, on random operations."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocopart.ranges import RangeMap

PAGES = 64
ops = st.lists(
    st.tuples(st.integers(0, PAGES - 1), st.integers(1, PAGES), st.integers(0, 3), st.booleans()),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_range_map_matches_per_page_reference(operations: list[tuple[int, int, int, bool]]) -> None:
    m: RangeMap[int] = RangeMap(PAGES, 0)
    ref = [0] * PAGES
    for start, length, value, use_update in operations:
        end = min(start + length, PAGES)
        if use_update:
            m.update(start, end, lambda v, x=value: (v + x) % 4)
            for i in range(start, end):
                ref[i] = (ref[i] + value) % 4
        else:
            m.set(start, end, value)
            ref[start:end] = [value] * (end - start)
        assert [m.get(i) for i in range(PAGES)] == ref
        runs = list(m.runs())
        # runs tile the space, and adjacent runs never hold equal values
        assert runs[0][0] == 0 and runs[-1][1] == PAGES
        assert all(a[1] == b[0] and a[2] != b[2] for a, b in pairwise(runs))
        assert m.count() == len(runs) == 1 + sum(ref[i] != ref[i - 1] for i in range(1, PAGES))


def test_many_blocks_stay_consistent() -> None:
    # more change points than one block holds, then clear them all
    m: RangeMap[int] = RangeMap(10_000, 0)
    for i in range(0, 10_000, 2):
        m.set(i, i + 1, 1)
    assert m.count() == 10_000 and m.get(0) == 1 and m.get(1) == 0 and m.get(9_998) == 1
    assert list(m.runs(4, 7)) == [(4, 5, 1), (5, 6, 0), (6, 7, 1)]
    m.set(0, 10_000, 2)
    assert m.count() == 1 and list(m.runs()) == [(0, 10_000, 2)]


def test_queries_and_errors() -> None:
    m: RangeMap[str] = RangeMap(100, "a")
    m.set(10, 20, "b")
    assert m.run_at(15) == (10, 20, "b") and m.uniform(10, 20) == "b"
    assert m.uniform(5, 15) is None
    c = m.copy()
    c.set(0, 100, "z")
    assert m.get(15) == "b" and m != c
    for bad in ((5, 5), (-1, 3), (90, 101)):
        with pytest.raises(ValueError):
            m.set(*bad, "x")
    with pytest.raises(ValueError):
        m.get(100)
    with pytest.raises(ValueError):
        RangeMap(0, "a")
