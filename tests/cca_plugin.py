"""A third platform that lives in the tests only: an Arm CCA realm sketch.

It shows that a platform is one small plug-in, with no core change: its platform plug-in
(entry-point group ``cocopart.platforms``) declares the configfs-tsm provider
``arm_cca_guest`` (LX drivers/virt/coco/arm-cca-guest/arm-cca-guest.c: 32..64-byte inblob,
no visibility hooks), the guest driver module, the realm's platform device (LX
arch/arm64/kernel/rsi.c ``arm-cca-dev``; a later series renames it ``arm-rsi-dev``) and a
recogniser for its evidence, a CBOR-tagged CCA token collection (tag 399, 0xD9 0x01 0x8F; Arm
CCA attestation token, draft-ffm-rats-cca-token). Its evidence verifier (``cocopart.evidence``)
is a toy: it accepts any non-empty token and reports SHA-384 of it as the measurement, and
it raises on a token starting with ``explode`` — the stand-in for a buggy plug-in.

:func:`install` registers both entry points through a ``.dist-info`` directory on
``sys.path``, as an installed distribution would.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from cocopart.attest.evidence import Claims, Evidence, Origin
from cocopart.attest.plugin import (
    Decoded,
    HostView,
    PlatformPlugin,
    PrivilegeLevel,
    Recognition,
    Section,
    TsmProvider,
)
from cocopart.attest.verifier import Check, TrustStore, VendorResult

CBOR_TAG_399 = b"\xd9\x01\x8f"


class CcaPlatform(PlatformPlugin):
    name: ClassVar[str] = "cca"
    title: ClassVar[str] = "Arm CCA"
    tsm: ClassVar[TsmProvider | None] = TsmProvider(
        name="arm_cca_guest", evidence_format="cca-token", inblob_min=32, inblob_max=64
    )
    formats: ClassVar[tuple[str, ...]] = ("cca-token",)
    kernel_modules: ClassVar[tuple[str, ...]] = ("arm_cca_guest",)

    def recognise(self, raw: bytes) -> Recognition | None:
        if raw.startswith(CBOR_TAG_399) and len(raw) > len(CBOR_TAG_399):
            return Recognition(self.name, "cca-token", raw, detail="CCA token collection")
        return None

    def decode(self, evidence: Evidence) -> Decoded:
        payload = evidence.raw[len(CBOR_TAG_399) :]
        return Decoded(
            vendor=self.name,
            format=evidence.format,
            title="CCA token",
            sections=[
                Section(title="token", fields={"cbor_tag": 399, "payload_bytes": len(payload)})
            ],
        )

    def signals(self, view: HostView) -> list[str]:
        devices = view.sysfs / "bus/platform/devices"
        return [
            f"{devices / n} exists"
            for n in ("arm-cca-dev", "arm-rsi-dev")
            if view.exists(devices / n)
        ]

    def privilege_level(self, view: HostView, tsm_floor: int | None) -> PrivilegeLevel:
        return PrivilegeLevel(
            reason="cocopart knows no Linux interface that tells a realm which plane it runs in"
        )

    def absent(self, view: HostView) -> str:
        return "no Arm CCA realm interface found (no arm-cca-dev platform device)"


class CcaVerifier:
    vendor = "cca"

    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult:
        payload = evidence.raw[len(CBOR_TAG_399) :]
        if payload.startswith(b"explode"):
            raise RuntimeError("toy verifier bug")
        if not evidence.raw.startswith(CBOR_TAG_399) or not payload:
            return VendorResult(
                claims=None,
                checks=[Check(name="cca.parse", ok=False, detail="not a CCA token collection")],
            )
        claims = Claims(
            vendor="cca",
            format=evidence.format,
            version=1,
            measurements={"rim": hashlib.sha384(payload).digest()},
            report_data=payload[:64].ljust(64, b"\0"),
            origin=Origin(layer="l1", vendor_level="plane 0"),
            debug=False,
        )
        return VendorResult(
            claims=claims,
            checks=[
                Check(name="cca.parse", ok=True, detail="toy token"),
                Check(
                    name="cca.signature",
                    ok=not payload.startswith(b"forged"),
                    detail="toy signature",
                ),
            ],
        )


def install(directory: Path) -> Path:
    """Register this module as the ``cca`` platform and evidence plug-in; return the path
    to put on (and later remove from) ``sys.path``."""
    dist = directory / "cocopart_cca_sketch-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cocopart-cca-sketch\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[cocopart.platforms]\ncca = cca_plugin:CcaPlatform\n\n"
        "[cocopart.evidence]\ncca = cca_plugin:CcaVerifier\n"
    )
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.append(here)
    return directory
