"""Default cost table of the TDX backend; every row says where its number comes from
(../shared/reference/cost-model.md; tags [M] measured, [C] constant, [D] our arithmetic,
[U] unconfirmed placeholder).

Conventions: a TDCALL the module handles alone costs one SEAM round trip; the work an ACCEPT
does on success (zeroing) is a separate ``PAGE.ZERO.*`` primitive, so failed tries are not
charged for it; a TD exit to the host and the TDH.VP.ENTER back are the two halves of a
TDVMCALL round trip; an L2 -> L1 exit and the TDG.VP.ENTER back have no public number and use
the SEAM round trip as a placeholder, as the cost model says.
"""

from __future__ import annotations

from cocopart.spi import Cost, CostTable

CVMX = "CVMX (Misono et al., SIGMETRICS'25)"
SEAM_RT_NS = 1280.0  # cost-model.md §1: TD exit handled by the module alone, 1.28 us [M]
TDVMCALL_RT_NS = 9050.0  # cost-model.md §1: direct TDCALL(TDG.VP.VMCALL) round trip 9.0-9.1 us
ZERO_4K_NS = 1660.0
NORMAL_EXIT_NS = 1800.0  # cost-model.md §1: normal-VM exit round trip on the Intel host [M]  # cost-model.md §2: TDX acceptance ~1.66 us per 4K [D]
SEAM_SRC = f"[M proxy] {CVMX} Fig. 5b: TD exit handled by the TDX module alone, 1.28 us"


#: No public number for interrupt bookkeeping inside L1 or the module (cost-model.md §7).
_SRC_APIC = "[U] our estimate: a few cache lines of APIC state in software"


def interrupt_costs() -> dict[str, Cost]:
    """Rows of the interrupt primitives (issue 6; cost-model.md §4 "Inject an interrupt":
    the host posts with no TD exit)."""
    return {
        "PI.POST": Cost(
            ns=50.0,
            source="[U] PIR bit + ON in L1's posted-interrupt "
            "descriptor: a memory write (cost-model.md §4: no TD exit)",
        ),
        "PI.NOTIFY": Cost(
            ns=300.0,
            source="[U] the host's notification IPI (an ICR write in root mode); no public number",
        ),
        "L2.EXIT": Cost(ns=0.0, source="accounting: the exit is the L2->L1 exit switch row"),
        "L2.POSTED_INTERRUPT": Cost(
            ns=SEAM_RT_NS,
            source=SEAM_SRC + " (the L2's notification "
            "exit handled by the module, which resumes the L2: "
            "td_l2_interrupt.c)",
        ),
        "APIC.ACCEPT": Cost(ns=100.0, source=_SRC_APIC + " (L1 latches the L2's IRR)"),
        "APIC.EOI": Cost(ns=100.0, source=_SRC_APIC + " (L1 EOI emulation)"),
        "APIC.EVALUATE": Cost(ns=150.0, source=_SRC_APIC + " (L1 picks the vector to inject)"),
        "VAPIC.IRR": Cost(
            ns=50.0, source=_SRC_APIC + " (IRR bit in the L2 virtual-APIC page + RVI)"
        ),
        "VAPIC.SYNC": Cost(ns=200.0, source=_SRC_APIC + " (IRR/ISR words moved)"),
        "EOI.VIRTUALIZED": Cost(ns=10.0, source="[U] virtualized EOI, no exit"),
        "EOI.LAZY": Cost(ns=10.0, source="[U] one byte the guest clears (no_eoi_required)"),
        "#VE": Cost(
            ns=3100.0,
            source=f"[D] cost-model.md §1: #VE overhead ≈3.1 us ({CVMX} td - "
            "td*); L1's x2APIC ICR write takes #VE + TDVMCALL (cost-model.md §4)",
        ),
    }


def default_costs() -> CostTable:
    """The TDX cost table (ns)."""
    p = {
        **{
            f"TDG.MEM.PAGE.ACCEPT.{size}": Cost(
                ns=SEAM_RT_NS, source=SEAM_SRC + " (one ACCEPT try; the zeroing is PAGE.ZERO.*)"
            )
            for size in ("4K", "2M", "1G")
        },
        "TDG.MEM.PAGE.ATTR.WR": Cost(
            ns=SEAM_RT_NS, source=SEAM_SRC + " (no ATTR.WR number found, cost-model.md §7)"
        ),
        "TDG.MEM.PAGE.ATTR.RD": Cost(ns=SEAM_RT_NS, source=SEAM_SRC),
        "TDG.MEM.PAGE.RELEASE": Cost(ns=SEAM_RT_NS, source=SEAM_SRC + " [U]"),
        "TDG.VP.WR": Cost(ns=SEAM_RT_NS, source=SEAM_SRC),
        "TDG.VP.RD": Cost(ns=SEAM_RT_NS, source=SEAM_SRC),
        "TDG.VP.ENTER": Cost(ns=0.0, source="counted in the TDG.VP.ENTER world-switch row"),
        "TDG.VP.VMCALL": Cost(ns=0.0, source="counted in the TD exit / TDH.VP.ENTER rows"),
        "TDG.MR.RTMR.EXTEND": Cost(ns=SEAM_RT_NS, source=SEAM_SRC),
        "TDG.MR.REPORT": Cost(ns=22_000.0, source=f"[M] {CVMX} Table 3: TDREPORT 0.022 ms"),
        "PAGE.ZERO.4K": Cost(
            ns=ZERO_4K_NS, source=f"[D] {CVMX} §4.3.2: TDX acceptance 0.43 s/GiB = 1.66 us per 4K"
        ),
        "PAGE.ZERO.2M": Cost(ns=512 * ZERO_4K_NS, source="[D] 512 x PAGE.ZERO.4K"),
        "PAGE.ZERO.1G": Cost(ns=512 * 512 * ZERO_4K_NS, source="[D] 262144 x PAGE.ZERO.4K"),
        "TDH.MEM.PAGE.AUG": Cost(
            ns=500.0,
            source="[U] no public AUG number; a SEAMCALL "
            "without memory work. dstack PR #1220 measured ~8 us for the "
            "whole 4K accept fault (TDCALL + exit + AUG + retry) on "
            "Granite Rapids; this table's rows sum to ~13.8 us",
        ),
        "TDH.MEM.PAGE.DEMOTE": Cost(
            ns=SEAM_RT_NS,
            source="[U] SEAM round trip proxy (one try; the L1 SEPT page fill is included)",
        ),
        "TDH.MEM.PAGE.DEMOTE.L2_SEPT": Cost(
            ns=200.0,
            source="[U] DEMOTE filling one more SEPT "
            "page (an aliased L2 VM's): 64 MOVDIR64B stores",
        ),
        "TDH.MEM.PAGE.PROMOTE": Cost(
            ns=SEAM_RT_NS,
            source="[U] SEAM round trip proxy (one try: 512 entries checked and merged)",
        ),
        "TDH.MEM.RANGE.UNBLOCK": Cost(ns=SEAM_RT_NS, source="[U] SEAM round trip proxy"),
        "IPI.KICK": Cost(
            ns=300.0,
            source="[U] the host's IPI to one vCPU for TDH.MEM.TRACK "
            "(KVM tdx_track); its TD exit and re-entry are the switch rows",
        ),
        "TDH.MEM.SEPT.ADD": Cost(ns=SEAM_RT_NS, source="[U] SEAM round trip proxy"),
        "TDH.MEM.RANGE.BLOCK": Cost(ns=SEAM_RT_NS, source="[U] SEAM round trip proxy"),
        "TDH.MEM.TRACK": Cost(ns=SEAM_RT_NS, source="[U] SEAM round trip proxy"),
        "TDH.MEM.PAGE.REMOVE": Cost(ns=SEAM_RT_NS, source="[U] SEAM round trip proxy"),
        "KVM_EXIT_MEMORY_FAULT": Cost(
            ns=2 * NORMAL_EXIT_NS,
            source="[U] KVM returns from "
            "KVM_RUN to the VMM and is re-entered; no public number: "
            f"2x a normal-VM exit round trip ({CVMX} Fig. 5b 1.8 us)",
        ),
        "QEMU.CONVERT": Cost(
            ns=10_000.0,
            source="[U] QEMU kvm_convert_memory: "
            "KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) + discarding the shared page; "
            "no public number",
        ),
        "QGS.GET_QUOTE": Cost(
            ns=2_750_000.0 - TDVMCALL_RT_NS,
            source=f"[M] {CVMX} Table 3: TDX quote 2.75 ms, minus the "
            "TDVMCALL round trip counted in the switch rows",
        ),
        "TDCALL": Cost(ns=0.0, source="an L2's TDCALL: counted in the L2->L1 exit row"),
        "VMCALL": Cost(ns=0.0, source="an L2's VMCALL: counted in the L2->L1 exit row"),
        "HANDLE": Cost(
            ns=0.0, source="protocol bookkeeping in L1; its work is the primitives it issues"
        ),
        "EPT_VIOLATION": Cost(ns=0.0, source="a fault: counted in the world-switch rows"),
        "L1 interrupt handled": Cost(ns=0.0, source="L1's own interrupt handler, not modelled"),
        **interrupt_costs(),
    }
    s = {
        "L2->L1 exit": Cost(
            ns=SEAM_RT_NS,
            source="[U] cost-model.md §1: no public TDG.VP.ENTER "
            "/ L2->L1 exit number; placeholder = SEAM round trip 1.28 us",
        ),
        "TDG.VP.ENTER": Cost(
            ns=SEAM_RT_NS, source="[U] cost-model.md §1 placeholder (SEAM round trip)"
        ),
        "TD exit": Cost(
            ns=TDVMCALL_RT_NS / 2,
            source=f"[D] half of {CVMX} Fig. 5b td*: TDCALL(TDG.VP.VMCALL) round trip 9.0-9.1 us",
        ),
        "TDH.VP.ENTER": Cost(
            ns=TDVMCALL_RT_NS / 2, source=f"[D] the other half of {CVMX} td* 9.05 us"
        ),
    }
    return CostTable(primitives=p, switches=s)
