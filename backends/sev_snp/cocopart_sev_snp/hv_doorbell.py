"""The #HV doorbell page: how a hypervisor that may only inject #HV (Restricted Injection)
tells a VMPL which interrupts it has, and how it hands a lower VMPL's interrupts to the SVSM
(Alternate Injection).

Layout (sev-snp.md §5.6; CS sev/hv_doorbell.rs; LX sev_hv_doorbell_page patches):

====== ======================================================================================
offset content
====== ======================================================================================
0      pending vector for the page's own VMPL (u8)
1      flags: bit 0 NMI pending, bit 1 #MC pending, bit 7 NoFurtherSignal (bit 15 of the
       first u16)
2      no_eoi_required (u8): bit 0 set by the APIC's holder when the guest's EOI need not
       exit (a lazy EOI)
3      per-VMPL events (u8): bit n-1 = VMPLn has interrupt evaluation work (seed 001: "bits
       8, 9 or 10" of the second 16-bit word, D. Kaplan 2024-05-23, agreed by J. Lange; CS
       ``1 << (GUEST_VMPL - 1)``)
0x40   three extended interrupt descriptors, VMPL1..3, 64 bytes each: status u32, IRR 7×u32
       (vectors 32-255), ISR 8×u32 (vectors 0-255)
====== ======================================================================================

Descriptor status (CS ``HVExtIntStatus``): bits 7:0 pending vector, 8 NMI, 9 #MC, 10 level
sensitive, 14 multiple vectors (the IRR words hold the vectors, the pending-vector field is
ignored), 31 vector 31 pending.

The page is hypervisor-shared: like the GHCB, the model keeps its bytes outside guest RAM.
"""

from __future__ import annotations

import struct

PAGE_SIZE = 4096
OFF_VECTOR = 0x0
OFF_FLAGS = 0x1
OFF_NO_EOI_REQUIRED = 0x2
OFF_PER_VMPL_EVENTS = 0x3
OFF_EXT_DESCRIPTORS = 0x40
EXT_DESCRIPTOR_SIZE = 64
EXT_IRR_WORDS = 7  # vectors 32..255
EXT_ISR_WORDS = 8

FLAG_NMI = 1 << 0
FLAG_MC = 1 << 1
FLAG_NO_FURTHER_SIGNAL = 1 << 7

STATUS_VECTOR_MASK = 0xFF
STATUS_NMI = 1 << 8
STATUS_MC = 1 << 9
STATUS_LEVEL_SENSITIVE = 1 << 10
STATUS_MULTIPLE_VECTORS = 1 << 14
STATUS_VECTOR_31 = 1 << 31

#: #HV is exception vector 28 (LX kvm.h HV_VECTOR; the only event a host may inject into a
#: VMSA with RestrictedInjection, sev-snp.md §5.6).
HV_VECTOR = 28

#: In "multiple vectors" mode only vector 31 (status bit 31) and vectors 32-255 (IRR words)
#: can be expressed; a vector 16-30 can travel only in the single pending-vector field. The
#: model's host therefore holds such a vector back until the descriptor has been consumed
#: (cocopart's rule; the descriptor layout leaves no other place for it).
RULE_LOW_VECTORS_NEED_THE_SINGLE_SLOT = "vectors 16-30 wait for the single pending-vector slot"

_U32 = struct.Struct("<I")


def _desc(vmpl: int) -> int:
    if not 1 <= vmpl <= 3:
        raise ValueError(f"extended interrupt descriptors exist for VMPL1-3, not VMPL{vmpl}")
    return OFF_EXT_DESCRIPTORS + (vmpl - 1) * EXT_DESCRIPTOR_SIZE


class HvDoorbellPage:
    """One #HV doorbell page (bytes + the accessors both sides use)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(PAGE_SIZE)

    # -- the page owner's own events --------------------------------------------------------
    @property
    def vector(self) -> int:
        return self.buf[OFF_VECTOR]

    @vector.setter
    def vector(self, value: int) -> None:
        self.buf[OFF_VECTOR] = value & 0xFF

    @property
    def no_further_signal(self) -> bool:
        return bool(self.buf[OFF_FLAGS] & FLAG_NO_FURTHER_SIGNAL)

    @no_further_signal.setter
    def no_further_signal(self, value: bool) -> None:
        if value:
            self.buf[OFF_FLAGS] |= FLAG_NO_FURTHER_SIGNAL
        else:
            self.buf[OFF_FLAGS] &= ~FLAG_NO_FURTHER_SIGNAL & 0xFF

    @property
    def no_eoi_required(self) -> int:
        return self.buf[OFF_NO_EOI_REQUIRED]

    @no_eoi_required.setter
    def no_eoi_required(self, value: int) -> None:
        self.buf[OFF_NO_EOI_REQUIRED] = value & 0xFF

    @property
    def per_vmpl_events(self) -> int:
        return self.buf[OFF_PER_VMPL_EVENTS]

    def pending_events(self) -> int:
        """The first u16 (vector | flags << 8), as Linux reads it."""
        return int.from_bytes(self.buf[0:2], "little")

    def take_vector(self) -> int:
        """The page owner's #HV handler: swap the pending vector with 0 (CS
        process_pending_events)."""
        v = self.buf[OFF_VECTOR]
        self.buf[OFF_VECTOR] = 0
        return v

    # -- extended interrupt descriptors (one per lower VMPL) -----------------------------------
    def status(self, vmpl: int) -> int:
        return int(_U32.unpack_from(self.buf, _desc(vmpl))[0])

    def set_status(self, vmpl: int, value: int) -> None:
        _U32.pack_into(self.buf, _desc(vmpl), value & 0xFFFF_FFFF)

    def irr(self, vmpl: int) -> int:
        """The descriptor's IRR words as a 256-bit vector set (vectors 32-255)."""
        base = _desc(vmpl) + 4
        words = struct.unpack_from(f"<{EXT_IRR_WORDS}I", self.buf, base)
        return sum(w << (32 * (i + 1)) for i, w in enumerate(words))

    def set_irr(self, vmpl: int, bits: int) -> None:
        base = _desc(vmpl) + 4
        struct.pack_into(
            f"<{EXT_IRR_WORDS}I",
            self.buf,
            base,
            *[(bits >> (32 * (i + 1))) & 0xFFFF_FFFF for i in range(EXT_IRR_WORDS)],
        )

    def isr(self, vmpl: int) -> int:
        base = _desc(vmpl) + 4 + 4 * EXT_IRR_WORDS
        words = struct.unpack_from(f"<{EXT_ISR_WORDS}I", self.buf, base)
        return sum(w << (32 * i) for i, w in enumerate(words))

    def set_isr(self, vmpl: int, bits: int) -> None:
        base = _desc(vmpl) + 4 + 4 * EXT_IRR_WORDS
        struct.pack_into(
            f"<{EXT_ISR_WORDS}I",
            self.buf,
            base,
            *[(bits >> (32 * i)) & 0xFFFF_FFFF for i in range(EXT_ISR_WORDS)],
        )

    def mark_events(self, vmpl: int) -> None:
        """Host: VMPLn has interrupt evaluation work (the SVSM's summary bits)."""
        self.buf[OFF_PER_VMPL_EVENTS] |= 1 << (vmpl - 1)

    def post(self, vmpl: int, vector: int) -> bool:
        """Host: present ``vector`` in VMPLn's descriptor — in the single pending-vector field
        when it is free, else in the IRR words with "multiple vectors" set (moving a single
        vector already there into the IRR). False when the vector cannot be expressed now
        (:data:`RULE_LOW_VECTORS_NEED_THE_SINGLE_SLOT`): the host keeps it for later."""
        st = self.status(vmpl)
        single = st & STATUS_VECTOR_MASK
        if not st & STATUS_MULTIPLE_VECTORS and single in (0, vector):
            self.set_status(vmpl, (st & ~STATUS_VECTOR_MASK) | vector)
            return True
        if vector < 31 or (not st & STATUS_MULTIPLE_VECTORS and single < 31):
            return False
        irr = self.irr(vmpl)
        if not st & STATUS_MULTIPLE_VECTORS:
            if single >= 32:
                irr |= 1 << single
            elif single == 31:
                st |= STATUS_VECTOR_31
            st = (st & ~STATUS_VECTOR_MASK) | STATUS_MULTIPLE_VECTORS
        if vector == 31:
            st |= STATUS_VECTOR_31
        else:
            irr |= 1 << vector
        self.set_status(vmpl, st)
        self.set_irr(vmpl, irr)
        return True

    def consume(self, vmpl: int) -> int:
        """SVSM: take VMPLn's presented vectors (CS consume_host_interrupts): clear the
        summary bit, then either the single vector or — in multiple-vectors mode — vector 31
        and the IRR words. Returns them as a 256-bit set (0 if VMPLn had no event)."""
        events = self.buf[OFF_PER_VMPL_EVENTS]
        self.buf[OFF_PER_VMPL_EVENTS] = events & ~(1 << (vmpl - 1)) & 0xFF
        if not events & (1 << (vmpl - 1)):
            return 0
        st = self.status(vmpl)
        if st & STATUS_MULTIPLE_VECTORS:
            out = self.irr(vmpl) | ((1 << 31) if st & STATUS_VECTOR_31 else 0)
            self.set_irr(vmpl, 0)
            self.set_status(
                vmpl, st & ~(STATUS_MULTIPLE_VECTORS | STATUS_VECTOR_31 | STATUS_VECTOR_MASK)
            )
            return out
        single = st & STATUS_VECTOR_MASK
        self.set_status(vmpl, st & ~STATUS_VECTOR_MASK)
        return 1 << single if single else 0

    def hand_off(self, vmpl: int, irr: int, isr: int) -> None:
        """SVSM giving VMPLn's APIC back to the host (CS handoff_to_host): the IRR goes into
        the IRR words with "multiple vectors" set (vector 31 through its status bit), the ISR
        replaces the ISR words. A single edge-triggered vector >= 31 still in the descriptor
        joins the IRR (CS: the host ignores the vector field once multiple vectors is set)."""
        st = self.status(vmpl)
        single = st & STATUS_VECTOR_MASK
        if not st & (STATUS_MULTIPLE_VECTORS | STATUS_LEVEL_SENSITIVE) and single >= 31:
            irr |= 1 << single
        st = (st & ~STATUS_VECTOR_MASK) | STATUS_MULTIPLE_VECTORS
        if irr >> 31 & 1:
            st |= STATUS_VECTOR_31
        self.set_status(vmpl, st)
        self.set_irr(vmpl, self.irr(vmpl) | (irr & ~((1 << 32) - 1)))
        self.set_isr(vmpl, isr)

    def take_hand_off(self, vmpl: int) -> tuple[int, int]:
        """Host: read (and clear) VMPLn's handed-off IRR and ISR."""
        st = self.status(vmpl)
        irr = self.irr(vmpl) | ((1 << 31) if st & STATUS_VECTOR_31 else 0)
        if not st & STATUS_MULTIPLE_VECTORS and st & STATUS_VECTOR_MASK:
            irr |= 1 << (st & STATUS_VECTOR_MASK)
        isr = self.isr(vmpl)
        self.set_status(vmpl, 0)
        self.set_irr(vmpl, 0)
        self.set_isr(vmpl, 0)
        return irr, isr
