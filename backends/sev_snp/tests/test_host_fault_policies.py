"""Host RMP fault policies (issue 7): one test per rule of cocopart_sev_snp.host_faults."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp.rmp import PageState, RmpEntry
from snp_helpers import MIB, guest, machine, validated

from cocopart.errors import ConfigError
from cocopart.host_faults import HostAccessor
from cocopart.model import PAGE_4K, Access

PAGE = 0x1000


def test_default_policy_is_sigbus_the_behaviour_linux_kept() -> None:
    m = machine(guest(64 * MIB))
    assert m.options.host_fault_policy == hf.DEFAULT_POLICY.value == "sigbus"
    assert m.host_fault_policies() == ("sigbus", "panic", "convert")


def test_an_unknown_policy_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError) as err:
        guest(64 * MIB, backend_options={"host_fault_policy": "ignore"})
    assert err.value.field == "backend_options.host_fault_policy"


def test_rule_host_reads_unchecked_reads_see_ciphertext_no_fault() -> None:
    m = machine(validated(64 * MIB))
    assert m.access("host", PAGE, Access.READ).ok
    assert m.access("host", PAGE, Access.WRITE).fault == hf.HOST_RMP_FAULT


def test_shared_page_writes_need_no_policy() -> None:
    m = machine(guest(64 * MIB))
    w = m.host_write(PAGE, b"abc", policy="panic")
    assert w.action is hf.HostAction.WRITTEN and w.completed and w.fault is None
    assert m.memory.read(PAGE, 3) == b"abc"


def test_rule_user_write_sigbus_kills_the_process_and_writes_nothing() -> None:
    m = machine(validated(64 * MIB))
    m.memory.write(PAGE, b"secret")
    w = m.host_write(PAGE, b"evil!!", accessor=HostAccessor.USER, process="qemu:guest0")
    assert w.fault == "#PF (RMP)" and w.action is hf.HostAction.SIGBUS
    assert w.killed == "qemu:guest0" and not w.completed and not w.panicked
    assert hf.RULE_USER_WRITE_SIGBUS in w.rules
    assert m.memory.read(PAGE, 6) == b"secret"
    assert m.rmp_entry(PAGE).state is PageState.GUEST_VALID
    assert m.trace.count("SIGBUS", issuer="host") == 1
    assert m.trace.count("RMP_PF", issuer="host") == 1


def test_rule_kernel_write_panics_under_the_sigbus_policy() -> None:
    m = machine(validated(64 * MIB))
    w = m.host_write(PAGE, accessor=HostAccessor.KERNEL)
    assert w.action is hf.HostAction.PANIC and w.panicked and w.killed is None
    assert hf.RULE_KERNEL_WRITE_PANICS in w.rules
    assert m.trace.count("PANIC", issuer="host") == 1


@pytest.mark.parametrize("accessor", list(HostAccessor))
def test_rule_panic_policy_fail_stop_for_user_and_kernel(accessor: HostAccessor) -> None:
    m = machine(validated(64 * MIB, backend_options={"host_fault_policy": "panic"}))
    w = m.host_write(PAGE, accessor=accessor)
    assert w.panicked and w.action is hf.HostAction.PANIC
    assert hf.RULE_PANIC_POLICY_FAIL_STOP in w.rules


@pytest.mark.parametrize("accessor", list(HostAccessor))
def test_rule_convert_on_fault_makes_the_page_shared_and_the_write_proceeds(
    accessor: HostAccessor,
) -> None:
    m = machine(validated(64 * MIB, backend_options={"host_fault_policy": "convert"}))
    w = m.host_write(PAGE, b"dma data", accessor=accessor)
    assert w.action is hf.HostAction.CONVERTED and w.completed and not w.panicked
    assert w.conversion is not None and w.conversion.ok
    assert hf.RULE_CONVERT_ON_FAULT in w.rules
    assert m.rmp_entry(PAGE).state is PageState.HYPERVISOR
    assert m.memory.read(PAGE, 8) == b"dma data"
    assert m.rmp_entry(PAGE + PAGE_4K).state is PageState.GUEST_VALID  # only that page


def test_rule_private_npf_reassigns_then_the_guest_takes_vc_0x404() -> None:
    m = machine(validated(64 * MIB, backend_options={"host_fault_policy": "convert"}))
    m.host_write(PAGE)
    out, steps = hf.guest_private_access(m, "l2.1", PAGE)
    assert not out.ok and out.fault == "#VC 0x404" and out.handled_by == "l2.1"
    assert steps[0].result.startswith("#NPF")
    assert m.rmp_entry(PAGE).state is PageState.GUEST_INVALID
    assert m.trace.count("NPF", issuer="l2.1") == 1


@pytest.mark.parametrize("policy", hf.HOST_FAULT_POLICIES)
def test_rule_checked_map_refuses_private_pages_under_every_policy(policy: str) -> None:
    m = machine(validated(64 * MIB, backend_options={"host_fault_policy": policy}))
    w = m.host_write(PAGE, accessor=HostAccessor.KERNEL, checked=True)
    assert w.action is hf.HostAction.REFUSED and w.fault is None and not w.completed
    assert hf.RULE_CHECKED_MAP_REFUSES_PRIVATE in w.rules
    assert m.rmp_entry(PAGE).state is PageState.GUEST_VALID


@pytest.mark.parametrize(
    ("accessor", "action"),
    [(HostAccessor.USER, hf.HostAction.SIGBUS), (HostAccessor.KERNEL, hf.HostAction.PANIC)],
)
def test_rule_convert_cannot_take_firmware_pages_falls_back_to_sigbus_behaviour(
    accessor: HostAccessor, action: hf.HostAction
) -> None:
    m = machine(guest(64 * MIB, backend_options={"host_fault_policy": "convert"}))
    m.rmp.set(PAGE, PAGE + PAGE_4K, RmpEntry(assigned=True, asid=0, immutable=True))
    w = m.host_write(PAGE, accessor=accessor)
    assert w.action is action and not w.completed
    assert hf.RULE_CONVERT_CANNOT_TAKE_FIRMWARE_PAGES in w.rules
    assert m.rmp_entry(PAGE).state is PageState.FIRMWARE


def test_the_unconfirmed_rules_are_listed() -> None:
    assert hf.RULE_PRIVATE_NPF_REASSIGNS in hf.UNCONFIRMED
    assert hf.RULE_HOST_SPLITS_ON_SIZE_MISMATCH in hf.UNCONFIRMED
