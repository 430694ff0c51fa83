"""The operations a user asks a partition for, and their results.

Each operation names the layer that requests it (``layer``); the backend plans it from that
layer along the layer graph. ``Operation`` is a discriminated union on ``op`` so a JSON or TOML
list of operations validates into the right classes.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from cocopart.capability import Capability as Capability  # noqa: PLC0414 - re-exported
from cocopart.inputmodel import InputModel, input_error
from cocopart.model import Access, AccessField, GpaRange, InterruptMode, LayerName, PageSize


class _Op(InputModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="hex")

    layer: LayerName = Field(default="l2.1", description="The requesting layer.")

    #: The capability the requesting layer needs (the layer graph routes on it).
    CAPABILITY: ClassVar[Capability]

    @property
    def capability(self) -> Capability:
        return self.CAPABILITY

    @property
    def route_capability(self) -> str:
        """The capability the layer graph routes on (target-specific where it matters)."""
        target = getattr(self, "target", None)
        if self.capability is Capability.SET_ACCESS and target:
            return f"{self.capability.value}:{target}"
        return self.capability.value

    def describe(self) -> str:
        parts = []
        for name in type(self).model_fields:
            if name in ("op", "layer"):
                continue
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bytes):
                v = v.hex()[:16] + ("..." if len(v) > 8 else "")
            elif isinstance(v, Access):  # an IntFlag is an Enum too: test it first
                v = v.short()
            elif isinstance(v, Enum):
                v = v.value
            parts.append(f"{name}={v}")
        return f"{self.op}({', '.join(parts)}) from {self.layer}"  # type: ignore[attr-defined]


class ValidatePages(_Op):
    """Make private memory usable by the requesting layer (SNP validate, TDX accept)."""

    op: Literal["validate"] = "validate"
    range: GpaRange = Field(description="Guest-physical pages: { start, size }, 4 KiB aligned.")
    page_size: PageSize | None = Field(
        default=None, description="Force this page size; default: the largest that fits."
    )

    CAPABILITY: ClassVar[Capability] = Capability.VALIDATE


class RescindPages(_Op):
    """Take validated/accepted pages back (SNP rescind; TDX attribute removal / release)."""

    op: Literal["rescind"] = "rescind"
    range: GpaRange = Field(description="Guest-physical pages: { start, size }, 4 KiB aligned.")

    CAPABILITY: ClassVar[Capability] = Capability.RESCIND


class ConvertPages(_Op):
    """Share pages with the host or make shared pages private again."""

    op: Literal["convert"] = "convert"
    range: GpaRange = Field(description="Guest-physical pages: { start, size }, 4 KiB aligned.")
    to: Literal["shared", "private"] = Field(
        description="Make the pages shared with the host, or private again."
    )

    CAPABILITY: ClassVar[Capability] = Capability.CONVERT


class SetAccess(_Op):
    """Set what ``target`` may do with the pages in ``range``."""

    op: Literal["set-access"] = "set-access"
    range: GpaRange = Field(description="Guest-physical pages: { start, size }, 4 KiB aligned.")
    target: LayerName = Field(description="The layer whose access changes.")
    access: AccessField = Field(
        description="What target may do on those pages: letters r "
        "(read), w (write), u (user execute), s (supervisor execute), x "
        "(both executes), e.g. 'rw'; or 'none'."
    )

    CAPABILITY: ClassVar[Capability] = Capability.SET_ACCESS


class CreateVcpu(_Op):
    """Create vCPU ``vcpu`` of layer ``target`` (SNP VMSA + CREATE_VCPU; TDX L2 VMCS)."""

    op: Literal["create-vcpu"] = "create-vcpu"
    vcpu: int = Field(ge=0, lt=512, description="Index of the vCPU in the target layer.")
    target: LayerName = Field(default="l2.1", description="The layer the vCPU belongs to.")

    CAPABILITY: ClassVar[Capability] = Capability.CREATE_VCPU


class DeleteVcpu(_Op):
    """Delete vCPU ``vcpu`` of layer ``target``."""

    op: Literal["delete-vcpu"] = "delete-vcpu"
    vcpu: int = Field(ge=0, lt=512, description="Index of the vCPU in the target layer.")
    target: LayerName = Field(default="l2.1", description="The layer the vCPU belongs to.")

    CAPABILITY: ClassVar[Capability] = Capability.DELETE_VCPU


class Attest(_Op):
    """Get evidence for the requesting layer, binding ``report_data``.

    ``report_data`` is required: up to 64 bytes (or hex text), zero-padded to 64 — normally
    a fresh nonce or the hash of a key the relying party should trust. Pass
    ``report_data=None`` to attest with 64 zero bytes on purpose (evidence that proves no
    freshness); leaving it out is an error, so nobody gets zero report data by accident.

    ``source="hardware"``: a report from the hardware/firmware for the requesting layer (SNP
    guest request with the layer's own VMPCK; on TDX only L1 can, so an L2 is refused with a
    reason). ``source="service"``: the privileged layer's attestation service, binding the
    nonce and its services manifest (SVSM ATTEST_SERVICES / ATTEST_SINGLE_SERVICE; TDX L1).
    """

    op: Literal["attest"] = "attest"
    report_data: bytes = Field(
        description="Up to 64 bytes bound into the evidence, zero-padded to 64 (hex text "
        "accepted). Required; null means 64 zero bytes, chosen explicitly."
    )
    source: Literal["hardware", "service"] = Field(
        default="service",
        description="hardware: the hardware's report for the layer; "
        "service: the privileged layer's attestation service.",
    )
    service: str | None = Field(default=None, description="One service (e.g. 'vtpm') or all.")

    @field_validator("report_data", mode="before")
    @classmethod
    def _rd(cls, v: Any) -> bytes:
        if v is None:
            return bytes(64)
        if isinstance(v, str):
            v = bytes.fromhex(v)
        if not isinstance(v, (bytes, bytearray)):
            raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a field error
                "report_data must be bytes, a hex string, or None for 64 zero bytes"
            )
        if len(v) > 64:
            raise ValueError(f"report_data is {len(v)} bytes; at most 64")
        return bytes(v).ljust(64, b"\0")

    @property
    def capability(self) -> Capability:
        if self.source == "hardware":
            return Capability.ATTEST_HARDWARE
        return Capability.ATTEST_SERVICE


class InjectInterrupt(_Op):
    """Deliver interrupt ``vector`` to vCPU ``vcpu`` of layer ``target``.

    ``layer`` raises it: ``host`` (a device interrupt), ``l1`` (the privileged layer, e.g. a
    device it emulates) or the target workload itself (an IPI). The result's
    ``data["delivery"]`` is a :class:`cocopart.interrupts.Delivery` (delivered / pending /
    dropped, layer, vCPU, vector, mechanism); ``data["deliveries"]`` lists every delivery
    the operation caused.
    """

    op: Literal["inject-interrupt"] = "inject-interrupt"
    vcpu: int = Field(ge=0, lt=512, description="vCPU of the target layer.")
    target: LayerName = Field(default="l2.1", description="The layer that receives it.")
    vector: int = Field(ge=0, le=255, description="External interrupt vector, 16-255.")

    @field_validator("vector")
    @classmethod
    def _external(cls, v: int) -> int:
        if v < 16:
            raise ValueError(f"vector {v} is an exception vector; external vectors are 16-255")
        return v

    CAPABILITY: ClassVar[Capability] = Capability.INJECT_INTERRUPT


class EndOfInterrupt(_Op):
    """The handler on vCPU ``vcpu`` of layer ``target`` signals end of interrupt: the highest
    in-service vector completes and the next pending one may be delivered. ``data["eoi"]``
    is a :class:`cocopart.interrupts.EoiRecord`; ``data["deliveries"]`` what it delivered."""

    op: Literal["eoi"] = "eoi"
    vcpu: int = Field(ge=0, lt=512, description="vCPU of the target layer.")
    target: LayerName = Field(default="l2.1", description="The layer whose handler ends.")

    CAPABILITY: ClassVar[Capability] = Capability.EOI


class ConfigureInterrupts(_Op):
    """Choose how interrupts reach the workload layers."""

    op: Literal["configure-interrupts"] = "configure-interrupts"
    mode: InterruptMode = Field(description="The guest-wide interrupt mode to switch to.")

    CAPABILITY: ClassVar[Capability] = Capability.CONFIGURE_INTERRUPTS


class ExtendMeasurement(_Op):
    """Extend runtime measurement register ``register`` with a SHA-384 ``digest``."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, ser_json_bytes="hex"
    )

    op: Literal["extend-measurement"] = "extend-measurement"
    index: int = Field(
        ge=0, le=23, alias="register", description="Register: TDX RTMR 0-3; vTPM PCR 0-23."
    )
    digest: bytes = Field(description="48 bytes (SHA-384); hex in files.")

    @field_validator("digest", mode="before")
    @classmethod
    def _digest(cls, v: Any) -> bytes:
        if isinstance(v, str):
            v = bytes.fromhex(v)
        if not isinstance(v, (bytes, bytearray)) or len(v) != 48:
            raise ValueError("digest must be 48 bytes (SHA-384)")
        return bytes(v)

    CAPABILITY: ClassVar[Capability] = Capability.EXTEND_MEASUREMENT


Operation = Annotated[
    ValidatePages
    | RescindPages
    | ConvertPages
    | SetAccess
    | CreateVcpu
    | DeleteVcpu
    | Attest
    | InjectInterrupt
    | EndOfInterrupt
    | ConfigureInterrupts
    | ExtendMeasurement,
    Field(discriminator="op"),
]
OPERATION_ADAPTER: TypeAdapter[Operation] = TypeAdapter(Operation)
OPERATION_TYPES = (
    ValidatePages,
    RescindPages,
    ConvertPages,
    SetAccess,
    CreateVcpu,
    DeleteVcpu,
    Attest,
    InjectInterrupt,
    EndOfInterrupt,
    ConfigureInterrupts,
    ExtendMeasurement,
)


def parse_operation(data: Any) -> Operation:
    """Validate a dict (from JSON/TOML) into an operation; :class:`InputError` names the
    first wrong field."""
    try:
        return OPERATION_ADAPTER.validate_python(data)
    except ValidationError as err:
        raise input_error("operation", err) from None


class Status(str, Enum):
    OK = "ok"
    NOT_SUPPORTED = "not-supported"
    ERROR = "error"
    PARTIAL = "partial"


class ArchError(BaseModel):
    """An architectural error: which vendor, the architecture's mnemonic and code, a sentence."""

    vendor: str
    mnemonic: str
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.vendor} {self.mnemonic} ({self.code:#x}): {self.message}"


class Progress(BaseModel):
    """How far a partial operation got (like the SVSM PVALIDATE ``next`` field)."""

    done_bytes: int = 0
    next_gpa: int | None = None
    next_index: int | None = None


class StateChange(BaseModel):
    """A run of pages whose neutral state an operation changed *outside* the prefix its
    progress reports as done (for example pages a page-state change made private before the
    validation failed). ``before`` / ``after`` are compact state strings such as
    ``"private validated l2.1=rwus owner=l2.1"``."""

    start: int
    end: int
    before: str
    after: str


class OperationResult(BaseModel):
    """Outcome of one operation, with what it cost.

    For a ``partial`` or ``error`` result on a range, ``progress.done_bytes`` /
    ``progress.next_gpa`` describe exactly the prefix of the range that has the operation's
    effect (re-running the operation from ``next_gpa`` completes it), and ``changed`` lists
    every other state change the operation made; an ``error`` with no progress and no
    ``changed`` entries changed nothing.
    """

    model_config = ConfigDict(ser_json_bytes="hex")

    operation: str
    status: Status
    reason: str | None = None
    error: ArchError | None = None
    progress: Progress | None = None
    primitives: int = 0
    world_switches: int = 0
    estimated_ns: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)
    changed: list[StateChange] = Field(
        default_factory=list,
        description="State changes outside the done prefix of a "
        "partial or failed operation (empty when it changed nothing else).",
    )

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def success(cls, op: str, **data: Any) -> OperationResult:
        return cls(operation=op, status=Status.OK, data=data)

    @classmethod
    def not_supported(cls, op: str, reason: str) -> OperationResult:
        return cls(operation=op, status=Status.NOT_SUPPORTED, reason=reason)

    @classmethod
    def failure(
        cls, op: str, error: ArchError, progress: Progress | None = None
    ) -> OperationResult:
        status = Status.PARTIAL if progress and progress.done_bytes else Status.ERROR
        return cls(
            operation=op, status=status, error=error, progress=progress, reason=error.message
        )
