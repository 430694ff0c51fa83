"""One vendor-neutral operation sequence on both backends, both succeeding — and the places
where the architectures differ answered with reasons, not errors."""

from __future__ import annotations

import pytest

from cocopart.attest.evidence import Evidence
from cocopart.errors import CocopartError
from cocopart.model import MIB, GpaRange
from cocopart.ops import (
    Attest,
    ConvertPages,
    CreateVcpu,
    DeleteVcpu,
    ExtendMeasurement,
    Operation,
    RescindPages,
    SetAccess,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.registry import load_backend

CONFIG = {"memory": "64MiB", "vcpus": 2, "workload_layers": 1}


def rng(start: int, size: int) -> GpaRange:
    return GpaRange.of(start, size)


SEQUENCE: list[Operation] = [
    ValidatePages(range=rng(0, 16 * MIB)),
    CreateVcpu(vcpu=1),
    ConvertPages(range=rng(4 * MIB, 2 * MIB), to="shared"),
    ConvertPages(range=rng(4 * MIB, 2 * MIB), to="private"),
    SetAccess(layer="l1", range=rng(0, 2 * MIB), target="l2.1", access="r"),  # l1 restricts
    Attest(report_data=b"\x42" * 64),
    ExtendMeasurement(register=8, digest=b"\x11" * 48),
    DeleteVcpu(vcpu=1),
]


def snp_or_skip() -> None:
    try:
        load_backend("sev-snp")
    except CocopartError as err:
        pytest.skip(f"sev-snp backend not loadable: {err}")


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
def test_one_neutral_sequence_succeeds_on_both_backends(backend: str) -> None:
    if backend == "sev-snp":
        snp_or_skip()
    p = Partition(CONFIG, backend)
    for op in SEQUENCE:
        r = p.run(op)
        assert r.ok, (backend, r.operation, r.reason)
        assert r.primitives + r.world_switches > 0
    ev = Evidence.model_validate(p.history[5].data["evidence"])
    assert ev.vendor == backend and ev.nonce == b"\x42" * 64 and ev.manifest
    views = p.memory_view(0, 16 * MIB)
    assert all(v.private and v.validated for v in views)
    assert [v.vcpu for v in p.vcpus()] == [0]


def test_both_backends_answer_the_same_sequence_with_their_own_primitives() -> None:
    snp_or_skip()
    snp, tdx = Partition(CONFIG, "sev-snp"), Partition(CONFIG, "tdx")
    for op in SEQUENCE:
        a, b = snp.run(op), tdx.run(op)
        assert a.ok and b.ok
    assert snp.trace.count("PVALIDATE") > 0 and tdx.trace.count("PVALIDATE") == 0
    assert tdx.trace.count("TDG.MEM.PAGE.ACCEPT.4K") > 0
    assert tdx.trace.switches[("l2.1", "l1", "L2->L1 exit")] > 0


def test_tdx_differences_are_reasons_not_failures() -> None:
    p = Partition(CONFIG, "tdx")
    assert p.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    r = p.run(RescindPages(range=rng(0, 2 * MIB)))
    assert r.status.value == "not-supported" and "TDG.MEM.PAGE.RELEASE" in (r.reason or "")
    r = p.run(Attest(source="hardware", report_data=None))
    assert r.status.value == "not-supported" and "only L1 may call TDG.MR.REPORT" in (
        r.reason or ""
    )
    caps = p.capabilities()
    assert not caps["rescind"].supported and not caps["attest-hardware"].supported
    later = Partition({**CONFIG, "backend_options": {"module": "2.0"}}, "tdx")
    assert later.run(ValidatePages(range=rng(0, 4 * MIB))).ok
    assert later.run(RescindPages(range=rng(0, 2 * MIB))).ok
