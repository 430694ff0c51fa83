"""The ``tdx`` backend's options (``PartitionConfig.backend_options``), validated.

``module``          ``"1.5"`` (default, the 1.5.01 source) or ``"2.0"`` (a later module: 1G
                    ACCEPT, TDG.MEM.PAGE.RELEASE with CONFIG_FLAGS.PAGE_RELEASE).
``host_mapping``    ``"4K"`` (default: upstream KVM maps private memory at 4K only) or ``"2M"``.
``host_memory_fault`` ``"convert"`` (default: QEMU answers KVM_EXIT_MEMORY_FAULT — a private
                    fault on a GPA it treats as shared — with an implicit conversion) or
                    ``"refuse"`` (the host never AUGs a shared GPA; the TDCALL cannot complete).
``gpaw``            48 (default; shared bit 47) or 52 (shared bit 51).
``enable_tdvmcall`` False (default: an L2's TDG.VP.VMCALL exits to L1) or True (L2_CTLS bit 1:
                    it goes straight to the host).
``enable_shared_eptp`` True (default: L1 sets L2_CTLS bit 0 so its L2 VMs use the host's
                    shared EPT, as L1s that give L2s I/O do — OpenHCL) or False (an L2 has no
                    shared memory: its convert to shared is refused with the reason).

Kept apart from the TDX module model so that validating options (and listing the backend)
imports none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cocopart.spi import ConfigError

KNOWN_OPTIONS = (
    "module",
    "host_mapping",
    "gpaw",
    "enable_tdvmcall",
    "enable_shared_eptp",
    "host_memory_fault",
)
#: TDX module versions modelled (cocopart_tdx.tdcall: leaves and ACCEPT levels per version).
MODULE_VERSIONS = ("1.5", "2.0")
#: How the host maps private memory (cocopart_tdx.host.HOST_MAPPINGS: the SEPT level of each).
HOST_MAPPING_NAMES = ("4K", "2M")
#: What the VMM does on KVM_EXIT_MEMORY_FAULT (a private fault on a GPA it treats as shared):
#: "convert" = QEMU's implicit conversion (default), "refuse" = HOST_REFUSES_AUG_ON_SHARED.
HOST_MEMORY_FAULTS = ("convert", "refuse")


@dataclass(frozen=True)
class TdxOptions:
    """Validated backend options."""

    module: str = "1.5"
    host_mapping: str = "4K"
    gpaw: int = 48
    enable_tdvmcall: bool = False
    enable_shared_eptp: bool = True
    host_memory_fault: str = "convert"

    @classmethod
    def parse(cls, options: dict[str, Any]) -> TdxOptions:
        unknown = sorted(set(options) - set(KNOWN_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown tdx option(s) {', '.join(unknown)} (known: {', '.join(KNOWN_OPTIONS)})",
                field=f"backend_options.{unknown[0]}",
            )
        module = str(options.get("module", "1.5"))
        if module not in MODULE_VERSIONS:
            raise ConfigError(
                f"module must be one of {', '.join(MODULE_VERSIONS)}, not "
                f"{options.get('module')!r}",
                field="backend_options.module",
            )
        mapping = str(options.get("host_mapping", "4K")).upper()
        if mapping not in HOST_MAPPING_NAMES:
            raise ConfigError(
                f"host_mapping must be one of {', '.join(HOST_MAPPING_NAMES)}, not "
                f"{options.get('host_mapping')!r}",
                field="backend_options.host_mapping",
            )
        gpaw = options.get("gpaw", 48)
        if isinstance(gpaw, bool) or gpaw not in (48, 52):
            raise ConfigError(f"gpaw must be 48 or 52, not {gpaw!r}", field="backend_options.gpaw")
        fault = str(options.get("host_memory_fault", "convert"))
        if fault not in HOST_MEMORY_FAULTS:
            raise ConfigError(
                f"host_memory_fault must be one of {', '.join(HOST_MEMORY_FAULTS)}"
                f", not {options.get('host_memory_fault')!r}",
                field="backend_options.host_memory_fault",
            )
        flags = {}
        for name, default in (("enable_tdvmcall", False), ("enable_shared_eptp", True)):
            flag = options.get(name, default)
            if not isinstance(flag, bool):
                raise ConfigError(
                    f"{name} must be true or false, not {flag!r}", field=f"backend_options.{name}"
                )
            flags[name] = flag
        return cls(module, mapping, int(gpaw), **flags, host_memory_fault=fault)
