"""A protocol call as the registers carry it (sev-snp.md §1.2).

RAX in = (protocol << 32) | call; RCX, RDX, R8 carry arguments; RAX out is the result code
and RCX, RDX, R8 may be updated. Both transports move exactly these four registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cocopart.protocol.ids import make_rax, result_name, split_rax

U64 = (1 << 64) - 1


@dataclass
class Registers:
    """The argument/result registers of one protocol call."""

    rax: int = 0
    rcx: int = 0
    rdx: int = 0
    r8: int = 0

    def __post_init__(self) -> None:
        for name in ("rax", "rcx", "rdx", "r8"):
            v = getattr(self, name)
            if not 0 <= v <= U64:
                raise ValueError(f"{name} = {v} does not fit in 64 bits")

    @classmethod
    def call(cls, protocol: int, call: int, rcx: int = 0, rdx: int = 0, r8: int = 0) -> Registers:
        return cls(make_rax(protocol, call), rcx & U64, rdx & U64, r8 & U64)

    @property
    def protocol(self) -> int:
        return split_rax(self.rax)[0]

    @property
    def call_id(self) -> int:
        return split_rax(self.rax)[1]


@dataclass
class CallOutcome:
    """Result of a call: the result code and the registers as the caller sees them after."""

    code: int
    regs: Registers
    retries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def name(self) -> str:
        return result_name(self.code)
