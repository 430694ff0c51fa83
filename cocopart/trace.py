"""Traces of executed primitives, and the cost model that turns them into estimated time.

Every primitive a machine model executes is counted under the key
``(issuer, mnemonic, target, result)``. Counts carry a multiplicity, so validating 1 TiB as
2^28 4K pages is one counter increment of 2^28, not 2^28 objects. An ordered, run-length
encoded log keeps the sequence for sequence diagrams: consecutive records with the same key
merge into one entry. World switches (a change of the running layer) are counted separately.

Mnemonics may carry a page-size suffix (``PVALIDATE.2M``); the cost table looks the full
mnemonic up first, then the part before the dot.
"""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from cocopart.errors import ConfigError

#: Longest ordered log kept; past it only counters grow (``dropped_events`` says how many).
MAX_LOG = 200_000


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
    """Aggregated counters plus a run-length encoded ordered log. Thread-safe."""

    def __init__(self) -> None:
        self.primitives: dict[PrimitiveKey, int] = {}
        self.switches: dict[SwitchKey, int] = {}
        self._log: list[list[Any]] = []  # [kind, key, count]
        self.dropped_events = 0
        self._lock = threading.Lock()

    def record(self, issuer: str, mnemonic: str, target: str = "", result: str = "ok",
               count: int = 1) -> None:
        """Count ``count`` executions of one primitive."""
        if count <= 0:
            return
        key = PrimitiveKey(issuer, mnemonic, target, result)
        with self._lock:
            self.primitives[key] = self.primitives.get(key, 0) + count
            self._append("primitive", key, count)

    def switch(self, source: str, dest: str, mechanism: str, count: int = 1) -> None:
        """Count ``count`` world switches from layer ``source`` to layer ``dest``."""
        if count <= 0:
            return
        key = SwitchKey(source, dest, mechanism)
        with self._lock:
            self.switches[key] = self.switches.get(key, 0) + count
            self._append("switch", key, count)

    def _append(self, kind: str, key: tuple[str, ...], count: int) -> None:
        log = self._log
        if log and log[-1][0] == kind and log[-1][1] == key:
            log[-1][2] += count
        elif len(log) < MAX_LOG:
            log.append([kind, key, count])
        else:
            self.dropped_events += 1

    # -- reading ---------------------------------------------------------------------------
    @property
    def total_primitives(self) -> int:
        return sum(self.primitives.values())

    @property
    def total_switches(self) -> int:
        return sum(self.switches.values())

    def count(self, mnemonic: str | None = None, *, issuer: str | None = None,
              target: str | None = None, result: str | None = None) -> int:
        """Sum of counts matching the given key parts (a mnemonic without a dot matches its
        size variants too: ``count("PVALIDATE")`` includes ``PVALIDATE.2M``)."""
        total = 0
        for k, n in self.primitives.items():
            if mnemonic is not None and k.mnemonic != mnemonic \
                    and k.mnemonic.split(".")[0] != mnemonic:
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
        return sum(n for k, n in self.switches.items()
                   if mechanism is None or k.mechanism == mechanism)

    def mark(self) -> TraceMark:
        with self._lock:
            return TraceMark(dict(self.primitives), dict(self.switches), len(self._log),
                             self._log[-1][2] if self._log else 0)

    def since(self, mark: TraceMark) -> TraceDelta:
        """What was recorded after ``mark``."""
        with self._lock:
            prim = {k: n - mark.primitives.get(k, 0) for k, n in self.primitives.items()
                    if n != mark.primitives.get(k, 0)}
            sw = {k: n - mark.switches.get(k, 0) for k, n in self.switches.items()
                  if n != mark.switches.get(k, 0)}
            start = max(mark.log_len - 1, 0)
            events = [list(e) for e in self._log[start:]]
            if events and mark.log_len and events[0][2] == mark.last_count:
                events = events[1:]
            elif events and mark.log_len:
                events[0][2] -= mark.last_count
        return TraceDelta(prim, sw, [_event(e) for e in events])

    def events(self) -> list[Event]:
        with self._lock:
            return [_event(e) for e in self._log]

    def summary(self) -> TraceSummary:
        return TraceSummary(
            primitives=[PrimitiveCount(**k._asdict(), count=n)
                        for k, n in sorted(self.primitives.items())],
            switches=[SwitchCount(**k._asdict(), count=n)
                      for k, n in sorted(self.switches.items())],
            total_primitives=self.total_primitives,
            total_switches=self.total_switches,
        )

    def copy(self) -> Trace:
        other = Trace()
        other.primitives = dict(self.primitives)
        other.switches = dict(self.switches)
        other._log = [list(e) for e in self._log]
        other.dropped_events = self.dropped_events
        return other


def _event(e: list[Any]) -> Event:
    kind, key, count = e
    if kind == "primitive":
        return Event(kind=kind, issuer=key.issuer, mnemonic=key.mnemonic, target=key.target,
                     result=key.result, count=count)
    return Event(kind=kind, issuer=key.source, mnemonic=key.mechanism, target=key.dest,
                 count=count)


@dataclass(frozen=True)
class TraceMark:
    primitives: dict[PrimitiveKey, int]
    switches: dict[SwitchKey, int]
    log_len: int
    last_count: int


@dataclass(frozen=True)
class TraceDelta:
    """Counters and events recorded between a mark and now."""

    primitives: dict[PrimitiveKey, int]
    switches: dict[SwitchKey, int]
    events: list[Event]

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

    ns: float = Field(ge=0)
    source: str = ""


class CostTable(BaseModel):
    """Estimated nanoseconds per primitive mnemonic and per world-switch mechanism."""

    primitives: dict[str, Cost] = Field(default_factory=dict)
    switches: dict[str, Cost] = Field(default_factory=dict)

    def primitive_ns(self, mnemonic: str) -> float:
        c = self.primitives.get(mnemonic) or self.primitives.get(mnemonic.split(".")[0])
        return c.ns if c else 0.0

    def switch_ns(self, mechanism: str) -> float:
        c = self.switches.get(mechanism)
        return c.ns if c else 0.0

    def unknown(self, trace: Trace | TraceDelta) -> set[str]:
        """Mnemonics and mechanisms the table has no cost for."""
        out = {k.mnemonic for k in trace.primitives
               if k.mnemonic not in self.primitives
               and k.mnemonic.split(".")[0] not in self.primitives}
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
                    target[name] = Cost(ns=float(val), source=source)
                elif isinstance(val, dict):
                    try:
                        target[name] = Cost(**{"source": source, **val})
                    except Exception as err:  # noqa: BLE001 - pydantic error with field
                        raise ConfigError(str(err), field=f"{section}.{name}",
                                          source=source) from err
                else:
                    raise ConfigError("a cost is a number of ns or {ns = ..., source = ...}",
                                      field=f"{section}.{name}", source=source)
        unknown_sections = set(overrides) - {"primitives", "switches"}
        if unknown_sections:
            raise ConfigError(f"unknown section(s) {sorted(unknown_sections)}; "
                              "use [primitives] and [switches]", source=source)
        return CostTable(primitives=prim, switches=sw)


def load_cost_overrides(table: CostTable, path: Path) -> CostTable:
    """Apply a TOML file of cost overrides to ``table``."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(err), source=str(path)) from err
    except OSError as err:
        raise ConfigError(f"cannot read cost file: {err.strerror}", source=str(path)) from err
    return table.merged(data, source=str(path))
