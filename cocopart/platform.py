"""The privileged layer's primitives in neutral terms (:class:`PrivilegedPlatform`): what
the protocol handlers in :mod:`cocopart.service` are written against, once for every
backend. Page primitives work on runs (``count`` pages of 4K or 2M), never page by page."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from pydantic import BaseModel, Field

from cocopart.model import Access
from cocopart.protocol.ids import ResultCode


class PageOpResult(NamedTuple):
    """Outcome of a page primitive over a run: pages done, then a protocol result code."""

    done: int
    code: int


class HardwareEvidence(BaseModel):
    """A report produced by the hardware for (or on behalf of) a layer."""

    raw: bytes
    certificates: list[bytes] = Field(default_factory=list)
    cert_table: bytes = Field(
        default=b"",
        description="Certificates as the vendor's table "
        "layout for the guest's certificate buffer (SNP GUID table).",
    )
    format: str


class PrivilegedPlatform(ABC):
    """Vendor primitives the privileged layer (SVSM at VMPL0 / TDX L1) serves with.

    Page primitives take a run of ``count`` pages of ``page_bytes`` (4K or 2M) from ``gpa``
    and return how many completed before the first failure plus the protocol result code
    (``ResultCode.SUCCESS`` or e.g. ``PVALIDATE_FAIL_SIZEMISMATCH``) — runs, never pages, so a
    1 TiB request stays cheap.
    """

    vendor: ClassVar[str]

    @abstractmethod
    def is_guest_range(self, gpa: int, size: int) -> bool:
        """True if ``[gpa, gpa + size)`` is guest memory (RAM or the protocol region)."""

    @abstractmethod
    def layer_access(self, layer: str, start: int, end: int) -> Access:
        """The access ``layer`` itself holds on every page of ``[start, end)`` (the
        intersection), read from the page tables without side effects: what the layer could
        do there without the privileged layer. Used to refuse confused-deputy buffers."""

    @abstractmethod
    def validate_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        """Make the pages private-and-usable and grant ``layer`` full access."""

    @abstractmethod
    def rescind_pages(
        self, layer: str, gpa: int, page_bytes: int, count: int, *, ignore_unchanged: bool
    ) -> PageOpResult:
        """Revoke every workload layer's access and un-validate the pages."""

    @abstractmethod
    def set_access(
        self, target: str, gpa: int, page_bytes: int, count: int, access: Access
    ) -> PageOpResult:
        """Set what workload layer ``target`` may do with the pages."""

    @abstractmethod
    def create_vcpu(self, layer: str, context_gpa: int, caa_gpa: int, apic_id: int) -> int:
        """Turn the context page into a runnable vCPU of ``layer``; return a result code."""

    @abstractmethod
    def delete_vcpu(self, layer: str, context_gpa: int) -> int:
        """Stop the vCPU whose context page is ``context_gpa``; return a result code."""

    @abstractmethod
    def apic_ids(self) -> set[int]:
        """APIC IDs of the guest's CPUs."""

    # Optional primitives: the defaults answer "not supported" (the protocol's
    # UNSUPPORTED_CALL), so a platform without them still serves everything else.
    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        """A hardware report with ``report_data`` produced by the privileged layer, or a code.
        Default: not supported (this platform has no report the privileged layer can get)."""
        return ResultCode.UNSUPPORTED_CALL

    def extend_measurement(self, register: int, digest: bytes) -> int:
        """Extend a runtime measurement register; return a result code. Default: not
        supported (no runtime measurement registers)."""
        return ResultCode.UNSUPPORTED_CALL

    def post_interrupt(self, layer: str, vcpu: int, vector: int) -> int:
        """Deliver ``vector`` to a workload vCPU; return a result code. Default: not
        supported (the privileged layer does not deliver interrupts)."""
        return ResultCode.UNSUPPORTED_CALL

    def apic_emulation_changed(self, layer: str, vcpu: int, enabled: bool) -> None:
        """The privileged layer started or stopped emulating a vCPU's APIC (SNP: the
        AlternateInjection SEV feature in that vCPU's VMSA). Default: nothing to change."""
