"""The #HV doorbell page (sev-snp.md §5.6, CS hv_doorbell.rs): layout, the host's posting rules,
the SVSM's consumption and hand-off, NoFurtherSignal, VMPL0 scheduling, and the SVSM
cancelling a committed lower-VMPL entry when a #HV arrives (seed 001)."""

from __future__ import annotations

from cocopart_sev_snp import hv_doorbell as hv
from cocopart_sev_snp.hv_doorbell import HvDoorbellPage
from cocopart_sev_snp.vmsa import EVENT_INJ
from snp_helpers import guest, machine

from cocopart.ops import EndOfInterrupt, InjectInterrupt
from cocopart.partition import Partition


def test_layout_offsets_and_flags() -> None:
    assert (hv.OFF_VECTOR, hv.OFF_FLAGS, hv.OFF_NO_EOI_REQUIRED, hv.OFF_PER_VMPL_EVENTS) == (
        0,
        1,
        2,
        3,
    )
    assert hv.OFF_EXT_DESCRIPTORS == 0x40 and hv.EXT_DESCRIPTOR_SIZE == 4 + 7 * 4 + 8 * 4
    assert (hv.FLAG_NMI, hv.FLAG_MC, hv.FLAG_NO_FURTHER_SIGNAL) == (1, 2, 0x80)
    assert hv.STATUS_MULTIPLE_VECTORS == 1 << 14 and hv.STATUS_VECTOR_31 == 1 << 31
    assert hv.HV_VECTOR == 28


def test_no_further_signal_is_bit_15_of_the_first_word() -> None:
    db = HvDoorbellPage()
    db.vector = 0x41
    db.no_further_signal = True
    assert db.pending_events() == 0x8041 and db.buf[1] == 0x80
    assert db.take_vector() == 0x41 and db.vector == 0
    db.no_further_signal = False
    assert db.pending_events() == 0


def test_per_vmpl_events_bit_is_vmpl_minus_one() -> None:
    db = HvDoorbellPage()
    for vmpl in (1, 2, 3):
        db.mark_events(vmpl)
    assert db.per_vmpl_events == 0b111
    assert db.consume(2) == 0 and db.per_vmpl_events == 0b101  # nothing posted for VMPL2


def test_single_vector_then_multiple_vectors() -> None:
    db = HvDoorbellPage()
    assert db.post(2, 0x40)
    assert db.status(2) & hv.STATUS_VECTOR_MASK == 0x40 and db.irr(2) == 0
    assert db.post(2, 0x55) and db.post(2, 31)
    st = db.status(2)
    assert st & hv.STATUS_MULTIPLE_VECTORS and st & hv.STATUS_VECTOR_31
    assert db.irr(2) == (1 << 0x40) | (1 << 0x55)  # the single vector moved into the IRR
    db.mark_events(2)
    assert db.consume(2) == (1 << 0x40) | (1 << 0x55) | (1 << 31)
    assert db.status(2) == 0 and db.irr(2) == 0 and db.per_vmpl_events == 0


def test_low_vectors_need_the_single_slot() -> None:
    """RULE_LOW_VECTORS_NEED_THE_SINGLE_SLOT: 16-30 travel only in the pending-vector field."""
    db = HvDoorbellPage()
    assert db.post(1, 0x18)
    assert not db.post(1, 0x19)  # the slot is busy and the IRR words start at 32
    assert not db.post(1, 0x60)  # nor can a single low vector move into the IRR words
    db.mark_events(1)
    assert db.consume(1) == 1 << 0x18
    assert db.post(1, 0x19)


def test_hand_off_and_take_hand_off() -> None:
    db = HvDoorbellPage()
    db.post(3, 0x70)  # still presented, not consumed: joins the IRR (CS handoff_to_host)
    db.hand_off(3, irr=(1 << 0x30) | (1 << 31) | (1 << 0x18), isr=1 << 0x90)
    irr, isr = db.take_hand_off(3)
    assert irr == (1 << 0x30) | (1 << 31) | (1 << 0x70)  # 0x18 cannot travel (CS)
    assert isr == 1 << 0x90 and db.status(3) == 0


def alternate_guest() -> Partition:
    return guest(vcpus=2, interrupt_mode="alternate")


def test_host_must_run_vmpl0_next_and_the_svsm_injects_into_the_vmsa() -> None:
    p = alternate_guest()
    r = p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x44))
    assert r.data["delivery"]["status"] == "delivered"
    ev = [
        (e.kind, e.issuer, e.mnemonic, e.target, e.result)
        for e in p.plan(InjectInterrupt(layer="host", vcpu=0, vector=0x64)).events
    ]
    assert ev == [
        ("switch", "l2.1", "VMEXIT(INTR)", "host", "ok"),
        ("primitive", "host", "HVDB.POST", "VMPL2", "ok"),
        ("primitive", "host", "EVENTINJ", "VMPL0", "#HV"),
        ("switch", "host", "VMRUN", "l1", "ok"),  # VMPL0 next, never the lower VMPL
        ("primitive", "l1", "HV.HANDLE", "", "ok"),
        ("primitive", "l1", "APIC.EVALUATE", "l2.1", "ok"),
        ("primitive", "l1", "VMSA.EVENT_INJ", "VMPL2", "ok"),
        ("primitive", "l1", "VMGEXIT", "SNP_RUN_VMPL", "ok"),
        ("switch", "l1", "VMGEXIT(SNP_RUN_VMPL)", "l2.1", "ok"),
    ]
    m = machine(p)
    sdb = m.interrupts.svsm_doorbell(0)
    assert not sdb.no_further_signal and sdb.per_vmpl_events == 0
    vmsa = m.layout.context(0, 0)
    assert m.memory.read(vmsa + EVENT_INJ, 8) == bytes(8)  # the CPU took it on entry


def test_an_hv_after_the_commit_cancels_the_entry_and_the_higher_vector_wins() -> None:
    """Seed 001 (J. Lange 2024-05-23): an #HV for the lower VMPL that arrives after the SVSM
    committed to entering it cancels that VMGEXIT(SNP_RUN_VMPL); the SVSM evaluates again."""
    p = alternate_guest()
    m = machine(p)
    m.interrupts.during_entry.append(("l2.1", 0, 0x90))  # arrives inside the window
    mark = p.trace.mark()
    r = p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x40))
    events = [(e.issuer, e.mnemonic, e.target, e.result) for e in p.trace.since(mark).events]
    cancel = events.index(("l1", "ENTRY.CANCEL", "VMPL2", "ok"))
    first_exit = events.index(("l1", "VMGEXIT", "SNP_RUN_VMPL", "ok"))
    assert cancel < first_exit  # no VMGEXIT was issued before the cancel
    assert [e for e in events if e[1] == "VMGEXIT"] == [("l1", "VMGEXIT", "SNP_RUN_VMPL", "ok")]
    assert m.interrupts.cancelled_entries == 1
    assert [(d["vector"]) for d in r.data["deliveries"]] == [0x90]  # 0x40 was rewound
    assert r.data["delivery"]["status"] == "pending"
    r = p.run(EndOfInterrupt(vcpu=0))  # the explicit EOI of 0x90 delivers 0x40
    assert [d["vector"] for d in r.data["deliveries"]] == [0x40]


def test_no_further_signal_one_hv_for_several_interrupts() -> None:
    p = alternate_guest()
    m = machine(p)
    m.interrupts.during_entry += [("l2.1", 0, 0x90), ("l2.1", 0, 0xA0)]
    mark = p.trace.mark()
    p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x40))
    hv_signals = sum(
        n
        for k, n in p.trace.since(mark).primitives.items()
        if (k.issuer, k.mnemonic, k.target, k.result) == ("host", "EVENTINJ", "VMPL0", "#HV")
    )
    assert hv_signals == 2  # one for the first interrupt, one for both window arrivals
    assert [d.vector for d in m.interrupts.ledger.log] == [0xA0]


def test_low_vectors_the_host_held_back_are_presented_after_the_svsm_consumed() -> None:
    p = alternate_guest()
    m = machine(p)
    m.interrupts.during_entry += [("l2.1", 0, 0x18), ("l2.1", 0, 0x19)]
    p.run(InjectInterrupt(layer="host", vcpu=0, vector=0x17))
    assert p.trace.count("HVDB.POST", result="held") >= 1
    for _ in range(3):
        p.run(EndOfInterrupt(vcpu=0))
    assert sorted(d.vector for d in m.interrupts.ledger.log) == [0x17, 0x18, 0x19]
    assert not m.interrupts.ledger.pending and not m.interrupts.backlog
