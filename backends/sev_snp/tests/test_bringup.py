"""Bring-up of a 16 GiB / 8 vCPU guest with its workload at VMPL2: all memory validated, 7 APs
created, one attestation — trace counts derived by hand for both strategies."""

from __future__ import annotations

from math import ceil

import pytest
from snp_helpers import GIB, guest, machine, rng

from cocopart.model import PAGE_2M
from cocopart.ops import Attest, CreateVcpu, ValidatePages
from cocopart.partition import Partition
from cocopart.trace import SwitchKey

MEMORY, VCPUS = 16 * GIB, 8
ENTRIES = MEMORY // PAGE_2M  # 8192 2M entries: 16 GiB is 2M aligned throughout
PSC_MAX, SVSM_MAX, LINUX = 253, 510, 64
SVSM = "VMGEXIT(SNP_RUN_VMPL)"


def bring_up(strategy: str) -> Partition:
    p = guest(MEMORY, VCPUS, strategy=strategy)
    assert p.layers[3].vendor_name == "VMPL2"
    assert p.run(ValidatePages(range=rng(0, MEMORY))).ok
    for v in range(1, VCPUS):
        assert p.run(CreateVcpu(vcpu=v)).ok
    assert p.run(Attest(report_data=b"\x5a" * 64)).ok
    return p


@pytest.mark.parametrize("strategy", ["optimal", "linux"])
def test_bringup_16gib_8vcpu_vmpl2_trace_counts(strategy: str) -> None:
    p = bring_up(strategy)
    t = p.trace
    per_psc, per_call = (PSC_MAX, SVSM_MAX) if strategy == "optimal" else (LINUX, LINUX)
    psc_requests = ceil(ENTRIES / per_psc)  # optimal 33, linux 128
    pvalidate_calls = ceil(ENTRIES / per_call)  # optimal 17, linux 128
    aps = VCPUS - 1
    svsm_calls = pvalidate_calls + aps + 1  # + CREATE_VCPU each + one ATTEST_SERVICES
    assert (psc_requests, pvalidate_calls) == ((33, 17) if strategy == "optimal" else (128, 128))

    assert t.count("VMGEXIT", issuer="l2.1", target="PSC") == psc_requests
    assert t.count("HANDLE", target="CORE.PVALIDATE") == pvalidate_calls
    assert t.count("HANDLE", target="CORE.CREATE_VCPU") == aps
    assert t.count("HANDLE", target="ATTEST.ATTEST_SERVICES") == 1
    assert t.count("VMGEXIT", issuer="l2.1", target="SNP_RUN_VMPL") == svsm_calls
    sw = t.switches
    assert sw[SwitchKey("l2.1", "l1", SVSM)] == sw[SwitchKey("l1", "l2.1", SVSM)] == svsm_calls
    assert sw[SwitchKey("l2.1", "host", "VMGEXIT")] == psc_requests
    assert sw[SwitchKey("l1", "host", "VMGEXIT")] == aps + 1  # AP_CREATION + GUEST_REQUEST

    # memory: each 2M entry is assigned by the host, validated, zeroed and granted once
    assert t.count("RMPUPDATE.2M", issuer="host", target="private") == ENTRIES
    assert t.count("PSC.ENTRY", issuer="host") == ENTRIES
    assert t.count("PVALIDATE.2M", issuer="l1", result="ok") == ENTRIES
    assert t.count("ZERO.2M", issuer="l1") == ENTRIES
    assert t.count("PVALIDATE.4K") == 0 and t.count("PVALIDATE", issuer="l2.1") == 0
    # vCPUs: per AP 2 revokes (VMPL2, VMPL3) + TLB flush + 2 revokes + 1 RMPADJUST(VMSA)
    assert t.count("RMPADJUST", issuer="l1", target="VMPL2") == ENTRIES + 3 * aps
    assert t.count("RMPADJUST", issuer="l1", target="VMPL3") == 2 * aps
    assert t.count("TLB.FLUSH") == aps
    assert t.count("VMGEXIT", issuer="l1", target="AP_CREATION") == aps
    # attestation: the SVSM's guest request with VMPCK0, signed by the AMD-SP
    assert t.count("VMGEXIT", issuer="l1", target="GUEST_REQUEST") == 1
    assert t.count("SNP_GUEST_REQUEST", issuer="firmware", target="VMPCK0") == 1
    assert t.total_switches == 2 * svsm_calls + 2 * (psc_requests + aps + 1)

    costs = p.costs
    expected = (
        ENTRIES
        * (
            costs.primitive_ns("PVALIDATE.2M")
            + costs.primitive_ns("ZERO.2M")
            + costs.primitive_ns("RMPADJUST")
            + costs.primitive_ns("RMPUPDATE.2M")
        )
        + 5 * aps * costs.primitive_ns("RMPADJUST")
        + aps * costs.primitive_ns("TLB.FLUSH")
        + costs.primitive_ns("SNP_GUEST_REQUEST")
        + 2 * svsm_calls * costs.switch_ns(SVSM)
        + 2 * (psc_requests + aps + 1) * costs.switch_ns("VMGEXIT")
    )
    assert p.estimated_ns() == pytest.approx(expected)


def test_bringup_every_page_validated_for_vmpl2_aps_running_one_report() -> None:
    p = bring_up("optimal")
    [run] = p.memory_view()
    assert (run.start, run.end, run.private, run.validated, run.context) == (
        0,
        MEMORY,
        True,
        True,
        False,
    )
    assert run.access == {"l2.1": "rwus"}
    vcpus = p.vcpus()
    assert [(v.vcpu, v.state) for v in vcpus] == [(n, "running") for n in range(VCPUS)]
    assert all(machine(p).rmp_entry(v.context_gpa or 0).vmsa for v in vcpus)
    assert sum(1 for h in p.history if h.operation.startswith("attest")) == 1


def test_linux_is_slower_than_optimal_in_world_switches_and_time() -> None:
    lin, opt = bring_up("linux"), bring_up("optimal")
    assert lin.trace.total_switches > opt.trace.total_switches
    assert lin.estimated_ns() > opt.estimated_ns()


def test_plan_predicts_the_bringup_without_changing_the_guest() -> None:
    p = guest(MEMORY, VCPUS)
    plan = p.plan(ValidatePages(range=rng(0, MEMORY)))
    assert plan.world_switches == 2 * 33 + 2 * 17
    assert not p.memory_view()[0].private and p.trace.total_primitives == 0
    r = p.run(ValidatePages(range=rng(0, MEMORY)))
    assert (r.primitives, r.world_switches) == (plan.primitives, plan.world_switches)
