"""Range map: per-page state kept as runs of equal state.

A :class:`RangeMap` covers ``[0, size)`` completely. It stores only the addresses where the
state changes (a sorted map start -> value), so a 1 TiB guest whose memory is uniformly
validated costs one entry, not 2^28. Updates split the runs at their ends, replace what lies
between, and merge with equal neighbours, so adjacent runs never hold equal values.

Cost: O(log n + k) per operation, n the number of runs and k the runs the operation touches
(change points in blocks of a few hundred, found by a two-level binary search).
Values must be immutable and compare with ``==`` (tuples, NamedTuples, enums, ints).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

V = TypeVar("V")

#: Change points per block; a block splits when it holds twice as many.
_LOAD = 256
_NONE: Any = object()


class RangeMap(Generic[V]):
    """Map every address of ``[0, size)`` to a value, stored as runs.

    Internally: sorted change points in blocks of a few hundred (``_k``), their values
    (``_v``) and each block's first key (``_f``) for a two-level binary search.
    """

    __slots__ = ("_f", "_k", "_v", "size")

    def __init__(self, size: int, initial: V) -> None:
        if size <= 0:
            raise ValueError("a range map needs a positive size")
        self.size = size
        self._k: list[list[int]] = [[0]]
        self._v: list[list[V]] = [[initial]]
        self._f: list[int] = [0]

    # -- queries -------------------------------------------------------------------------
    def _check(self, start: int, end: int) -> None:
        if not 0 <= start < end <= self.size:
            raise ValueError(f"range [{start:#x}, {end:#x}) is outside [0, {self.size:#x})")

    def _loc(self, addr: int) -> tuple[int, int]:
        b = bisect_right(self._f, addr) - 1
        return b, bisect_right(self._k[b], addr) - 1

    def get(self, addr: int) -> V:
        """The value at ``addr``."""
        if not 0 <= addr < self.size:
            raise ValueError(f"address {addr:#x} is outside [0, {self.size:#x})")
        b, i = self._loc(addr)
        return self._v[b][i]

    def run_at(self, addr: int) -> tuple[int, int, V]:
        """The whole run containing ``addr``: ``(start, end, value)``."""
        for s, e, v in self._walk(addr, self.size):
            return s, e, v
        raise ValueError(f"address {addr:#x} is outside [0, {self.size:#x})")

    def _walk(self, start: int, end: int) -> Iterator[tuple[int, int, V]]:
        """Unclipped runs overlapping ``[start, end)``."""
        K, V_ = self._k, self._v
        b, i = self._loc(start)
        nb = len(K)
        while b < nb:
            ks, vs = K[b], V_[b]
            n = len(ks)
            while i < n:
                s = ks[i]
                if s >= end:
                    return
                if i + 1 < n:
                    e = ks[i + 1]
                elif b + 1 < nb:
                    e = K[b + 1][0]
                else:
                    e = self.size
                yield s, e, vs[i]
                i += 1
            b += 1
            i = 0

    def runs(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, V]]:
        """Runs overlapping ``[start, end)``, clipped to it, in address order."""
        end = self.size if end is None else end
        self._check(start, end)
        walk = self._walk(start, end)
        for s, e, v in walk:  # only the first and the last run need clipping
            s = max(s, start)
            if e < end:
                yield s, e, v
                break
            yield s, end, v
            return
        for s, e, v in walk:
            if e < end:
                yield s, e, v
            else:
                yield s, end, v

    def uniform(self, start: int, end: int) -> V | None:
        """The value if ``[start, end)`` lies in one run, else None."""
        _s, e, v = self.run_at(start)
        return v if e >= end else None

    def count(self) -> int:
        """Number of runs."""
        return sum(len(ks) for ks in self._k)

    def __len__(self) -> int:
        return self.count()

    # -- updates -------------------------------------------------------------------------
    def set(self, start: int, end: int, value: V) -> None:
        """Give every address of ``[start, end)`` the value ``value``."""
        if not 0 <= start < end <= self.size:
            self._check(start, end)
        K, V_, F = self._k, self._v, self._f
        tail = left = _NONE
        if end < self.size:
            b = bisect_right(F, end) - 1
            tail = V_[b][bisect_right(K[b], end) - 1]
        if start > 0:
            b = bisect_right(F, start - 1) - 1
            left = V_[b][bisect_right(K[b], start - 1) - 1]
        self._delete_keys(start, end)
        if left is _NONE or left != value:
            self._insert(start, value)
        if tail is not _NONE and tail != value:
            self._insert(end, tail)

    def _delete_keys(self, lo: int, hi: int) -> None:
        K, V_, F = self._k, self._v, self._f
        b0 = max(bisect_right(F, lo) - 1, 0)
        b1 = bisect_right(F, hi) - 1
        if b1 < b0:
            return
        if b0 == b1:
            ks = K[b0]
            i, j = bisect_left(ks, lo), bisect_right(ks, hi)
            if i < j:
                del ks[i:j]
                del V_[b0][i:j]
            touched = [b0]
        else:
            i = bisect_left(K[b0], lo)
            del K[b0][i:]
            del V_[b0][i:]
            j = bisect_right(K[b1], hi)
            del K[b1][:j]
            del V_[b1][:j]
            del K[b0 + 1 : b1], V_[b0 + 1 : b1], F[b0 + 1 : b1]
            touched = [b0 + 1, b0]
        for b in touched:
            if K[b]:
                F[b] = K[b][0]
            else:
                del K[b], V_[b], F[b]

    def _insert(self, key: int, value: V) -> None:
        K, V_, F = self._k, self._v, self._f
        if not K:
            K.append([key])
            V_.append([value])
            F.append(key)
            return
        b = max(bisect_right(F, key) - 1, 0)
        ks = K[b]
        i = bisect_left(ks, key)
        if i < len(ks) and ks[i] == key:
            V_[b][i] = value
            return
        ks.insert(i, key)
        V_[b].insert(i, value)
        if i == 0:
            F[b] = key
        if len(ks) > 2 * _LOAD:
            K.insert(b + 1, ks[_LOAD:])
            V_.insert(b + 1, V_[b][_LOAD:])
            del ks[_LOAD:], V_[b][_LOAD:]
            F.insert(b + 1, K[b + 1][0])

    def update(self, start: int, end: int, fn: Callable[[V], V]) -> None:
        """Replace each run's value inside ``[start, end)`` by ``fn(value)``. O(log n + k)."""
        pieces = [(s, e, fn(v)) for s, e, v in self.runs(start, end)]
        for s, e, v in pieces:
            self.set(s, e, v)

    def copy(self) -> RangeMap[V]:
        other: RangeMap[V] = RangeMap.__new__(RangeMap)
        other.size = self.size
        other._k = [list(ks) for ks in self._k]
        other._v = [list(vs) for vs in self._v]
        other._f = list(self._f)
        return other

    def items(self) -> list[tuple[int, V]]:
        """All change points ``(start, value)`` in order."""
        return [(k, v) for ks, vs in zip(self._k, self._v) for k, v in zip(ks, vs)]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RangeMap)
            and self.size == other.size
            and self.items() == other.items()
        )

    def __repr__(self) -> str:
        return f"RangeMap(size={self.size:#x}, runs={self.count()})"
