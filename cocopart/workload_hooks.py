"""What a backend supplies so the core can carry out every request of a layer.

The requesting side of each operation — entries and page sizes, batching per strategy, the
2M -> 4K SIZEMISMATCH fallback, exact partial progress, protocol calls through
:class:`cocopart.client.ProtocolClient`, result data and error mapping — is written once in
:mod:`cocopart.workload`. A backend answers only what differs between architectures:

* how the host is asked to make pages private or shared (SNP: GHCB Page State Change;
  TDX: TDVMCALL<MapGPA>) and whether validating includes that conversion;
* the privileged layer's own primitives for its own pages (the direct path: PVALIDATE /
  TDG.MEM.PAGE.ACCEPT) and setting a layer's access (RMPADJUST / TDG.MEM.PAGE.ATTR.WR);
* how a vCPU context page is prepared, how a hardware report is obtained and packaged;
* per-strategy limits, and the vendor error behind a failed protocol answer.

A hook that cannot do something raises :class:`cocopart.errors.NotSupportedError` with the
reason; the core turns it into a ``not-supported`` result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cocopart.attest.evidence import Evidence
from cocopart.client import PageRun
from cocopart.errors import NotSupportedError
from cocopart.model import Access, GpaRange, PageSize
from cocopart.ops import ArchError
from cocopart.protocol.pvalidate import MAX_ENTRIES_IN_CAA


@dataclass(frozen=True)
class Limits:
    """Entries per protocol PVALIDATE call, per fallback call, and per host conversion
    group (``None``: one group for the whole range) under the guest's strategy."""

    per_call: int
    fallback_per_call: int | None = None
    host_group: int | None = None


@dataclass
class DirectResult:
    """What the privileged layer's own primitive did: bytes done from the start of the
    range (a prefix), the error that stopped it, and data for the result."""

    done_bytes: int
    error: ArchError | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HardwareAttestation:
    """Evidence from a hardware report and data for the operation's result."""

    evidence: Evidence
    data: dict[str, Any] = field(default_factory=dict)


class WorkloadHooks(ABC):
    """The architecture-specific answers :class:`cocopart.workload.WorkloadSide` needs."""

    #: Vendor named in an ArchError built from a protocol result code (the protocol's
    #: owner: "amd" for the SVSM protocol on SNP, "cocopart-protocol" where it is ours).
    protocol_vendor: ClassVar[str] = "cocopart-protocol"
    #: Validation asks the host to make the pages private first, group by group (SNP: a PSC
    #: before each PVALIDATE batch, as Linux does). Otherwise pages are private until made
    #: shared and a convert to private asks the host first (TDX: MapGPA, then ACCEPT).
    validate_converts: ClassVar[bool] = False

    def limits(self) -> Limits:
        """Batching limits under the guest's strategy. Default: full calling areas (510
        entries, sev-snp.md §2.1), one host conversion for a whole range."""
        return Limits(per_call=MAX_ENTRIES_IN_CAA)

    def check_entry_size(self, size: PageSize) -> None:
        """Raise NotSupportedError if protocol entries cannot have this page size. Default:
        the protocol's entries are 4K or 2M (sev-snp.md §2.1)."""
        if size is PageSize.SIZE_1G:
            raise NotSupportedError("1G pages", "protocol PVALIDATE entries are 4K or 2M")

    @abstractmethod
    def host_convert(self, layer: str, runs: list[PageRun], private: bool) -> ArchError | None:
        """Ask the host, from ``layer``, to make the runs private or shared. None if done."""

    def convert_refusal(self, layer: str, private: bool) -> str | None:
        """Why ``layer`` cannot convert pages at all in this configuration (checked before
        anything of the conversion runs), or None. Default: it can."""
        return None

    def rescind_before_share(self, layer: str) -> tuple[bool, str | None]:
        """Whether converting to shared first rescinds the pages through the privileged
        layer, and a note for the result when it does not (default: it does)."""
        return True, None

    @abstractmethod
    def direct_pages(
        self, rng: GpaRange, forced: PageSize | None, *, validate: bool, ignore_unchanged: bool
    ) -> DirectResult:
        """The privileged layer validating (or rescinding) its own pages with its own
        primitives, no protocol call."""

    @abstractmethod
    def set_access(
        self, layer: str, target: str, rng: GpaRange, access: Access, *, direct: bool
    ) -> DirectResult:
        """``layer`` sets ``target``'s access: itself (``direct``, e.g. RMPADJUST to a less
        privileged VMPL, or the privileged layer) or through the privileged layer."""

    def prepare_context(
        self, layer: str, target: str, vcpu: int, context_gpa: int
    ) -> ArchError | None:
        """Fill a new vCPU's context page before CREATE_VCPU (SNP: the VMSA; TDX: the
        L2 entry state); an ArchError refuses the creation. Default: nothing to fill."""
        return None

    def hardware_attestation(
        self, layer: str, report_data: bytes
    ) -> HardwareAttestation | ArchError:
        """A hardware report requested by ``layer`` itself with ``report_data``, or why
        the hardware refused. Default: not supported."""
        raise NotSupportedError(
            f"a hardware report for {layer}",
            "this architecture gives no layer a hardware report of its own",
        )

    def evidence(
        self, raw: bytes, cert_table: bytes, nonce: bytes | None, manifest: bytes | None
    ) -> Evidence:
        """Evidence for a report the privileged layer's attestation service returned.
        Default: not supported."""
        raise NotSupportedError("service evidence", "this architecture defines no evidence format")

    def direct_extend(self, index: int, digest: bytes) -> dict[str, Any] | ArchError:
        """The privileged layer extending a measurement for itself: result data, or the
        error that refused it. Default: not supported."""
        raise NotSupportedError(
            "extend-measurement", "this architecture has no runtime measurement registers"
        )

    def measurement_data(self, index: int) -> dict[str, Any]:
        """Result data of a vTPM PCR extension served for a workload."""
        return {"pcr": index}

    def underlying_error(self) -> ArchError | None:
        """The vendor error behind the last failed protocol answer, if the privileged layer
        recorded one (taken: the next call starts clean). Default: none."""
        return None
