"""Assemble the privileged layer's protocol service for one guest."""

from __future__ import annotations

from collections.abc import Callable

from cocopart.authority import Authority
from cocopart.errors import ConfigError
from cocopart.memory import GuestMemory, ProtocolLayout
from cocopart.platform import PrivilegedPlatform
from cocopart.protocol.manifest import VTPM_SERVICE_GUID
from cocopart.service import apic, attest, core, vtpm
from cocopart.service.dispatcher import ServiceDispatcher
from cocopart.service.state import ServiceState
from cocopart.service.tpm import Vtpm
from cocopart.trace import Trace

KNOWN_SERVICES = ("vtpm",)


def build_service(
    platform: PrivilegedPlatform,
    memory: GuestMemory,
    layout: ProtocolLayout,
    workloads: tuple[str, ...],
    trace: Trace,
    *,
    services: list[str],
    seed: str,
    level_of: Callable[[str], int],
    issuer: str = "l1",
    authority: Authority,
    apic_emulation: bool = False,
    requester_entry: bool = False,
) -> ServiceDispatcher:
    """A dispatcher offering core, attestation, the APIC protocol and the configured services.

    ``apic_emulation``: the guest boots with the privileged layer emulating every workload
    vCPU's APIC (SNP Alternate Injection) — the registration count starts at 1.
    ``requester_entry``: the services manifest names the requesting layer (cocopart's opt-in
    extension, ``PartitionConfig.attest_requester_entry``).
    ``authority``: the machine's :class:`~cocopart.authority.Authority` (ownership and rules,
    ``Machine.authority``); it is wired here to the platform's page tables and to the
    service's live vCPU contexts.
    """
    state = ServiceState(layout, workloads)
    authority.access_of = platform.layer_access
    authority.contexts = state.context_pages
    authority.calling_areas = state.calling_area_pages
    d = ServiceDispatcher(platform, memory, state, trace, issuer)
    d.authority = authority
    core.register(d)
    if apic_emulation:
        d.apic.start(workloads, layout.vcpus)
    apic.register(d, d.apic)
    table: attest.ServiceTable = {}
    for name in services:
        if name == "vtpm":
            tpm = Vtpm(seed)
            tpm.on_extend = platform.extend_measurement
            vtpm.register(d, tpm)
            table["vtpm"] = (VTPM_SERVICE_GUID, tpm.ek_public_area)
        else:
            raise ConfigError(
                f"unknown service '{name}' (known: {', '.join(KNOWN_SERVICES)})", field="services"
            )
    attest.register(d, table, level_of, requester_entry=requester_entry)
    return d
