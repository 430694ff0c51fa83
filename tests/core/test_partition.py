"""Partition: running, planning without side effects, per-operation accounting, threads."""

from __future__ import annotations

import threading

import pytest

from cocopart.errors import ConfigError
from cocopart.model import GIB, MIB, PAGE_2M, GpaRange
from cocopart.ops import Attest, CreateVcpu, SetAccess, Status, ValidatePages
from cocopart.partition import Partition


def test_run_fills_accounting_and_route(fake: Partition) -> None:
    r = fake.run(ValidatePages(range=GpaRange.of(0, 64 * MIB), layer="l2.1"))
    assert r.status is Status.OK
    assert r.primitives == fake.trace.total_primitives and r.world_switches == 2
    assert r.estimated_ns == fake.costs.estimate(fake.trace) > 0
    assert r.data["route"] == "l2.1 --FAKE.SWITCH--> l1"
    assert list(fake.history) == [r]


def test_plan_matches_run_and_changes_nothing(fake: Partition) -> None:
    op = ValidatePages(range=GpaRange.of(0, 32 * MIB), layer="l2.2")
    before = fake.memory_view()
    plan = fake.plan(op)
    assert fake.memory_view() == before and fake.trace.total_primitives == 0
    result = fake.run(op)
    assert (plan.primitives, plan.world_switches) == (result.primitives, result.world_switches)
    assert plan.estimated_ns == result.estimated_ns
    assert [e.mnemonic for e in plan.events] == [e.mnemonic for e in fake.trace.events()]
    assert plan.route is not None and plan.route.provider == "l1"


def test_dict_operations_and_unknown_layer(fake: Partition) -> None:
    r = fake.run({"op": "validate", "range": {"start": 0, "size": "2MiB"}, "layer": "l2.1"})
    assert r.ok
    with pytest.raises(ConfigError, match="no layer 'l2.3'"):
        fake.run(ValidatePages(range=GpaRange.of(0, PAGE_2M), layer="l2.3"))


def test_run_all_and_state_views(fake: Partition) -> None:
    results = fake.run_all(
        [
            ValidatePages(range=GpaRange.of(0, 16 * MIB), layer="l2.1"),
            SetAccess(range=GpaRange.of(0, PAGE_2M), target="l2.2", access="r", layer="l2.1"),
            CreateVcpu(vcpu=1, target="l2.1", layer="l2.1"),
            Attest(layer="l2.2", report_data=None),
        ]
    )
    assert [r.status for r in results] == [Status.OK] * 4
    view = fake.memory_view(0, 16 * MIB)
    assert view[0].access == {"l2.1": "rwus", "l2.2": "r---"} and view[0].end == PAGE_2M
    assert [(v.layer, v.vcpu) for v in fake.vcpus()] == [("l2.1", 1)]
    assert fake.estimated_ns() == fake.costs.estimate(fake.trace)


def test_concurrent_runs_are_serialised(fake: Partition) -> None:
    chunk = 4 * MIB
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(4):
                start = (i * 4 + j) * chunk
                fake.run(ValidatePages(range=GpaRange.of(start, chunk), layer="l2.1"))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(fake.history) == 16
    assert all(r.ok for r in fake.history)
    assert sum(r.primitives for r in fake.history) == fake.trace.total_primitives
    view = fake.memory_view(0, 64 * MIB)
    assert len(view) == 1 and view[0].validated


def test_bad_config_is_a_config_error() -> None:
    from fake_backend import FakeBackend

    with pytest.raises(ConfigError, match="field 'vcpus'"):
        Partition({"memory": GIB, "vcpus": 0}, FakeBackend())


def test_fork_owns_its_service_state(fake: Partition) -> None:
    """A plan runs on a fork: the fork's vTPM PCRs and APIC state must be its own copies
    (protocol handlers reach state through the dispatcher, never through a closure)."""
    import hashlib

    from cocopart import vtpm_commands as cmd

    original = fake.machine
    other = original.fork()
    d = hashlib.sha384(b"x").digest()
    code, rsp = other.client.vtpm_command("l2.1", 0, cmd.pcr_extend(5, d))
    assert code == 0 and cmd.response_code(rsp) == 0
    assert other.service.vtpm is not original.service.vtpm
    assert original.service.vtpm.pcrs[0x000C][5] == bytes(48)
    assert other.service.vtpm.pcrs[0x000C][5] != bytes(48)
    assert other.service.apic is not original.service.apic
