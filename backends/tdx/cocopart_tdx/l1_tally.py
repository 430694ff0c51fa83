"""L1's trace buffering: primitives and switches recorded in order, counted ``n`` times for a
run of equal blocks, then flushed to the trace (:class:`Tally`); :func:`vm_name` names an L2 VM
as a trace target."""

from __future__ import annotations

from cocopart.spi import Trace


def vm_name(vm: int) -> str:
    return f"L2 VM {vm}"


# -- trace buffering ------------------------------------------------------------------------
class Tally:
    """Primitives and switches recorded in order, to be counted ``n`` times and flushed."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[bool, tuple[str, str, str, str], int]] = []

    def record(
        self, issuer: str, mnemonic: str, target: str = "", result: str = "ok", count: int = 1
    ) -> None:
        self.items.append((True, (issuer, mnemonic, target, result), count))

    def switch(self, source: str, dest: str, mechanism: str, count: int = 1) -> None:
        self.items.append((False, (source, dest, mechanism, ""), count))

    def add(self, other: Tally, times: int = 1) -> None:
        if times > 0:
            self.items.extend((k, key, c * times) for k, key, c in other.items)

    def flush(self, trace: Trace) -> None:
        for is_prim, key, count in self.items:
            if is_prim:
                trace.record(key[0], key[1], key[2], key[3], count)
            else:
                trace.switch(key[0], key[1], key[2], count)
        self.items.clear()
