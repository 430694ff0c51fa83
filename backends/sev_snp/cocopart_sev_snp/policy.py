"""The ``[sev-snp]`` policy section and the checks it makes on verified SNP claims.

Parity with go-sev-guest ``validate.Options`` (validate/validate.go) and Trustee's default
policy (attestation-service ``ear_default_policy_cpu.rego``, SNP part); the table in
docs/attestation.md ("Policy") maps every option. Checks are named ``policy.sev-snp.<key>``
and appear in the verdict only for what the section constrains, plus two defaults:
``migrate_ma`` (a migration agent is refused unless allowed, as go-sev-guest's zero
``GuestPolicy`` does) and ``firmware`` (COMMITTED <= CURRENT TCB and version, REPORTED <=
CURRENT TCB: go-sev-guest ``validateTcb``/``validateVersion``).

Semantics where the sources differ, each a choice recorded in docs/modelled-rules.md:

* ``permit_provisional_firmware`` defaults to true (go-sev-guest: false) — real Azure and AWS
  reports in shared/vectors run CURRENT_TCB above COMMITTED_TCB, and go-sev-guest's default
  would refuse them. With false, COMMITTED must equal CURRENT (TCB, version, build).
* ``platform_info`` pins each named PLATFORM_INFO flag to a value (Trustee compares
  smt_enabled/tsme_enabled for equality; go-sev-guest's "maximum" is ``smt_en = false``).
* ID keys: checked when ``require_id_block``/``require_author_key`` is set *or* trusted
  digests are listed (go-sev-guest ignores the lists unless an ID block is required).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from cocopart.spi import Check, Claims, Pins, PolicySchema, VendorPolicy, check, pin_size
from cocopart_sev_snp.report import PLATFORM_FLAG_NAMES

VENDOR = "sev-snp"
TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
_VERSION = re.compile(r"^(\d{1,3})\.(\d{1,3})$")


def _major_minor(text: str) -> str:
    m = _VERSION.match(text.strip())
    if m is None or int(m.group(1)) > 255 or int(m.group(2)) > 255:
        raise ValueError(f"expected 'major.minor' with numbers 0..255, got {text!r}")
    return text.strip()


MajorMinor = Annotated[str, AfterValidator(_major_minor)]


class SnpPolicy(VendorPolicy):
    """What a relying party requires of an SEV-SNP report beyond the neutral policy.

    Byte pins take one value or a list of accepted values (hex)."""

    host_data: Annotated[Pins, pin_size(32)] = Field(
        default_factory=list, description="HOST_DATA (32 bytes)."
    )
    family_id: Annotated[Pins, pin_size(16)] = Field(
        default_factory=list, description="FAMILY_ID (16 bytes)."
    )
    image_id: Annotated[Pins, pin_size(16)] = Field(
        default_factory=list, description="IMAGE_ID (16 bytes)."
    )
    report_id: Annotated[Pins, pin_size(32)] = Field(
        default_factory=list, description="REPORT_ID (32 bytes)."
    )
    report_id_ma: Annotated[Pins, pin_size(32)] = Field(
        default_factory=list, description="REPORT_ID_MA (32 bytes)."
    )
    chip_id: Annotated[Pins, pin_size(64)] = Field(
        default_factory=list, description="CHIP_ID (64 bytes): the chips this guest may run on."
    )
    vmpl: list[Annotated[int, Field(ge=0, le=3)]] = Field(
        default_factory=list,
        description="The report's VMPL field must be one of these "
        "(go-sev-guest's VMPL option; allowed_layers names layers instead).",
    )
    minimum_guest_svn: int = Field(default=0, ge=0, le=0xFFFF_FFFF)
    trusted_id_key_digests: Annotated[Pins, pin_size(48)] = Field(
        default_factory=list,
        description="SHA-384 digests of ID keys trusted to have signed "
        "the ID block (ID_KEY_DIGEST).",
    )
    trusted_author_key_digests: Annotated[Pins, pin_size(48)] = Field(
        default_factory=list,
        description="SHA-384 digests of author keys trusted to have "
        "signed ID keys (AUTHOR_KEY_DIGEST, with AUTHOR_KEY_EN set).",
    )
    require_id_block: bool = Field(
        default=False,
        description="Require an ID block signed by a trusted ID key or a key of a trusted author.",
    )
    require_author_key: bool = Field(
        default=False,
        description="Require AUTHOR_KEY_EN and a trusted author key (implies require_id_block).",
    )
    allow_smt: bool = Field(default=True, description="Accept a guest policy that allows SMT.")
    allow_migrate_ma: bool = Field(
        default=False, description="Accept a guest policy with a migration agent."
    )
    require_single_socket: bool = False
    minimum_abi: MajorMinor = Field(
        default="0.0", description="Minimum guest policy ABI 'major.minor'."
    )
    platform_info: dict[str, bool] = Field(
        default_factory=dict,
        description="PLATFORM_INFO flag -> required value, e.g. smt_en = false, tsme_en = true.",
    )
    minimum_version: MajorMinor = Field(
        default="0.0", description="Minimum firmware API version 'major.minor' (CURRENT)."
    )
    minimum_build: int = Field(
        default=0, ge=0, le=255, description="Minimum firmware build (CURRENT)."
    )
    permit_provisional_firmware: bool = Field(
        default=True,
        description="Accept COMMITTED below CURRENT (not yet committed "
        "firmware); false requires them equal.",
    )
    minimum_launch_tcb: dict[str, Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=dict, description="Component -> minimum SVN of LAUNCH_TCB."
    )

    @field_validator("platform_info")
    @classmethod
    def _flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        return _known_keys(value, PLATFORM_FLAG_NAMES, "PLATFORM_INFO flag")

    @field_validator("minimum_launch_tcb")
    @classmethod
    def _components(cls, value: dict[str, int]) -> dict[str, int]:
        return _known_keys(value, TCB_COMPONENTS, "TCB component")


def _known_keys(value: dict[str, Any], known: tuple[str, ...], what: str) -> dict[str, Any]:
    for name in value:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(known)})")
    return value


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _one_of(name: str, field: str, have_hex: str, wanted: list[bytes]) -> Check:
    accepted = {w.hex() for w in wanted}
    ok = have_hex in accepted
    return check(
        name=f"policy.{VENDOR}.{name}",
        ok=ok,
        detail=(
            f"{field} is {'the' if len(wanted) == 1 else 'an'} accepted value"
            if ok
            else f"{field} {have_hex} is not {'the' if len(wanted) == 1 else 'an'} accepted value "
            f"({', '.join(sorted(accepted))})"
        ),
    )


def _le(low: dict[str, int], high: dict[str, int]) -> list[str]:
    return [f"{k} {low[k]} > {high[k]}" for k in low if k in high and low[k] > high[k]]


_FIRMWARE: dict[tuple[Any, ...], Check] = {}


def _firmware(claims: Claims, section: SnpPolicy) -> Check:
    """Remembered per firmware state and section values: every report of a host repeats it."""
    extra = claims.extra
    key = (
        tuple(extra["current_tcb"].items()),
        tuple(extra["committed_tcb"].items()),
        tuple(claims.tcb.items()),
        extra["current_version"],
        extra["committed_version"],
        section.permit_provisional_firmware,
        section.minimum_version,
        section.minimum_build,
    )
    hit = _FIRMWARE.get(key)
    if hit is None:
        if len(_FIRMWARE) > 256:
            _FIRMWARE.clear()
        hit = _FIRMWARE[key] = _firmware_check(claims, section)
    return hit


def _firmware_check(claims: Claims, section: SnpPolicy) -> Check:
    extra = claims.extra
    cur, com = extra["current_tcb"], extra["committed_tcb"]
    cur_v, com_v = _version(extra["current_version"]), _version(extra["committed_version"])
    problems = [f"COMMITTED_TCB above CURRENT_TCB: {p}" for p in _le(com, cur)]
    problems += [f"REPORTED_TCB above CURRENT_TCB: {p}" for p in _le(claims.tcb, cur)]
    if com_v > cur_v:
        problems.append(
            f"committed firmware {extra['committed_version']} is above the "
            f"current {extra['current_version']}"
        )
    if not section.permit_provisional_firmware and (com != cur or com_v != cur_v):
        problems.append(
            f"provisional firmware: COMMITTED ({extra['committed_version']}, "
            f"TCB {com}) differs from CURRENT ({extra['current_version']}, TCB {cur})"
            "; set permit_provisional_firmware = true to accept it"
        )
    want = _version(section.minimum_version)
    if cur_v[:2] < want:
        problems.append(
            f"firmware API version {cur_v[0]}.{cur_v[1]} is below the minimum "
            f"{section.minimum_version}"
        )
    if cur_v[2] < section.minimum_build:
        problems.append(f"firmware build {cur_v[2]} is below the minimum {section.minimum_build}")
    return check(
        name=f"policy.{VENDOR}.firmware",
        ok=not problems,
        detail="; ".join(problems)
        or f"firmware {extra['current_version']} (committed "
        f"{extra['committed_version']}); COMMITTED and REPORTED TCB <= CURRENT",
    )


def _id_keys(extra: dict[str, Any], section: SnpPolicy) -> Check:
    """go-sev-guest ``validateKeys``: a trusted author key, else a trusted ID key."""
    author_en = bool(extra["signer_info"]["author_key_en"])
    author_ok = author_en and extra["author_key_digest"] in {
        d.hex() for d in section.trusted_author_key_digests
    }
    name = f"policy.{VENDOR}.id_keys"
    if section.require_author_key and not author_ok:
        why = (
            "AUTHOR_KEY_EN is not set"
            if not author_en
            else f"author key {extra['author_key_digest'][:16]}... is not trusted"
        )
        return check(name=name, ok=False, detail=f"an author key is required: {why}")
    if author_ok:
        return check(name=name, ok=True, detail="the ID key is signed by a trusted author key")
    ok = extra["id_key_digest"] in {d.hex() for d in section.trusted_id_key_digests}
    return check(
        name=name,
        ok=ok,
        detail="the ID block is signed by a trusted ID key"
        if ok
        else f"ID key {extra['id_key_digest'][:16]}... is not trusted (no ID block, or "
        "neither it nor its author key is listed)",
    )


def check_policy(claims: Claims, section: VendorPolicy) -> list[Check]:
    """The ``[sev-snp]`` checks on verified claims (see the module docstring)."""
    assert type(section) is SnpPolicy or isinstance(section, SnpPolicy)
    extra = claims.extra
    out: list[Check] = []
    for key, field in (
        ("host_data", "HOST_DATA"),
        ("family_id", "FAMILY_ID"),
        ("image_id", "IMAGE_ID"),
        ("report_id", "REPORT_ID"),
        ("report_id_ma", "REPORT_ID_MA"),
    ):
        wanted: list[bytes] = getattr(section, key)
        if wanted:
            out.append(_one_of(key, field, extra[key], wanted))
    if section.chip_id:
        out.append(_one_of("chip_id", "CHIP_ID", claims.platform_id, section.chip_id))
    if section.vmpl:
        vmpl = extra["vmpl"]
        out.append(
            check(
                name=f"policy.{VENDOR}.vmpl",
                ok=vmpl in section.vmpl,
                detail=f"VMPL {vmpl}; accepted: {', '.join(map(str, section.vmpl))}",
            )
        )
    if section.minimum_guest_svn:
        svn = extra["guest_svn"]
        out.append(
            check(
                name=f"policy.{VENDOR}.minimum_guest_svn",
                ok=svn >= section.minimum_guest_svn,
                detail=f"GUEST_SVN {svn} (minimum {section.minimum_guest_svn})",
            )
        )
    if (
        section.require_id_block
        or section.require_author_key
        or section.trusted_id_key_digests
        or section.trusted_author_key_digests
    ):
        out.append(_id_keys(extra, section))
    out += _guest_policy(claims.policy, section)
    info = extra["platform_info"]
    for flag, want in section.platform_info.items():
        have = bool(info[flag])
        out.append(
            check(
                name=f"policy.{VENDOR}.platform_info.{flag}",
                ok=have == want,
                detail=f"PLATFORM_INFO {flag} is {'set' if have else 'clear'}; "
                f"required {'set' if want else 'clear'}",
            )
        )
    out.append(_firmware(claims, section))
    if section.minimum_launch_tcb:
        launch = extra["launch_tcb"]
        low = [
            f"{k} {launch.get(k)} < {v}"
            for k, v in section.minimum_launch_tcb.items()
            if launch.get(k) is None or launch[k] < v
        ]
        out.append(
            check(
                name=f"policy.{VENDOR}.minimum_launch_tcb",
                ok=not low,
                detail="LAUNCH_TCB "
                + ("; ".join(low) if low else f"{launch} meets {section.minimum_launch_tcb}"),
            )
        )
    return out


def _guest_policy(policy: dict[str, Any], section: SnpPolicy) -> list[Check]:
    """go-sev-guest ``validatePolicy``: ABI minimum, migration agent, SMT, single socket."""
    out = []
    name = f"policy.{VENDOR}"
    if not section.allow_migrate_ma or policy["migrate_ma"]:
        bad = policy["migrate_ma"] and not section.allow_migrate_ma
        out.append(
            check(
                name=f"{name}.migrate_ma",
                ok=not bad,
                detail=(
                    "the guest policy allows a migration agent; set allow_migrate_ma = true to accept"
                    if bad
                    else "guest policy: migration agent "
                    + ("allowed (accepted)" if policy["migrate_ma"] else "not allowed")
                ),
            )
        )
    if not section.allow_smt:
        out.append(
            check(
                name=f"{name}.smt",
                ok=not policy["smt"],
                detail=(
                    "the guest policy allows SMT; allow_smt = false"
                    if policy["smt"]
                    else "guest policy: SMT not allowed"
                ),
            )
        )
    if section.require_single_socket:
        out.append(
            check(
                name=f"{name}.single_socket",
                ok=bool(policy["single_socket"]),
                detail="guest policy: single socket "
                + ("required" if policy["single_socket"] else "not required"),
            )
        )
    want = _version(section.minimum_abi)
    if want > (0, 0):
        have = (policy["abi_major"], policy["abi_minor"])
        out.append(
            check(
                name=f"{name}.minimum_abi",
                ok=have >= want,
                detail=f"guest policy ABI {have[0]}.{have[1]} (minimum {section.minimum_abi})",
            )
        )
    return out


SNP_CHECKS = frozenset(
    {
        "snp.report.parse",
        "snp.hcl.runtime_data",
        "snp.chain.certificates",
        "snp.signature",
        "snp.signing_key",
        "snp.chain.vcek_ask",
        "snp.chain.ask_ark",
        "snp.chain.ark_self",
        "snp.chain.ark_pinned",
        "snp.chain.validity",
        "snp.product",
        "snp.chip_id",
        "snp.tcb",
        "snp.origin.layer_map",
        "snp.origin.vmpl",
        "snp.manifest_binding",
    }
)

#: The checks of this section (for waive_checks).
POLICY_CHECKS = frozenset(
    {
        f"policy.{VENDOR}.{k}"
        for k in (
            "host_data",
            "family_id",
            "image_id",
            "report_id",
            "report_id_ma",
            "chip_id",
            "vmpl",
            "minimum_guest_svn",
            "id_keys",
            "migrate_ma",
            "smt",
            "single_socket",
            "minimum_abi",
            "firmware",
            "minimum_launch_tcb",
            *(f"platform_info.{f}" for f in PLATFORM_FLAG_NAMES),
        )
    }
)

SCHEMA = PolicySchema(
    vendor=VENDOR,
    measurements={"measurement": 48},
    primary_measurement="measurement",
    tcb=frozenset(TCB_COMPONENTS),
    levels=frozenset(f"VMPL{i}" for i in range(4)),
    checks=SNP_CHECKS | POLICY_CHECKS,
    tcb_statuses=frozenset(),
    section=SnpPolicy,
)
