"""The ``tdx`` backend: Intel TDX partitioning — an L1 VMM inside the TD serving L2 VMs 1-3.

Layers: ``firmware`` = the TDX module, ``host`` = the untrusted VMM, ``l1`` = the TD's L1
VMM (the privileged layer), ``l2.n`` = L2 VM n, plus service layers (``vtpm``) run by L1.
Everything an L2 needs goes through L1: every TDCALL an L2 issues except TDG.VP.VMCALL with
ENABLE_TDVMCALL exits to L1 (tdx.md §2.4), so L1 holds validate, rescind, set-access,
vCPUs, attestation (only L1 can TDG.MR.REPORT) and measurement; the host holds convert
(MapGPA); the TDX module holds nothing an L2 reaches directly.

Backend options (``PartitionConfig.backend_options``): ``module``, ``host_mapping``,
``host_memory_fault``, ``gpaw``, ``enable_tdvmcall``, ``enable_shared_eptp`` —
:mod:`cocopart_tdx.options`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cocopart.spi import Backend, CapabilityAnswer, ConfigError, Layer, LayerRole, PartitionConfig
from cocopart_tdx.interrupt_modes import capability_answers as interrupt_capabilities
from cocopart_tdx.options import TdxOptions

if TYPE_CHECKING:  # the machine model loads when a machine is created, not to list backends
    from cocopart.spi import CostTable, LayerGraph, Machine, Trace

#: What L1 does for its L2s (through their L2 -> L1 exits) and, ``@self``, only for itself:
#: only L1 may call TDG.MR.REPORT (tdx.md §7.4). ``rescind`` needs module 2.0 (RELEASE).
L1_CAPABILITIES = [
    "validate",
    "rescind",
    "set-access:*",
    "create-vcpu",
    "delete-vcpu",
    "attest-service",
    "attest-hardware@self",
    "extend-measurement",
    "inject-interrupt",
    "configure-interrupts",
]


class TdxBackend(Backend):
    """Intel TDX partitioning."""

    name: ClassVar[str] = "tdx"
    vendor: ClassVar[str] = "intel"
    title: ClassVar[str] = "Intel TDX partitioning (L1 VMM serving L2 VMs 1-3)"
    distribution: ClassVar[str] = "cocopart-tdx"

    def check_config(self, config: PartitionConfig) -> None:
        opts = TdxOptions.parse(config.backend_options)
        top = config.memory + (2 << 30)  # RAM plus room for the protocol and L1 regions
        if top >= 1 << (opts.gpaw - 1):
            raise ConfigError(
                f"memory reaches the shared bit {opts.gpaw - 1} (gpaw {opts.gpaw})", field="memory"
            )

    def layers(self, config: PartitionConfig) -> list[Layer]:
        out = [
            Layer(name="firmware", role=LayerRole.FIRMWARE, vendor_name="TDX module"),
            Layer(name="host", role=LayerRole.HOST, vendor_name="host VMM"),
            Layer(name="l1", role=LayerRole.PRIVILEGED, vendor_name="L1 VMM", level=0),
        ]
        out += [
            Layer(name=w, role=LayerRole.WORKLOAD, vendor_name=f"L2 VM {i + 1}", level=i + 1)
            for i, w in enumerate(config.workloads)
        ]
        out += [
            Layer(name=s, role=LayerRole.SERVICE, vendor_name=f"{s} (in L1)")
            for s in config.services
        ]
        return out

    def graph(self, config: PartitionConfig) -> LayerGraph:
        from cocopart.spi import EdgeKind, LayerGraph
        from cocopart_tdx.costs import default_costs

        opts = TdxOptions.parse(config.backend_options)
        costs = default_costs()
        g = LayerGraph()
        for layer in self.layers(config):
            caps: list[str] = []
            if layer.name == "l1":
                caps = [c for c in L1_CAPABILITIES if c != "rescind" or opts.module == "2.0"]
                if "vtpm" not in config.services:
                    caps.remove("extend-measurement")
            elif layer.name == "host":
                caps = ["convert", "inject-interrupt"]
            elif layer.role is LayerRole.WORKLOAD:
                # a layer sends its own IPIs and ends its own interrupts (what L1 does on
                # the way is the backend's mechanism, not another provider)
                caps = ["inject-interrupt", "eoi"]
            elif layer.role is LayerRole.SERVICE and layer.name == "vtpm":
                caps = ["extend-measurement"]
            g.add_layer(layer, caps)
        exit_ns = costs.switch_ns("L2->L1 exit")
        g.add_edge("l1", "firmware", EdgeKind.CALL, "TDCALL", costs.primitive_ns("TDG.VP.WR"))
        g.add_edge(
            "l1",
            "host",
            EdgeKind.CALL,
            "TDG.VP.VMCALL",
            costs.switch_ns("TD exit") + costs.switch_ns("TDH.VP.ENTER"),
        )
        g.add_edge(
            "l1", "firmware", EdgeKind.TRUST, "the TDX module enforces SEPT and signs the TDREPORT"
        )
        for w in config.workloads:
            g.add_edge(w, "l1", EdgeKind.WORLD_SWITCH, "TDCALL->L2 exit (77)", exit_ns)
            g.add_edge(
                "l1", w, EdgeKind.WORLD_SWITCH, "TDG.VP.ENTER", costs.switch_ns("TDG.VP.ENTER")
            )
            g.add_edge("l1", w, EdgeKind.MEMORY_CONTROL, "TDG.MEM.PAGE.ATTR.WR")
            g.add_edge(
                w,
                "l1",
                EdgeKind.TRUST,
                "L1 accepts its memory, sets its attributes and attests for it",
            )
            g.add_edge(w, "firmware", EdgeKind.TRUST, "the TDX module isolates it")
            if opts.enable_tdvmcall:
                g.add_edge(
                    w,
                    "host",
                    EdgeKind.CALL,
                    "TDG.VP.VMCALL (ENABLE_TDVMCALL)",
                    costs.switch_ns("TD exit") + costs.switch_ns("TDH.VP.ENTER"),
                )
            for s in config.services:
                g.add_edge(w, s, EdgeKind.TRUST, f"{s} served by L1")
        for s in config.services:
            g.add_edge("l1", s, EdgeKind.CALL, f"{s} protocol (in L1)", 0.0)
            g.add_edge(s, "l1", EdgeKind.TRUST, "runs inside L1")
        return g

    def capabilities(self, config: PartitionConfig) -> dict[str, CapabilityAnswer]:
        opts = TdxOptions.parse(config.backend_options)
        yes = CapabilityAnswer
        caps = {
            "validate": yes(
                supported=True,
                mechanism="PVALIDATE call -> L1: TDG.MEM.PAGE.ACCEPT + TDG.MEM.PAGE.ATTR.WR",
            ),
            "rescind": yes(
                supported=True, mechanism="L1: TDG.MEM.PAGE.ATTR.WR (remove) + TDG.MEM.PAGE.RELEASE"
            )
            if opts.module == "2.0"
            else yes(
                supported=False,
                reason="TDX module 1.5 has no TDG.MEM.PAGE.RELEASE (leaf 30): "
                "a private page cannot be un-accepted; convert it to shared instead "
                "(backend option module = '2.0' models a later module)",
            ),
            "convert": yes(
                supported=True,
                mechanism=f"TDVMCALL<MapGPA> (shared bit {opts.gpaw - 1}); to private then ACCEPT",
            ),
            "set-access": yes(
                supported=True,
                mechanism="TDG.MEM.PAGE.ATTR.WR by L1 (an L2's ATTR.WR exits to L1, reason 77)",
            ),
            "create-vcpu": yes(
                supported=True,
                mechanism="CREATE_VCPU -> L1: TDG.VP.WR of the L2 VMCS + TDG.VP.ENTER on L1 vCPU n",
            ),
            "delete-vcpu": yes(
                supported=True,
                mechanism="DELETE_VCPU -> L1 clears the L2 "
                "VMCS virtual-APIC address (never entered again)",
            ),
            "attest-service": yes(
                supported=True,
                mechanism="attestation protocol -> L1: "
                "TDG.MR.REPORT + TDVMCALL<GetQuote>, REPORTDATA = "
                "SHA-512(nonce || manifest)",
            ),
            "attest-hardware": yes(
                supported=False,
                reason="only L1 may call TDG.MR.REPORT; an "
                "L2's TDCALL exits to L1 — use source 'service'",
            ),
            "extend-measurement": yes(
                supported="vtpm" in config.services,
                mechanism="vTPM PCR extend -> L1: TDG.MR.RTMR.EXTEND",
                reason=None if "vtpm" in config.services else "no vTPM service configured",
            ),
            "inject-interrupt": yes(
                supported=True,
                mechanism="host posts to L1 (posted "
                "interrupt; a running L2 exits only if the vector is "
                "deliverable to L1); L1 injects into the L2 with one of "
                "TDX's two mechanisms: the L2 VMCS VM-entry "
                "interruption-information field (TDG.VP.WR 0x4016) or "
                "virtual-interrupt delivery (L2 virtual-APIC IRR + RVI/SVI); "
                "TDG.VP.ENTER. An L2 has no posted-interrupt processing and "
                "its ICR write exits to L1 as WRMSR (32) on MSR 0x830",
            ),
            "eoi": yes(
                supported=True,
                mechanism="L2 EOI: WRMSR(0x80B) exit to L1 (restricted), "
                "virtualized in the virtual-APIC page (secure-avic = TDX virtual-"
                "interrupt delivery); alternate is a cocopart software protocol (lazy "
                "no_eoi_required or SVSM_APIC WRITE_REGISTER(EOI)) no TDX stack "
                "implements today",
            ),
            "configure-interrupts": yes(
                supported=True,
                mechanism="L1 switches restricted <-> "
                "secure-avic; alternate is left through the APIC "
                "protocol hand-off (seed 001); direct is impossible",
            ),
            "page-size:1G": yes(
                supported=opts.module == "2.0",
                mechanism="TDG.MEM.PAGE.ACCEPT level 2 (L1 only)",
                reason=None
                if opts.module == "2.0"
                else "module 1.5 accepts 4K and 2M only (1G: OPERAND_INVALID)",
            ),
            "l2-shared-memory": yes(
                supported=opts.enable_shared_eptp,
                mechanism="L2_CTLS.ENABLE_SHARED_EPTP: the L2 VMCS uses the "
                "host's shared EPT (MapGPA to shared, then I/O buffers)",
                reason=None
                if opts.enable_shared_eptp
                else "enable_shared_eptp is off: an L2's shared EPTP points at "
                "the TDCS zero page, so its convert to shared is refused",
            ),
            "l2-tdvmcall-to-host": yes(
                supported=opts.enable_tdvmcall,
                mechanism="L2_CTLS.ENABLE_TDVMCALL",
                reason=None
                if opts.enable_tdvmcall
                else "enable_tdvmcall is off: L2 VMCALLs go to L1",
            ),
        }
        caps.update(interrupt_capabilities())
        return caps

    def cost_table(self) -> CostTable:
        from cocopart_tdx.costs import default_costs

        return default_costs()

    def direct_primitives(self, config: PartitionConfig, layer: str) -> list[str]:
        from cocopart_tdx.tdcall import MNEMONIC, Leaf

        opts = TdxOptions.parse(config.backend_options)
        if layer == "l1":
            return sorted(MNEMONIC[leaf] for leaf in Leaf)
        if layer == "host":
            return [
                "TDH.MEM.PAGE.AUG",
                "TDH.MEM.PAGE.DEMOTE",
                "TDH.MEM.RANGE.BLOCK",
                "TDH.MEM.TRACK",
                "TDH.MEM.PAGE.REMOVE",
                "TDH.VP.CREATE",
                "TDH.VP.INIT",
                "TDH.VP.ENTER",
            ]
        if layer in config.workloads:
            return ["TDG.VP.VMCALL"] if opts.enable_tdvmcall else []
        return []

    def create_machine(self, config: PartitionConfig, trace: Trace, costs: CostTable) -> Machine:
        from cocopart_tdx.machine import TdxMachine

        self.check_config(config)
        return TdxMachine(
            self, config, trace, self.graph(config), costs, TdxOptions.parse(config.backend_options)
        )
