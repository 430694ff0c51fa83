"""Attestation policy: what a relying party accepts.

A :class:`Policy` has vendor-neutral fields (layers, debug, measurements, freshness, TCB,
advisories, collateral age) and one optional section per evidence plug-in (``[sev-snp]``,
``[tdx]`` in a policy file; ``Policy(vendor={"sev-snp": {...}})`` in Python) whose model the
plug-in declares (:class:`cocopart.attest.evidence_plugins.PolicySchema`). Every key and every pin
length is checked when the policy is built, against the installed plug-ins: a misspelt
``minimum_tcb.snp_spl`` or a 47-byte measurement is a ValidationError then (a ConfigError
naming file, line and field when the policy comes from a file), not a mismatch at verify time.

Bytes are given as hex text (``0x`` prefix allowed) or bytes. Wherever a pin may take several
values (two MRSEAMs, a fleet's chip IDs) a list is accepted and the evidence must match one.
docs/attestation.md ("Policy") compares every field with go-sev-guest's ``validate.Options``,
go-tdx-guest's ``validate.Options`` and Trustee's default policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cocopart.errors import InputError
from cocopart.inputmodel import InputModel

if TYPE_CHECKING:
    from cocopart.attest.evidence_plugins import PolicySchema

_HEX_SPACE = re.compile(r"[\s:_]")


def _from_hex(value: Any) -> Any:
    """Hex text (``0x`` prefix, spaces, colons and underscores allowed) -> bytes."""
    if isinstance(value, str):
        text = _HEX_SPACE.sub("", value)
        text = text[2:] if text[:2] in ("0x", "0X") else text
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"expected hex text, got {value!r}") from None
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _int_or_hex(value: Any) -> Any:
    """An integer given as a number or as text ("0x6dbe7", "449511")."""
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            raise ValueError(f"expected an integer (decimal or 0x hex), got {value!r}") from None
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | bytes | bytearray | memoryview) else value


#: Bytes given as hex text or bytes.
HexBytes = Annotated[bytes, BeforeValidator(_from_hex)]
#: An integer given as a number or as decimal/hex text.
HexInt = Annotated[int, BeforeValidator(_int_or_hex)]


def _sized(size: int) -> Callable[[list[bytes]], list[bytes]]:
    def check(values: list[bytes]) -> list[bytes]:
        for value in values:
            if len(value) != size:
                raise ValueError(f"must be {size} bytes ({2 * size} hex digits), got {len(value)}")
        return values

    return check


#: One accepted value or a list of accepted values (hex or bytes); size it with
#: ``Annotated[Pins, pin_size(32)]``.
Pins = Annotated[list[HexBytes], BeforeValidator(_as_list)]


def pin_size(size: int) -> AfterValidator:
    """Metadata for :data:`Pins`: every accepted value has exactly ``size`` bytes."""
    return AfterValidator(_sized(size))


class VendorPolicy(InputModel):
    """Base of a plug-in's policy section: unknown keys are errors, bytes are hex; bad input
    raises InputError (a ConfigError), like every model a caller builds."""

    model_config = ConfigDict(
        extra="forbid", ser_json_bytes="hex", val_json_bytes="hex", defer_build=True
    )


@dataclass(frozen=True)
class PolicyProblem:
    """A key or value of a policy that no installed evidence plug-in accepts."""

    path: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.path))}: {self.message}"


#: Layer names of the neutral model (cocopart.model): the privileged layer and workloads.
_NEUTRAL_LAYER = re.compile(r"^(l1|l2\.[1-9][0-9]*)$")
#: Checks of the neutral policy (``policy.measurement.<name>`` and ``policy.tcb.<name>``
#: besides), for ``waive_checks``.
NEUTRAL_POLICY_CHECKS = (
    "policy.origin_layer",
    "policy.via_privileged_layer",
    "policy.debug",
    "policy.nonce",
    "policy.report_data",
    "policy.tcb_status",
    "policy.advisories",
    "policy.collateral_age",
)
#: Option in ``model_validate(..., context=...)``: leave the schema check to the caller
#: (the policy file loader reports it with file and line).
DEFER_SCHEMA_CHECK = "defer_schema_check"


class Policy(InputModel):
    """A relying party's expectations. Every field is checked and named in the verdict.

    The default policy is strict: only the privileged layer's own evidence (SNP VMPL0, the
    TDX L1) is accepted, debug is rejected, and nothing else is pinned. The vendor sections
    add their defaults (e.g. SEV-SNP rejects a migration agent, TDX checks the fixed bits of
    TD attributes and XFAM).
    """

    model_config = ConfigDict(extra="forbid", ser_json_bytes="hex", val_json_bytes="hex")

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
    expected_measurements: dict[str, Pins] = Field(
        default_factory=dict,
        description="Measurement name -> accepted value or list of "
        "accepted values (hex), e.g. measurement (SNP), mrtd, rtmr0..3, mrseam, "
        "mrconfigid (TDX). The evidence must carry one of the values.",
    )
    expected_report_data: HexBytes | None = Field(
        default=None,
        max_length=64,
        description="The raw REPORT_DATA the evidence must carry "
        "(zero-padded to its size). For evidence from the privileged layer's attestation "
        "service REPORT_DATA is SHA-512(nonce || services manifest): pin the nonce with "
        "expected_nonce instead.",
    )
    expected_nonce: HexBytes | None = Field(
        default=None,
        max_length=64,
        description="The freshness nonce you asked for (up to 64 "
        "bytes, zero-padded to 64 as the attest operation does). Service evidence must carry "
        "REPORT_DATA = SHA-512(nonce || its services manifest); hardware evidence must carry "
        "the nonce itself as REPORT_DATA.",
    )
    allow_debug: bool = Field(
        default=False, description="Accept evidence of a guest whose debug policy bit is set."
    )
    minimum_tcb: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Component -> minimum SVN of the reported TCB, e.g. "
        "bootloader, tee, snp, microcode, fmc (SNP); tee_tcb_svn00..15, sgx_tcb_comp01..16, "
        "pcesvn, qe_isvsvn (TDX).",
    )
    accepted_tcb_status: list[str] = Field(
        default_factory=lambda: ["UpToDate"],
        description="TCB statuses accepted (TDX collateral: UpToDate, SWHardeningNeeded, ...).",
    )
    rejected_advisories: list[str] = Field(
        default_factory=list,
        description="Security advisories (e.g. 'INTEL-SA-00837') that "
        "reject the evidence when its TCB evaluation lists them.",
    )
    waive_checks: list[str] = Field(
        default_factory=list,
        description="Names of checks the relying party accepts failing, e.g. "
        "'tdx.td_attributes.sept_ve_disable' for partitioned TDs that run without it, or "
        "'policy.tcb_status'. A waived check stays in the verdict, marked as waived.",
    )
    max_collateral_age: timedelta | None = Field(
        default=None, description="Reject collateral issued longer ago than this."
    )
    vendor: dict[str, Any] = Field(
        default_factory=dict,
        description="Per evidence plug-in, its own policy section "
        "(the plug-in's model; in a policy file the top-level tables [sev-snp], [tdx]).",
    )

    @model_validator(mode="before")
    @classmethod
    def _vendor_tables(cls, data: Any) -> Any:
        """Top-level keys named after an installed evidence plug-in are its section."""
        if not isinstance(data, dict):
            return data
        names = [k for k in data if k not in cls.model_fields and k in _schemas()]
        if not names:
            return data
        data = dict(data)
        sections = dict(data.get("vendor") or {})
        for name in names:
            sections[name] = data.pop(name)
        data["vendor"] = sections
        return data

    @field_validator("vendor", mode="after")
    @classmethod
    def _sections(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Validate each section with its plug-in's model."""
        schemas = _schemas()
        out: dict[str, Any] = {}
        for name, section in value.items():
            model = schemas[name].section if name in schemas else None
            if model is None:
                known = ", ".join(n for n, s in schemas.items() if s.section) or "none"
                raise ValueError(
                    f"no installed evidence plug-in has a policy section "
                    f"{name!r} (sections: {known})"
                )
            try:
                out[name] = model.model_validate(section)
            except InputError as err:  # one message naming section and field
                first = err.errors[0] if err.errors else {"loc": (), "msg": err.message}
                where = ".".join(str(p) for p in (name, *first["loc"]))
                raise ValueError(
                    f"{where}: {str(first['msg']).removeprefix('Value error, ')}"
                ) from None
        return out

    @model_validator(mode="after")
    def _known_names(self, info: ValidationInfo) -> Policy:
        if info.context and info.context.get(DEFER_SCHEMA_CHECK):
            return self
        problems = self.problems()
        if problems:
            raise ValueError(str(problems[0]))
        return self

    def section(self, vendor: str) -> VendorPolicy | None:
        """The policy section for ``vendor``'s evidence, or None."""
        found = self.vendor.get(vendor) if self.vendor else None
        return found if found is not None and isinstance(found, VendorPolicy) else None

    def problems(self) -> list[PolicyProblem]:
        """Keys and values no installed evidence plug-in knows, with their paths."""
        if not self._names_vendor_terms():
            return []  # nothing to look up: no plug-in needs to be loaded
        schemas = list(_schemas().values())
        out: list[PolicyProblem] = []
        if not schemas:
            return [
                PolicyProblem(
                    (), "no evidence plug-in is installed to check this policy's names against"
                )
            ]
        levels = set().union(*(s.levels for s in schemas))
        for i, layer in enumerate(self.allowed_layers):
            if not _NEUTRAL_LAYER.match(layer) and layer not in levels:
                out.append(
                    PolicyProblem(
                        ("allowed_layers", i),
                        _unknown(
                            f"layer {layer!r}", ["l1", "l2.1", "l2.2", "l2.3", *sorted(levels)]
                        ),
                    )
                )
        sizes: dict[str, set[int]] = {}
        for s in schemas:
            for name, size in s.measurements.items():
                sizes.setdefault(name, set()).add(size)
        for name, values in self.expected_measurements.items():
            if name not in sizes:
                out.append(
                    PolicyProblem(
                        ("expected_measurements", name),
                        _unknown(f"measurement {name!r}", sorted(sizes)),
                    )
                )
                continue
            bad = next((v for v in values if len(v) not in sizes[name]), None)
            if bad is not None:
                want = " or ".join(str(n) for n in sorted(sizes[name]))
                digits = " or ".join(str(2 * n) for n in sorted(sizes[name]))
                out.append(
                    PolicyProblem(
                        ("expected_measurements", name),
                        (f"must be {want} bytes ({digits} hex digits), got {len(bad)}"),
                    )
                )
        out += _names(
            ("minimum_tcb",),
            self.minimum_tcb,
            set().union(*(s.tcb for s in schemas)),
            "TCB component",
        )
        statuses = set().union(*(s.tcb_statuses for s in schemas))
        if statuses:  # no installed plug-in reports a TCB status: the field cannot matter
            out += _names(
                ("accepted_tcb_status",), self.accepted_tcb_status, statuses, "TCB status"
            )
        checks = set(NEUTRAL_POLICY_CHECKS).union(
            *(s.checks for s in schemas),
            (f"policy.measurement.{m}" for m in sizes),
            (f"policy.tcb.{t}" for s in schemas for t in s.tcb),
        )
        out += _names(("waive_checks",), self.waive_checks, checks, "check")
        return out

    def _names_vendor_terms(self) -> bool:
        return bool(
            self.expected_measurements
            or self.minimum_tcb
            or self.waive_checks
            or any(s != "UpToDate" for s in self.accepted_tcb_status)
            or not all(_NEUTRAL_LAYER.match(x) for x in self.allowed_layers)
        )


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def compress_names(names: Sequence[str]) -> str:
    """``a, tee_tcb_svn00, ..., tee_tcb_svn15`` -> ``a, tee_tcb_svn00..15`` (sorted)."""
    runs: dict[str, list[str]] = {}
    plain: list[str] = []
    for name in sorted(names):
        m = _NUMBERED.match(name)
        if m and m.group(1):
            runs.setdefault(m.group(1), []).append(m.group(2))
        else:
            plain.append(name)
    for prefix, numbers in runs.items():
        if len(numbers) > 3:
            plain.append(f"{prefix}{numbers[0]}..{numbers[-1]}")
        else:
            plain += [prefix + n for n in numbers]
    return ", ".join(sorted(plain))


def _unknown(what: str, known: Sequence[str]) -> str:
    return f"unknown {what} (known: {compress_names(known) or 'none'})"


def _names(path: tuple[str, ...], names: Any, known: set[str], what: str) -> list[PolicyProblem]:
    out = []
    for i, name in enumerate(names):
        if name not in known:
            key: str | int = name if isinstance(names, dict) else i
            out.append(PolicyProblem((*path, key), _unknown(f"{what} {name!r}", sorted(known))))
    return out


def _schemas() -> dict[str, PolicySchema]:
    from cocopart.attest.evidence_plugins import installed_schemas

    return installed_schemas()
