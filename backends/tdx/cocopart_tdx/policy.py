"""The ``[tdx]`` policy section and the checks it makes on verified TDX claims.

Parity with go-tdx-guest ``validate.Options`` (validate/validate.go) and Trustee's default
policy (attestation-service ``ear_default_policy_cpu.rego``, TDX part); the table in
docs/attestation.md ("Policy") maps every option. Measurement pins (MRTD, RTMRs, MRSEAM,
MRCONFIGID, ... with value lists, e.g. two MRSEAMs) are the neutral ``expected_measurements``;
minimum QE/PCE SVNs are the neutral ``minimum_tcb.qe_isvsvn`` / ``minimum_tcb.pcesvn``.

Checks are named ``policy.tdx.<key>``. Always made, as go-tdx-guest always makes them: the
fixed bits of TD ATTRIBUTES and XFAM (a bit set outside ``*_fixed0`` or clear inside
``*_fixed1`` fails; defaults are go-tdx-guest's constants ``tdAttributesFixed0`` = DEBUG |
SEPT_VE_DISABLE | PKS | PERFMON, ``xfamFixed0`` = 0x6DBE7, ``xfamFixed1`` = 0x3). The rest
appear only for what the section constrains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, field_validator

from cocopart.spi import (
    Check,
    Claims,
    HexBytes,
    HexInt,
    Pins,
    PolicySchema,
    VendorPolicy,
    check,
    pin_size,
)
from cocopart_tdx.collateral import TCB_STATUSES

VENDOR = "tdx"
#: go-tdx-guest validate.go: tdAttributesFixed0 = DEBUG | SEPT_VE_DISABLE | PKS | PERFMON.
TD_ATTRIBUTES_FIXED0 = 0x1 | 1 << 28 | 1 << 30 | 1 << 63
TD_ATTRIBUTES_FIXED1 = 0x0
#: go-tdx-guest validate.go: xfamFixed0 / xfamFixed1.
XFAM_FIXED0 = 0x0006DBE7
XFAM_FIXED1 = 0x00000003
#: Intel's QE vendor ID (quote header; Trustee's default policy pins it).
INTEL_QE_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607"


class TdxPolicy(VendorPolicy):
    """What a relying party requires of a TDX quote beyond the neutral policy."""

    td_attributes: Annotated[Pins, pin_size(8)] = Field(
        default_factory=list,
        description="Exact TD ATTRIBUTES (8 bytes as in the quote), one value or a list.",
    )
    xfam: Annotated[Pins, pin_size(8)] = Field(
        default_factory=list,
        description="Exact XFAM (8 bytes as in the quote), one value or a list.",
    )
    td_attributes_fixed0: HexInt = Field(
        default=TD_ATTRIBUTES_FIXED0,
        ge=0,
        lt=1 << 64,
        description="TD ATTRIBUTES bits that may be set.",
    )
    td_attributes_fixed1: HexInt = Field(
        default=TD_ATTRIBUTES_FIXED1,
        ge=0,
        lt=1 << 64,
        description="TD ATTRIBUTES bits that must be set.",
    )
    xfam_fixed0: HexInt = Field(
        default=XFAM_FIXED0, ge=0, lt=1 << 64, description="XFAM bits that may be set."
    )
    xfam_fixed1: HexInt = Field(
        default=XFAM_FIXED1, ge=0, lt=1 << 64, description="XFAM bits that must be set."
    )
    qe_vendor_id: Annotated[Pins, pin_size(16)] = Field(
        default_factory=list,
        description=f"QE vendor ID of the quote header (Intel: {INTEL_QE_VENDOR_ID}).",
    )
    minimum_tee_tcb_svn: HexBytes | None = Field(
        default=None, description="Component-wise minimum TEE_TCB_SVN (16 bytes)."
    )
    minimum_tcb_evaluation_data_number: int = Field(
        default=0, ge=0, description="Minimum tcbEvaluationDataNumber of the TCB info used."
    )
    minimum_tcb_date: datetime | None = Field(
        default=None,
        description="Oldest acceptable tcbDate of the matching TCB level "
        "(Trustee's min_tcb_date), e.g. 2025-08-13T00:00:00Z.",
    )

    @field_validator("minimum_tee_tcb_svn")
    @classmethod
    def _sixteen(cls, value: bytes | None) -> bytes | None:
        if value is not None and len(value) != 16:
            raise ValueError(f"must be 16 bytes (32 hex digits), got {len(value)}")
        return value

    @field_validator("minimum_tcb_date")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _fixed(name: str, what: str, value: int, fixed0: int, fixed1: int) -> Check:
    extra, missing = value & ~fixed0, fixed1 & ~value
    problems = []
    if extra:
        problems.append(f"bits {extra:#x} are set outside {name}_fixed0 {fixed0:#x}")
    if missing:
        problems.append(f"bits {missing:#x} of {name}_fixed1 {fixed1:#x} are clear")
    return check(
        name=f"policy.{VENDOR}.{name}_fixed",
        ok=not problems,
        detail=f"{what} {value:#x}: "
        + ("; ".join(problems) if problems else "within the fixed bits"),
    )


def _exact(name: str, what: str, have: str, wanted: list[bytes]) -> Check:
    accepted = [w.hex() for w in wanted]
    ok = have in accepted
    return check(
        name=f"policy.{VENDOR}.{name}",
        ok=ok,
        detail=(
            f"{what} {have} is accepted"
            if ok
            else f"{what} {have} is not accepted ({', '.join(accepted)})"
        ),
    )


_FIXED: dict[tuple[str, str, int, int, int, int], tuple[Check, Check]] = {}


def _fixed_bits(attrs: str, xfam: str, section: TdxPolicy) -> tuple[Check, Check]:
    """Both fixed-bit checks, remembered per value and masks (every quote of a TD repeats them)."""
    key = (
        attrs,
        xfam,
        section.td_attributes_fixed0,
        section.td_attributes_fixed1,
        section.xfam_fixed0,
        section.xfam_fixed1,
    )
    hit = _FIXED.get(key)
    if hit is None:
        if len(_FIXED) > 256:
            _FIXED.clear()
        hit = _FIXED[key] = (
            _fixed(
                "td_attributes",
                "TD ATTRIBUTES",
                int.from_bytes(bytes.fromhex(attrs), "little"),
                section.td_attributes_fixed0,
                section.td_attributes_fixed1,
            ),
            _fixed(
                "xfam",
                "XFAM",
                int.from_bytes(bytes.fromhex(xfam), "little"),
                section.xfam_fixed0,
                section.xfam_fixed1,
            ),
        )
    return hit


def check_policy(claims: Claims, section: Any) -> list[Check]:
    """The ``[tdx]`` checks on verified claims (see the module docstring)."""
    assert type(section) is TdxPolicy or isinstance(section, TdxPolicy)
    attrs, xfam = claims.policy["raw"], claims.policy["xfam"]
    out = list(_fixed_bits(attrs, xfam, section))
    if section.td_attributes:
        out.append(_exact("td_attributes", "TD ATTRIBUTES", attrs, section.td_attributes))
    if section.xfam:
        out.append(_exact("xfam", "XFAM", xfam, section.xfam))
    if section.qe_vendor_id:
        out.append(
            _exact(
                "qe_vendor_id",
                "QE vendor ID",
                claims.extra.get("qe_vendor_id", ""),
                section.qe_vendor_id,
            )
        )
    if section.minimum_tee_tcb_svn is not None:
        low = [
            f"byte {i}: {claims.tcb.get(f'tee_tcb_svn{i:02d}')} < {want}"
            for i, want in enumerate(section.minimum_tee_tcb_svn)
            if claims.tcb.get(f"tee_tcb_svn{i:02d}", -1) < want
        ]
        out.append(
            check(
                name=f"policy.{VENDOR}.minimum_tee_tcb_svn",
                ok=not low,
                detail=(
                    "TEE_TCB_SVN "
                    + ("; ".join(low) if low else f"meets {section.minimum_tee_tcb_svn.hex()}")
                ),
            )
        )
    if section.minimum_tcb_evaluation_data_number:
        have = claims.extra.get("tcb_evaluation_data_number")
        want = section.minimum_tcb_evaluation_data_number
        out.append(
            check(
                name=f"policy.{VENDOR}.minimum_tcb_evaluation_data_number",
                ok=isinstance(have, int) and have >= want,
                detail=(
                    f"TCB info evaluation data number {have} (minimum {want})"
                    if have is not None
                    else "no TCB info was evaluated"
                ),
            )
        )
    if section.minimum_tcb_date is not None:
        out.append(_tcb_date(claims.extra.get("tcb_date"), section.minimum_tcb_date))
    return out


def _tcb_date(have: object, want: datetime) -> Check:
    name = f"policy.{VENDOR}.minimum_tcb_date"
    if not isinstance(have, str) or not have:
        return check(name=name, ok=False, detail="no TCB level was matched: no tcbDate")
    date = datetime.fromisoformat(have)
    date = date if date.tzinfo else date.replace(tzinfo=UTC)
    return check(
        name=name,
        ok=date >= want,
        detail=f"TCB level date {have} (oldest accepted {want:%Y-%m-%dT%H:%M:%SZ})",
    )


TDX_CHECKS = frozenset(
    {
        "tdx.format",
        "tdx.verify",
        "tdx.quote.parse",
        "tdx.quote.signature",
        "tdx.qe_report.binding",
        "tdx.pck.chain",
        "tdx.pck.root_pinned",
        "tdx.qe_report.signature",
        "tdx.crl",
        "tdx.collateral.present",
        "tdx.collateral.signature",
        "tdx.collateral.fresh",
        "tdx.collateral.match",
        "tdx.tcb_status",
        "tdx.td_attributes.sept_ve_disable",
        "tdx.manifest_binding",
        "tdx.tdreport.parse",
        "tdx.tdreport.type",
        "tdx.tdreport.tee_tcb_info_hash",
        "tdx.tdreport.tee_info_hash",
        "tdx.tdreport.mac",
        "tdx.hcl.parse",
        "tdx.hcl.runtime_data",
        "tdx.hcl.quote_matches",
    }
)

#: The checks of this section (for waive_checks).
POLICY_CHECKS = frozenset(
    {
        f"policy.{VENDOR}.{k}"
        for k in (
            "td_attributes_fixed",
            "xfam_fixed",
            "td_attributes",
            "xfam",
            "qe_vendor_id",
            "minimum_tee_tcb_svn",
            "minimum_tcb_evaluation_data_number",
            "minimum_tcb_date",
        )
    }
)

_TCB_NAMES = (
    [f"tee_tcb_svn{i:02d}" for i in range(16)]
    + [f"sgx_tcb_comp{i:02d}" for i in range(1, 17)]
    + ["pcesvn", "qe_isvsvn", "tdx_module_minor_svn", "tdx_module_major_svn"]
)

SCHEMA = PolicySchema(
    vendor=VENDOR,
    measurements={
        name: 48
        for name in (
            "mrtd",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
            "mrseam",
            "mrsignerseam",
            "mrconfigid",
            "mrowner",
            "mrownerconfig",
            "mrservicetd",
            "servtd_hash",
        )
    },
    primary_measurement="mrtd",
    tcb=frozenset(_TCB_NAMES),
    levels=frozenset({"L1", "L2 VM 1", "L2 VM 2", "L2 VM 3"}),
    checks=TDX_CHECKS | POLICY_CHECKS,
    tcb_statuses=frozenset(TCB_STATUSES),
    section=TdxPolicy,
)
