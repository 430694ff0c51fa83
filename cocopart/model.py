"""Typed values of the vendor-neutral model: guest-physical ranges, page sizes, access rights,
layers and the partition configuration.

Everything that crosses a boundary is a pydantic model validated on construction, so a bad
value fails where it enters (a TOML file, a JSON request, a CLI flag), naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import Enum, IntFlag
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from cocopart.inputmodel import InputModel

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40

PAGE_4K = 4 * KIB
PAGE_2M = 2 * MIB
PAGE_1G = 1 * GIB

#: Largest guest memory a configuration may ask for: 64 TiB (the issue asks for at least
#: 4 TiB; 64 TiB keeps every GPA below bit 47, the TDX shared bit with GPAW 48).
MAX_MEMORY = 64 * TIB
MIN_MEMORY = 1 * MIB
MAX_VCPUS = 512
MAX_WORKLOAD_LAYERS = 3

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}


def parse_size(value: Any) -> int:
    """Parse ``4096``, ``"64GiB"``, ``"2M"`` or ``"1 TiB"`` into bytes."""
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a field error
            "a size must be a number of bytes or a string like '64GiB'"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"'{value}' is not a size (use bytes or e.g. '2MiB', '64GiB')")
        unit = (m.group(2) or "").upper()[:1]
        return int(m.group(1)) * _UNITS[unit]
    raise ValueError(f"a size must be an integer or a string, not {type(value).__name__}")


def format_size(n: int) -> str:
    """Render a byte count with the largest binary unit that divides it."""
    for unit, factor in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


Size = Annotated[int, BeforeValidator(parse_size)]


class PageSize(str, Enum):
    """Architectural page sizes. 1G exists only where an architecture has it (TDX accept
    levels; not SNP PVALIDATE)."""

    SIZE_4K = "4K"
    SIZE_2M = "2M"
    SIZE_1G = "1G"

    @property
    def bytes(self) -> int:
        return {"4K": PAGE_4K, "2M": PAGE_2M, "1G": PAGE_1G}[self.value]

    @property
    def pages_4k(self) -> int:
        return self.bytes // PAGE_4K

    @classmethod
    def from_bytes(cls, n: int) -> PageSize:
        for ps in cls:
            if ps.bytes == n:
                return ps
        raise ValueError(f"{n} is not a page size")


class Access(IntFlag):
    """Access a layer has to a page: read, write, user-mode execute, supervisor execute.

    The bit values follow the SNP RMPADJUST permission byte (sev-snp.md §4.1); the TDX
    backend maps them onto the R/W/Xu/Xs bits of TDG.MEM.PAGE.ATTR.WR.
    """

    NONE = 0
    READ = 1
    WRITE = 2
    USER_EXEC = 4
    SUPERVISOR_EXEC = 8
    RW = READ | WRITE
    RWX = READ | WRITE | USER_EXEC | SUPERVISOR_EXEC

    @classmethod
    def parse(cls, value: Any) -> Access:
        """Accept an int, an Access, or a string such as ``"rw"``, ``"rwxu"``, ``"r-x"``,
        ``"read,write"`` or ``"none"``."""
        if isinstance(value, Access):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value & ~int(cls.RWX):
                raise ValueError(f"access bits {value:#x} outside read/write/user-exec/sup-exec")
            return cls(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("", "none", "-"):
                return cls.NONE
            words = {
                "read": cls.READ,
                "write": cls.WRITE,
                "user-exec": cls.USER_EXEC,
                "supervisor-exec": cls.SUPERVISOR_EXEC,
                "exec": cls.USER_EXEC | cls.SUPERVISOR_EXEC,
                "rwx": cls.RWX,
                "rw": cls.RW,
            }
            if "," in text or text in words:
                acc = cls.NONE
                for w in (t.strip() for t in text.split(",")):
                    if w not in words:
                        raise ValueError(f"unknown access '{w}'")
                    acc |= words[w]
                return acc
            acc = cls.NONE
            letters = {
                "r": cls.READ,
                "w": cls.WRITE,
                "u": cls.USER_EXEC,
                "s": cls.SUPERVISOR_EXEC,
                "x": cls.USER_EXEC | cls.SUPERVISOR_EXEC,
            }
            for ch in text:
                if ch == "-":
                    continue
                if ch not in letters:
                    raise ValueError(f"'{value}' is not an access string (letters r w x u s)")
                acc |= letters[ch]
            return acc
        raise ValueError(f"cannot read access from {value!r}")

    def short(self) -> str:
        return "".join(
            c if self & f else "-"
            for c, f in (
                ("r", Access.READ),
                ("w", Access.WRITE),
                ("u", Access.USER_EXEC),
                ("s", Access.SUPERVISOR_EXEC),
            )
        )


AccessField = Annotated[Access, BeforeValidator(Access.parse)]


class GpaRange(InputModel):
    """A page-aligned, non-empty guest-physical range ``[start, start + size)``."""

    model_config = ConfigDict(frozen=True)

    start: Size = Field(ge=0, description="First byte: bytes or a size such as '2GiB'.")
    size: Size = Field(gt=0, description="Length: bytes or a size such as '2MiB'.")

    @model_validator(mode="after")
    def _aligned(self) -> GpaRange:
        if self.start % PAGE_4K:
            raise ValueError(f"start {self.start:#x} is not 4 KiB aligned")
        if self.size % PAGE_4K:
            raise ValueError(f"size {self.size:#x} is not a multiple of 4 KiB")
        return self

    @classmethod
    def of(cls, start: int, size: int) -> GpaRange:
        return cls(start=start, size=size)

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def pages_4k(self) -> int:
        return self.size // PAGE_4K

    def check_inside(self, memory_size: int) -> None:
        """Raise ``ValueError`` unless the range lies inside guest memory."""
        if self.end > memory_size:
            raise ValueError(
                f"range {self} ends at {self.end:#x}, beyond guest memory ({memory_size:#x})"
            )

    def overlaps(self, other: GpaRange) -> bool:
        return self.start < other.end and other.start < self.end

    def chunks(self, largest: PageSize = PageSize.SIZE_2M) -> Iterator[tuple[int, PageSize, int]]:
        """Split into runs ``(start, page_size, count)`` using the largest aligned pages up to
        ``largest``: a 4K head up to the first boundary, large pages, a 4K tail. At most
        five runs for any range; never one object per page."""
        sizes = [
            ps
            for ps in (PageSize.SIZE_1G, PageSize.SIZE_2M, PageSize.SIZE_4K)
            if ps.bytes <= largest.bytes
        ]
        yield from _split(self.start, self.end, sizes)

    def __str__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x})"


def _split(start: int, end: int, sizes: list[PageSize]) -> Iterator[tuple[int, PageSize, int]]:
    if start >= end:
        return
    big = sizes[0]
    if len(sizes) == 1:
        yield (start, big, (end - start) // big.bytes)
        return
    lo = -(-start // big.bytes) * big.bytes
    hi = end // big.bytes * big.bytes
    if lo >= hi:
        yield from _split(start, end, sizes[1:])
        return
    yield from _split(start, lo, sizes[1:])
    yield (lo, big, (hi - lo) // big.bytes)
    yield from _split(hi, end, sizes[1:])


class LayerRole(str, Enum):
    """What a layer is, independent of vendor."""

    FIRMWARE = "firmware"  # AMD-SP / TDX module
    HOST = "host"  # the untrusted hypervisor
    PRIVILEGED = "privileged"  # SVSM at VMPL0 / TDX L1 VMM
    WORKLOAD = "workload"  # SNP VMPL1-3 / TDX L2 VM 1-3
    SERVICE = "service"  # a service of the privileged layer, e.g. a vTPM


#: Vendor-neutral layer names.
FIRMWARE = "firmware"
HOST = "host"
L1 = "l1"
WORKLOAD_LAYERS = ("l2.1", "l2.2", "l2.3")
LAYER_NAME_RE = r"^(firmware|host|l1|l2\.[1-3]|[a-z][a-z0-9-]*)$"

LayerName = Annotated[str, Field(pattern=LAYER_NAME_RE)]


def workload_layers(n: int) -> tuple[str, ...]:
    """The names of the first ``n`` workload layers."""
    if not 1 <= n <= MAX_WORKLOAD_LAYERS:
        raise ValueError(f"a partition has 1 to {MAX_WORKLOAD_LAYERS} workload layers, not {n}")
    return WORKLOAD_LAYERS[:n]


class Layer(BaseModel):
    """A privilege layer: its neutral name, role and the vendor's name for it."""

    model_config = ConfigDict(frozen=True)

    name: LayerName
    role: LayerRole
    vendor_name: str = Field(description="e.g. 'VMPL2', 'L2 VM 1', 'AMD-SP', 'TDX module'")
    level: int | None = Field(default=None, description="VMPL number or L2 VM index")


class InterruptMode(str, Enum):
    """How interrupts reach a workload layer, in vendor-neutral terms. Each backend maps the
    mode once and its capability answers name its own mechanism.

    ``host-direct``: the host injects into the workload itself (SNP without Restricted
    Injection; impossible on TDX, where the host never injects into an L2).
    ``privileged-doorbell``: only the privileged layer takes host interrupts and passes them on
    (SNP Restricted Injection with the #HV doorbell; TDX: posted to L1, which injects through
    the L2 VMCS). ``privileged-emulated``: the privileged layer emulates the workload's APIC
    and injects (SNP Alternate Injection with the SVSM APIC protocol; on TDX the same
    protocol served by L1, a cocopart software protocol). ``hardware-virtualized``: hardware
    holds the APIC state (SNP Secure AVIC; TDX L2 virtual-interrupt delivery).

    The earlier names ``direct``, ``restricted``, ``alternate`` and ``secure-avic`` (AMD
    feature names) are accepted as aliases wherever a mode is read.
    """

    DIRECT = "host-direct"
    RESTRICTED = "privileged-doorbell"
    ALTERNATE = "privileged-emulated"
    SECURE_AVIC = "hardware-virtualized"

    @classmethod
    def _missing_(cls, value: object) -> InterruptMode | None:
        return INTERRUPT_MODE_ALIASES.get(str(value).strip().lower()) if value else None


#: The earlier, AMD-flavoured names of the interrupt modes, still accepted on input.
INTERRUPT_MODE_ALIASES: dict[str, InterruptMode] = {
    "direct": InterruptMode.DIRECT,
    "restricted": InterruptMode.RESTRICTED,
    "alternate": InterruptMode.ALTERNATE,
    "secure-avic": InterruptMode.SECURE_AVIC,
}


class Strategy(str, Enum):
    """Planning strategy: what Linux does today, or the architectural minimum."""

    LINUX = "linux"
    OPTIMAL = "optimal"


class PartitionConfig(InputModel):
    """Everything needed to create a partitioned guest on a backend."""

    model_config = ConfigDict(extra="forbid")

    memory: Size = Field(default=16 * GIB, description="Guest memory in bytes or '64GiB'.")
    vcpus: int = Field(default=1, ge=1, le=MAX_VCPUS, description="vCPUs of the guest.")
    workload_layers: int = Field(
        default=1,
        ge=1,
        le=MAX_WORKLOAD_LAYERS,
        description="Workload layers l2.1.. served by "
        "the privileged layer (SNP VMPL1-3, TDX L2 VMs 1-3).",
    )
    interrupt_mode: InterruptMode = Field(
        default=InterruptMode.RESTRICTED,
        description="How interrupts reach the workload "
        "layers: direct, restricted, alternate or secure-avic (docs/interrupts.md).",
    )
    strategy: Strategy = Field(
        default=Strategy.OPTIMAL,
        description="Plan as Linux does today (linux) or with the "
        "architectural minimum of calls and switches (optimal).",
    )
    services: list[str] = Field(
        default_factory=lambda: ["vtpm"],
        description="Services of the privileged layer (today: vtpm).",
    )
    seed: str = Field(default="cocopart", description="Seed for simulated keys and roots.")
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the backend this configuration is "
        "handed to (each backend documents and validates its own).",
    )
    attest_requester_entry: bool = Field(
        default=False,
        description="cocopart extension: the privileged layer's services manifest "
        "(SVSM_ATTEST_SERVICES) names the layer that asked, so its evidence speaks for that "
        "layer. Off by default: the manifest is the services' GUID table only, as COCONUT "
        "emits it, and service evidence speaks for the privileged layer.",
    )
    memory_map: dict[LayerName, list[GpaRange]] = Field(
        default_factory=dict,
        description="Guest RAM assigned to each workload layer for good (docs/authority.md). "
        "RAM not listed is l1's pool: the first workload that validates a pool page owns it "
        "until it rescinds or shares it.",
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: int) -> int:
        if v < MIN_MEMORY or v > MAX_MEMORY:
            raise ValueError(
                f"memory must be between {format_size(MIN_MEMORY)} and "
                f"{format_size(MAX_MEMORY)}, not {v}"
            )
        if v % PAGE_4K:
            raise ValueError(f"memory {v} must be a multiple of 4 KiB")
        return v

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        for s in v:
            if not re.match(r"^[a-z][a-z0-9-]*$", s):
                raise ValueError(f"service name '{s}' must be lowercase letters, digits, '-'")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"service {', '.join(dup)} is listed more than once")
        return v

    @model_validator(mode="after")
    def _memory_map(self) -> PartitionConfig:
        layers = workload_layers(self.workload_layers)
        seen: list[tuple[GpaRange, str]] = []
        for layer, ranges in self.memory_map.items():
            if layer not in layers:
                raise ValueError(
                    f"memory_map names {layer}, which is not a workload layer of "
                    f"this guest ({', '.join(layers)})"
                )
            for r in ranges:
                if r.end > self.memory:
                    raise ValueError(
                        f"memory_map range {r} of {layer} ends beyond guest RAM "
                        f"({format_size(self.memory)})"
                    )
                for other, who in seen:
                    if r.overlaps(other):
                        raise ValueError(
                            f"memory_map range {r} of {layer} overlaps {other} of {who}"
                        )
                seen.append((r, layer))
        return self

    @property
    def workloads(self) -> tuple[str, ...]:
        return workload_layers(self.workload_layers)
