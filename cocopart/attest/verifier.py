"""Vendor-neutral verification: evidence plug-ins do the cryptography, the policy is here.

A vendor plug-in (entry-point group ``cocopart.evidence``) implements
:class:`EvidenceVerifier`: it parses the evidence, checks signatures and certificate chains
against a :class:`TrustStore`, and returns :class:`Claims` plus the list of checks it made.
:class:`Verifier` then applies a :class:`Policy` and returns one :class:`Verdict` that names
every failed check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from cocopart.attest.encoding import Base64Bytes
from cocopart.attest.evidence import Claims, Evidence
from cocopart.attest.evidence_plugins import EVIDENCE_GROUP, PolicySchema
from cocopart.attest.evidence_plugins import load_evidence_verifier as _load
from cocopart.attest.policy import Policy, VendorPolicy
from cocopart.errors import CocopartError, InternalError
from cocopart.inputmodel import InputModel
from cocopart.protocol.manifest import bind_report_data
from cocopart.unchecked import build_unchecked

__all__ = [
    "EVIDENCE_GROUP",
    "Check",
    "EvidenceVerifier",
    "TrustStore",
    "VendorResult",
    "Verdict",
    "Verifier",
    "apply_policy",
    "load_evidence_verifier",
    "vendor_policy_checks",
]


class Check(BaseModel):
    """One named check and its outcome (immutable: verdicts share equal checks)."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str = ""


_CHECKS: dict[tuple[str, bool, str], Check] = {}
_OK = attrgetter("ok")
_CHECKS_LIMIT = 4096


def check(name: str, ok: bool, detail: str = "") -> Check:
    """The :class:`Check` ``(name, ok, detail)``, one shared instance per distinct value:
    verifying evidence of a known platform repeats the same checks, so they are built once
    (a bounded cache)."""
    key = (name, ok, detail)
    hit = _CHECKS.get(key)
    if hit is None:
        if len(_CHECKS) >= _CHECKS_LIMIT:
            _CHECKS.clear()
        hit = _CHECKS[key] = Check(name=name, ok=ok, detail=detail)
    return hit


class TrustStore(InputModel):
    """Roots a verifier may chain to.

    ``pinned_roots`` holds extra root certificates (PEM or DER) by vendor. The real vendor
    roots are pinned inside each plug-in (by public-key fingerprint) and accepted unless
    ``trust_vendor_roots`` is False. Simulated roots are accepted only when they are listed
    here explicitly.
    """

    pinned_roots: dict[str, list[Base64Bytes]] = Field(default_factory=dict)
    trust_vendor_roots: bool = True
    certificate_cache: Path | None = Field(
        default=None,
        description="A directory of vendor certificates in the vendor's own "
        "distribution layout, where plug-ins look for certificates the evidence lacks (AMD "
        "KDS: vcek/v1/<product>/<hwid>, vcek/v1/<product>/cert_chain, "
        "vlek/v1/<product>/cert_chain). Certificates found there are checked like any "
        "other: the cache adds certificates, never trust.",
    )

    def roots_for(self, vendor: str) -> list[bytes]:
        return list(self.pinned_roots.get(vendor, []))

    def with_root(self, vendor: str, root: bytes) -> TrustStore:
        roots = {k: list(v) for k, v in self.pinned_roots.items()}
        roots.setdefault(vendor, []).append(root)
        return self.model_copy(update={"pinned_roots": roots})


class VendorResult(BaseModel):
    """What an evidence plug-in returns: claims (None if unparsable) and its checks."""

    model_config = ConfigDict(defer_build=True)

    claims: Claims | None
    checks: list[Check]


@runtime_checkable
class EvidenceVerifier(Protocol):
    """Contract of a ``cocopart.evidence`` plug-in."""

    vendor: str

    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        """Parse and cryptographically verify ``evidence``; never raise for bad evidence."""
        ...


class Verdict(BaseModel):
    """The outcome of verifying evidence against a policy."""

    model_config = ConfigDict(defer_build=True)

    ok: bool
    checks: list[Check]
    claims: Claims | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.ok:
            return f"verified: all {len(self.checks)} checks passed"
        return "rejected: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)


def load_evidence_verifier(vendor: str) -> EvidenceVerifier:
    """Load the evidence plug-in for ``vendor`` through stevedore."""
    verifier: EvidenceVerifier = _load(vendor)
    return verifier


def _freshness(claims: Claims, policy: Policy, manifest: bytes | None) -> list[Check]:
    """``expected_nonce`` and ``expected_report_data``. Service evidence binds its nonce and
    services manifest as REPORT_DATA = SHA-512(nonce || manifest) (sev-snp.md §3.1); hardware
    evidence carries the nonce itself."""
    checks: list[Check] = []
    if policy.expected_nonce is not None:
        nonce = policy.expected_nonce.ljust(64, b"\0")
        if manifest:
            ok = claims.report_data == bind_report_data(nonce, manifest)
            how = "REPORT_DATA = SHA-512(nonce || services manifest)"
        else:
            ok = claims.report_data == nonce.ljust(len(claims.report_data), b"\0")
            how = "REPORT_DATA = nonce (hardware evidence, no services manifest)"
        checks.append(
            check(
                name="policy.nonce",
                ok=ok,
                detail=(
                    f"the evidence is fresh: {how}"
                    if ok
                    else f"the evidence does not bind the expected nonce ({how} does not hold)"
                ),
            )
        )
    if policy.expected_report_data is not None:
        want = policy.expected_report_data.ljust(len(claims.report_data), b"\0")
        ok = claims.report_data == want
        detail = (
            "report data binds the expected value"
            if ok
            else "report data does not match the expected value"
        )
        if (
            not ok
            and manifest
            and claims.report_data
            == bind_report_data(policy.expected_report_data.ljust(64, b"\0"), manifest)
        ):
            detail += (
                ": the value given is this evidence's nonce — service evidence carries "
                "REPORT_DATA = SHA-512(nonce || services manifest); pin the nonce with "
                "expected_nonce (CLI: --nonce) instead"
            )
        checks.append(check(name="policy.report_data", ok=ok, detail=detail))
    return checks


def _measurement(claims: Claims, name: str, wanted: list[bytes]) -> Check:
    have = claims.measurements.get(name)
    label = f"policy.measurement.{name}"
    if have is None:
        return check(
            name=label,
            ok=False,
            detail=(
                f"{claims.vendor} evidence has no measurement {name!r} (it has: "
                f"{', '.join(claims.measurements) or 'none'})"
            ),
        )
    if have in wanted:
        return check(
            name=label,
            ok=True,
            detail="matches"
            if len(wanted) == 1
            else f"matches accepted value {wanted.index(have) + 1} of {len(wanted)}",
        )
    expected = (
        wanted[0].hex()
        if len(wanted) == 1
        else f"one of {len(wanted)} values ({', '.join(w.hex()[:16] + '...' for w in wanted)})"
    )
    return check(name=label, ok=False, detail=f"expected {expected}, evidence has {have.hex()}")


_DEFAULT_SECTIONS: dict[type, VendorPolicy | None] = {}


def _default_section(plugin: object) -> VendorPolicy | None:
    """The plug-in's policy section with every default (built once per plug-in class)."""
    kind = type(plugin)
    if kind not in _DEFAULT_SECTIONS:
        schema = getattr(plugin, "policy_schema", None)
        model = schema.section if isinstance(schema, PolicySchema) else None
        section = model.model_construct() if model is not None else None
        _DEFAULT_SECTIONS[kind] = section if isinstance(section, VendorPolicy) else None
    return _DEFAULT_SECTIONS[kind]


def vendor_policy_checks(plugin: object, claims: Claims, policy: Policy) -> list[Check]:
    """The checks of the evidence plug-in's own policy section (its defaults when the policy
    has none): ``plugin.check_policy(claims, section)``. A plug-in without a section model
    has none; a section given for a plug-in that cannot apply it fails."""
    section = policy.section(claims.vendor)
    if section is None:
        section = _default_section(plugin)
    if section is None:
        return []
    apply = getattr(plugin, "check_policy", None)
    if apply is None:
        return [
            check(
                name=f"policy.{claims.vendor}",
                ok=False,
                detail=(f"the {claims.vendor} plug-in cannot apply its policy section"),
            )
        ]
    checks: list[Check] = apply(claims, section)
    return checks


_STANDING: dict[tuple[Any, ...], tuple[Check, ...]] = {}


def _standing(claims: Claims, policy: Policy) -> tuple[Check, ...]:
    """Origin, debug and TCB status checks: every piece of evidence of one guest and
    platform repeats them, so they are remembered by the values they depend on."""
    origin = claims.origin
    key = (
        origin.layer,
        origin.vendor_level,
        origin.via_privileged_layer,
        claims.debug,
        claims.tcb_status,
        tuple(policy.allowed_layers),
        policy.allow_via_privileged_layer,
        policy.allow_debug,
        tuple(policy.accepted_tcb_status),
    )
    hit = _STANDING.get(key)
    if hit is not None:
        return hit
    out = [
        check(
            name="policy.origin_layer",
            ok=origin.layer in policy.allowed_layers
            or origin.vendor_level in policy.allowed_layers,
            detail=f"evidence speaks for {origin.layer} ({origin.vendor_level}); "
            f"allowed: {', '.join(policy.allowed_layers)}",
        )
    ]
    if origin.via_privileged_layer:
        out.append(
            check(
                name="policy.via_privileged_layer",
                ok=policy.allow_via_privileged_layer,
                detail="the privileged layer attested on the workload's behalf",
            )
        )
    out.append(
        check(
            name="policy.debug",
            ok=policy.allow_debug or not claims.debug,
            detail="debug is enabled in the guest policy" if claims.debug else "debug disabled",
        )
    )
    if claims.tcb_status is not None:
        out.append(
            check(
                name="policy.tcb_status",
                ok=claims.tcb_status in policy.accepted_tcb_status,
                detail=f"TCB status {claims.tcb_status}; accepted: "
                + ", ".join(policy.accepted_tcb_status),
            )
        )
    if len(_STANDING) >= _CHECKS_LIMIT:
        _STANDING.clear()
    hit = _STANDING[key] = tuple(out)
    return hit


def apply_policy(
    claims: Claims, policy: Policy, now: datetime, manifest: bytes | None = None
) -> list[Check]:
    """The vendor-neutral policy checks, each named. ``manifest``: the evidence's services
    manifest (service evidence), which the freshness check binds with the nonce."""
    checks = list(_standing(claims, policy))
    for name, wanted in policy.expected_measurements.items():
        checks.append(_measurement(claims, name, wanted))
    if policy.expected_nonce is not None or policy.expected_report_data is not None:
        checks += _freshness(claims, policy, manifest)
    for comp, minimum in policy.minimum_tcb.items():
        have_v = claims.tcb.get(comp)
        checks.append(
            check(
                name=f"policy.tcb.{comp}",
                ok=have_v is not None and have_v >= minimum,
                detail=f"{comp}={have_v} (minimum {minimum})"
                if have_v is not None
                else f"{claims.vendor} evidence has no TCB component {comp!r} (it has: "
                f"{', '.join(claims.tcb) or 'none'})",
            )
        )
    if policy.rejected_advisories:
        listed = set(claims.extra.get("advisory_ids") or ())
        hit = [a for a in policy.rejected_advisories if a in listed]
        checks.append(
            check(
                name="policy.advisories",
                ok=not hit,
                detail=f"the TCB evaluation lists rejected advisories: {', '.join(hit)}"
                if hit
                else f"none of the {len(policy.rejected_advisories)} rejected advisories is listed",
            )
        )
    issued = (
        claims.extra.get("collateral_issue_date") if policy.max_collateral_age is not None else None
    )
    if policy.max_collateral_age is not None and isinstance(issued, str):
        age = now - datetime.fromisoformat(issued)
        checks.append(
            check(
                name="policy.collateral_age",
                ok=age <= policy.max_collateral_age,
                detail=f"collateral issued {age} ago (maximum {policy.max_collateral_age})",
            )
        )
    return checks


class Verifier:
    """Verify evidence of any installed vendor against one policy.

    >>> Verifier(Policy(allowed_layers=["l1", "l2.1"])).verify(evidence)  # doctest: +SKIP
    """

    def __init__(self, policy: Policy | None = None, trust: TrustStore | None = None) -> None:
        self.policy = policy or Policy()
        self.trust = trust or TrustStore()
        self._plugins: dict[str, EvidenceVerifier] = {}

    def _plugin(self, vendor: str) -> EvidenceVerifier:
        if vendor not in self._plugins:
            self._plugins[vendor] = load_evidence_verifier(vendor)
        return self._plugins[vendor]

    def verify(self, evidence: Evidence, now: datetime | None = None) -> Verdict:
        """Verify ``evidence`` as of ``now`` (default: the current time).

        Bad evidence never raises: it fails named checks. An evidence plug-in that raises
        anyway has a bug: that becomes :class:`~cocopart.errors.InternalError`.
        """
        now = now or datetime.now(UTC)
        plugin = self._plugin(evidence.vendor)
        try:
            result = plugin.verify(evidence, self.trust, now)
        except CocopartError:
            raise
        except Exception as err:
            raise InternalError(
                f"verifying {evidence.vendor}/{evidence.format} evidence", err
            ) from err
        checks = list(result.checks)
        if result.claims is not None:
            checks += apply_policy(result.claims, self.policy, now, evidence.manifest)
            checks += vendor_policy_checks(plugin, result.claims, self.policy)
        else:
            checks.append(check(name="parse", ok=False, detail="evidence could not be parsed"))
        if self.policy.waive_checks:
            waived = set(self.policy.waive_checks)
            checks = [
                c
                if c.ok or c.name not in waived
                else check(name=c.name, ok=True, detail=f"waived by policy: {c.detail}")
                for c in checks
            ]
        return build_unchecked(
            Verdict, {"ok": all(map(_OK, checks)), "checks": checks, "claims": result.claims}
        )
