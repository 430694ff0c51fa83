"""A 2M entry refused with SIZEMISMATCH is redone as 512 4K entries, in full calls of 510
(Linux: sev-snp.md §2.1, cost-model.md §3) — with either strategy."""

from __future__ import annotations

import math

import pytest

from cocopart.model import MIB, GpaRange
from cocopart.ops import ValidatePages
from cocopart.partition import Partition


@pytest.mark.parametrize("strategy,per_call", [("linux", 64), ("optimal", 510)])
def test_size_mismatch_fallback_uses_full_calls(strategy: str, per_call: int) -> None:
    p = Partition(
        {
            "memory": "64MiB",
            "vcpus": 1,
            "strategy": strategy,
            "backend_options": {"host_page_size": "4K"},
        },
        "sev-snp",
    )
    r = p.run(ValidatePages(range=GpaRange.of(0, 64 * MIB)))
    assert r.ok, r.reason
    entries_2m = 32
    calls = p.trace.count("HANDLE", target="CORE.PVALIDATE")
    # each refused 2M entry ends a call; the next call resumes after it (next + 1)
    first_pass = entries_2m + math.ceil(entries_2m / per_call) - 1
    assert calls == first_pass + math.ceil(entries_2m * 512 / 510)
    assert p.trace.count("PVALIDATE.2M", result="FAIL_SIZEMISMATCH") == entries_2m
    assert p.trace.count("PVALIDATE.4K", result="ok") == entries_2m * 512
