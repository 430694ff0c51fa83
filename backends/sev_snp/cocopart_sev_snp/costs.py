"""Default cost table of the SEV-SNP backend, every row with its source in
../shared/reference/cost-model.md (tags [M] measured, [C] constant, [D] derived, [U]
unconfirmed estimate, as that file uses them).

Accounting: a VMGEXIT primitive costs nothing by itself; its cost is carried by the world
switches it causes (guest <-> host "VMGEXIT", one way each; workload <-> SVSM
"VMGEXIT(SNP_RUN_VMPL)", one way each), so an SVSM call is two switches (≈ 6 µs) and a GHCB
request two host switches (≈ 3 µs), as the cost model gives them.
"""

from __future__ import annotations

from cocopart.spi import Cost, CostTable

#: Host round trip of a direct GHCB VMGEXIT (snp*, 2.94-3.36 µs).
GHCB_ROUND_TRIP_NS = 3_000.0
#: One VMPL switch through the hypervisor, one way.
VMPL_SWITCH_NS = 3_000.0
#: One SVSM call: two VMPL switches.
SVSM_ROUND_TRIP_NS = 2 * VMPL_SWITCH_NS
#: SNP attestation report request, end to end.
GUEST_REQUEST_NS = 6_190_000.0

_SRC_ACCEPT = (
    "cost-model.md §2 [D]: SNP acceptance ≈0.33 s/GiB over a normal VM "
    "(CVMX §4.3.2, 32 GiB MAP_POPULATE) = ≈1.25 µs per 4K, ≈0.64 ms per 2M; "
    "no per-instruction measurement exists (§1)"
)
_SRC_RMP = (
    "cost-model.md §1 [U]: no public measurement; assumed the same order as "
    "PVALIDATE (an RMP write plus checks, no exit) — the 4K figure"
)


#: Per-delivery work inside a layer (APIC bookkeeping, doorbell bytes, exception entry): no
#: public measurement exists (cost-model.md §7) — our order-of-magnitude estimates.
_SRC_APIC = (
    "[U] our estimate: a few cache lines of APIC state in software; no public "
    "number (cost-model.md §7)"
)


def interrupt_costs() -> dict[str, Cost]:
    """Rows of the interrupt primitives (issue 6; cost-model.md §4 "Inject an interrupt")."""
    zero = "accounting: part of the VMRUN that follows (the CPU injects on entry)"
    return {
        "APIC.ACCEPT": Cost(ns=100, source=_SRC_APIC + " (host or SVSM latches IRR)"),
        "APIC.EOI": Cost(ns=100, source=_SRC_APIC + " (host EOI emulation)"),
        "APIC.EVALUATE": Cost(ns=150, source=_SRC_APIC + " (SVSM present_interrupts)"),
        "APIC.POST": Cost(ns=50, source=_SRC_APIC + " (SVSM IPI IRR)"),
        "EVENTINJ": Cost(ns=0, source=zero),
        "HVDB.POST": Cost(ns=50, source=_SRC_APIC + " (descriptor IRR + summary bit)"),
        "HVDB.SIGNAL": Cost(ns=50, source=_SRC_APIC + " (doorbell vector byte)"),
        "HVDB.HANDOFF": Cost(ns=200, source=_SRC_APIC + " (IRR/ISR words to the descriptor)"),
        "HV.HANDLE": Cost(
            ns=300,
            source="[U] our estimate of an exception entry + doorbell "
            "handler; no #HV measurement found (cost-model.md §7)",
        ),
        "#VC": Cost(
            ns=1_100,
            source="cost-model.md §1 [D]: #VC handling overhead ≈0.9-1.3 "
            "µs (CVMX snp - snp*); an x2APIC EOI/ICR write is intercepted this way "
            "(cost-model.md §4)",
        ),
        "VMSA.EVENT_INJ": Cost(ns=50, source=_SRC_APIC + " (SVSM writes the VMSA field)"),
        "VMSA.SEV_FEATURES": Cost(ns=50, source=_SRC_APIC + " (SVSM rewrites SEV_FEATURES)"),
        "EOI.LAZY": Cost(ns=10, source="[U] one byte the guest clears (no_eoi_required)"),
        "EOI.ACCELERATED": Cost(
            ns=10, source="[U] Secure AVIC EOI in the backing page, no exit (unconfirmed model)"
        ),
        "SAVIC.REQUEST_IRR": Cost(
            ns=50, source="[U] host requests a Secure AVIC vector (unconfirmed model)"
        ),
        "SAVIC.SET_IRR": Cost(
            ns=50, source="[U] the sender sets the target's backing-page IRR (unconfirmed model)"
        ),
        "ENTRY.CANCEL": Cost(ns=0, source="accounting: the VMGEXIT the SVSM did not issue"),
    }


def default_costs() -> CostTable:
    """The SNP backend's default costs (overridable from a TOML file by the core)."""
    p = {
        "PVALIDATE.4K": Cost(ns=1_250, source=_SRC_ACCEPT),
        "PVALIDATE.2M": Cost(ns=640_000, source=_SRC_ACCEPT),
        "RMPADJUST": Cost(ns=1_250, source=_SRC_RMP),
        "RMPUPDATE": Cost(ns=1_250, source=_SRC_RMP + " (host side)"),
        "PSMASH": Cost(ns=1_250, source=_SRC_RMP + " (host side)"),
        "ZERO.4K": Cost(
            ns=410,
            source="[U] our estimate: 4 KiB at ≈10 GB/s memory bandwidth; "
            "cost-model.md §3 calls zeroing probably the biggest per-entry cost "
            "of COCONUT's validate",
        ),
        "ZERO.2M": Cost(
            ns=210_000,
            source="[U] our estimate: 2 MiB at ≈10 GB/s; "
            "cost-model.md §3 (COCONUT zeroes the whole 2M page)",
        ),
        "TLB.FLUSH": Cost(
            ns=5_000,
            source="[U] our estimate of a global TLB flush by IPI to "
            "all vCPUs (cost-model.md §3: COCONUT flushes per rescinded entry); "
            "no measurement found",
        ),
        "VMGEXIT": Cost(
            ns=0,
            source="accounting: carried by the world switches the exit "
            "causes (see the switch rows)",
        ),
        "SNP_GUEST_REQUEST": Cost(
            ns=GUEST_REQUEST_NS,
            source="cost-model.md §1 [M]: SNP attestation report 6.19 ms (CVMX Table 3, Genoa)",
        ),
        "NPF": Cost(
            ns=0,
            source="accounting: carried by the world switches of the exit "
            "(VMEXIT(NPF) and VMRUN rows)",
        ),
        "HANDLE": Cost(
            ns=0,
            source="accounting: SVSM dispatch bookkeeping; the handler's work "
            "is in the primitives it issues",
        ),
        "PSC.ENTRY": Cost(
            ns=0, source="accounting: entries the host served; their work is in RMPUPDATE/PSMASH"
        ),
        **interrupt_costs(),
    }
    s = {
        "VMGEXIT": Cost(
            ns=GHCB_ROUND_TRIP_NS / 2,
            source="cost-model.md §1 [M/D]: half of "
            "a direct GHCB VMGEXIT round trip, 2.94-3.36 µs (CVMX Fig. 5a snp*)",
        ),
        "VMGEXIT(SNP_RUN_VMPL)": Cost(
            ns=VMPL_SWITCH_NS,
            source="cost-model.md §1 [D/U]: VMPL "
            "switch guest VMPLn -> HV -> VMPL0, one way ≈3 µs "
            "(SVSM call round trip ≈6-7 µs)",
        ),
        "VMEXIT(INTR)": Cost(
            ns=GHCB_ROUND_TRIP_NS / 2,
            source="cost-model.md §1 [D/U]: an "
            "interrupt's automatic exit to KVM, taken as half of a direct "
            "VMGEXIT round trip (CVMX Fig. 5a snp*, 2.94-3.36 µs)",
        ),
        "VMEXIT(NPF)": Cost(
            ns=GHCB_ROUND_TRIP_NS / 2,
            source="cost-model.md §1 [M/D]: a "
            "nested page fault's exit to KVM, taken as half of a direct "
            "VMGEXIT round trip, 2.94-3.36 µs (CVMX Fig. 5a snp*)",
        ),
        "VMRUN": Cost(
            ns=GHCB_ROUND_TRIP_NS / 2,
            source="cost-model.md §1 [D/U]: the host "
            "re-entering the guest, the other half of that round trip",
        ),
    }
    return CostTable(primitives=p, switches=s)
