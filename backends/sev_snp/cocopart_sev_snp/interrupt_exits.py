"""The host's side of the interrupt-related VMGEXITs on SEV-SNP: x2APIC MSR writes it
emulates (EOI, ICR), the #HV doorbell page (0x8000_0014), CONFIGURE_INJECTION (0x8000_001B),
the Alternate Injection hand-off (0x8000_001C), HV_IPI and Secure AVIC (0x8000_001A).

:class:`InterruptExits` registers its handlers with the host (``SnpHost.extra_exits``) and
acts on the delivery state of the :class:`~cocopart_sev_snp.interrupts.SnpInterrupts` it
serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocopart.spi import EOI as X2APIC_EOI
from cocopart.spi import HOST, L1, InterruptMode, LocalApic
from cocopart.spi import ICR as X2APIC_ICR
from cocopart.spi import vectors as _vectors
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import interrupt_modes as im

if TYPE_CHECKING:
    from cocopart_sev_snp.interrupts import SnpInterrupts

#: CONFIGURE_INJECTION (0x8000_001B) EXITINFO1: the model's encoding (VMPL << 16) | mode
#: code — CS names the exit without its layout in the reference (unconfirmed).
INJECTION_MODE_CODE: dict[InterruptMode, int] = {
    InterruptMode.DIRECT: 0,
    InterruptMode.RESTRICTED: 1,
    InterruptMode.ALTERNATE: 2,
    InterruptMode.SECURE_AVIC: 3,
}
#: #HV doorbell page (0x8000_0014) and Secure AVIC (0x8000_001A) sub-operations in EXITINFO1
#: (sev-snp.md §5.3).
DOORBELL_SET, DOORBELL_CLEAR = 1, 3
SAVIC_REGISTER, SAVIC_UNREGISTER = 0, 1
#: The hand-off to the host carries vector 31 and 32-255 (the descriptor's IRR words) and
#: the ISR; a pending vector 16-30 is lost, as in CS handoff_to_host.
RULE_HANDOFF_LOSES_LOW_VECTORS = "vectors 16-30 pending at the hand-off are lost (CS)"


class InterruptExits:
    """The host's exit handlers for one :class:`SnpInterrupts`."""

    def __init__(self, interrupts: SnpInterrupts) -> None:
        self.i = interrupts
        host = interrupts.m.host
        for code, handler in (
            (g.ExitCode.HV_DOORBELL_PAGE, self._exit_doorbell),
            (g.ExitCode.CONFIGURE_INJECTION, self._exit_configure),
            (g.ExitCode.DISABLE_ALTERNATE_INJECTION, self._exit_disable_alt),
            (g.ExitCode.HV_IPI, self._exit_hv_ipi),
            (g.ExitCode.SECURE_AVIC, self._exit_savic),
            (g.SVM_EXIT_MSR, self._exit_msr),
        ):
            host.extra_exits[int(code)] = handler

    def _owner(self, issuer: str, page: g.GhcbPage) -> tuple[str, int]:
        for (layer, vcpu), p in self.i.m.ghcb_pages.items():
            if p is page:
                return layer, vcpu
        return issuer, 0

    def _exit_msr(self, issuer: str, page: g.GhcbPage) -> None:
        """x2APIC MSR writes the host emulates: EOI (its APIC for the layer; then the next
        injection is prepared for the return) and ICR (an IPI)."""
        layer, vcpu = self._owner(issuer, page)
        msr, write = page.get(g.OFF_RCX), page.info1 == 1
        value = page.get(g.OFF_RAX) | (page.get(g.OFF_RDX) << 32)
        if not write or msr not in (X2APIC_EOI, X2APIC_ICR):
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        if msr == X2APIC_EOI:
            self.i.apic(layer, vcpu).eoi()
            self.i.trace.record(HOST, "APIC.EOI", layer)
            if layer == L1:
                self.i._prepared[(layer, vcpu)] = self.i._host_prepare_l1(vcpu)
            else:
                self.i._prepared[(layer, vcpu)] = self.i._host_prepare(layer, vcpu)
            page.respond(0, 0)
            return
        dest, vector = value >> 32, value & 0xFF
        if not 0 <= dest < self.i.m.config.vcpus:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        mode = self.i.effective(layer, dest)
        if mode == im.ALTERNATE:
            self.i._post_descriptor(layer, dest, vector)
        elif mode != im.SECURE_AVIC:  # with Secure AVIC the sender set the IRR itself
            self.i.trace.record(HOST, "APIC.ACCEPT", layer)
            self.i.ledger.latch(self.i.apic(layer, dest), layer, dest, vector)
        if dest == vcpu:
            self.i._prepared[(layer, vcpu)] = self.i._host_prepare(layer, vcpu)
        else:
            self.i._kick(dest)
            self.i._host_service(layer, dest)
            self.i._resume(dest)
        page.respond(0, 0)

    def _exit_doorbell(self, issuer: str, page: g.GhcbPage) -> None:
        layer, vcpu = self._owner(issuer, page)
        sub = page.info1
        if sub == DOORBELL_SET:
            self.i.doorbell(layer, vcpu)
        elif sub == DOORBELL_CLEAR:
            self.i.doorbells.pop((layer, vcpu), None)
        elif sub not in (0, 2):
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        page.respond(0, 0)

    def _exit_configure(self, issuer: str, page: g.GhcbPage) -> None:
        _layer, vcpu = self._owner(issuer, page)
        vmpl, code = (page.info1 >> 16) & 0xF, page.info1 & 0xFF
        if code not in INJECTION_MODE_CODE.values() or not 1 <= vmpl <= 3:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        self.i.host_modes[(vcpu, vmpl)] = code
        page.respond(0, 0)

    def _exit_disable_alt(self, issuer: str, page: g.GhcbPage) -> None:
        """0x8000_001C (CS): EXITINFO1 = (VMPL << 16) | (TPR << 8) | (shadow << 1) | IF. The
        host takes the handed-off IRR/ISR from the SVSM's descriptor for that VMPL."""
        _l1, vcpu = self._owner(issuer, page)
        vmpl, tpr = (page.info1 >> 16) & 0xF, (page.info1 >> 8) & 0xFF
        layer = next((w for w, n in self.i.m.vmpls.items() if n == vmpl), None)
        if layer is None:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        irr, isr = self.i.svsm_doorbell(vcpu).take_hand_off(vmpl)
        for v in self.i.backlog.pop((layer, vcpu), []):  # vectors the host itself still held
            irr |= 1 << v
        old = self.i.apics.get((layer, vcpu))
        new = LocalApic(apic_id=vcpu, irr=irr, isr=isr, tpr=tpr)
        if old is not None:
            for v in _vectors(old.irr & ~irr):  # RULE_HANDOFF_LOSES_LOW_VECTORS
                self.i.ledger.drop(layer, vcpu, v, RULE_HANDOFF_LOSES_LOW_VECTORS)
        self.i.apics[(layer, vcpu)] = new
        self.i.host_modes[(vcpu, vmpl)] = INJECTION_MODE_CODE[im.DIRECT]
        page.respond(0, 0)

    def _exit_hv_ipi(self, issuer: str, page: g.GhcbPage) -> None:
        """The SVSM asks the host to notify another vCPU (CS post_irq): #HV to its VMPL0."""
        icr = page.info1
        dest = icr >> 32
        if not 0 <= dest < self.i.m.config.vcpus:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        self.i._notify.append(dest)
        page.respond(0, 0)

    def _exit_savic(self, issuer: str, page: g.GhcbPage) -> None:
        layer, vcpu = self._owner(issuer, page)
        if page.info1 == SAVIC_REGISTER:
            self.i.backing_pages.add((layer, vcpu))
        elif page.info1 == SAVIC_UNREGISTER:
            self.i.backing_pages.discard((layer, vcpu))
        else:
            page.input_error(g.GhcbError.INVALID_INPUT)
            return
        page.respond(0, 0)
