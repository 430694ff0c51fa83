"""Attestation policy: what a relying party accepts."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from cocopart.inputmodel import InputModel


class Policy(InputModel):
    """A relying party's expectations. Every field is checked and named in the verdict.

    The default policy is strict: only the privileged layer's own evidence (SNP VMPL0, the
    TDX L1) is accepted, debug is rejected, and nothing else is pinned.
    """

    allowed_layers: list[str] = Field(
        default_factory=lambda: ["l1"],
        description="Originating layers accepted. A workload layer ('l2.1'..'l2.3', i.e. a "
        "non-zero VMPL or an L2 VM) is accepted only when listed here. Vendor names "
        "('VMPL2', 'L2 VM 1') are accepted too.",
    )
    allow_via_privileged_layer: bool = Field(
        default=True,
        description="Accept evidence a privileged layer produced on a workload's behalf.",
    )
    expected_measurements: dict[str, bytes] = Field(
        default_factory=dict, description="Measurement claims that must match exactly, by "
        "name (SNP 'measurement'; TDX 'mrtd', 'rtmr0'..'rtmr3'; names as the claims show "
        "them); hex in policy files.")
    expected_report_data: bytes | None = Field(
        default=None, description="The raw REPORT_DATA the evidence must carry (zero-padded "
        "to its size). For evidence from the privileged layer's attestation service REPORT_DATA "
        "is SHA-512(nonce || services manifest): pin the nonce with expected_nonce instead.")
    expected_nonce: bytes | None = Field(
        default=None, max_length=64, description="The freshness nonce you asked for (up to 64 "
        "bytes, zero-padded to 64 as the attest operation does). Service evidence must carry "
        "REPORT_DATA = SHA-512(nonce || its services manifest); hardware evidence must carry "
        "the nonce itself as REPORT_DATA.")
    allow_debug: bool = Field(default=False, description="Accept evidence of a guest whose "
                              "debug policy bit is set.")
    minimum_tcb: dict[str, int] = Field(
        default_factory=dict, description="Lowest acceptable TCB component versions, by the "
        "names the claims use (e.g. SNP 'snp', 'microcode').")
    accepted_tcb_status: list[str] = Field(
        default_factory=lambda: ["UpToDate"], description="TCB statuses accepted (TDX "
        "collateral: UpToDate, SWHardeningNeeded, ...).")
    waive_checks: list[str] = Field(
        default_factory=list,
        description="Names of vendor checks the relying party accepts failing, e.g. "
        "'tdx.td_attributes.sept_ve_disable' for partitioned TDs that run without it. A waived "
        "check stays in the verdict, marked as waived.",
    )
    max_collateral_age: timedelta | None = Field(
        default=None, description="Reject collateral issued longer ago than this."
    )
