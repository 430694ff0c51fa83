"""The seed-003 host fault scenarios on SEV-SNP (:mod:`cocopart.host_faults` has the neutral
side): each runs on an :class:`~cocopart_sev_snp.machine.SnpMachine` under its
``host_fault_policy`` and returns a :class:`~cocopart.host_faults.FaultOutcome`.

* (a) forgotten share — the guest validates memory, keeps data in a page and hands that
  still-private page to a virtual device; the emulator writes it (:func:`forgotten_share`);
* (b) convert under emulation — a host process emulates a device on a shared page; the
  guest has the host make it private (GHCB Page State Change) in the middle; the emulator's
  next write hits a private page (:func:`convert_under_emulation`);
* (c) kexec — the host kexecs while the guest's memory is private in the RMP; the new
  kernel writes pages it now owns (:func:`kexec`).

What each policy does on the write is :mod:`cocopart_sev_snp.host_faults`; this module only
sets the scene and reads the consequences. Rules specific to a scenario are named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocopart.spi import (
    ASSUMPTION_SAME_PAGE,
    DEVICE_DATA,
    DMA_PAGE,
    GUEST_DATA,
    NEW_KERNEL,
    PAGE_2M,
    PAGE_4K,
    Emulator,
    FaultOutcome,
    HostAccessor,
    HostFaultScenario,
    OutcomeBuilder,
    PageRun,
    ScenarioSetup,
    keep_guest_data,
)
from cocopart.spi import finish_scene as _finish
from cocopart_sev_snp import ghcb as g
from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp import instructions as ins

if TYPE_CHECKING:
    from cocopart_sev_snp.machine import SnpMachine

#: kexec stops every guest: "Of course this doesn't preserve any running VMs" (seed 003,
#: Peter Gonda 2021-11-12).
RULE_KEXEC_LOSES_GUESTS = "kexec does not preserve running guests"

#: The RMP stays in force across kexec: the new kernel inherits the old kernel's RMP without
#: knowing it (seed 003, Peter Gonda: the proposal "avoids needing to propagate the RMP state
#: from kernel to kernel"). UNCONFIRMED: the references do not say how SNP is disabled; the
#: model assumes only a platform reset clears the RMP.
RULE_RMP_PERSISTS_ACROSS_KEXEC = "the RMP survives kexec; the new kernel does not know it"

#: Under ``convert`` "the new kexec kernel can simply update private pages to shared as it
#: encounters them during their boot" (seed 003, Peter Gonda); the model's new kernel writes
#: every page of the old guest's memory once.
RULE_KEXEC_KERNEL_CONVERTS_AS_IT_GOES = "convert: the new kernel converts pages as it meets them"

UNCONFIRMED = (RULE_RMP_PERSISTS_ACROSS_KEXEC,)


def _access(emulator: Emulator) -> tuple[HostAccessor, bool]:
    """(accessor, checked) of an emulator."""
    return emulator.accessor, emulator is Emulator.KVM_CHECKED


def _builder(m: SnpMachine, scenario: HostFaultScenario, setup: ScenarioSetup) -> OutcomeBuilder:
    return OutcomeBuilder(
        backend="sev-snp",
        policy=m.options.host_fault_policy,
        policy_consulted=False,
        scenario=scenario,
        setup=setup,
    )


def _write(m: SnpMachine, b: OutcomeBuilder, layer: str) -> None:
    """The emulator writes DMA_PAGE; apply the consequences of what the host did."""
    accessor, checked = _access(b.emulator)
    b.rules.append(ASSUMPTION_SAME_PAGE)
    w = hf.host_write(
        m, DMA_PAGE, DEVICE_DATA, accessor=accessor, process=b.process(), checked=checked
    )
    b.extend(w.steps, w.rules)
    b.host_fault = w.fault
    b.write_completed = w.completed
    b.policy_consulted = w.fault == hf.HOST_RMP_FAULT
    if w.action is hf.HostAction.PANIC:
        b.panic("RMP #PF on a host write")
    elif w.action is hf.HostAction.SIGBUS:
        b.kill(w.process, "SIGBUS on an RMP #PF")
    elif w.action is hf.HostAction.REFUSED:
        b.error(b.guest, "the device reports an I/O error (KVM refused to map the page)")
    elif w.action is hf.HostAction.CONVERTED:
        out, steps = hf.guest_private_access(m, layer, DMA_PAGE)
        b.extend(steps, [hf.RULE_PRIVATE_NPF_REASSIGNS])
        if not out.ok:
            b.error(b.guest, f"{out.fault} on {DMA_PAGE:#x} (page not validated)")
            if b.setup.guest_terminates_on_error:
                b.step(b.guest, "logs the corruption to its owner and terminates")
                b.lose(
                    b.guest,
                    f"terminated itself after {out.fault}: its memory was changed behind its back",
                )
            else:
                b.step(b.guest, "logs the corruption to its owner and carries on")


def forgotten_share(m: SnpMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(a) The guest forgets to share a page it hands to a device for DMA."""
    b = _builder(m, HostFaultScenario.FORGOTTEN_SHARE, setup)
    layer = m.workloads[0]
    mark = keep_guest_data(m, layer, PAGE_2M)
    b.step(b.guest, f"validates [0, 2M) and keeps its data at {DMA_PAGE:#x}")
    b.step(
        b.guest,
        f"buggy driver: hands {DMA_PAGE:#x} to the virtio device for DMA without "
        "a Page State Change to shared",
    )
    _write(m, b, layer)
    return _finish(m, b, GUEST_DATA, mark)


def convert_under_emulation(m: SnpMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(b) The guest has a shared page the host is emulating a device on made private."""
    b = _builder(m, HostFaultScenario.CONVERT_UNDER_EMULATION, setup)
    layer = m.workloads[0]
    before = m.memory.read(DMA_PAGE, len(DEVICE_DATA))
    mark = m.trace.mark()
    b.step(b.process(), f"maps the shared page {DMA_PAGE:#x} and emulates the device on it")
    if b.emulator is Emulator.KVM_CHECKED:
        b.rules.append(hf.RULE_CHECKED_MAP_REFUSES_PRIVATE)
        m.trace.record("kvm", "PSC", "private", "refused")
        b.step(
            b.guest,
            f"VMGEXIT(PSC) {DMA_PAGE:#x} -> private",
            "refused: KVM holds the page locked shared while it is mapped",
        )
        b.error(b.guest, "its Page State Change to private fails while the device uses the page")
    else:
        err = m.psc(layer, 0, [PageRun(DMA_PAGE, PAGE_4K, 1)], g.PscOp.PRIVATE)
        b.step(
            b.guest,
            f"malicious: VMGEXIT(PSC) {DMA_PAGE:#x} -> private",
            "ok: the host's RMPUPDATE assigns the page to the guest"
            if err is None
            else err.message,
        )
    _write(m, b, layer)
    return _finish(m, b, before, mark)


def _convert_everything(m: SnpMachine, b: OutcomeBuilder) -> int:
    """The new kernel writes every page of the old guest's memory under ``convert``: PSMASH
    each 2M entry, RMPUPDATE each 4K page to shared (counted, not looped per page)."""
    pages = 0
    for s, e, v in list(m.rmp.runs(0, m.rmp.size)):
        if not v.assigned:
            continue
        if v.page_size_2m:
            r = ins.psmash(m.rmp, gpa=s, count=(e - s) // PAGE_2M, in_use=m.host.in_use)
            m.trace.record("host", "PSMASH", count=r.done)
        u = ins.rmpupdate(
            m.rmp,
            gpa=s,
            page_2m=False,
            count=(e - s) // PAGE_4K,
            assigned=False,
            asid=0,
            in_use=m.host.in_use,
        )
        m.trace.record("host", "RMPUPDATE.4K", "shared", count=u.done)
        pages += u.done
        if not u.ok:
            break
    return pages


def kexec(m: SnpMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(c) kexec with the guest's pages private in the RMP; the new kernel writes them."""
    b = _builder(m, HostFaultScenario.KEXEC, setup)
    mark = keep_guest_data(m, m.workloads[0], m.config.memory)
    b.step("host", "kexec into a new kernel", "every guest stops")
    for guest in b.guests:
        b.lose(guest, "stopped by the kexec")
    for ctx in list(m.host.contexts.values()):
        m.host.kick(ctx.vmsa_gpa)
    b.rules.extend([RULE_KEXEC_LOSES_GUESTS, RULE_RMP_PERSISTS_ACROSS_KEXEC])
    b.step(
        NEW_KERNEL,
        "boots with the old RMP still in force",
        f"{sum(e - s for s, e, v in m.rmp.runs(0, m.rmp.size) if v.assigned) // PAGE_4K} "
        "pages still assigned to guests",
    )
    w = hf.host_write(
        m, DMA_PAGE, b"new kernel data", accessor=HostAccessor.KERNEL, process=NEW_KERNEL
    )
    b.host_fault = w.fault
    b.policy_consulted = True
    b.extend(w.steps, w.rules)
    if w.action is hf.HostAction.PANIC:
        b.panic("the new kernel's write hit a guest page in the RMP during boot")
        b.step(NEW_KERNEL, "does not come up", "no kdump, the host needs a full reboot")
    else:
        pages = 1 + _convert_everything(m, b)
        b.rules.append(RULE_KEXEC_KERNEL_CONVERTS_AS_IT_GOES)
        b.step(
            NEW_KERNEL,
            "converts each guest page to shared as it first writes it",
            f"{pages} pages converted; boot completes (kdump works)",
        )
        b.write_completed = True
    return b.build(b.data_fate(False), m.trace.since(mark).events)


SCENARIOS = {
    HostFaultScenario.FORGOTTEN_SHARE: forgotten_share,
    HostFaultScenario.CONVERT_UNDER_EMULATION: convert_under_emulation,
    HostFaultScenario.KEXEC: kexec,
}


def run(m: SnpMachine, scenario: HostFaultScenario, setup: ScenarioSetup) -> FaultOutcome:
    """Run one seed-003 scenario on ``m`` under its ``host_fault_policy``."""
    return SCENARIOS[scenario](m, setup)
