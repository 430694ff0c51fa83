"""2M/4K size mismatches on the host side (issue 7): the convert handler's RMPUPDATE of one 4K
page inside a 2M RMP entry (FAIL_OVERLAP -> PSMASH -> retry), and a host write through a 2M
host mapping over assigned 4K entries (split the host mapping)."""

from __future__ import annotations

import pytest
from cocopart_sev_snp import host_faults as hf
from cocopart_sev_snp.machine import SnpMachine
from cocopart_sev_snp.rmp import PageState
from snp_helpers import MIB, machine, rng, validated

from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.ops import ConvertPages

PAGE = 0x5000


def _m(page_size: str = "2M", policy: str = "convert") -> SnpMachine:
    return machine(
        validated(
            16 * MIB, backend_options={"host_page_size": page_size, "host_fault_policy": policy}
        )
    )


def test_rule_convert_psmash_on_overlap_then_the_4k_rmpupdate_succeeds() -> None:
    m = _m()
    assert m.rmp_entry(PAGE).page_size_2m
    conv = hf.convert_to_shared(m, PAGE)
    assert conv.ok and conv.smashed and conv.attempts == 2
    assert [s.result for s in conv.steps] == ["FAIL_OVERLAP", "ok", "ok"]
    assert hf.RULE_CONVERT_PSMASH_ON_OVERLAP in conv.rules
    assert m.trace.count("PSMASH", issuer="host") == 1


def test_psmash_keeps_the_other_511_pages_of_the_region_as_they_were() -> None:
    m = _m()
    before = m.rmp_entry(0)
    hf.convert_to_shared(m, PAGE)
    for gpa in (0, PAGE - PAGE_4K, PAGE + PAGE_4K, PAGE_2M - PAGE_4K):
        assert m.rmp_entry(gpa) == before._replace(page_size_2m=False)
    assert m.rmp_entry(PAGE).state is PageState.HYPERVISOR
    assert m.rmp_entry(PAGE_2M).page_size_2m  # the next region is not smashed


def test_no_psmash_when_the_rmp_already_has_4k_entries() -> None:
    m = _m(page_size="4K")
    conv = hf.convert_to_shared(m, PAGE)
    assert conv.ok and not conv.smashed and conv.attempts == 1
    assert m.trace.count("PSMASH", issuer="host") == 0


def test_a_second_conversion_in_a_smashed_region_needs_no_second_psmash() -> None:
    m = _m()
    hf.convert_to_shared(m, PAGE)
    conv = hf.convert_to_shared(m, PAGE + PAGE_4K)
    assert conv.ok and not conv.smashed
    assert m.trace.count("PSMASH", issuer="host") == 1


@pytest.mark.parametrize("policy", hf.HOST_FAULT_POLICIES)
def test_rule_host_splits_on_size_mismatch_under_every_policy(policy: str) -> None:
    p = validated(16 * MIB, backend_options={"host_page_size": "4K", "host_fault_policy": policy})
    assert p.run(ConvertPages(range=rng(PAGE, PAGE_4K), to="shared")).ok
    m = machine(p)
    w = m.host_write(PAGE, b"ring", host_map_2m=True)
    assert w.fault == hf.HOST_SIZE_MISMATCH_FAULT
    assert w.action is hf.HostAction.SPLIT_AND_WRITTEN and w.completed and not w.panicked
    assert hf.RULE_HOST_SPLITS_ON_SIZE_MISMATCH in w.rules
    assert m.memory.read(PAGE, 4) == b"ring"
    assert m.host_write(PAGE, b"ring").fault is None  # through a 4K mapping: no fault
