"""The smallest guests the model accepts (1 MiB, and RAM that is not a 2 MiB multiple) run the
same neutral sequence on both backends; the protocol region starts at the next 2 MiB."""

from __future__ import annotations

import pytest

from cocopart.model import PAGE_4K, GpaRange
from cocopart.ops import Attest, ConvertPages, CreateVcpu, ValidatePages
from cocopart.partition import Partition


@pytest.mark.parametrize("backend", ["sev-snp", "tdx"])
@pytest.mark.parametrize("memory", [1 << 20, 3 << 20, (5 << 22) + PAGE_4K])
def test_small_guest_runs_the_neutral_sequence(backend: str, memory: int) -> None:
    p = Partition({"memory": memory, "vcpus": 2}, backend)
    assert p.machine.layout.base % (2 << 20) == 0 and p.machine.layout.base >= memory
    results = p.run_all(
        [
            ValidatePages(range=GpaRange.of(0, memory)),
            CreateVcpu(vcpu=1),
            Attest(report_data=b"\x01" * 64),
            ConvertPages(range=GpaRange.of(0, PAGE_4K), to="shared"),
            ConvertPages(range=GpaRange.of(0, PAGE_4K), to="private"),
        ]
    )
    assert all(r.ok for r in results), [r.reason for r in results]
    view = p.memory_view()
    assert [(v.start, v.end, v.validated, v.access) for v in view] == [
        (0, memory, True, {"l2.1": "rwus"})
    ]
