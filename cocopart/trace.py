"""Traces of executed primitives, and the cost model that turns them into estimated time.

Every primitive a machine model executes is counted under the key
``(issuer, mnemonic, target, result)``. Counts carry a multiplicity, so validating 1 TiB as
2^28 4K pages is one counter increment of 2^28, not 2^28 objects. An ordered, run-length
encoded log keeps the sequence for sequence diagrams: consecutive records with the same key
merge into one entry. World switches (a change of the running layer) are counted separately.

The log is bounded: it keeps at most ``log_limit`` entries (16 bytes each), and when a new
entry would exceed that the oldest half is discarded, so the log always holds the most recent
history. Log positions (:class:`TraceMark`) are absolute and survive the discarding; counters
are never discarded, so totals stay exact.

Mnemonics may carry a page-size suffix (``PVALIDATE.2M``); the cost table looks the full
mnemonic up first, then the mnemonic without the suffix.
"""

from __future__ import annotations

import threading
import tomllib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from cocopart.errors import ConfigError

#: Default for ``Trace(log_limit=...)``: the most ordered-log entries kept (16 bytes each, so
#: 1 MiB). When full, the oldest half is discarded; counters are never discarded.
DEFAULT_LOG_LIMIT = 65_536


PAGE_SIZE_SUFFIXES = (".4K", ".2M", ".1G")


def base_mnemonic(mnemonic: str) -> str:
    """``PVALIDATE.2M`` -> ``PVALIDATE``; ``TDG.MEM.PAGE.ACCEPT.4K`` -> ``TDG.MEM.PAGE.ACCEPT``;
    names without a page-size suffix are returned unchanged."""
    return mnemonic[:-3] if mnemonic.endswith(PAGE_SIZE_SUFFIXES) else mnemonic


class PrimitiveKey(NamedTuple):
    issuer: str
    mnemonic: str
    target: str
    result: str


class SwitchKey(NamedTuple):
    source: str
    dest: str
    mechanism: str


class Event(BaseModel):
    """One entry of the ordered log: a primitive or a world switch, with its repeat count."""

    kind: str  # "primitive" | "switch"
    issuer: str
    mnemonic: str
    target: str = ""
    result: str = "ok"
    count: int = 1


class Trace:
    """Aggregated counters plus a bounded, run-length encoded ordered log. Thread-safe.

    Hot path: :meth:`record` and :meth:`switch` intern their key once and then only bump a
    list slot and the log arrays; the ``primitives`` / ``switches`` dicts are built on read.
    When the log reaches ``log_limit`` entries, the oldest ``log_limit // 2`` are discarded
    (one memmove of the arrays every ``log_limit // 2`` new entries: amortised O(1)).
    """

    def __init__(self, *, log_limit: int = DEFAULT_LOG_LIMIT) -> None:
        if log_limit < 1:
            raise ValueError(f"log_limit must be >= 1, not {log_limit}")
        self._ids: dict[tuple[str, str, str, str, str], int] = {}
        self._objs: list[PrimitiveKey | SwitchKey] = []
        self._is_switch: list[bool] = []
        self._counts: list[int] = []
        self._log_key = array("l")
        self._log_count = array("q")
        self._log_limit = log_limit
        #: Log entries discarded from the front: the absolute position of ``_log_key[0]``.
        self._log_offset = 0
        self._lock = threading.Lock()

    def _intern(self, raw: tuple[str, str, str, str, str]) -> int:
        kid = self._ids[raw] = len(self._objs)
        if raw[0] == "p":
            self._objs.append(PrimitiveKey(raw[1], raw[2], raw[3], raw[4]))
            self._is_switch.append(False)
        else:
            self._objs.append(SwitchKey(raw[1], raw[2], raw[3]))
            self._is_switch.append(True)
        self._counts.append(0)
        return kid

    def _add(self, raw: tuple[str, str, str, str, str], count: int) -> None:
        with self._lock:
            kid = self._ids.get(raw)
            if kid is None:
                kid = self._intern(raw)
            self._counts[kid] += count
            lk = self._log_key
            if lk and lk[-1] == kid:
                self._log_count[-1] += count
                return
            if len(lk) >= self._log_limit:
                self._discard_oldest()
            lk.append(kid)
            self._log_count.append(count)

    def _discard_oldest(self) -> None:
        """Drop the oldest half of the log (caller holds the lock)."""
        n = max(self._log_limit // 2, 1)
        del self._log_key[:n]
        del self._log_count[:n]
        self._log_offset += n

    def record(
        self, issuer: str, mnemonic: str, target: str = "", result: str = "ok", count: int = 1
    ) -> None:
        """Count ``count`` executions of one primitive."""
        if count > 0:
            self._add(("p", issuer, mnemonic, target, result), count)

    def switch(self, source: str, dest: str, mechanism: str, count: int = 1) -> None:
        """Count ``count`` world switches from layer ``source`` to layer ``dest``."""
        if count > 0:
            self._add(("s", source, dest, mechanism, ""), count)

    # -- reading ---------------------------------------------------------------------------
    @property
    def primitives(self) -> dict[PrimitiveKey, int]:
        with self._lock:
            return {
                k: n
                for k, n, sw in zip(self._objs, self._counts, self._is_switch)
                if not sw and n and isinstance(k, PrimitiveKey)
            }

    @property
    def switches(self) -> dict[SwitchKey, int]:
        with self._lock:
            return {
                k: n
                for k, n, sw in zip(self._objs, self._counts, self._is_switch)
                if sw and n and isinstance(k, SwitchKey)
            }

    @property
    def total_primitives(self) -> int:
        return sum(self.primitives.values())

    @property
    def total_switches(self) -> int:
        return sum(self.switches.values())

    def count(
        self,
        mnemonic: str | None = None,
        *,
        issuer: str | None = None,
        target: str | None = None,
        result: str | None = None,
    ) -> int:
        """Sum of counts matching the given key parts (a mnemonic without a dot matches its
        size variants too: ``count("PVALIDATE")`` includes ``PVALIDATE.2M``)."""
        total = 0
        for k, n in self.primitives.items():
            if (
                mnemonic is not None
                and k.mnemonic != mnemonic
                and base_mnemonic(k.mnemonic) != mnemonic
            ):
                continue
            if issuer is not None and k.issuer != issuer:
                continue
            if target is not None and k.target != target:
                continue
            if result is not None and k.result != result:
                continue
            total += n
        return total

    def switch_count(self, mechanism: str | None = None) -> int:
        return sum(
            n for k, n in self.switches.items() if mechanism is None or k.mechanism == mechanism
        )

    def _counters(self) -> tuple[dict[PrimitiveKey, int], dict[SwitchKey, int]]:
        """Both counter dicts from one consistent state (caller holds the lock)."""
        prim: dict[PrimitiveKey, int] = {}
        sw: dict[SwitchKey, int] = {}
        for k, n in zip(self._objs, self._counts):
            if n:
                if isinstance(k, PrimitiveKey):
                    prim[k] = n
                else:
                    sw[k] = n
        return prim, sw

    def mark(self) -> TraceMark:
        """A point to measure from with :meth:`since` (its log position is absolute)."""
        with self._lock:
            prim, sw = self._counters()
            n = len(self._log_key)
            return TraceMark(prim, sw, self._log_offset + n, self._log_count[-1] if n else 0)

    def since(self, mark: TraceMark) -> TraceDelta:
        """What was recorded after ``mark``. Counts are always exact. If part of the log
        recorded after ``mark`` has since been discarded (see ``log_limit``), ``entries``
        holds what survives and ``truncated`` is true."""
        with self._lock:
            prim_now, sw_now = self._counters()
            start = max(mark.log_len - 1, 0) - self._log_offset
            entries = self._entries(max(start, 0))
        prim = {
            k: n - mark.primitives.get(k, 0)
            for k, n in prim_now.items()
            if n != mark.primitives.get(k, 0)
        }
        sw = {
            k: n - mark.switches.get(k, 0)
            for k, n in sw_now.items()
            if n != mark.switches.get(k, 0)
        }
        truncated = False
        if start < 0:
            # The entry the mark ended in is gone: every surviving entry is new. Something
            # new is missing iff the surviving counts fall short of the exact totals.
            truncated = sum(c for _, c in entries) != sum(prim.values()) + sum(sw.values())
        elif entries and mark.log_len:
            key, count = entries[0]
            entries = (
                entries[1:]
                if count == mark.last_count
                else [(key, count - mark.last_count)] + entries[1:]
            )
        return TraceDelta(prim, sw, entries, truncated)

    def _entries(self, start: int = 0) -> list[tuple[PrimitiveKey | SwitchKey, int]]:
        """Log entries from relative position ``start`` (caller holds the lock)."""
        objs = self._objs
        return [(objs[k], c) for k, c in zip(self._log_key[start:], self._log_count[start:])]

    def events(self) -> list[Event]:
        """The surviving ordered log, oldest first (the most recent ``log_limit`` entries at
        most)."""
        with self._lock:
            entries = self._entries()
        return [_event(e) for e in entries]

    @property
    def log_length(self) -> int:
        """Entries currently held in the ordered log (at most :attr:`log_limit`)."""
        return len(self._log_key)

    @property
    def log_limit(self) -> int:
        return self._log_limit

    @property
    def dropped_events(self) -> int:
        """Log entries discarded so far, oldest first, to keep the log within its limit (the
        counters still include them)."""
        return self._log_offset

    def summary(self) -> TraceSummary:
        return TraceSummary(
            primitives=[
                PrimitiveCount(**k._asdict(), count=n) for k, n in sorted(self.primitives.items())
            ],
            switches=[
                SwitchCount(**k._asdict(), count=n) for k, n in sorted(self.switches.items())
            ],
            total_primitives=self.total_primitives,
            total_switches=self.total_switches,
        )

    def copy(self) -> Trace:
        other = Trace(log_limit=self._log_limit)
        with self._lock:
            other._ids = dict(self._ids)
            other._objs = list(self._objs)
            other._is_switch = list(self._is_switch)
            other._counts = list(self._counts)
            other._log_key = array("l", self._log_key)
            other._log_count = array("q", self._log_count)
            other._log_offset = self._log_offset
        return other

    def __deepcopy__(self, memo: dict[int, Any]) -> Trace:
        return self.copy()


def _event(e: Any) -> Event:
    key, count = e
    if isinstance(key, PrimitiveKey):
        return Event(
            kind="primitive",
            issuer=key.issuer,
            mnemonic=key.mnemonic,
            target=key.target,
            result=key.result,
            count=count,
        )
    return Event(
        kind="switch", issuer=key.source, mnemonic=key.mechanism, target=key.dest, count=count
    )


@dataclass(frozen=True)
class TraceMark:
    primitives: dict[PrimitiveKey, int]
    switches: dict[SwitchKey, int]
    #: Absolute log position: entries ever appended (discarded ones included).
    log_len: int
    last_count: int


@dataclass(frozen=True)
class TraceDelta:
    """Counters and events recorded between a mark and now (events built on first use).
    ``truncated``: some log entries after the mark were discarded; ``entries`` then lists only
    the surviving (most recent) ones, while the counters stay exact."""

    primitives: dict[PrimitiveKey, int]
    switches: dict[SwitchKey, int]
    entries: list[tuple[PrimitiveKey | SwitchKey, int]]
    truncated: bool = False

    @property
    def events(self) -> list[Event]:
        return [_event(e) for e in self.entries]

    @property
    def total_primitives(self) -> int:
        return sum(self.primitives.values())

    @property
    def total_switches(self) -> int:
        return sum(self.switches.values())


class PrimitiveCount(BaseModel):
    issuer: str
    mnemonic: str
    target: str
    result: str
    count: int


class SwitchCount(BaseModel):
    source: str
    dest: str
    mechanism: str
    count: int


class TraceSummary(BaseModel):
    primitives: list[PrimitiveCount]
    switches: list[SwitchCount]
    total_primitives: int
    total_switches: int


class Cost(BaseModel):
    """One cost-table row: nanoseconds and where the number comes from."""

    ns: float = Field(ge=0, description="Nanoseconds, >= 0.")
    source: str = Field(default="", description="Where the number comes from.")


class CostTable(BaseModel):
    """Estimated nanoseconds per primitive mnemonic and per world-switch mechanism."""

    primitives: dict[str, Cost] = Field(default_factory=dict)
    switches: dict[str, Cost] = Field(default_factory=dict)

    def primitive_ns(self, mnemonic: str) -> float:
        c = self.primitives.get(mnemonic) or self.primitives.get(base_mnemonic(mnemonic))
        return c.ns if c else 0.0

    def switch_ns(self, mechanism: str) -> float:
        c = self.switches.get(mechanism)
        return c.ns if c else 0.0

    def unknown(self, trace: Trace | TraceDelta) -> set[str]:
        """Mnemonics and mechanisms the table has no cost for."""
        out = {
            k.mnemonic
            for k in trace.primitives
            if k.mnemonic not in self.primitives
            and base_mnemonic(k.mnemonic) not in self.primitives
        }
        out |= {k.mechanism for k in trace.switches if k.mechanism not in self.switches}
        return out

    def estimate(self, trace: Trace | TraceDelta) -> float:
        """Estimated nanoseconds for everything in ``trace``."""
        total = sum(self.primitive_ns(k.mnemonic) * n for k, n in trace.primitives.items())
        total += sum(self.switch_ns(k.mechanism) * n for k, n in trace.switches.items())
        return float(total)

    def merged(self, overrides: dict[str, Any], *, source: str = "override") -> CostTable:
        """A copy with rows replaced from a mapping ``{"primitives": {name: ns | {ns, source}},
        "switches": {...}}`` (the TOML layout of :func:`load_cost_overrides`)."""
        prim = dict(self.primitives)
        sw = dict(self.switches)
        for section, target in (("primitives", prim), ("switches", sw)):
            for name, val in (overrides.get(section) or {}).items():
                if isinstance(val, (int, float)) and not isinstance(val, bool):
                    if not val >= 0:  # negative or NaN: a user mistake, not a bug
                        raise ConfigError(
                            f"a cost is a number of ns >= 0, not {val}",
                            field=f"{section}.{name}",
                            source=source,
                        )
                    target[name] = Cost(ns=float(val), source=source)
                elif isinstance(val, dict):
                    try:
                        target[name] = Cost(**{"source": source, **val})
                    except ValidationError as err:
                        first = err.errors()[0]
                        raise ConfigError(
                            f"{first['msg']} ({'.'.join(map(str, first['loc']))})",
                            field=f"{section}.{name}",
                            source=source,
                        ) from err
                else:
                    raise ConfigError(
                        "a cost is a number of ns or {ns = ..., source = ...}",
                        field=f"{section}.{name}",
                        source=source,
                    )
        unknown_sections = set(overrides) - {"primitives", "switches"}
        if unknown_sections:
            raise ConfigError(
                f"unknown section(s) {sorted(unknown_sections)}; use [primitives] and [switches]",
                source=source,
            )
        return CostTable(primitives=prim, switches=sw)


def load_cost_overrides(table: CostTable, path: Path) -> CostTable:
    """Apply a TOML file of cost overrides to ``table``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not a TOML text file (it is not UTF-8)", source=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(err), source=str(path)) from err
    except OSError as err:
        raise ConfigError(f"cannot read cost file: {err.strerror}", source=str(path)) from err
    return table.merged(data, source=str(path))
