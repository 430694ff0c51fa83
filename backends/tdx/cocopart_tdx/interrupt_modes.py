"""Which interrupt modes TDX partitioning supports and how, as capability answers.

The delivery itself is modelled in :mod:`cocopart_tdx.interrupts`; this module holds only what
the capability matrix needs (``cocopart backends`` lists it without importing the machine).
"""

from __future__ import annotations

from cocopart.spi import CapabilityAnswer, InterruptMode

DIRECT, RESTRICTED = InterruptMode.DIRECT, InterruptMode.RESTRICTED
ALTERNATE, SECURE_AVIC = InterruptMode.ALTERNATE, InterruptMode.SECURE_AVIC

MECHANISM: dict[InterruptMode, str] = {
    RESTRICTED: "posted to L1 (an L2 running there exits only if the vector is deliverable to "
    "L1); L1 injects through the L2 VMCS VM-entry interruption-information field "
    "(TDG.VP.WR 0x4016); the L2 has no posted-interrupt processing",
    ALTERNATE: "a cocopart software protocol, not a TDX mechanism (no TDX stack implements "
    "it today): L1 serves the SVSM APIC protocol to its L2s and injects through the "
    "L2 VMCS VM-entry interruption-information field (TDG.VP.WR 0x4016)",
    SECURE_AVIC: "TDX virtual-interrupt delivery into the L2: L1 sets the L2 virtual-APIC page "
    "IRR and RVI/SVI (L2_ENTER_GUEST_STATE), the CPU delivers, EOI virtualized; "
    "no posted-interrupt processing for the L2",
}

#: The host can never inject into an L2; L1 is always the injector (tdx.md §5).
RULE_NO_DIRECT = "direct: the TDX host never injects into an L2 (tdx.md §5)"
#: Alternate = L1 serving the SVSM APIC protocol: entered only from boot (registration
#: count 1), left by the seed's hand-off, never re-entered (seed 001; the same core rule as
#: on SEV-SNP).
RULE_ALTERNATE_NOT_REENTERED = "alternate: from boot only; left by deregistration, never re-entered"


def capability_answers() -> dict[str, CapabilityAnswer]:
    """``interrupt-mode:<mode>`` answers: direct is impossible, the others go through L1."""
    out = {
        f"interrupt-mode:{DIRECT.value}": CapabilityAnswer(supported=False, reason=RULE_NO_DIRECT)
    }
    for mode, mech in MECHANISM.items():
        extra = f" (at boot only: {RULE_ALTERNATE_NOT_REENTERED})" if mode == ALTERNATE else ""
        out[f"interrupt-mode:{mode.value}"] = CapabilityAnswer(
            supported=True, mechanism=mech + extra
        )
    return out
