"""Vendor-neutral evidence and claims.

``Evidence`` is what a platform produced (raw bytes plus whatever a verifier needs next to
them: certificates, collateral, the nonce and services manifest it was bound to).
``Claims`` is what a vendor verifier extracted from evidence it has checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cocopart.attest.encoding import Base64Bytes
from cocopart.inputmodel import InputModel


class Evidence(InputModel):
    """Raw attestation evidence as produced by a platform.

    ``vendor`` names the evidence plug-in (entry-point group ``cocopart.evidence``), e.g.
    ``"sev-snp"`` or ``"tdx"``; ``format`` the layout inside it, e.g. ``"snp-report"``,
    ``"tdx-quote"`` or ``"tdreport"``. In JSON every byte field is standard base64
    (URL-safe base64 is accepted on input).
    """

    vendor: str
    format: str
    raw: Base64Bytes
    certificates: list[Base64Bytes] = Field(
        default_factory=list,
        description="Certificates (PEM or DER) the producer handed out with the evidence, "
        "leaf first where the order is known (SNP: VCEK/VLEK, ASK/ASVK, ARK).",
    )
    collateral: dict[str, Base64Bytes] = Field(
        default_factory=dict,
        description="Verification collateral by name (TDX: 'tcb_info', 'qe_identity', "
        "'root_crl', 'pck_crl' as the exact bytes the PCS served).",
    )
    nonce: Base64Bytes | None = Field(
        default=None, description="The caller's nonce when a privileged-layer service bound it."
    )
    manifest: Base64Bytes | None = Field(
        default=None,
        description="The manifest the privileged layer bound with the nonce "
        "(REPORT_DATA = SHA-512(nonce || manifest)): its services manifest (a GUID table), or "
        "with ``service`` that one service's own manifest (e.g. the vTPM's EK public key).",
    )
    service: str | None = Field(
        default=None,
        description="The GUID of the one service attested alone "
        "(SVSM_ATTEST_SINGLE_SERVICE; configfs-tsm ``service_guid``): ``manifest`` is then "
        "that service's own manifest. None: ``manifest`` is the services manifest.",
    )
    layer_map: dict[str, str] = Field(
        default_factory=dict,
        description="How the producing guest names its layers: vendor level (e.g. 'VMPL2', "
        "'L2 VM 1') -> neutral layer ('l2.1'). Without it VMPL0/L1 is 'l1' and VMPLn/L2 VM n "
        "is 'l2.n'.",
    )


class Origin(BaseModel):
    """Which layer the evidence speaks for, and how it got there (immutable)."""

    model_config = ConfigDict(frozen=True)

    layer: str = Field(description="Vendor-neutral layer name: 'l1', 'l2.1', 'l2.2', 'l2.3'.")
    vendor_level: str = Field(description="The vendor's own name, e.g. 'VMPL2' or 'L2 VM 1'.")
    via_privileged_layer: bool = Field(
        default=False,
        description="True when the privileged layer attested on the layer's behalf "
        "(SVSM attestation protocol, TDX L1 serving an L2).",
    )


class Claims(BaseModel):
    """What verified evidence says, in vendor-neutral terms."""

    # plug-ins assemble claims from values they checked (no validation): build the schema
    # only when something validates or serialises claims
    model_config = ConfigDict(ser_json_bytes="hex", val_json_bytes="hex", defer_build=True)

    vendor: str
    format: str
    version: int
    measurements: dict[str, bytes] = Field(
        description="Launch and runtime measurements by name (SNP 'measurement'; TDX 'mrtd', "
        "'rtmr0'..'rtmr3', 'mrseam')."
    )
    report_data: bytes
    origin: Origin
    debug: bool
    policy: dict[str, Any] = Field(default_factory=dict, description="Guest policy / attributes.")
    tcb: dict[str, int] = Field(default_factory=dict, description="TCB components by name.")
    tcb_status: str | None = Field(default=None, description="e.g. 'UpToDate', 'OutOfDate'.")
    platform_id: str = Field(default="", description="chip_id (SNP) or FMSPC (TDX), hex.")
    signer: str = Field(default="", description="'VCEK', 'VLEK', 'PCK', or 'simulated:<name>'.")
    simulated: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)
