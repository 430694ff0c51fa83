"""The ``cocopart.platforms`` plug-in for Intel TDX: :class:`TdxPlatform`.

What it declares (sources per line):

* evidence: a TD quote, version 4 or 5, attestation key type 2 (ECDSA-256 with P-256), TEE
  type 0x81 (tdx.md §7.3; trailing zero padding stays: the verifier skips it); a 1024-byte
  TDREPORT whose REPORTTYPE.TYPE is 0x81 (tdx.md §7.1); an Azure HCL report whose hardware
  report type is 4 (:mod:`cocopart.attest.hcl`); dcap-qvl's ``QuoteCollateralV3`` JSON as
  a collateral bundle (:func:`cocopart_tdx.collateral.collateral_from_dcap_qvl_json`);
* the configfs-tsm provider ``tdx_guest`` (LX drivers/virt/coco/tdx-guest/tdx-guest.c):
  64-byte inblob only (tdx_report_new), attributes generation, provider, inblob and outblob
  only (tdx_report_attr_visible / tdx_report_bin_attr_visible), outblob = a quote;
* guest probes: cpuinfo flag ``tdx_guest`` (set only inside a TD), ``/dev/tdx_guest``, module
  ``tdx_guest``; the privilege level is not knowable: an L2's TDCALLs other than
  TDG.VP.VMCALL exit to the L1, which emulates them, and nothing in TDINFO identifies an L2
  (tdx.md §2.4, §7.4).

Only the standard library and the core are imported here; decoding loads :mod:`.show`.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from cocopart.spi import (
    BY_MAGIC,
    BY_SIZE,
    HostView,
    PlatformPlugin,
    PrivilegeLevel,
    Recognition,
    TsmProvider,
    hcl_report_type,
)

TDREPORT_SIZE = 1024
REPORT_TYPE_TDX = 0x81
QUOTE_VERSIONS = (4, 5)
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
HCL_REPORT_TYPE = 4
#: Collateral names the verifier reads (cocopart_tdx.verify), plus ``td_quote``: the quote
#: made from an Azure HCL report's TDREPORT (cocopart_tdx.hcl_verify).
COLLATERAL_NAMES = (
    "tcb_info",
    "qe_identity",
    "tcb_info_issuer_chain",
    "qe_identity_issuer_chain",
    "pck_crl_issuer_chain",
    "root_crl",
    "pck_crl",
    "td_quote",
)

TDX_GUEST = TsmProvider(
    name="tdx_guest",
    evidence_format="tdx-quote",
    inblob_min=64,
    inblob_max=64,
    attributes=frozenset({"generation", "provider", "inblob", "outblob"}),
)

LEVEL_REASON = (
    "a TD cannot tell from inside whether it is the L1 VM or an L2 VM of TD partitioning: an "
    "L2's TDCALLs other than TDG.VP.VMCALL exit to the L1, which emulates them, and nothing "
    "in the TD report identifies an L2 (reference tdx.md §2.4, §7.4)"
)


class TdxPlatform(PlatformPlugin):
    """Intel TDX (entry point ``cocopart.platforms: tdx``)."""

    name: ClassVar[str] = "tdx"
    title: ClassVar[str] = "Intel TDX"
    tsm: ClassVar[TsmProvider | None] = TDX_GUEST
    formats: ClassVar[tuple[str, ...]] = ("tdx-quote", "tdreport", "azure-hcl-report")
    collateral_names: ClassVar[tuple[str, ...]] = COLLATERAL_NAMES
    cpu_flags: ClassVar[tuple[str, ...]] = ("tdx_guest",)
    device_nodes: ClassVar[tuple[tuple[str, str], ...]] = (("tdx_guest", "tdx_guest"),)
    kernel_modules: ClassVar[tuple[str, ...]] = ("tdx_guest",)
    hcl_report_type: ClassVar[int | None] = HCL_REPORT_TYPE
    decoder_module: ClassVar[str | None] = "cocopart_tdx.show"

    def recognise(self, raw: bytes) -> Recognition | None:
        if hcl_report_type(raw) == HCL_REPORT_TYPE:
            return Recognition(
                self.name, "azure-hcl-report", raw, BY_MAGIC, "Azure HCL report holding a TDREPORT"
            )
        if len(raw) >= 48:
            version, key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
            if (
                version in QUOTE_VERSIONS
                and key_type == ATT_KEY_TYPE_ECDSA_P256
                and tee_type == TEE_TYPE_TDX
            ):
                return Recognition(self.name, "tdx-quote", raw, BY_MAGIC, f"TD quote v{version}")
        if len(raw) == TDREPORT_SIZE:
            if raw[0] == REPORT_TYPE_TDX:
                return Recognition(
                    self.name, "tdreport", raw, BY_MAGIC, "TDREPORT (REPORTTYPE 0x81)"
                )
            return Recognition(
                self.name,
                "tdreport",
                raw,
                BY_SIZE,
                f"{TDREPORT_SIZE} bytes, the size of a TDREPORT (REPORTTYPE "
                f"{raw[0]:#04x}, not 0x81)",
            )
        return None

    def collateral_bundle(self, data: bytes) -> dict[str, bytes] | None:
        head = data.lstrip()[:1]
        if head != b"{" or b'"tcb_info"' not in data or b'"qe_identity"' not in data:
            return None
        from cocopart_tdx.collateral import collateral_from_dcap_qvl_json

        return collateral_from_dcap_qvl_json(data)

    def privilege_level(self, view: HostView, tsm_floor: int | None) -> PrivilegeLevel:
        return PrivilegeLevel(reason=LEVEL_REASON)

    def absent(self, view: HostView) -> str:
        return (
            f"no TDX guest interface found (no tdx_guest cpuinfo flag, no "
            f"{view.dev / 'tdx_guest'}, no tdx_guest driver)"
        )
