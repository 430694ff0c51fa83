"""An emulated local APIC: what a privileged layer keeps for a workload vCPU whose
interrupts it injects (SNP Alternate Injection: the SVSM emulates the APIC; TDX: the L1 VMM
emulates the L2's APIC and injects through the L2 VMCS or the virtual-APIC page).

Priority rules (Intel SDM vol. 3 §11.8): a vector's priority class is ``vector >> 4``; the
highest-numbered pending vector in IRR is delivered when its class is above the processor
priority class (PPR[7:4] = max(TPR[7:4], class of the highest in-service vector)); delivery
moves it from IRR to ISR; EOI clears the highest ISR bit. Vectors 0-15 are reserved for
exceptions and are never accepted as external interrupts.

Register indices are x2APIC MSRs (sev-snp.md §3.3, CS cpuarch/x86apic.rs): APIC_ID 0x802,
TPR 0x808, PPR 0x80A, EOI 0x80B, LDR 0x80D, ISR 0x810-0x817, TMR 0x818-0x81F,
IRR 0x820-0x827, ICR 0x830, SELF_IPI 0x83F. Reading EOI/SELF_IPI and writing
ID/PPR/LDR/ISR/TMR/IRR is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

APIC_ID, TPR, PPR, EOI, LDR = 0x802, 0x808, 0x80A, 0x80B, 0x80D
ISR0, TMR0, IRR0, ICR, SELF_IPI = 0x810, 0x818, 0x820, 0x830, 0x83F
FIRST_EXTERNAL_VECTOR = 16
READ_ONLY = (
    {APIC_ID, PPR, LDR}
    | set(range(ISR0, ISR0 + 8))
    | set(range(TMR0, TMR0 + 8))
    | set(range(IRR0, IRR0 + 8))
)
WRITE_ONLY = {EOI, SELF_IPI}


class ApicRegisterError(ValueError):
    """A register access the register does not allow (read-only, write-only, bad value)."""


class UnknownApicRegister(ApicRegisterError):
    """A register index the emulation does not have."""


def _highest(bits: int) -> int:
    return bits.bit_length() - 1


@dataclass
class LocalApic:
    """IRR/ISR/TMR as 256-bit integers, TPR, and the vectors the privileged layer allows."""

    apic_id: int
    irr: int = 0
    isr: int = 0
    tmr: int = 0
    tpr: int = 0
    icr: int = 0
    allowed: int = (1 << 256) - (1 << FIRST_EXTERNAL_VECTOR)  # CONFIGURE_VECTOR mask

    @property
    def ppr(self) -> int:
        isr_class = _highest(self.isr) >> 4 if self.isr else 0
        tpr_class = self.tpr >> 4
        return self.tpr if tpr_class >= isr_class else isr_class << 4

    def accept(self, vector: int) -> bool:
        """Latch ``vector`` into IRR. False if it is not an external vector or not allowed.
        A vector already pending stays pending once (IRR is one bit per vector)."""
        if not FIRST_EXTERNAL_VECTOR <= vector <= 255 or not self.allowed >> vector & 1:
            return False
        self.irr |= 1 << vector
        return True

    def deliverable(self) -> int | None:
        """The vector the next delivery would take, or None."""
        if not self.irr:
            return None
        v = _highest(self.irr)
        return v if v >> 4 > self.ppr >> 4 else None

    def deliver(self) -> int | None:
        """Move the highest deliverable vector from IRR to ISR and return it."""
        v = self.deliverable()
        if v is not None:
            self.irr &= ~(1 << v)
            self.isr |= 1 << v
        return v

    def eoi(self) -> int | None:
        """End of interrupt: clear the highest in-service vector and return it."""
        if not self.isr:
            return None
        v = _highest(self.isr)
        self.isr &= ~(1 << v)
        return v

    # -- register interface ----------------------------------------------------------------
    def read(self, index: int) -> int:
        if index in WRITE_ONLY:
            raise ApicRegisterError(f"x2APIC register {index:#x} is write-only")
        if index == APIC_ID:
            return self.apic_id
        if index == TPR:
            return self.tpr
        if index == PPR:
            return self.ppr
        if index == LDR:
            return ((self.apic_id >> 4) << 16) | (1 << (self.apic_id & 0xF))
        if index == ICR:
            return self.icr
        for base, bits in ((ISR0, self.isr), (TMR0, self.tmr), (IRR0, self.irr)):
            if base <= index < base + 8:
                return bits >> (32 * (index - base)) & 0xFFFF_FFFF
        raise UnknownApicRegister(f"x2APIC register {index:#x} is not emulated")

    def write(self, index: int, value: int) -> None:
        if index in READ_ONLY:
            raise ApicRegisterError(f"x2APIC register {index:#x} is read-only")
        if index == TPR:
            self.tpr = value & 0xFF
        elif index == EOI:
            if value:
                raise ApicRegisterError("a write to EOI must be zero")
            self.eoi()
        elif index == ICR:
            self.icr = value
        elif index == SELF_IPI:
            self.accept(value & 0xFF)
        else:
            raise UnknownApicRegister(f"x2APIC register {index:#x} is not emulated")
