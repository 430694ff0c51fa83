"""The four interrupt modes on SEV-SNP: what each means, who holds a workload vCPU's APIC
state in it, how one delivery travels, and which mode changes are legal.

=========== ============== =====================================================================
mode        APIC state     one host interrupt for a workload vCPU (its world switches)
=========== ============== =====================================================================
direct      host           VMEXIT(INTR) -> host APIC emulation -> EVENTINJ -> VMRUN the VMPL;
                           EOI: #VC -> VMGEXIT(MSR 0x80B) -> host. VMSA: no injection bit.
restricted  host           VMEXIT(INTR) -> the VMPL's own #HV doorbell page (vector byte) ->
                           EVENTINJ #HV (the only event the host may inject) -> VMRUN; the
                           guest's #HV handler takes the vector; EOI lazy through the
                           doorbell's no_eoi_required byte or #VC -> VMGEXIT(MSR).
                           VMSA: RestrictedInjection (SEV_FEATURES bit 3).
alternate   SVSM (VMPL0)   VMEXIT(INTR) -> host sets the VMPL's bits in its extended interrupt
                           descriptor + the SVSM's per-VMPL summary bit -> #HV to VMPL0
                           (NoFurtherSignal) -> the host must run VMPL0 next -> SVSM #HV:
                           consume, evaluate (priority, PPR) -> VMSA EVENTINJ of the lower
                           VMPL -> VMGEXIT(SNP_RUN_VMPL) back; EOI lazy through the calling
                           area's no_eoi_required byte or SVSM_APIC WRITE_REGISTER(EOI).
                           VMSA: AlternateInjection (bit 4), per vCPU.
secure-avic hardware       VMEXIT(INTR) -> host requests the vector -> VMRUN; hardware delivers
            (backing page) from the guest-owned APIC backing page; EOI accelerated (no exit).
                           VMSA: SecureAVIC (bit 16).
=========== ============== =====================================================================

Sources: sev-snp.md §3.3 (APIC protocol), §5.3 (NAE 0x8000_0014 #HV doorbell page,
0x8000_0015 HV IPI, 0x8000_001A Secure AVIC, 0x8000_001B/1C/1D), §5.6 (SEV_FEATURES, #HV
doorbell layout); seed 001 (registration count, NoFurtherSignal, VMPL0 scheduling, entry
cancellation); CS cpu/apic.rs, sev/hv_doorbell.rs (consume, lazy EOI, hand-off to the host).
The SVSM itself (VMPL0) always runs with Restricted Injection and takes its own interrupts
through its #HV doorbell (CS requires RestrictedInjection for itself, sev-snp.md §5.6).

Mode changes (:func:`transition_rule`; each rule is a named constant below):

* direct <-> restricted: allowed at any time (:data:`RULE_HOST_MODES_SWITCH_FREELY`);
* alternate -> direct/restricted: the seed's hand-off, succeeding only when the registration
  count reaches 0 (:data:`RULE_ALTERNATE_LEFT_AT_COUNT_ZERO`); the SVSM hands each vCPU's
  IRR/ISR to the host through its extended interrupt descriptor (VMGEXIT 0x8000_001C);
* secure-avic -> direct/restricted: allowed; the backing page's state goes to the host;
* anything -> alternate or secure-avic after boot: refused
  (:data:`RULE_ALTERNATE_NOT_REENTERED`, :data:`RULE_TCB_APIC_ONLY_FROM_BOOT`);
* the host never chooses (:data:`RULE_GUEST_CHOOSES_THE_MODE`); restricted needs HV
  feature bit 2, alternate bit 9 (:data:`REQUIRED_HV_FEATURE`).
"""

from __future__ import annotations

from cocopart.spi import CapabilityAnswer, InterruptMode
from cocopart_sev_snp.vmsa import MODE_FEATURES, SevFeatures

DIRECT, RESTRICTED = InterruptMode.DIRECT, InterruptMode.RESTRICTED
ALTERNATE, SECURE_AVIC = InterruptMode.ALTERNATE, InterruptMode.SECURE_AVIC

#: Who holds a workload vCPU's APIC state (IRR, ISR, TPR) in each mode.
APIC_HOLDER: dict[InterruptMode, str] = {
    DIRECT: "host",
    RESTRICTED: "host",
    ALTERNATE: "l1",
    SECURE_AVIC: "hardware",
}

#: The per-VMSA SEV_FEATURES bit of each mode (sev-snp.md §5.6).
MODE_BIT: dict[InterruptMode, SevFeatures] = MODE_FEATURES
INJECTION_BITS = (
    SevFeatures.RESTRICTED_INJECTION | SevFeatures.ALTERNATE_INJECTION | SevFeatures.SECURE_AVIC
)

MECHANISM: dict[InterruptMode, str] = {
    DIRECT: "host event injection (EVENTINJ on VMRUN)",
    RESTRICTED: "#HV doorbell of the VMPL (Restricted Injection)",
    ALTERNATE: "SVSM alternate injection (per-VMPL descriptor, #HV to VMPL0, VMSA EVENTINJ)",
    SECURE_AVIC: "Secure AVIC (host-requested IRR, hardware delivery from the backing page)",
}
#: How the SVSM's own interrupts arrive, in every mode.
L1_MECHANISM = "#HV doorbell of VMPL0 (the SVSM runs with Restricted Injection)"

# -- transition rules (ConfigureInterrupts) ---------------------------------------------------
#: Between the host-held modes (direct <-> restricted) the SVSM rewrites each workload
#: VMSA's RestrictedInjection bit, tells the host (VMGEXIT 0x8000_001B) and each vCPU
#: registers or clears its #HV doorbell page (0x8000_0014); the APIC state stays with the
#: host. Allowed at any time; the request reaches the SVSM as one round trip (no SVSM
#: protocol call exists for it: a cocopart extension, flagged in the result).
RULE_HOST_MODES_SWITCH_FREELY = "direct <-> restricted: allowed; APIC state stays with the host"
#: Alternate Injection is enabled only from boot (the registration count starts at 1 when
#: the SVSM enables it before the first guest entry); it is left through the seed's hand-off
#: (deregister on the BSP, refresh on every AP) and, once the count reached 0, can never be
#: re-entered: a later register fails with the protocol's error (seed 001, J. Lange
#: 2024-05-23: re-enabling would need the host's IRR/ISR/TMR moved to the SVSM).
RULE_ALTERNATE_NOT_REENTERED = "alternate: from boot only; left by deregistration, never re-entered"
#: Leaving alternate succeeds only when the registration count reaches 0: another
#: component's registration keeps Alternate Injection enabled (seed 001, D. Kaplan
#: 2024-05-23 counter proposal).
RULE_ALTERNATE_LEFT_AT_COUNT_ZERO = "alternate is left only when the registration count is 0"
#: A mode whose APIC state is held inside the guest's TCB (alternate: the SVSM; secure-avic:
#: the guest's backing page) cannot be entered after boot from a host-held mode: the host's
#: IRR/ISR would have to be trusted and moved in (the seed's argument; cocopart applies it to
#: Secure AVIC too). Leaving such a mode hands the state to the host.
RULE_TCB_APIC_ONLY_FROM_BOOT = "secure-avic/alternate: only from boot"
#: Only the guest chooses its interrupt mode: a workload layer (through the SVSM) or the
#: SVSM itself; the host cannot (Restricted/Alternate Injection exist to keep it from
#: injecting freely).
RULE_GUEST_CHOOSES_THE_MODE = "only a guest layer changes the interrupt mode"
#: Restricted Injection needs HV feature bit 2, Alternate Injection bit 9 (sev-snp.md §5.2,
#: §3.3).
REQUIRED_HV_FEATURE: dict[InterruptMode, int] = {RESTRICTED: 1 << 2, ALTERNATE: 1 << 9}


def transition_rule(current: InterruptMode, target: InterruptMode) -> str | None:
    """The rule refusing ``current`` -> ``target`` outright, or None if it may be tried
    (leaving alternate may still fail at run time: :data:`RULE_ALTERNATE_LEFT_AT_COUNT_ZERO`)."""
    if current == target:
        return None
    if target == ALTERNATE:
        return RULE_ALTERNATE_NOT_REENTERED
    if target == SECURE_AVIC:
        return RULE_TCB_APIC_ONLY_FROM_BOOT
    return None


def capability_answers(boot_mode: InterruptMode) -> dict[str, CapabilityAnswer]:
    """``interrupt-mode:<mode>`` answers for a guest booted in ``boot_mode``."""
    out: dict[str, CapabilityAnswer] = {}
    for mode in InterruptMode:
        bit = MODE_BIT[mode]
        features = (
            f"; VMSA SEV_FEATURES bit {int(bit).bit_length() - 1}"
            if bit
            else "; no injection bit in the VMSA"
        )
        mech = f"{MECHANISM[mode]}{features}; APIC state held by {APIC_HOLDER[mode]}"
        if mode in (ALTERNATE, SECURE_AVIC) and mode != boot_mode:
            out[f"interrupt-mode:{mode.value}"] = CapabilityAnswer(
                supported=True, mechanism=mech + f" (at boot only: {RULE_TCB_APIC_ONLY_FROM_BOOT})"
            )
        else:
            out[f"interrupt-mode:{mode.value}"] = CapabilityAnswer(supported=True, mechanism=mech)
    return out
