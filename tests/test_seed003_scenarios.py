"""The seed-003 scenarios (KVM list, Peter Gonda / Brijesh Singh, 2021-11-12: what happens when
the host touches guest-private memory) under each host policy, on SEV-SNP and TDX, with the
outcomes the thread describes (issue 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cocopart.host_faults import (
    HOST_DAEMON,
    NO_POLICY,
    DataFate,
    Emulator,
    FaultComparison,
    FaultOutcome,
    HostFaultScenario,
    ScenarioSetup,
    compare_host_faults,
    markdown_table,
    run_host_fault_scenario,
)
from cocopart.partition import Partition

A = HostFaultScenario.FORGOTTEN_SHARE
B = HostFaultScenario.CONVERT_UNDER_EMULATION
C = HostFaultScenario.KEXEC
DOCS = Path(__file__).resolve().parents[1] / "docs" / "host-faults.md"
CONFIG: dict[str, Any] = {"memory": 64 << 20, "vcpus": 1, "services": []}


def run(
    scenario: HostFaultScenario, backend: str = "sev-snp", policy: str | None = None, **setup: Any
) -> FaultOutcome:
    cfg = dict(CONFIG)
    if policy is not None:
        cfg["backend_options"] = {"host_fault_policy": policy}
    return run_host_fault_scenario(Partition(cfg, backend), scenario, ScenarioSetup(**setup))


@pytest.fixture(scope="module")
def table() -> FaultComparison:
    return compare_host_faults()


# --- (a) a buggy guest forgets to share a page it uses for device DMA ------------------------
def test_a_sigbus_the_guests_vmm_gets_sigbus_and_only_that_guest_is_lost() -> None:
    o = run(A, policy="sigbus")
    assert o.host_fault == "#PF (RMP)" and o.policy_consulted and not o.host_panicked
    assert list(o.processes_killed) == ["qemu:guest0"]
    assert list(o.guests_lost) == ["guest0"] and not o.write_completed
    assert o.data is DataFate.LOST_WITH_GUEST


def test_a_sigbus_a_kernel_emulator_panics_the_host_and_every_guest_is_lost() -> None:
    o = run(A, policy="sigbus", emulator=Emulator.KERNEL)
    assert o.host_panicked and sorted(o.guests_lost) == ["guest0", "guest1", "guest2"]


def test_a_kvms_checked_map_refuses_the_private_page_under_every_policy() -> None:
    for policy in ("sigbus", "panic", "convert"):
        o = run(A, policy=policy, emulator=Emulator.KVM_CHECKED)
        assert o.host_fault is None and not o.host_panicked and not o.guests_lost
        assert o.guest_errors == [
            "guest0: the device reports an I/O error (KVM refused to map the page)"
        ]
        assert o.data is DataFate.INTACT


def test_a_panic_every_guest_on_the_host_is_lost() -> None:
    o = run(A, policy="panic")
    assert o.host_panicked and len(o.guests_lost) == 3 and not o.processes_killed


def test_a_convert_the_write_proceeds_and_the_guest_takes_vc_0x404_and_terminates() -> None:
    o = run(A, policy="convert")
    assert o.write_completed and not o.host_panicked and not o.processes_killed
    assert o.guest_errors == ["guest0: #VC 0x404 on 0x1000 (page not validated)"]
    assert list(o.guests_lost) == ["guest0"] and "terminated itself" in o.guests_lost["guest0"]
    assert o.data is DataFate.OVERWRITTEN
    assert [e.mnemonic for e in o.events if e.issuer == "host"][:3] == [
        "RMP_PF",
        "RMPUPDATE.4K",
        "PSMASH",
    ]


def test_a_convert_a_guest_may_log_and_carry_on() -> None:
    o = run(A, policy="convert", guest_terminates_on_error=False)
    assert not o.guests_lost and o.guest_errors and o.data is DataFate.OVERWRITTEN


def test_a_tdx_no_host_fault_the_td_machine_checks_and_is_fatal() -> None:
    o = run(A, "tdx")
    assert o.policy == NO_POLICY and not o.policy_consulted and o.host_fault is None
    assert o.write_completed and not o.processes_killed and not o.host_panicked
    assert list(o.guests_lost) == ["guest0"] and o.guest_errors[0].startswith("guest0: #MC")
    assert o.data is DataFate.OVERWRITTEN


# --- (b) a malicious guest converts a page to private while a host process emulates on it ----
def test_b_sigbus_the_well_behaved_host_wide_daemon_dies_and_every_guest_loses_its_network() -> (
    None
):
    o = run(B, policy="sigbus")
    assert list(o.processes_killed) == [HOST_DAEMON] and not o.guests_lost
    assert o.services_lost == ["virtual network of all 3 guests"]
    assert len(o.guest_errors) == 3 and o.data is DataFate.INTACT


def test_b_sigbus_with_the_guests_own_vmm_only_the_malicious_guest_is_lost() -> None:
    o = run(B, policy="sigbus", emulator=Emulator.VMM)
    assert list(o.processes_killed) == ["qemu:guest0"] and list(o.guests_lost) == ["guest0"]


def test_b_kvms_lock_keeps_the_page_shared_while_mapped() -> None:
    o = run(B, policy="sigbus", emulator=Emulator.KVM_CHECKED)
    assert not o.processes_killed and not o.guests_lost and o.write_completed
    assert "Page State Change to private fails" in o.guest_errors[0]


def test_b_panic_a_malicious_guest_takes_the_host_down() -> None:
    o = run(B, policy="panic")
    assert o.host_panicked and len(o.guests_lost) == 3


def test_b_convert_only_the_malicious_guest_is_hurt() -> None:
    o = run(B, policy="convert")
    assert not o.processes_killed and not o.services_lost and not o.host_panicked
    assert list(o.guests_lost) == ["guest0"] and o.data is DataFate.OVERWRITTEN


def test_b_tdx_the_daemon_survives_and_only_the_converting_td_dies() -> None:
    o = run(B, "tdx")
    assert not o.processes_killed and not o.host_panicked and o.host_fault is None
    assert list(o.guests_lost) == ["guest0"]


# --- (c) kexec on the host with guests' private pages in the RMP -----------------------------
@pytest.mark.parametrize("policy", ["sigbus", "panic"])
def test_c_without_conversion_the_new_kernel_panics_on_the_first_guest_page(policy: str) -> None:
    o = run(C, policy=policy)
    assert o.host_panicked and o.accessor.value == "kernel"
    assert len(o.guests_lost) == 3 and o.data is DataFate.LOST_WITH_GUEST


def test_c_convert_the_new_kernel_converts_pages_as_it_meets_them_and_boots() -> None:
    o = run(C, policy="convert")
    assert not o.host_panicked and o.write_completed
    assert len(o.guests_lost) == 3  # kexec does not preserve running guests
    assert "boot completes" in o.steps[-1].result
    converted = sum(e.count for e in o.events if e.mnemonic == "RMPUPDATE.4K")
    assert converted >= (64 << 20) // 4096


def test_c_tdx_kexec_just_works_without_the_erratum() -> None:
    o = run(C, "tdx")
    assert not o.host_panicked and o.host_fault is None and len(o.guests_lost) == 3


def test_c_tdx_kexec_is_refused_on_the_partial_write_erratum() -> None:
    o = run(C, "tdx", platform_errata=frozenset({"tdx-pw-mce"}))
    assert not o.guests_lost and not o.host_panicked and o.data is DataFate.INTACT
    assert "EOPNOTSUPP" in o.steps[0].result


# --- side by side --------------------------------------------------------------------------
def test_the_comparison_runs_every_scenario_under_every_policy_on_both_backends(
    table: FaultComparison,
) -> None:
    keys = {(o.backend, o.scenario, o.policy) for o in table.outcomes}
    assert keys == {
        (b, s, p)
        for s in HostFaultScenario
        for b, ps in (("sev-snp", ("sigbus", "panic", "convert")), ("tdx", (NO_POLICY,)))
        for p in ps
    }


def test_only_the_panic_policy_and_kernel_writes_take_the_host_down(table: FaultComparison) -> None:
    down = {(o.backend, o.scenario.value, o.policy) for o in table.outcomes if o.host_panicked}
    assert down == {
        ("sev-snp", "forgotten-share", "panic"),
        ("sev-snp", "convert-under-emulation", "panic"),
        ("sev-snp", "kexec", "panic"),
        ("sev-snp", "kexec", "sigbus"),
    }


def test_docs_embed_the_generated_table(table: FaultComparison) -> None:
    assert markdown_table(table) in DOCS.read_text(), (
        "docs/host-faults.md is out of date: paste cocopart.host_faults.markdown_table("
        "compare_host_faults())"
    )


def test_the_rich_table_has_a_row_per_outcome(table: FaultComparison) -> None:
    pytest.importorskip("rich")
    from cocopart_cli.fault_table import fault_table

    t = fault_table(table)
    assert t.row_count == len(table.outcomes) == 12
