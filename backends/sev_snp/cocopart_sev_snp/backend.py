"""The ``sev-snp`` backend: AMD SEV-SNP VMPLs with an SVSM at VMPL0.

Layers: ``firmware`` (the AMD-SP), ``host`` (the hypervisor), ``l1`` (the SVSM at VMPL0),
workload layers ``l2.1``.. at VMPL1-3 (:data:`DEFAULT_WORKLOAD_VMPLS`, or the
``workload_vmpls`` option) and service layers of the SVSM (``vtpm``).

Backend options (``PartitionConfig.backend_options``), all validated:

* ``workload_vmpls`` — the VMPL of each workload layer, e.g. ``[1, 2]``;
* ``host_page_size`` — ``"2M"`` (default) or ``"4K"``: whether the host backs private memory
  with 2M RMP entries; with 4K every 2M PVALIDATE fails with FAIL_SIZEMISMATCH;
* ``call_protocol`` — ``"ghcb"`` (default) or ``"msr"``: how a workload asks the hypervisor
  to run VMPL0 for an SVSM call (sev-snp.md §1.3);
* ``product`` — ``"Milan"`` (default), ``"Genoa"`` or ``"Turin"``: the simulated AMD-SP's
  product line (report format and certificate chain);
* ``host_fault_policy`` — ``"sigbus"`` (default), ``"panic"`` or ``"convert"``: what the host
  does when it writes a guest-private page (:mod:`cocopart_sev_snp.host_faults`);
* ``host_psc_psmash`` — ``false`` (default: KVM, which completes a PSC PSMASH entry doing
  nothing) or ``true``: an idealised host that PSMASHes the 2M entry
  (:data:`cocopart_sev_snp.host.RULE_IDEALISED_HOST_HONOURS_PSC_PSMASH`);
* ``svsm_vmsa_access`` — ``"none"`` (default) or ``"read"``: what a workload VMPL keeps on
  its own VMSA page after CREATE_VCPU (``"read"`` as COCONUT; see
  :data:`cocopart_sev_snp.svsm.DEFAULT_VMSA_GUEST_ACCESS` for the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cocopart.spi import (
    Backend,
    Capability,
    CapabilityAnswer,
    ConfigError,
    Layer,
    LayerRole,
    PartitionConfig,
)
from cocopart_sev_snp import interrupt_modes
from cocopart_sev_snp.host_fault_policy import DEFAULT_POLICY, HOST_FAULT_POLICIES

if TYPE_CHECKING:  # the machine model loads when a machine is created, not to list backends
    from cocopart.spi import CostTable, LayerGraph, Machine, Trace

#: VMPL of each workload layer by number of workload layers: one layer runs at VMPL2 as
#: COCONUT runs its guest (CS types.rs GUEST_VMPL = 2); two at VMPL1, 2; three at 1, 2, 3.
DEFAULT_WORKLOAD_VMPLS: dict[int, tuple[int, ...]] = {1: (2,), 2: (1, 2), 3: (1, 2, 3)}
OPTION_DEFAULTS: dict[str, Any] = {
    "workload_vmpls": None,
    "host_page_size": "2M",
    "call_protocol": "ghcb",
    "product": "Milan",
    "host_fault_policy": DEFAULT_POLICY.value,
    "host_psc_psmash": False,
    "svsm_vmsa_access": "none",
}
HOST_PAGE_SIZES = ("2M", "4K")
CALL_PROTOCOLS = ("ghcb", "msr")
PRODUCTS = ("Milan", "Genoa", "Turin")
VMSA_ACCESS = ("none", "read")
SVSM_SWITCH = "VMGEXIT(SNP_RUN_VMPL)"


@dataclass(frozen=True)
class SnpOptions:
    """Validated backend options."""

    workload_vmpls: tuple[int, ...]
    host_page_size_2m: bool
    call_protocol: str
    product: str
    host_fault_policy: str = DEFAULT_POLICY.value
    svsm_vmsa_access: str = "none"
    host_psc_psmash: bool = False


def _field(name: str) -> str:
    return f"backend_options.{name}"


def parse_options(config: PartitionConfig) -> SnpOptions:
    """Validate ``config.backend_options``; a bad or unknown option raises ConfigError."""
    opts = dict(config.backend_options)
    unknown = sorted(set(opts) - set(OPTION_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTION_DEFAULTS)})",
            field=_field(unknown[0]),
        )
    n = config.workload_layers
    vmpls = opts.get("workload_vmpls")
    if vmpls is None:
        levels = DEFAULT_WORKLOAD_VMPLS[n]
    else:
        if not isinstance(vmpls, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in vmpls
        ):
            raise ConfigError("a list of VMPL numbers, e.g. [1, 2]", field=_field("workload_vmpls"))
        levels = tuple(vmpls)
        if len(levels) != n:
            raise ConfigError(
                f"{len(levels)} VMPLs for {n} workload layer(s); give one per layer",
                field=_field("workload_vmpls"),
            )
        if len(set(levels)) != len(levels) or not all(1 <= v <= 3 for v in levels):
            raise ConfigError(
                f"{list(levels)}: workload VMPLs must be distinct and in 1..3 (VMPL0 is the SVSM)",
                field=_field("workload_vmpls"),
            )
    checks = (
        ("host_page_size", HOST_PAGE_SIZES),
        ("call_protocol", CALL_PROTOCOLS),
        ("product", PRODUCTS),
        ("host_fault_policy", HOST_FAULT_POLICIES),
        ("svsm_vmsa_access", VMSA_ACCESS),
    )
    values = {}
    for name, allowed in checks:
        v = opts.get(name, OPTION_DEFAULTS[name])
        if v not in allowed:
            raise ConfigError(f"{v!r} is not one of {', '.join(allowed)}", field=_field(name))
        values[name] = v
    psmash = opts.get("host_psc_psmash", OPTION_DEFAULTS["host_psc_psmash"])
    if not isinstance(psmash, bool):
        raise ConfigError(f"{psmash!r} is not true or false", field=_field("host_psc_psmash"))
    return SnpOptions(
        levels,
        values["host_page_size"] == "2M",
        values["call_protocol"],
        values["product"],
        values["host_fault_policy"],
        values["svsm_vmsa_access"],
        psmash,
    )


def workload_vmpls(config: PartitionConfig) -> dict[str, int]:
    """Workload layer -> VMPL."""
    return dict(zip(config.workloads, parse_options(config).workload_vmpls, strict=True))


class SevSnpBackend(Backend):
    """AMD SEV-SNP with an SVSM at VMPL0 serving workload VMPLs."""

    name: ClassVar[str] = "sev-snp"
    vendor: ClassVar[str] = "amd"
    title: ClassVar[str] = "AMD SEV-SNP: VMPLs with an SVSM at VMPL0"
    distribution: ClassVar[str] = "cocopart-sev-snp"

    def check_config(self, config: PartitionConfig) -> None:
        from cocopart.spi import KNOWN_SERVICES

        parse_options(config)
        for s in config.services:
            if s not in KNOWN_SERVICES:
                raise ConfigError(
                    f"unknown service '{s}' (known: {', '.join(KNOWN_SERVICES)})", field="services"
                )

    def layers(self, config: PartitionConfig) -> list[Layer]:
        out = [
            Layer(name="firmware", role=LayerRole.FIRMWARE, vendor_name="AMD-SP"),
            Layer(name="host", role=LayerRole.HOST, vendor_name="hypervisor"),
            Layer(name="l1", role=LayerRole.PRIVILEGED, vendor_name="VMPL0", level=0),
        ]
        out += [
            Layer(name=w, role=LayerRole.WORKLOAD, vendor_name=f"VMPL{v}", level=v)
            for w, v in workload_vmpls(config).items()
        ]
        out += [
            Layer(name=s, role=LayerRole.SERVICE, vendor_name=f"SVSM {s} (VMPL0)", level=0)
            for s in config.services
        ]
        return out

    def graph(self, config: PartitionConfig) -> LayerGraph:
        from cocopart.spi import EdgeKind, LayerGraph
        from cocopart_sev_snp import costs

        vmpls = workload_vmpls(config)
        g = LayerGraph()
        # the SVSM sets any workload's access with its own RMPADJUST, but no protocol call
        # asks it to (sev-snp.md §2, §4.3): set-access is its own, never a route's provider
        l1_caps = [
            "validate",
            "rescind",
            "set-access:*@self",
            "create-vcpu",
            "delete-vcpu",
            "attest-service",
            "inject-interrupt",
            "configure-interrupts",
        ]
        if "vtpm" in config.services:  # SNP has no runtime measurement registers
            l1_caps.append("extend-measurement")
        caps: dict[str, list[str]] = {
            "firmware": ["attest-hardware"],
            "host": ["convert", "inject-interrupt"],
            "l1": l1_caps,
        }
        for w, v in vmpls.items():
            # a layer sends its own IPIs and ends its own interrupts
            caps[w] = [f"set-access:{o}" for o, ov in vmpls.items() if ov > v] + [
                "inject-interrupt",
                "eoi",
            ]
        for layer in self.layers(config):
            g.add_layer(layer, caps.get(layer.name, []))
        g.add_edge("host", "firmware", EdgeKind.CALL, "SNP_GUEST_REQUEST", costs.GUEST_REQUEST_NS)
        g.add_edge("l1", "host", EdgeKind.CALL, "GHCB", costs.GHCB_ROUND_TRIP_NS)
        g.add_edge("l1", "firmware", EdgeKind.TRUST, "signs its reports (VCEK)")
        for w, v in vmpls.items():
            g.add_edge(w, "l1", EdgeKind.WORLD_SWITCH, SVSM_SWITCH, costs.SVSM_ROUND_TRIP_NS)
            g.add_edge(w, "host", EdgeKind.CALL, "GHCB", costs.GHCB_ROUND_TRIP_NS)
            g.add_edge("l1", w, EdgeKind.MEMORY_CONTROL, "RMPADJUST")
            for o, ov in vmpls.items():
                if ov > v:
                    g.add_edge(w, o, EdgeKind.MEMORY_CONTROL, "RMPADJUST")
            g.add_edge(w, "l1", EdgeKind.TRUST, "validates its memory, holds VMPL0")
            g.add_edge(w, "firmware", EdgeKind.TRUST, "signs its reports (VCEK)")
        for s in config.services:
            g.add_edge("l1", s, EdgeKind.CALL, f"SVSM {s} protocol")
            g.add_edge(s, "l1", EdgeKind.TRUST, "runs inside the SVSM")
            for w in vmpls:
                g.add_edge(w, s, EdgeKind.TRUST, f"its {s}")
        return g

    def capabilities(self, config: PartitionConfig) -> dict[str, CapabilityAnswer]:
        yes = CapabilityAnswer
        out = {
            Capability.VALIDATE.value: yes(
                supported=True,
                mechanism="GHCB PSC(private) + SVSM_CORE_PVALIDATE: PVALIDATE, "
                "zero, RMPADJUST(grant) at VMPL0",
            ),
            Capability.RESCIND.value: yes(
                supported=True,
                mechanism="SVSM_CORE_PVALIDATE(rescind): RMPADJUST(revoke), "
                "PVALIDATE(0), TLB flush",
            ),
            Capability.CONVERT.value: yes(
                supported=True,
                mechanism="shared: rescind then GHCB PSC(shared); private: "
                "GHCB PSC(private) then validate",
            ),
            Capability.SET_ACCESS.value: yes(
                supported=True,
                mechanism="RMPADJUST by a more privileged workload VMPL on a "
                "less privileged one (and by the SVSM for itself); no SVSM call sets access",
            )
            if len(config.workloads) > 1
            else yes(
                supported=False,
                reason="RMPADJUST only changes less privileged VMPLs and no "
                "SVSM call sets access: with one workload VMPL only the SVSM sets access",
            ),
            Capability.CREATE_VCPU.value: yes(
                supported=True,
                mechanism="VMSA page + SVSM_CORE_CREATE_VCPU (RMPADJUST VMSA "
                "bit) + VMGEXIT(AP_CREATION)",
            ),
            Capability.DELETE_VCPU.value: yes(
                supported=True, mechanism="SVSM_CORE_DELETE_VCPU + VMGEXIT(AP_CREATION destroy)"
            ),
            Capability.ATTEST_HARDWARE.value: yes(
                supported=True,
                mechanism="VMGEXIT(GUEST_REQUEST) with the layer's own VMPCK -> "
                "SNP_GUEST_REQUEST; the report carries the layer's VMPL",
            ),
            Capability.ATTEST_SERVICE.value: yes(
                supported=True,
                mechanism="SVSM_ATTEST_SERVICES / ATTEST_SINGLE_SERVICE "
                "(REPORT_DATA = SHA-512(nonce || manifest), VMPL0 report)",
            ),
            Capability.INJECT_INTERRUPT.value: yes(
                supported=True,
                mechanism="per mode: host EVENTINJ (direct), the VMPL's #HV "
                "doorbell (restricted), per-VMPL descriptor + #HV to VMPL0 + SVSM VMSA "
                "EVENTINJ (alternate), host-requested IRR (secure-avic)",
            ),
            Capability.EOI.value: yes(
                supported=True,
                mechanism="lazy through no_eoi_required (calling area / #HV "
                "doorbell), else #VC + VMGEXIT(MSR EOI) or SVSM_APIC WRITE_REGISTER(EOI); "
                "Secure AVIC accelerated",
            ),
            Capability.CONFIGURE_INTERRUPTS.value: yes(
                supported=True,
                mechanism="VMSA SEV_FEATURES rewrite + VMGEXIT(0x8000_001B) "
                "+ #HV doorbell registration (0x8000_0014); alternate left through the SVSM "
                "APIC protocol hand-off (seed 001)",
            ),
        }
        if "vtpm" in config.services:
            out[Capability.EXTEND_MEASUREMENT.value] = yes(
                supported=True,
                mechanism="vTPM PCR extend over SVSM_VTPM_CMD (SNP has no "
                "hardware runtime measurement registers)",
            )
        else:
            out[Capability.EXTEND_MEASUREMENT.value] = yes(
                supported=False,
                reason="SNP has no hardware runtime measurement registers and "
                "this guest runs no vTPM service",
            )
        out.update(interrupt_modes.capability_answers(config.interrupt_mode))
        return out

    def cost_table(self) -> CostTable:
        from cocopart_sev_snp import costs

        return costs.default_costs()

    def direct_primitives(self, config: PartitionConfig, layer: str) -> list[str]:
        if layer == "l1":
            return ["PVALIDATE", "RMPADJUST (any VMPL1-3, VMSA bit)", "VMGEXIT"]
        if layer == "host":
            return ["RMPUPDATE", "PSMASH", "VMRUN"]
        if layer == "firmware":
            return ["SNP_GUEST_REQUEST"]
        vmpls = workload_vmpls(config)
        if layer in vmpls:
            lower = [f"VMPL{v}" for v in sorted(vmpls.values()) if v > vmpls[layer]]
            out = [
                "VMGEXIT (GHCB / MSR protocol)",
                f"VMGEXIT(GUEST_REQUEST) with VMPCK{vmpls[layer]}",
            ]
            if lower:
                out.append(f"RMPADJUST ({', '.join(lower)}; no VMSA bit)")
            return out
        return []

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable) -> Machine:
        from cocopart_sev_snp.machine import SnpMachine

        self.check_config(config)
        return SnpMachine(self, config, trace, self.graph(config), costs, parse_options(config))
