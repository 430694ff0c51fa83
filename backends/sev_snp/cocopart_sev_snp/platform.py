"""The ``cocopart.platforms`` plug-in for AMD SEV-SNP: :class:`SevSnpPlatform`.

What it declares (sources per line):

* evidence: a 0x4A0-byte attestation report, versions 2, 3, 5, signature algorithm 1
  (sev-snp.md §6.3), also with trailing zero padding (callers hand out fixed 4000-byte
  buffers); an Azure HCL report whose hardware report type is 2 (:mod:`cocopart.attest.hcl`);
* the configfs-tsm provider ``sev_guest`` (LX drivers/virt/coco/sev-guest/sev-guest.c):
  64-byte inblob only (sev_report_new), service provider ``svsm`` only, attributes per
  sev_report_attr_visible / sev_report_bin_attr_visible (``service_*`` and
  ``manifestblob`` only when the guest runs above VMPL0), ``privlevel_floor`` = vmpck_id,
  which defaults to the VMPL (sev-snp.md §6.1), ``auxblob`` = the certificate table
  (:mod:`.cert_table`);
* guest probes: ``/dev/sev-guest``, module ``sev_guest``, cpuinfo ``sev``/``sev_es``/
  ``sev_snp``, and the VMPL in ``/sys/devices/system/cpu/sev/vmpl`` (2024) or
  ``/sys/hypervisor/sev/vmpl`` (a 2025 series) — sev-snp.md §7; a non-zero VMPL means an
  SVSM runs at VMPL0 (Linux snp_vmpl = svsm_guest_vmpl, sev-snp.md §2.3).

Only the standard library and the core are imported here; decoding loads :mod:`.show`.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from cocopart.spi import (
    BY_MAGIC,
    BY_SIZE,
    CertificateEntry,
    HostView,
    PlatformPlugin,
    PrivilegeLevel,
    Recognition,
    TsmProvider,
    hcl_report_type,
)
from cocopart_sev_snp import cert_table

REPORT_SIZE = 0x4A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
HCL_REPORT_TYPE = 2
VMPL_FILES = ("devices/system/cpu/sev/vmpl", "hypervisor/sev/vmpl")

SEV_GUEST = TsmProvider(
    name="sev_guest",
    evidence_format="snp-report",
    inblob_min=64,
    inblob_max=64,
    service_providers=frozenset({"svsm"}),
    attributes=frozenset(
        {"generation", "provider", "privlevel", "privlevel_floor", "inblob", "outblob", "auxblob"}
    ),
    service_attributes=frozenset(
        {"service_provider", "service_guid", "service_manifest_version", "manifestblob"}
    ),
    floor_is_level=True,
    privlevel_with_service=False,
    service_needs_level=True,
    below_level_refused=True,
    has_cert_table=True,
)


def _report_header(raw: bytes) -> tuple[int, int] | None:
    if len(raw) < REPORT_SIZE:
        return None
    version = struct.unpack_from("<I", raw, 0)[0]
    algo = struct.unpack_from("<I", raw, 0x34)[0]
    return version, algo


class SevSnpPlatform(PlatformPlugin):
    """AMD SEV-SNP (entry point ``cocopart.platforms: sev-snp``)."""

    name: ClassVar[str] = "sev-snp"
    title: ClassVar[str] = "AMD SEV-SNP"
    tsm: ClassVar[TsmProvider | None] = SEV_GUEST
    formats: ClassVar[tuple[str, ...]] = ("snp-report", "azure-hcl-report")
    collateral_names: ClassVar[tuple[str, ...]] = ("product",)
    cpu_flags: ClassVar[tuple[str, ...]] = ("sev", "sev_es", "sev_snp")
    device_nodes: ClassVar[tuple[tuple[str, str], ...]] = (("sev-guest", "sev_guest"),)
    kernel_modules: ClassVar[tuple[str, ...]] = ("sev_guest",)
    hcl_report_type: ClassVar[int | None] = HCL_REPORT_TYPE
    decoder_module: ClassVar[str | None] = "cocopart_sev_snp.show"

    # -- evidence -------------------------------------------------------------------------

    def recognise(self, raw: bytes) -> Recognition | None:
        if hcl_report_type(raw) == HCL_REPORT_TYPE:
            return Recognition(
                self.name,
                "azure-hcl-report",
                raw,
                BY_MAGIC,
                "Azure HCL report holding an SEV-SNP report",
            )
        header = _report_header(raw)
        if header is None:
            return None
        version, algo = header
        padding = len(raw) - REPORT_SIZE
        if padding and any(raw[REPORT_SIZE:]):
            return None
        report = raw[:REPORT_SIZE]
        if version in SUPPORTED_VERSIONS and algo == SIG_ALGO_ECDSA_P384_SHA384:
            detail = f"SEV-SNP attestation report v{version}"
            if padding:
                detail += f" ({padding} bytes of zero padding after it dropped)"
            return Recognition(self.name, "snp-report", report, BY_MAGIC, detail)
        if not padding:
            return Recognition(
                self.name,
                "snp-report",
                report,
                BY_SIZE,
                f"{REPORT_SIZE} bytes, the size of an SEV-SNP report (version "
                f"{version}, signature algorithm {algo})",
            )
        return None

    def certificate_table(self, blob: bytes) -> list[CertificateEntry] | None:
        if not cert_table.looks_like_table(blob):
            return None
        return [
            CertificateEntry(id=str(e.guid), name=e.name, data=e.data)
            for e in cert_table.parse(blob)
        ]

    def leaf_first(self, entries: list[CertificateEntry]) -> list[bytes]:
        rank = cert_table.LEAF_FIRST
        order = sorted(
            enumerate(entries), key=lambda item: (rank.get(item[1].name or "", len(rank)), item[0])
        )
        return [entry.data for _, entry in order]

    # -- the guest ----------------------------------------------------------------------

    def signals(self, view: HostView) -> list[str]:
        flags = view.flags
        if flags is not None and "sev_snp" in flags:
            if not view.hypervisor:
                view.notes.append(
                    "cpuinfo shows sev_snp without the hypervisor flag: this "
                    "looks like an SEV-SNP capable host, which is not a "
                    "confidential VM"
                )
            else:
                view.notes.append(
                    "cpuinfo shows sev_snp in a VM; on its own that is only a "
                    "CPUID bit the hypervisor passed through, not proof of an "
                    "SNP guest"
                )
        return [f"{path} exists (VMPL {value})" for path, value in self._vmpls(view)]

    def _vmpls(self, view: HostView) -> list[tuple[str, int]]:
        out = []
        for rel in VMPL_FILES:
            path = view.sysfs / rel
            if view.exists(path):
                value = view.read_int(path, 0, 3, "VMPL")
                if value is not None:
                    out.append((str(path), value))
        return out

    def privilege_level(self, view: HostView, tsm_floor: int | None) -> PrivilegeLevel:
        found = self._vmpls(view)
        notes = [
            f"{path} says VMPL {value} but {found[0][0]} says {found[0][1]}; using {found[0][0]}"
            for path, value in found[1:]
            if value != found[0][1]
        ]
        if not found:
            if tsm_floor is not None:
                notes.append(
                    f"configfs-tsm privlevel_floor is {tsm_floor}; it equals the "
                    "VMPL unless the sev_guest vmpck_id parameter was changed"
                )
            return PrivilegeLevel(
                reason="this kernel does not expose the VMPL (sysfs sev/vmpl appeared in 2024)",
                notes=notes,
            )
        source, vmpl = found[0]
        notes.append(
            f"running at VMPL{vmpl}: "
            + (
                "an SVSM runs at VMPL0 and serves this guest"
                if vmpl
                else "no SVSM (the guest itself is the privileged layer)"
            )
        )
        return PrivilegeLevel(
            level=vmpl,
            name=f"VMPL{vmpl}",
            source=source,
            privileged_layer_present=vmpl > 0,
            notes=notes,
        )

    def absent(self, view: HostView) -> str:
        return (
            f"no SEV-SNP guest interface found (no sev/vmpl in sysfs, no "
            f"{view.dev / 'sev-guest'}, no sev_guest driver)"
        )
