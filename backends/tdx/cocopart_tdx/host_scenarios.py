"""The seed-003 host fault scenarios on TDX (the neutral side is :mod:`cocopart.host_faults`).

TDX has no host-side check of writes (:mod:`cocopart_tdx.host_faults`), so no host fault
policy is consulted: a host write to TD-private memory completes, and the TD pays for it at
its next read (#MC, TD fatal). The scenes are the SNP ones:

* (a) forgotten share — the L2 workload accepts memory, keeps data in a page and hands that
  private page to the virtual device; the emulator writes it;
* (b) convert under emulation — the page is shared and under emulation; the guest converts
  it to private (MapGPA, the host AUGs, the guest ACCEPTs) while the emulator keeps writing;
* (c) kexec — the host kexecs with TD-private memory; the new kernel writes it.

Scenario (b) needs the emulator's mapping and the new private page to be the same physical
page: :data:`cocopart.host_faults.ASSUMPTION_SAME_PAGE` states that for both backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocopart.spi import (
    ASSUMPTION_SAME_PAGE,
    DEVICE_DATA,
    DMA_PAGE,
    GUEST_DATA,
    NEW_KERNEL,
    NO_POLICY,
    PAGE_2M,
    PAGE_4K,
    ConvertPages,
    DataFate,
    Emulator,
    FaultOutcome,
    GpaRange,
    HostAccessor,
    HostFaultScenario,
    OutcomeBuilder,
    ScenarioSetup,
    ValidatePages,
    keep_guest_data,
)
from cocopart.spi import finish_scene as _finish
from cocopart_tdx import host_faults as hf

if TYPE_CHECKING:
    from cocopart_tdx.machine import TdxMachine

HOST = "host"


def _builder(scenario: HostFaultScenario, setup: ScenarioSetup) -> OutcomeBuilder:
    return OutcomeBuilder(
        backend="tdx", policy=NO_POLICY, policy_consulted=False, scenario=scenario, setup=setup
    )


def _emulate(m: TdxMachine, b: OutcomeBuilder, layer: str) -> None:
    """The emulator writes DMA_PAGE; then the guest reads it."""
    if b.emulator is Emulator.KVM_CHECKED and hf.td_private(m, DMA_PAGE):
        b.rules.append(hf.RULE_TDX_KVM_REFUSES_PRIVATE)
        m.trace.record("kvm", "MAP_GPA_CHECK", "private", "refused")
        b.step("kvm", f"map {DMA_PAGE:#x}", "private GPA: refused, nothing written")
        b.error(b.guest, "the device reports an I/O error (KVM refused the private page)")
        return
    w = hf.host_write(
        m,
        DMA_PAGE,
        DEVICE_DATA,
        accessor=b.emulator.accessor,
        process=b.process(),
        partial=True,
        errata=b.setup.platform_errata,
    )
    b.extend(w.steps, w.rules)
    b.write_completed = w.completed
    if not w.td_private:
        return
    out, steps = hf.td_read(m, layer, DMA_PAGE)
    b.extend(steps, [hf.RULE_TDX_TD_READ_AFTER_HOST_WRITE_POISONS, hf.RULE_TDX_MC_IN_TD_IS_FATAL])
    if not out.ok:
        b.error(b.guest, f"{out.fault} reading {DMA_PAGE:#x}")
        b.lose(b.guest, "the TDX module marked it fatal after a #MC; the host tears it down")


def forgotten_share(m: TdxMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(a) The guest hands a private page to the device; the emulator writes it."""
    b = _builder(HostFaultScenario.FORGOTTEN_SHARE, setup)
    layer = m.workloads[0]
    mark = keep_guest_data(m, layer, PAGE_2M)
    b.step(b.guest, f"accepts [0, 2M) and keeps its data at {DMA_PAGE:#x}")
    b.step(
        b.guest, f"buggy driver: hands {DMA_PAGE:#x} to the virtio device without MapGPA to shared"
    )
    b.rules.append(ASSUMPTION_SAME_PAGE)
    _emulate(m, b, layer)
    return _finish(m, b, GUEST_DATA, mark)


def convert_under_emulation(m: TdxMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(b) The guest converts a page under emulation back to private."""
    b = _builder(HostFaultScenario.CONVERT_UNDER_EMULATION, setup)
    layer = m.workloads[0]
    rng = GpaRange.of(DMA_PAGE, PAGE_4K)
    assert m.execute(ValidatePages(layer=layer, range=GpaRange.of(0, PAGE_2M))).ok
    assert m.execute(ConvertPages(layer=layer, range=rng, to="shared")).ok
    before = m.memory.read(DMA_PAGE, len(DEVICE_DATA))
    mark = m.trace.mark()
    b.step(b.process(), f"maps the shared page {DMA_PAGE:#x} and emulates the device on it")
    if b.emulator is Emulator.KVM_CHECKED:
        b.rules.append(hf.RULE_TDX_KVM_REFUSES_PRIVATE)
        m.trace.record("kvm", "MAP_GPA", "private", "refused")
        b.step(
            b.guest,
            f"TDVMCALL<MapGPA> {DMA_PAGE:#x} -> private",
            "refused: KVM holds the page mapped shared",
        )
        b.error(b.guest, "its MapGPA to private fails while the device uses the page")
    else:
        r = m.execute(ConvertPages(layer=layer, range=rng, to="private"))
        b.step(
            b.guest,
            f"malicious: MapGPA {DMA_PAGE:#x} -> private, the host AUGs, the guest ACCEPTs",
            "ok" if r.ok else r.error.message if r.error else "failed",
        )
        b.rules.append(ASSUMPTION_SAME_PAGE)
    _emulate(m, b, layer)
    return _finish(m, b, before, mark)


def kexec(m: TdxMachine, setup: ScenarioSetup) -> FaultOutcome:
    """(c) kexec while the TD's memory is private."""
    b = _builder(HostFaultScenario.KEXEC, setup)
    mark = keep_guest_data(m, m.workloads[0], m.config.memory)
    b.rules.append(hf.RULE_TDX_KEXEC)
    if not hf.kexec_allowed(setup.platform_errata):
        m.trace.record(HOST, "KEXEC_LOAD", result="EOPNOTSUPP")
        b.step(
            "host",
            "kexec_load",
            "refused (-EOPNOTSUPP): not allowed on a platform with "
            "the TDX partial-write erratum; the old kernel and its TDs keep running",
        )
        return b.build(DataFate.INTACT, m.trace.since(mark).events)
    b.step("host", "kexec into a new kernel", "every TD stops")
    for guest in b.guests:
        b.lose(guest, "stopped by the kexec")
    w = hf.host_write(
        m, DMA_PAGE, b"new kernel data", accessor=HostAccessor.KERNEL, process=NEW_KERNEL
    )
    b.extend(w.steps, w.rules)
    b.write_completed = w.completed
    b.step(
        NEW_KERNEL,
        "writes former TD-private pages as it needs them",
        "no fault: TDX does not check host writes; boot completes (kdump works)",
    )
    return b.build(b.data_fate(False), m.trace.since(mark).events)


SCENARIOS = {
    HostFaultScenario.FORGOTTEN_SHARE: forgotten_share,
    HostFaultScenario.CONVERT_UNDER_EMULATION: convert_under_emulation,
    HostFaultScenario.KEXEC: kexec,
}


def run(m: TdxMachine, scenario: HostFaultScenario, setup: ScenarioSetup) -> FaultOutcome:
    """Run one seed-003 scenario on ``m``."""
    return SCENARIOS[scenario](m, setup)
