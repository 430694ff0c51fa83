"""The service-provider interface: everything a backend may use from the core, in one place.

A backend (a distribution with one entry point in ``cocopart.backends``) imports from here
only; the import contracts in ``.importlinter`` keep it so. The names resolve lazily (PEP
562), so importing the SPI costs nothing until a name is used: listing installed backends
stays as fast as importing their entry-point modules.

What a backend implements:

* :class:`Backend` — layers, the layer graph (capabilities per layer, call / world-switch /
  memory-control / trust edges), the capability matrix, default costs, ``create_machine``;
* :class:`Machine` — state and views (``memory_view``, ``access``, ``vcpus``) plus the
  parts the core drives: ``workload_side`` (a :class:`WorkloadSide` built with the backend's
  :class:`WorkloadHooks`) and ``interrupts`` (an :class:`InterruptDelivery` subclass);
* :class:`PrivilegedPlatform` — the privileged layer's primitives the protocol service
  (:func:`build_service`) is written against;
* :class:`Transport` — the world switch that carries a protocol call.

``cocopart.testing`` runs the contract suite against any installed backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocopart import vtpm_commands
    from cocopart.apic import (
        EOI,
        ICR,
        LocalApic,
    )
    from cocopart.attest.evidence import (
        Claims,
        Evidence,
        Origin,
    )
    from cocopart.attest.evidence_plugins import (
        PolicySchema,
    )
    from cocopart.attest.hcl import (
        HclReport,
        hcl_report_type,
    )
    from cocopart.attest.inputs import (
        load_der_certificate,
    )
    from cocopart.attest.plugin import (
        BY_MAGIC,
        BY_SIZE,
        CertificateEntry,
        Decoded,
        HostView,
        PlatformPlugin,
        PrivilegeLevel,
        Recognition,
        Section,
        TsmProvider,
    )
    from cocopart.attest.policy import (
        HexBytes,
        HexInt,
        Pins,
        VendorPolicy,
        pin_size,
    )
    from cocopart.attest.show import (
        certificate_section,
    )
    from cocopart.attest.verifier import (
        Check,
        TrustStore,
        VendorResult,
        check,
    )
    from cocopart.backend import (
        AccessOutcome,
        Backend,
        CapabilityAnswer,
        HardwareEvidence,
        Machine,
        MemoryRun,
        PageOpResult,
        PrivilegedPlatform,
        Transport,
        VcpuView,
        merged,
    )
    from cocopart.client import (
        PageRun,
        ProtocolClient,
    )
    from cocopart.errors import (
        ConfigError,
        EvidenceError,
        NotSupportedError,
    )
    from cocopart.host_faults import (
        ASSUMPTION_SAME_PAGE,
        DEVICE_DATA,
        DMA_PAGE,
        GUEST_DATA,
        NEW_KERNEL,
        NO_POLICY,
        DataFate,
        Emulator,
        FaultOutcome,
        FaultStep,
        HostAccessor,
        HostFaultScenario,
        OutcomeBuilder,
        ScenarioSetup,
        finish_scene,
        keep_guest_data,
    )
    from cocopart.interrupts import (
        HOST,
        DeliveryStatus,
        EoiRecord,
        InterruptDelivery,
        MemoryFlag,
        fixed_ipi_icr,
        present,
        settle_lazy,
        vectors,
    )
    from cocopart.layers import (
        EdgeKind,
        LayerGraph,
    )
    from cocopart.memory import (
        GuestMemory,
        ProtocolLayout,
    )
    from cocopart.model import (
        L1,
        PAGE_1G,
        PAGE_2M,
        PAGE_4K,
        Access,
        GpaRange,
        InterruptMode,
        Layer,
        LayerRole,
        PageSize,
        PartitionConfig,
        Strategy,
    )
    from cocopart.ops import (
        ArchError,
        Capability,
        ConfigureInterrupts,
        ConvertPages,
        EndOfInterrupt,
        InjectInterrupt,
        Operation,
        OperationResult,
        ValidatePages,
    )
    from cocopart.protocol import pvalidate
    from cocopart.protocol.call import (
        Registers,
    )
    from cocopart.protocol.ids import (
        ApicCall,
        ProtocolId,
        ResultCode,
        protocol_error,
        result_name,
    )
    from cocopart.protocol.manifest import (
        ServicesManifest,
        bind_report_data,
        read_manifest,
    )
    from cocopart.ranges import (
        RangeMap,
    )
    from cocopart.service.build import (
        KNOWN_SERVICES,
        build_service,
    )
    from cocopart.service.dispatcher import (
        ServiceDispatcher,
    )
    from cocopart.service.state import (
        VcpuRecord,
    )
    from cocopart.service.tpm import (
        Vtpm,
    )
    from cocopart.trace import (
        Cost,
        CostTable,
        Trace,
    )
    from cocopart.unchecked import (
        build_unchecked,
    )
    from cocopart.views import RunState, build_view
    from cocopart.workload import (
        WorkloadSide,
        page_runs,
        span,
    )
    from cocopart.workload_hooks import (
        DirectResult,
        HardwareAttestation,
        Limits,
        WorkloadHooks,
    )

#: name -> module it comes from
_WHERE: dict[str, str] = {
    # Attestation plug-ins: recognisers, decoders, policy sections, verifier helpers
    "BY_MAGIC": "cocopart.attest.plugin",
    "BY_SIZE": "cocopart.attest.plugin",
    "CertificateEntry": "cocopart.attest.plugin",
    "Decoded": "cocopart.attest.plugin",
    "HclReport": "cocopart.attest.hcl",
    "HexBytes": "cocopart.attest.policy",
    "HexInt": "cocopart.attest.policy",
    "HostView": "cocopart.attest.plugin",
    "Pins": "cocopart.attest.policy",
    "PlatformPlugin": "cocopart.attest.plugin",
    "PolicySchema": "cocopart.attest.evidence_plugins",
    "PrivilegeLevel": "cocopart.attest.plugin",
    "Recognition": "cocopart.attest.plugin",
    "Section": "cocopart.attest.plugin",
    "TsmProvider": "cocopart.attest.plugin",
    "VendorPolicy": "cocopart.attest.policy",
    "build_unchecked": "cocopart.unchecked",
    "certificate_section": "cocopart.attest.show",
    "check": "cocopart.attest.verifier",
    "hcl_report_type": "cocopart.attest.hcl",
    "load_der_certificate": "cocopart.attest.inputs",
    "pin_size": "cocopart.attest.policy",
    "read_manifest": "cocopart.protocol.manifest",
    # The plug-in contract
    "Backend": "cocopart.backend",
    "Machine": "cocopart.backend",
    "PrivilegedPlatform": "cocopart.platform",
    "Transport": "cocopart.transport",
    "CapabilityAnswer": "cocopart.backend",
    "HardwareEvidence": "cocopart.platform",
    "PageOpResult": "cocopart.platform",
    "MemoryRun": "cocopart.views",
    "AccessOutcome": "cocopart.views",
    "VcpuView": "cocopart.views",
    "merged": "cocopart.views",
    "build_view": "cocopart.views",
    "RunState": "cocopart.views",
    # The requesting side: hooks a backend implements
    "WorkloadHooks": "cocopart.workload_hooks",
    "Limits": "cocopart.workload_hooks",
    "DirectResult": "cocopart.workload_hooks",
    "HardwareAttestation": "cocopart.workload_hooks",
    # The requesting side: the core's implementation and helpers
    "WorkloadSide": "cocopart.workload",
    "page_runs": "cocopart.workload",
    "span": "cocopart.workload",
    # The protocol client a transport serves
    "PageRun": "cocopart.client",
    "ProtocolClient": "cocopart.client",
    # Configuration and neutral vocabulary
    "Access": "cocopart.model",
    "GpaRange": "cocopart.model",
    "InterruptMode": "cocopart.model",
    "L1": "cocopart.model",
    "Layer": "cocopart.model",
    "LayerRole": "cocopart.model",
    "PAGE_1G": "cocopart.model",
    "PAGE_2M": "cocopart.model",
    "PAGE_4K": "cocopart.model",
    "PageSize": "cocopart.model",
    "PartitionConfig": "cocopart.model",
    "Strategy": "cocopart.model",
    # Operations and results
    "ArchError": "cocopart.ops",
    "Capability": "cocopart.capability",
    "ConfigureInterrupts": "cocopart.ops",
    "ConvertPages": "cocopart.ops",
    "EndOfInterrupt": "cocopart.ops",
    "InjectInterrupt": "cocopart.ops",
    "Operation": "cocopart.ops",
    "OperationResult": "cocopart.ops",
    "ValidatePages": "cocopart.ops",
    # Errors
    "ConfigError": "cocopart.errors",
    "EvidenceError": "cocopart.errors",
    "NotSupportedError": "cocopart.errors",
    # Layer graph
    "EdgeKind": "cocopart.layers",
    "LayerGraph": "cocopart.layers",
    # Traces and costs
    "Cost": "cocopart.trace",
    "CostTable": "cocopart.trace",
    "Trace": "cocopart.trace",
    # Guest memory and the protocol region
    "GuestMemory": "cocopart.memory",
    "ProtocolLayout": "cocopart.memory",
    # Range maps
    "RangeMap": "cocopart.ranges",
    # The privileged layer's protocol service
    "KNOWN_SERVICES": "cocopart.service.build",
    "build_service": "cocopart.service.build",
    "ServiceDispatcher": "cocopart.service.dispatcher",
    "VcpuRecord": "cocopart.service.state",
    "Vtpm": "cocopart.service.tpm",
    # Protocol codecs and ids
    "Registers": "cocopart.protocol.call",
    "ApicCall": "cocopart.protocol.ids",
    "ProtocolId": "cocopart.protocol.ids",
    "ResultCode": "cocopart.protocol.ids",
    "protocol_error": "cocopart.protocol.ids",
    "result_name": "cocopart.protocol.ids",
    "ServicesManifest": "cocopart.protocol.manifest",
    "bind_report_data": "cocopart.protocol.manifest",
    # Interrupt delivery shared by backends
    "DeliveryStatus": "cocopart.interrupts",
    "EoiRecord": "cocopart.interrupts",
    "HOST": "cocopart.interrupts",
    "InterruptDelivery": "cocopart.interrupts",
    "MemoryFlag": "cocopart.interrupts",
    "fixed_ipi_icr": "cocopart.interrupts",
    "present": "cocopart.interrupts",
    "settle_lazy": "cocopart.interrupts",
    "vectors": "cocopart.interrupts",
    "EOI": "cocopart.apic",
    "ICR": "cocopart.apic",
    "LocalApic": "cocopart.apic",
    # Host faults (seed 003)
    "ASSUMPTION_SAME_PAGE": "cocopart.host_faults",
    "DEVICE_DATA": "cocopart.host_faults",
    "DMA_PAGE": "cocopart.host_faults",
    "DataFate": "cocopart.host_faults",
    "Emulator": "cocopart.host_faults",
    "FaultOutcome": "cocopart.host_faults",
    "FaultStep": "cocopart.host_faults",
    "GUEST_DATA": "cocopart.host_faults",
    "HostAccessor": "cocopart.host_faults",
    "HostFaultScenario": "cocopart.host_faults",
    "NEW_KERNEL": "cocopart.host_faults",
    "NO_POLICY": "cocopart.host_faults",
    "OutcomeBuilder": "cocopart.host_faults",
    "ScenarioSetup": "cocopart.host_faults",
    "finish_scene": "cocopart.host_faults",
    "keep_guest_data": "cocopart.host_faults",
    # Evidence and verification
    "Claims": "cocopart.attest.evidence",
    "Evidence": "cocopart.attest.evidence",
    "Origin": "cocopart.attest.evidence",
    "Check": "cocopart.attest.verifier",
    "TrustStore": "cocopart.attest.verifier",
    "VendorResult": "cocopart.attest.verifier",
}
#: module re-exported whole -> its name here
_MODULES: dict[str, str] = {
    "pvalidate": "cocopart.protocol.pvalidate",
    "vtpm_commands": "cocopart.vtpm_commands",
}

__all__ = [
    "ASSUMPTION_SAME_PAGE",
    "BY_MAGIC",
    "BY_SIZE",
    "DEVICE_DATA",
    "DMA_PAGE",
    "EOI",
    "GUEST_DATA",
    "HOST",
    "ICR",
    "KNOWN_SERVICES",
    "L1",
    "NEW_KERNEL",
    "NO_POLICY",
    "PAGE_1G",
    "PAGE_2M",
    "PAGE_4K",
    "Access",
    "AccessOutcome",
    "ApicCall",
    "ArchError",
    "Backend",
    "Capability",
    "CapabilityAnswer",
    "CertificateEntry",
    "Check",
    "Claims",
    "ConfigError",
    "ConfigureInterrupts",
    "ConvertPages",
    "Cost",
    "CostTable",
    "DataFate",
    "Decoded",
    "DeliveryStatus",
    "DirectResult",
    "EdgeKind",
    "Emulator",
    "EndOfInterrupt",
    "EoiRecord",
    "Evidence",
    "EvidenceError",
    "FaultOutcome",
    "FaultStep",
    "GpaRange",
    "GuestMemory",
    "HardwareAttestation",
    "HardwareEvidence",
    "HclReport",
    "HexBytes",
    "HexInt",
    "HostAccessor",
    "HostFaultScenario",
    "HostView",
    "InjectInterrupt",
    "InterruptDelivery",
    "InterruptMode",
    "Layer",
    "LayerGraph",
    "LayerRole",
    "Limits",
    "LocalApic",
    "Machine",
    "MemoryFlag",
    "MemoryRun",
    "NotSupportedError",
    "Operation",
    "OperationResult",
    "Origin",
    "OutcomeBuilder",
    "PageOpResult",
    "PageRun",
    "PageSize",
    "PartitionConfig",
    "Pins",
    "PlatformPlugin",
    "PolicySchema",
    "PrivilegeLevel",
    "PrivilegedPlatform",
    "ProtocolClient",
    "ProtocolId",
    "ProtocolLayout",
    "RangeMap",
    "Recognition",
    "Registers",
    "ResultCode",
    "RunState",
    "ScenarioSetup",
    "Section",
    "ServiceDispatcher",
    "ServicesManifest",
    "Strategy",
    "Trace",
    "Transport",
    "TrustStore",
    "TsmProvider",
    "ValidatePages",
    "VcpuRecord",
    "VcpuView",
    "VendorPolicy",
    "VendorResult",
    "Vtpm",
    "WorkloadHooks",
    "WorkloadSide",
    "bind_report_data",
    "build_service",
    "build_unchecked",
    "build_view",
    "certificate_section",
    "check",
    "finish_scene",
    "fixed_ipi_icr",
    "hcl_report_type",
    "keep_guest_data",
    "load_der_certificate",
    "merged",
    "page_runs",
    "pin_size",
    "present",
    "protocol_error",
    "pvalidate",
    "read_manifest",
    "result_name",
    "settle_lazy",
    "span",
    "vectors",
    "vtpm_commands",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"cocopart.spi has no '{name}' (the SPI: {', '.join(__all__)})")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
